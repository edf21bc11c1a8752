"""Render and check serving manifests by kind, whichever provider owns the kind.

    m = render(desc, "ecs", version="3", store="s3://bucket/root", target="aws-us-east-1")

Each provider declares its manifest kinds (cloudhop/providers/<cloud>/manifests.py: a
renderer, pure, and an offline schema check). `render` finds the kind through the provider
registry; a provider's own target calls `render_kind` with its kind directly.

    python -m cloudhop.targets.manifests DESCRIPTION --out DIR   # every kind, checked
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from cloudhop import providers
from cloudhop.providers import ManifestKind, ProviderError
from cloudhop.targets.description import (ManifestError, ServingDescription, check_image, check_plain_env,
                                          load_description)

__all__ = ["render", "render_kind", "validate", "main"]


def render_kind(kind: ManifestKind, desc: ServingDescription, *, version: str, store: str, target: str,
                check: bool = True, **extra: Any) -> Any:
    """The manifest of one kind, validated against its schema unless check=False."""
    check_plain_env(desc, extra.get("store_options"))
    check_image(desc.image)  # again here: a per-target image arrives through model_copy, unvalidated
    manifest = kind.render(desc, str(version), store, target, **extra)
    if check:
        _checked(kind, manifest)
    return manifest


def render(desc: ServingDescription, cloud: str, *, version: str, store: str, target: str, check: bool = True,
           **extra: Any) -> Any:
    """The manifest for the kind named `cloud` (kubernetes, kserve, ecs, cloud-run, container-app, ...)."""
    return render_kind(_kind(cloud), desc, version=version, store=store, target=target, check=check, **extra)


def validate(cloud: str, manifest: Any) -> None:
    """Raise ManifestError when `manifest` does not fit the schema of the kind named `cloud`."""
    _checked(_kind(cloud), manifest)


def _kind(name: str) -> ManifestKind:
    try:
        return providers.manifest_kind(name)[1]
    except ProviderError as e:
        raise ManifestError(str(e)) from None


def _checked(kind: ManifestKind, manifest: Any) -> None:
    provider, _ = providers.manifest_kind(kind.name)
    try:
        kind.validate(manifest)
    except ImportError as e:  # the provider's SDK holds the schema
        raise ManifestError(f"cannot check a {kind.name} manifest: {providers.missing_extra(provider, e)}") from None


def main(argv: list[str] | None = None) -> int:
    """python -m cloudhop.targets.manifests DESCRIPTION --out DIR [--version V --store URI]: write every manifest."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m cloudhop.targets.manifests", description=main.__doc__)
    p.add_argument("description")
    p.add_argument("--out", required=True)
    p.add_argument("--version", default="1")
    p.add_argument("--store", default="s3://cloudhop-artifacts/store")
    p.add_argument("--target", default="example")
    a = p.parse_args(argv)
    desc = load_description(a.description)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in providers.manifest_kind_names():
        kind = _kind(name)
        m = render_kind(kind, desc, version=a.version, store=a.store, target=a.target)
        path = out / f"{name}.{kind.suffix}"
        if kind.suffix == "json":
            path.write_text(json.dumps(m, indent=2) + "\n")
        else:
            path.write_text(yaml.safe_dump_all(m if isinstance(m, list) else [m], sort_keys=False))
        print(f"wrote {path} (valid)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
