"""Providers: one folder per cloud, registered by name, loaded only when asked for.

    from cloudhop import providers
    providers.names()                  # ['aws', 'azure', 'coreweave', 'gcp', 'local']
    providers.get("aws").target(...)   # the provider's serving target factory

A provider is a sub-package `cloudhop/providers/<name>/` whose `__init__` defines
`PROVIDER` (a `Provider`). Finding the names only lists the folders (nothing is imported),
so the spec can check a target's kind cheaply; `get` imports one provider.
"""
from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from cloudhop.providers.base import (CredentialsBlock, ManifestKind, ObjectBackend, PoolType, Provider,
                                     ProviderError, missing_extra, set_default)

__all__ = ["Provider", "ObjectBackend", "PoolType", "ManifestKind", "CredentialsBlock", "ProviderError", "names", "get",
           "pool_type", "pool_type_names", "manifest_kind", "manifest_kind_names", "for_protocol", "credentials_for",
           "missing_extra", "set_default"]


@cache
def names() -> tuple[str, ...]:
    """Every registered provider, sorted: the sub-packages of cloudhop.providers."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg))


def get(name: str) -> Provider:
    """The provider called `name` (a serving target kind, a catalog cloud)."""
    if name not in names():
        raise ProviderError(f"unknown provider {name!r}; known: {', '.join(names())}")
    provider = importlib.import_module(f"{__name__}.{name}").PROVIDER
    if provider.name != name:
        raise ProviderError(f"cloudhop/providers/{name}/ registers a provider named {provider.name!r}")
    return provider


def _all() -> list[Provider]:
    return [get(n) for n in names()]


def pool_type(name: str) -> PoolType:
    """The work-pool type `name` from the provider that declares it."""
    for p in _all():
        for t in p.pool_types:
            if t.name == name:
                return t
    raise ProviderError(f"unknown work-pool type {name!r}; known: {', '.join(pool_type_names())}")


def pool_type_names() -> list[str]:
    return sorted({t.name for p in _all() for t in p.pool_types})


def manifest_kind(name: str) -> tuple[Provider, ManifestKind]:
    """The serving manifest kind `name` and the provider that renders it."""
    for p in _all():
        for m in p.manifests:
            if m.name == name:
                return p, m
    raise ProviderError(f"unknown manifest kind {name!r}; known: {', '.join(manifest_kind_names())}")


def manifest_kind_names() -> list[str]:
    """Every manifest kind, in provider order."""
    return [m.name for p in _all() for m in p.manifests]


def for_protocol(protocol: str) -> Provider | None:
    """The provider giving object-store `protocol` its writes (None: that protocol has none)."""
    return next((p for p in _all() if protocol in p.store_protocols), None)


_PROTOCOL_ALIASES = {"gcs": "gs", "abfs": "az", "abfss": "az"}


def credentials_for(uri: str) -> CredentialsBlock | None:
    """The credentials block type that opens `uri` (its protocol) as a store or a dataset; None
    where no provider's does, such as a local path."""
    protocol = uri.split("://", 1)[0].lower() if "://" in uri else "file"
    protocol = _PROTOCOL_ALIASES.get(protocol, protocol)
    return next((p.credentials for p in _all()
                 if p.credentials is not None and protocol in p.credentials.protocols), None)
