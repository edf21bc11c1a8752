"""What a provider declares: the pieces of cloudhop that only one cloud knows.

A provider is data plus plain functions. Nothing here imports a cloud SDK: each piece imports
its SDK inside the function that needs it, so every provider can be listed and looked up on an
install without that cloud's extra; using it then asks for the extra (see `missing_extra`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

__all__ = ["Provider", "PoolType", "ManifestKind", "CredentialsBlock", "ProviderError", "set_default",
           "missing_extra"]


class ProviderError(LookupError):
    """An unknown provider, pool type or manifest kind; the message lists the known ones."""


def set_default(props: dict[str, Any], key: str, value: Any) -> None:
    """Set the default of one job variable in a base job template's `variables.properties`."""
    props[key] = {**props[key], "default": value}


@dataclass(frozen=True)
class PoolType:
    """A Prefect work-pool type: its worker class, and what cloudhop adds to the worker's default
    base job template for GPU training (the common part lives in cloudhop.clouds.templates)."""
    name: str
    worker: str  # "module:Class" of the Prefect worker (imported by the tasks layer, never here)
    patch: Callable[[dict[str, Any], Any], None] | None = None  # (template, catalog Cloud) -> None, in place
    gpu_variables: Callable[[int], dict[str, Any]] | None = None  # job variables asking for N GPUs
    runs_here: bool = False  # its worker runs jobs on this machine: `flows.pools apply --local` keeps the type


@dataclass(frozen=True)
class ManifestKind:
    """One serving manifest format: a renderer (ServingDescription -> manifest) and its schema check."""
    name: str
    render: Callable[..., Any]
    validate: Callable[[Any], None]
    suffix: str = "json"  # file suffix when written out: json or yaml


@dataclass(frozen=True)
class CredentialsBlock:
    """The Prefect block type a target's `options.credentials` names, as data: the tasks layer loads
    the block and hands its fields (secrets revealed, plain values) to `to_secrets`."""
    block_class: str  # "module:Class", e.g. prefect_aws:AwsCredentials
    to_secrets: Callable[[dict[str, Any]], dict[str, Any]]  # block fields -> the target's `secrets`


@dataclass(frozen=True)
class Provider:
    """Everything one cloud contributes, registered by `name` (= the serving target `kind`)."""
    name: str
    target: Callable[..., Any]  # (ServingTargetSpec, PipelineSpec, secrets) -> Target
    extra: str | None = None  # the pyproject extra that installs its SDKs
    pool_types: tuple[PoolType, ...] = ()
    manifests: tuple[ManifestKind, ...] = ()
    credentials: CredentialsBlock | None = None
    store_protocols: tuple[str, ...] = ()  # object-store protocols whose create-only write it provides
    put_if_absent: Callable[[Any, str, bytes], bool] | None = None  # (Store, path, data) -> created?


def missing_extra(provider: Provider, error: ImportError) -> str:
    """The message for a provider used without its SDK installed."""
    hint = f"; install it with: pip install 'cloudhop[{provider.extra}]'" if provider.extra else ""
    return f"the {provider.name} provider needs {error.name or 'a package that is not installed'}{hint}"
