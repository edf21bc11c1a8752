"""What a provider declares: the pieces of cloudhop that only one cloud knows.

A provider is data plus plain functions. Nothing here imports a cloud SDK: each piece imports
its SDK inside the function that needs it, so every provider can be listed and looked up on an
install without that cloud's extra; using it then asks for the extra (see `missing_extra`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

__all__ = ["Provider", "PoolType", "ManifestKind", "CredentialsBlock", "ProviderError", "ObjectBackend",
           "set_default", "missing_extra", "encryption_setting"]


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
    """The Prefect block type a target's `options.credentials` (and a spec's `store_credentials` or
    `dataset.credentials` for a URI of one of `protocols`) names, as data: the tasks layer loads the
    block and hands its fields (secrets revealed, plain values) to `to_secrets`, or for a store or
    dataset to `to_storage_options`."""
    block_class: str  # "module:Class", e.g. prefect_aws:AwsCredentials
    to_secrets: Callable[[dict[str, Any]], dict[str, Any]]  # block fields -> the target's `secrets`
    protocols: tuple[str, ...] = ()  # fsspec protocols these credentials open (s3, gs, az)
    to_storage_options: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # block fields -> fsspec options


def encryption_setting(encryption: Mapping[str, Any] | None, name: str, store: str, example: str) -> str | None:
    """The one setting `name` of a store's `encryption` option (None: no encryption asked for); a
    ValueError naming what is expected for anything else."""
    if encryption is None:
        return None
    if set(encryption) != {name} or not encryption[name]:
        raise ValueError(f"store option encryption for {store} takes {{{name}: {example}}}; "
                         f"got keys {sorted(encryption)}")
    return str(encryption[name])


class ObjectBackend(Protocol):
    """An object store's writes through its own SDK: the conditional writes fsspec does not offer
    (create-only, compare-and-swap) and encryption at rest on every write. Paths are "bucket/key"."""

    def get(self, path: str) -> tuple[bytes, str] | None:
        """The object's bytes and its version token (ETag, generation); None when it does not exist."""

    def put(self, path: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None) -> bool:
        """Write `data`, encrypted as configured: only when absent, or only when its version token is still
        `if_match`. False when that condition failed (nothing was written)."""


@dataclass(frozen=True)
class Provider:
    """Everything one cloud contributes, registered by `name` (= the serving target `kind`)."""
    name: str
    target: Callable[..., Any]  # (ServingTargetSpec, PipelineSpec, secrets) -> Target
    extra: str | None = None  # the pyproject extra that installs its SDKs
    pool_types: tuple[PoolType, ...] = ()
    manifests: tuple[ManifestKind, ...] = ()
    credentials: CredentialsBlock | None = None
    store_protocols: tuple[str, ...] = ()  # object-store protocols whose writes it provides
    # (fsspec storage options, encryption options or None) -> the ObjectBackend of one store
    store_backend: Callable[[Mapping[str, Any], Mapping[str, Any] | None], ObjectBackend] | None = None


def missing_extra(provider: Provider, error: ImportError) -> str:
    """The message for a provider used without its SDK installed."""
    hint = f"; install it with: pip install 'cloudhop[{provider.extra}]'" if provider.extra else ""
    return f"the {provider.name} provider needs {error.name or 'a package that is not installed'}{hint}"
