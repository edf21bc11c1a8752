"""Credentials from Prefect blocks, resolved into the plain values the library takes.

A provider declares its block type (cloudhop.providers: `CredentialsBlock`); a spec names a
block of it (`store_credentials`, `dataset.credentials`, a target's `options.credentials`).
The block is loaded here, at run time, and its secrets go straight to the library: into a
target's `secrets`, or into the fsspec options a spec reads its store and dataset with
(`PipelineSpec.with_credentials`: outside the spec's fields, so no manifest, parameter,
artifact or log line holds them). Nothing here logs or returns a value of a block.
"""
from __future__ import annotations

import importlib
from typing import Any

from cloudhop import providers
from cloudhop.providers import CredentialsBlock
from cloudhop.spec import CredentialsRef, PipelineSpec, ServingTargetSpec, SpecError, load_spec

__all__ = ["load_block", "resolve_spec", "load_resolved_spec", "target_secrets"]


def _plain(value: Any) -> Any:
    """A block's dumped fields with every secret revealed (SecretStr, SecretDict), recursively."""
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def load_block(kind: CredentialsBlock, name: str) -> dict[str, Any]:
    """The fields of the block `name` (a name, or `<type-slug>/<name>`) of the type `kind` declares,
    secrets revealed."""
    module, cls_name = kind.block_class.split(":")
    cls = getattr(importlib.import_module(module), cls_name)
    type_slug, _, short = name.rpartition("/")
    if type_slug and type_slug != cls.get_block_type_slug():
        raise SpecError(f"credentials block {name!r} is a {type_slug}; this store or target takes a "
                        f"{cls.get_block_type_slug()} block")
    return _plain(cls.load(short).model_dump())


def _storage_options(ref: CredentialsRef | None, uri: str, field: str) -> dict[str, Any]:
    """fsspec options from the credentials block `ref` names for `uri`; none (the runtime identity) without one."""
    if ref is None:
        return {}
    kind = providers.credentials_for(uri)
    if kind is None or kind.to_storage_options is None:
        raise SpecError(f"{field}: {uri} takes no credentials block")
    return kind.to_storage_options(load_block(kind, ref.block))


def resolve_spec(spec: PipelineSpec) -> PipelineSpec:
    """The spec, reading its store and dataset with the credentials its blocks hold."""
    if spec.store_credentials is None and spec.dataset.credentials is None:
        return spec
    return spec.with_credentials(
        store=_storage_options(spec.store_credentials, spec.store, "store_credentials"),
        dataset=_storage_options(spec.dataset.credentials, spec.dataset.uri, "dataset.credentials"))


def load_resolved_spec(path: str, overrides: dict[str, Any] | None = None) -> PipelineSpec:
    """load_spec (credentials and unknown overrides refused), then its credentials blocks resolved."""
    return resolve_spec(load_spec(path, overrides))


def target_secrets(target: ServingTargetSpec) -> dict[str, Any]:
    """Plain credentials for one target, from the Prefect blocks its options name: the block type is
    the one the target's provider declares (cloudhop.providers.<kind>: `credentials`)."""
    o, out = target.options, {}
    block = o.get("credentials")
    kind = providers.get(target.kind).credentials
    if block and kind is not None:
        out.update(kind.to_secrets(load_block(kind, block)))
    if o.get("admin_token_secret"):
        from prefect.blocks.system import Secret

        out["admin_token"] = Secret.load(o["admin_token_secret"]).get()
    return {k: v for k, v in out.items() if v is not None}
