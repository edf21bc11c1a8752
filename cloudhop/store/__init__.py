"""The artifact store: one interface over a local folder, S3 (and S3-compatible
stores such as CoreWeave's), GCS and Azure Blob.

Keys are '/'-separated paths relative to the store's root URI. Every write is
atomic for readers: on a local folder the bytes go to a temporary file that is
then renamed over the key; on an object store a single PUT is atomic per object.
Nothing else in cloudhop touches a filesystem SDK directly.
"""
from __future__ import annotations

import builtins
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
        self.fs = fsspec.filesystem(self.protocol, **self.storage_options)
        if self.is_local:
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

    def child(self, prefix: str) -> "Store":
        """A store rooted at a sub-prefix of this one."""
        return Store(self.url(prefix), self.storage_options)

    # -- reads -------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return self.fs.exists(self._path(key))

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
        try:
            entries = self.fs.ls(self._path(prefix), detail=True)
        except FileNotFoundError:
            return []
        return sorted(posixpath.basename(e["name"].rstrip("/")) for e in entries if e["type"] == "directory")

    def get_file(self, key: str, local_path: str) -> None:
        self.fs.get_file(self._path(key), local_path)

    # -- writes (atomic) -----------------------------------------------------
    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if self.is_local:
            d = os.path.dirname(path)
            os.makedirs(d, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        else:
            self.fs.pipe_file(path, data)

    def write_json(self, key: str, obj: Any) -> None:
        self.write_bytes(key, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def write_bytes_if_absent(self, key: str, data: bytes) -> bool:
        """Create key only when it does not exist yet. Returns False when it did.

        Local: an exclusive hard link of a fully written temp file (atomic, race-free). An object
        store whose provider has a create-only write uses it (S3: a conditional PUT with
        If-None-Match: *, cloudhop.providers.aws); other object stores: check, then put.
        """
        path = self._path(key)
        if self.is_local:
            d = os.path.dirname(path)
            os.makedirs(d, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    return False
                return True
            finally:
                os.unlink(tmp)
        provider = providers.for_protocol(self.protocol)
        if provider is not None and provider.put_if_absent is not None:
            return provider.put_if_absent(self, path, data)
        if self.fs.exists(path):
            return False
        self.fs.pipe_file(path, data)
        return True

    def put_file(self, key: str, local_path: str) -> None:
        with open(local_path, "rb") as f:
            self.write_bytes(key, f.read())

    def delete(self, key: str) -> None:
        try:
            self.fs.rm(self._path(key), recursive=True)
        except FileNotFoundError:
            pass

    def __repr__(self) -> str:
        return f"Store({self.uri!r})"


def open_store(uri: str, storage_options: dict[str, Any] | None = None) -> Store:
    return Store(uri, storage_options)


def new_id() -> str:
    return uuid.uuid4().hex[:12]
