"""Model versions in an artifact store.

Layout under the store root::

    models/<name>/<version>/claim.json          who claimed the number (create-only, written first)
    models/<name>/<version>/model.onnx, preprocess.json, checkpoint.pt, ...
    models/<name>/<version>/manifest.sig        Ed25519 signature of manifest.json (when a key is set)
    models/<name>/<version>/manifest.json       the commit: every file's sha256 (create-only, written last)
    models/<name>/aliases/<alias>.json          {"version": "3", "previous": "2", "manifest_sha256": ...}
    audit/<name>/<time>-<id>.json               one event per alias move, deploy, rollback (registry.audit)

Publishing first claims a version number with a create-only write of `claim.json`; only the
claimer writes into that folder, so concurrent publishes never touch each other's files. A
version becomes visible only when its manifest.json exists. A publish that dies after its claim
leaves an invisible folder whose number is skipped by every later publish.

An alias is one small object moved by compare-and-swap, and pins the sha256 of the manifest it
points at: resolving it checks that the manifest is still those bytes. The champion alias never
moves to an older version than it holds, unless the move says it is a rollback. A registry given
a public key refuses versions that are unsigned or whose signature does not verify; a file whose
sha256 differs from the manifest is refused always. Every alias move is recorded in the audit log.
"""
from __future__ import annotations

import json
import os
import random
import re
import socket
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from cloudhop.registry import signing
from cloudhop.registry.audit import AuditLog, default_actor
from cloudhop.registry.manifest import FileEntry, Manifest
from cloudhop.store import Store, sha256_bytes

__all__ = ["Registry", "RegistryError", "IntegrityError", "AliasError", "ModelVersion", "Manifest"]

_VERSION = re.compile(r"^\d+$")
_ALIAS = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_RESERVED = ("manifest.json", "manifest.sig", "claim.json")
_CAS_ATTEMPTS = 50


class RegistryError(RuntimeError):
    pass


class IntegrityError(RegistryError):
    """A version that must not be used: unsigned (with a key set), wrongly signed, a file or a manifest
    that differs from what was signed or pinned. The message names the version and what differs."""


class AliasError(RegistryError):
    """An alias move that was refused (the champion going backwards) or could not be made."""


@dataclass
class ModelVersion:
    name: str
    version: str
    manifest: Manifest
    prefix: str  # store key of the version folder
    manifest_sha256: str = ""  # sha256 of manifest.json's bytes, what aliases pin

    def key(self, filename: str) -> str:
        return f"{self.prefix}/{filename}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(eq=False)
class Registry:
    """One model's versions and aliases in a store. `signing_key` signs what `publish` writes;
    `public_key` makes every read refuse unsigned or wrongly signed versions; `actor` is who the
    audit events of this registry's moves name (default: this user and host)."""
    store: Store
    name: str
    signing_key: signing.PrivateKey | None = None
    public_key: signing.PublicKey | None = None
    actor: dict[str, Any] | None = None

    @property
    def base(self) -> str:
        return f"models/{self.name}"

    @property
    def audit(self) -> AuditLog:
        return AuditLog(self.store)

    def with_keys(self, signing_key: signing.PrivateKey | None = None,
                  public_key: signing.PublicKey | None = None) -> "Registry":
        """This registry, signing and/or verifying with the keys given (the others kept)."""
        return replace(self, signing_key=signing_key or self.signing_key, public_key=public_key or self.public_key)

    def acting_as(self, actor: dict[str, Any]) -> "Registry":
        """This registry, naming `actor` in the audit events of its moves."""
        return replace(self, actor={k: v for k, v in actor.items() if v is not None})

    # -- versions -----------------------------------------------------------
    def _all_version_dirs(self) -> list[int]:
        """Every numbered folder: committed, claimed, or left half-written by a crash."""
        return sorted(int(d) for d in self.store.list_dirs(self.base) if _VERSION.match(d))

    def versions(self) -> list[str]:
        """Committed versions, oldest first."""
        return [str(v) for v in self._all_version_dirs() if self.store.exists(f"{self.base}/{v}/manifest.json")]

    def get(self, ref: str) -> ModelVersion:
        """A committed version by number, 'latest' or alias: its manifest read, its signature checked
        when a public key is set, and an alias's pinned manifest digest compared."""
        version = str(self.resolve(ref))
        prefix = f"{self.base}/{version}"
        key = f"{prefix}/manifest.json"
        try:
            raw = self.store.read_bytes(key)
        except FileNotFoundError:
            raise RegistryError(f"model {self.name} has no version {version}") from None
        if self.public_key is not None:
            self._check_signature(version, raw)
        try:
            manifest = Manifest.model_validate(json.loads(raw))
        except ValueError as e:  # not JSON, or not a manifest (pydantic's ValidationError is a ValueError)
            raise RegistryError(f"{self.store.url(key)} is not a valid manifest: {e}") from None
        return ModelVersion(self.name, version, manifest, prefix, sha256_bytes(raw))

    def _check_signature(self, version: str, manifest_bytes: bytes) -> None:
        assert self.public_key is not None
        sig_key = f"{self.base}/{version}/manifest.sig"
        try:
            signature = self.store.read_bytes(sig_key)
        except FileNotFoundError:
            raise IntegrityError(f"refusing {self.name} v{version}: it is unsigned ({self.store.url(sig_key)} does "
                                 "not exist) and a public key is configured") from None
        try:
            signing.verify(self.public_key, manifest_bytes, signature)
        except signing.SigningError:
            raise IntegrityError(f"refusing {self.name} v{version}: manifest.sig does not verify against the "
                                 "configured public key (signed by another key, or manifest.json changed after "
                                 "signing)") from None

    def resolve(self, ref: str) -> str:
        """A version number, 'latest', or an alias name -> a version number. An alias whose pinned
        manifest digest no longer matches the version's manifest.json raises IntegrityError."""
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
        version, pinned = str(alias["version"]), alias.get("manifest_sha256")
        if pinned:
            try:
                got = sha256_bytes(self.store.read_bytes(f"{self.base}/{version}/manifest.json"))
            except FileNotFoundError:
                raise IntegrityError(f"alias {ref!r} of {self.name} points at v{version}, whose manifest.json "
                                     "is gone") from None
            if got != pinned:
                raise IntegrityError(f"alias {ref!r} of {self.name} pins v{version}'s manifest at sha256 "
                                     f"{pinned[:12]}…, but manifest.json now has {got[:12]}…: it changed after "
                                     "the alias was set")
        return version

    def _claim(self) -> str:
        """The next free version number, claimed by a create-only write before any file is written."""
        claim = json.dumps({"claimed_at": now_iso(), "host": socket.gethostname(), "pid": os.getpid(),
                            "nonce": random.getrandbits(64)}).encode()
        existing = self._all_version_dirs()
        candidate = (existing[-1] if existing else 0) + 1
        for _ in range(1000):
            if self.store.write_bytes_if_absent(f"{self.base}/{candidate}/claim.json", claim):
                return str(candidate)
            candidate += 1
        raise RegistryError(f"could not claim a version number for {self.name} after 1000 tries")

    def publish(self, files: dict[str, bytes], manifest: Manifest) -> ModelVersion:
        """Write a new version: claim its number, write every file, the signature, then the manifest
        (create-only) as the commit."""
        reserved = sorted(set(files) & set(_RESERVED))
        if reserved:
            raise RegistryError(f"{', '.join(reserved)} is written by the registry, not passed as a file")
        version = self._claim()
        prefix = f"{self.base}/{version}"
        for fname, data in files.items():
            self.store.write_bytes(f"{prefix}/{fname}", data)
        full = manifest.model_copy(update=dict(
            name=self.name, version=version, created_at=manifest.created_at or now_iso(),
            files={f: FileEntry(sha256=sha256_bytes(d), bytes=len(d)) for f, d in files.items()}))
        raw = full.to_json()
        if self.signing_key is not None:
            self.store.write_bytes(f"{prefix}/manifest.sig", signing.sign(self.signing_key, raw))
        if not self.store.write_bytes_if_absent(f"{prefix}/manifest.json", raw):
            raise RegistryError(f"{self.store.url(prefix)} has a manifest already although this publish claimed "
                                "it: something writes to the registry without claiming")
        return ModelVersion(self.name, version, full, prefix, sha256_bytes(raw))

    def read_file(self, mv: ModelVersion, filename: str, verify: bool = True) -> bytes:
        data = self.store.read_bytes(mv.key(filename))
        if verify:
            entry = mv.manifest.files.get(filename)
            if entry is None:
                raise IntegrityError(f"{filename} is not listed in the manifest of {self.name} v{mv.version}")
            want, got = entry.sha256, sha256_bytes(data)
            if got != want:
                raise IntegrityError(f"sha256 mismatch for {self.store.url(mv.key(filename))}: "
                                     f"manifest says {want[:12]}…, file has {got[:12]}…")
        return data

    def verify(self, version: str, files: tuple[str, ...] | None = None) -> list[str]:
        """Problems found in a version (its signature when a key is set, and the files' checksums:
        every file, or those of `files` that the manifest lists). Empty when all is intact."""
        try:
            mv = self.get(version)
        except IntegrityError as e:
            return [str(e)]
        problems = []
        for fname in mv.manifest.files:
            if files is not None and fname not in files:
                continue
            try:
                self.read_file(mv, fname)
            except (RegistryError, FileNotFoundError) as e:
                problems.append(str(e))
        return problems

    # -- aliases --------------------------------------------------------------
    def _alias_key(self, alias: str) -> str:
        if not _ALIAS.match(alias) or alias.strip(".") == "":
            raise RegistryError(f"bad alias name {alias[:100]!r}: letters, digits, '.', '_' and '-' only")
        return f"{self.base}/aliases/{alias}.json"

    def alias(self, alias: str) -> dict[str, Any] | None:
        key = self._alias_key(alias)
        return self.store.read_json(key) if self.store.exists(key) else None

    def aliases(self) -> dict[str, dict[str, Any]]:
        out = {}
        for k in self.store.list(f"{self.base}/aliases"):
            if k.endswith(".json"):
                out[k.rsplit("/", 1)[-1][:-5]] = self.store.read_json(k)
        return out

    def set_alias(self, alias: str, version: str, *, rollback: bool = False, reason: str | None = None,
                  **meta: Any) -> dict[str, Any]:
        """Point an alias at a committed version by compare-and-swap, pinning its manifest's digest,
        and record the move in the audit log. The champion never moves to an older version than the
        one it holds unless `rollback` says so (a run that finished late must not undo a newer one);
        `rollback` also files the move as a rollback in the audit log."""
        key = self._alias_key(alias)
        version = str(version)
        if version not in self.versions():
            raise RegistryError(f"cannot point {alias!r} at {self.name} v{version}: no such committed version")
        mv = self.get(version)
        for _ in range(_CAS_ATTEMPTS):
            current = self.store.read_versioned(key)
            old = json.loads(current[0]) if current else None
            before = str(old["version"]) if old else None
            if alias == "champion" and before is not None and int(version) < int(before) and not rollback:
                raise AliasError(f"refusing to move the champion of {self.name} back from v{before} to v{version}: "
                                 "a newer version is champion already (a run that finished out of order?); "
                                 "say rollback to mean it")
            record = {"version": version, "previous": before, "manifest_sha256": mv.manifest_sha256,
                      "updated_at": now_iso(), **({"reason": reason} if reason else {}), **meta}
            data = json.dumps(record, indent=2, sort_keys=True, default=str).encode()
            if self.store.write_bytes_if_match(key, data, current[1] if current else None):
                action = ("rollback" if rollback else "promotion" if alias == "champion" else "alias")
                self.audit.record(self.name, action, alias, before, version, actor=self.actor or default_actor(),
                                  reason=reason, **{k: v for k, v in meta.items() if k in ("run_id", "target")})
                return record
            time.sleep(random.uniform(0.005, 0.05))  # another move won this round: read it and decide again
        raise AliasError(f"alias {alias!r} of {self.name} kept changing under {_CAS_ATTEMPTS} attempts to move it")

    def champion(self) -> ModelVersion | None:
        a = self.alias("champion")
        return self.get("champion") if a else None
