"""The artifact store: one interface over a local folder, S3 (and S3-compatible
stores such as CoreWeave's), GCS and Azure Blob.

Keys are '/'-separated paths relative to the store's root URI. Every write is
atomic for readers: on a local folder the bytes go to a temporary file that is
then renamed over the key; on an object store a single PUT is atomic per object.
Reads and listings go through fsspec; writes to an object store go through its
provider's SDK (`cloudhop.providers`, `store_backend`), which gives the two
conditional writes the registry is built on and fsspec lacks: create-only (a key
is written once; racing writers get exactly one winner) and compare-and-swap
(a key is replaced only if nobody replaced it since it was read). Both are real
on each backend: a hard link or a lock file locally, preconditions on S3, GCS
and Azure, never a check followed by a put.

The storage option `encryption` turns on encryption at rest for every write of
an object store: {"kms_key": ...} on S3 (SSE-KMS) and GCS (CMEK), {"scope": ...}
on Azure (an encryption scope). Nothing else in cloudhop touches a filesystem
SDK directly.
"""
from __future__ import annotations

import builtins
import fcntl
import hashlib
import json
import os
import posixpath
import tempfile
import uuid
from typing import Any

import fsspec

from cloudhop import providers

__all__ = ["Store", "open_store", "sha256_bytes", "sha256_file", "StoreError"]


class StoreError(RuntimeError):
    """A store operation failed; the message names the URI."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _split(uri: str) -> tuple[str, str]:
    """'s3://bucket/a/b' -> ('s3', 'bucket/a/b'); a plain path -> ('file', abspath)."""
    if "://" not in uri:
        return "file", os.path.abspath(os.path.expanduser(uri))
    protocol, rest = uri.split("://", 1)
    if protocol == "file":
        return "file", os.path.abspath(rest)
    if protocol in ("abfs", "abfss", "az"):
        protocol = "az"
    if protocol == "gcs":
        protocol = "gs"
    return protocol, rest.rstrip("/")


class Store:
    """An artifact store rooted at a URI (a folder, s3://bucket/prefix, gs://..., az://container/prefix)."""

    def __init__(self, uri: str, storage_options: dict[str, Any] | None = None):
        self.protocol, self.root = _split(uri)
        self.uri = self.root if self.protocol == "file" else f"{self.protocol}://{self.root}"
        self.storage_options = dict(storage_options or {})
        fs_options = dict(self.storage_options)
        self.encryption: dict[str, Any] | None = fs_options.pop("encryption", None)
        if self.encryption is not None and not isinstance(self.encryption, dict):
            raise StoreError(f"store option encryption must be a mapping like {{kms_key: ...}}, for {self.uri}")
        self.fs = fsspec.filesystem(self.protocol, **fs_options)
        self._backend: providers.ObjectBackend | None = None
        if self.is_local:
            if self.encryption is not None:
                raise StoreError(f"store option encryption is for object stores; {self.uri} is a local folder "
                                 "(encrypt its disk instead)")
            os.makedirs(self.root, exist_ok=True)

    # -- helpers -----------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return self.protocol == "file"

    def _path(self, key: str) -> str:
        key = key.strip("/")
        if not key or ".." in key.split("/"):
            raise StoreError(f"bad store key {key!r}")
        return posixpath.join(self.root, key)

    def url(self, key: str) -> str:
        """The full URI of a key (a local path for a local store)."""
        p = self._path(key)
        return p if self.is_local else f"{self.protocol}://{p}"

    def local_path(self, key: str) -> str | None:
        return self._path(key) if self.is_local else None

    def _objects(self) -> providers.ObjectBackend:
        """This object store's writes, from the provider of its protocol (built once, on first use)."""
        if self._backend is None:
            provider = providers.for_protocol(self.protocol)
            if provider is None or provider.store_backend is None:
                raise StoreError(f"{self.uri}: no provider gives {self.protocol}:// create-only, compare-and-swap "
                                 "or encrypted writes; cloudhop has them for local folders, s3://, gs:// and az://")
            try:
                self._backend = provider.store_backend(self.storage_options, self.encryption)
            except ValueError as e:
                raise StoreError(f"{self.uri}: {e}") from None
            except ImportError as e:
                raise StoreError(providers.missing_extra(provider, e)) from None
        return self._backend

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the SDK client (not picklable; rebuilt on the first write after)."""
        return {**self.__dict__, "_backend": None}

    def _fresh(self, path: str) -> None:
        """Forget fsspec's cached listing around `path`: other writers change object stores."""
        if not self.is_local:
            self.fs.invalidate_cache(path)

    def child(self, prefix: str) -> "Store":
        """A store rooted at a sub-prefix of this one."""
        return Store(self.url(prefix), self.storage_options)

    # -- reads -------------------------------------------------------------
    def exists(self, key: str) -> bool:
        path = self._path(key)
        self._fresh(path)
        return self.fs.exists(path)

    def read_bytes(self, key: str) -> bytes:
        try:
            return self.fs.cat_file(self._path(key))
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.url(key)} does not exist") from None

    def read_json(self, key: str) -> Any:
        return json.loads(self.read_bytes(key))

    def open(self, key: str, mode: str = "rb"):
        if "w" in mode or "a" in mode:
            raise StoreError("use write_bytes/put_file: writes must be atomic")
        return self.fs.open(self._path(key), mode)

    def list(self, prefix: str = "") -> list[str]:
        """Every key under prefix (recursive), relative to the store root, sorted."""
        base = self._path(prefix) if prefix.strip("/") else self.root
        self._fresh(base)
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        root = self.root.rstrip("/")
        keys = []
        for p in found:
            rel = p[len(root):].lstrip("/")
            if rel.split("/")[-1].startswith(".tmp-"):
                continue
            keys.append(rel)
        return sorted(keys)

    def list_dirs(self, prefix: str) -> builtins.list[str]:  # `list` here is Store.list
        """Immediate child names under prefix."""
        path = self._path(prefix)
        self._fresh(path)
        try:
            entries = self.fs.ls(path, detail=True)
        except FileNotFoundError:
            return []
        return sorted(posixpath.basename(e["name"].rstrip("/")) for e in entries if e["type"] == "directory")

    def get_file(self, key: str, local_path: str) -> None:
        self.fs.get_file(self._path(key), local_path)

    # -- writes (atomic) -----------------------------------------------------
    def _write_temp(self, path: str, data: bytes) -> str:
        """A fully written, synced temporary file beside local `path`; the caller moves or removes it."""
        d = os.path.dirname(path)
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            os.unlink(tmp)
            raise
        return tmp

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if self.is_local:
            tmp = self._write_temp(path, data)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
            return
        if self.encryption is None and providers.for_protocol(self.protocol) is None:
            self.fs.pipe_file(path, data)  # memory:// and other fsspec protocols: unconditional writes only
        else:
            self._objects().put(path, data)
        self._fresh(path)

    def write_json(self, key: str, obj: Any) -> None:
        self.write_bytes(key, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def write_bytes_if_absent(self, key: str, data: bytes) -> bool:
        """Create key only when it does not exist yet. Returns False when it did (nothing written).

        Local: an exclusive hard link of a fully written temp file. Object stores: the provider's
        create-only PUT (S3 If-None-Match: *, GCS if_generation_match=0, Azure overwrite=False).
        """
        path = self._path(key)
        if not self.is_local:
            created = self._objects().put(path, data, if_absent=True)
            self._fresh(path)
            return created
        tmp = self._write_temp(path, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        """A key's bytes and its version token, for `write_bytes_if_match`; None when it does not exist.
        The token is the object's ETag (S3, Azure) or generation (GCS), or the sha256 of a local file."""
        path = self._path(key)
        if not self.is_local:
            return self._objects().get(path)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        return data, sha256_bytes(data)

    def write_bytes_if_match(self, key: str, data: bytes, token: str | None) -> bool:
        """Compare-and-swap: replace key only if it is still the version `token` came with
        (`read_versioned`); token None: create it only if absent. False when someone wrote first.

        Local: under an exclusive lock on a lock file beside the key (fcntl, so threads and processes
        alike), the current content's sha256 is compared, then the new bytes renamed over it.
        """
        if token is None:
            return self.write_bytes_if_absent(key, data)
        path = self._path(key)
        if not self.is_local:
            swapped = self._objects().put(path, data, if_match=token)
            self._fresh(path)
            return swapped
        lock = os.path.join(os.path.dirname(path), f".tmp-lock-{os.path.basename(path)}")
        with open(lock, "a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            current = self.read_versioned(key)
            if current is None or current[1] != token:
                return False
            self.write_bytes(key, data)
            return True

    def put_file(self, key: str, local_path: str) -> None:
        with open(local_path, "rb") as f:
            self.write_bytes(key, f.read())

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            self.fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass
        self._fresh(path)

    def __repr__(self) -> str:
        return f"Store({self.uri!r})"


def open_store(uri: str, storage_options: dict[str, Any] | None = None) -> Store:
    return Store(uri, storage_options)


def new_id() -> str:
    return uuid.uuid4().hex[:12]
