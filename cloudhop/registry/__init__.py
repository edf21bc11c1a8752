"""Model versions in an artifact store.

Layout under the store root::

    models/<name>/<version>/model.onnx, preprocess.json, checkpoint.pt, ..., manifest.json
    models/<name>/aliases/<alias>.json          {"version": "3", "previous": "2", ...}

A version becomes visible only when its manifest.json exists; the manifest is written
last, with a create-only write, and lists the sha256 of every file. Readers ignore
folders without a manifest, so a crash mid-publish leaves nothing half-written in
view. An alias is one small object replaced atomically. The manifest's fields are the
`Manifest` model (`cloudhop.registry.manifest`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cloudhop.registry.manifest import FileEntry, Manifest
from cloudhop.store import Store, sha256_bytes

__all__ = ["Registry", "RegistryError", "ModelVersion", "Manifest"]

_VERSION = re.compile(r"^\d+$")


class RegistryError(RuntimeError):
    pass


@dataclass
class ModelVersion:
    name: str
    version: str
    manifest: Manifest
    prefix: str  # store key of the version folder

    def key(self, filename: str) -> str:
        return f"{self.prefix}/{filename}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Registry:
    def __init__(self, store: Store, name: str):
        self.store, self.name = store, name
        self.base = f"models/{name}"

    # -- versions -----------------------------------------------------------
    def _all_version_dirs(self) -> list[int]:
        return sorted(int(d) for d in self.store.list_dirs(self.base) if _VERSION.match(d))

    def versions(self) -> list[str]:
        """Committed versions, oldest first."""
        return [str(v) for v in self._all_version_dirs() if self.store.exists(f"{self.base}/{v}/manifest.json")]

    def get(self, version: str) -> ModelVersion:
        version = str(self.resolve(version))
        key = f"{self.base}/{version}/manifest.json"
        if not self.store.exists(key):
            raise RegistryError(f"model {self.name} has no version {version}")
        try:
            manifest = Manifest.model_validate(self.store.read_json(key))
        except ValueError as e:  # not JSON, or not a manifest (pydantic's ValidationError is a ValueError)
            raise RegistryError(f"{self.store.url(key)} is not a valid manifest: {e}") from None
        return ModelVersion(self.name, version, manifest, f"{self.base}/{version}")

    def resolve(self, ref: str) -> str:
        """A version number, 'latest', or an alias name -> a version number."""
        ref = str(ref)
        if _VERSION.match(ref):
            return ref
        if ref == "latest":
            vs = self.versions()
            if not vs:
                raise RegistryError(f"model {self.name} has no versions")
            return vs[-1]
        alias = self.alias(ref)
        if alias is None:
            raise RegistryError(f"model {self.name} has no alias {ref!r}")
        return alias["version"]

    def publish(self, files: dict[str, bytes], manifest: Manifest) -> ModelVersion:
        """Write a new version: every file, then the manifest (create-only) as the commit."""
        if "manifest.json" in files:
            raise RegistryError("manifest.json is written by the registry")
        existing = self._all_version_dirs()
        version = str((existing[-1] if existing else 0) + 1)
        prefix = f"{self.base}/{version}"
        for fname, data in files.items():
            self.store.write_bytes(f"{prefix}/{fname}", data)
        full = manifest.model_copy(update=dict(
            name=self.name, version=version, created_at=manifest.created_at or now_iso(),
            files={f: FileEntry(sha256=sha256_bytes(d), bytes=len(d)) for f, d in files.items()}))
        if not self.store.write_bytes_if_absent(f"{prefix}/manifest.json", full.to_json()):
            raise RegistryError(f"version {version} of {self.name} was published concurrently; retry")
        return ModelVersion(self.name, version, full, prefix)

    def read_file(self, mv: ModelVersion, filename: str, verify: bool = True) -> bytes:
        data = self.store.read_bytes(mv.key(filename))
        if verify:
            entry = mv.manifest.files.get(filename)
            if entry is None:
                raise RegistryError(f"{filename} is not listed in the manifest of {self.name} v{mv.version}")
            want, got = entry.sha256, sha256_bytes(data)
            if got != want:
                raise RegistryError(f"sha256 mismatch for {self.store.url(mv.key(filename))}: "
                                    f"manifest says {want[:12]}…, file has {got[:12]}…")
        return data

    def verify(self, version: str) -> list[str]:
        """Problems found in a version's files (empty when every checksum matches)."""
        mv = self.get(version)
        problems = []
        for fname in mv.manifest.files:
            try:
                self.read_file(mv, fname)
            except (RegistryError, FileNotFoundError) as e:
                problems.append(str(e))
        return problems

    # -- aliases --------------------------------------------------------------
    def alias(self, alias: str) -> dict[str, Any] | None:
        key = f"{self.base}/aliases/{alias}.json"
        return self.store.read_json(key) if self.store.exists(key) else None

    def aliases(self) -> dict[str, dict[str, Any]]:
        out = {}
        for k in self.store.list(f"{self.base}/aliases"):
            if k.endswith(".json"):
                out[k.rsplit("/", 1)[-1][:-5]] = self.store.read_json(k)
        return out

    def set_alias(self, alias: str, version: str, **meta: Any) -> dict[str, Any]:
        """Point an alias at a committed version, in one atomic write."""
        if not re.match(r"^[A-Za-z0-9._-]+$", alias):
            raise RegistryError(f"bad alias name {alias!r}")
        version = str(version)
        if version not in self.versions():
            raise RegistryError(f"cannot point {alias!r} at {self.name} v{version}: no such committed version")
        old = self.alias(alias)
        record = {"version": version, "previous": old["version"] if old else None, "updated_at": now_iso(), **meta}
        self.store.write_json(f"{self.base}/aliases/{alias}.json", record)
        return record

    def champion(self) -> ModelVersion | None:
        a = self.alias("champion")
        return self.get(a["version"]) if a else None
