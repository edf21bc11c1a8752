"""Signed versions: an Ed25519 signature (`cryptography`) over a version's manifest.json.

The manifest lists the sha256 of every file of the version, so one signature over its exact bytes
covers every byte the version holds. `Registry.publish` writes the signature beside it, as
`manifest.sig` (base64 text); a registry given a public key refuses a version whose signature is
missing or does not verify. Keys are PEM (PKCS#8 private, SubjectPublicKeyInfo public), given as a
file path or as the PEM text itself: the private key from CLOUDHOP_SIGNING_KEY (or a Prefect
Secret block, in the tasks layer), the public key from CLOUDHOP_PUBLIC_KEY on servers and deployers.
"""
from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = ["SigningError", "PrivateKey", "PublicKey", "load_private_key", "load_public_key", "private_key_from_env",
           "public_key_from_env", "sign", "verify", "new_key_pair", "SIGNING_KEY_ENV", "PUBLIC_KEY_ENV"]

PrivateKey = Ed25519PrivateKey
PublicKey = Ed25519PublicKey
SIGNING_KEY_ENV = "CLOUDHOP_SIGNING_KEY"
PUBLIC_KEY_ENV = "CLOUDHOP_PUBLIC_KEY"


class SigningError(ValueError):
    """A key that cannot be used, or a signature that does not verify. Never quotes key material."""


def _pem(source: str | bytes, what: str) -> bytes:
    """PEM bytes from the PEM itself or from the path of a file holding it."""
    if isinstance(source, bytes):
        return source
    if source.lstrip().startswith("-----BEGIN"):
        return source.encode()
    try:
        with open(os.path.expanduser(source), "rb") as f:
            return f.read()
    except OSError as e:
        raise SigningError(f"cannot read the {what} key file {source!r}: {e.strerror}") from None


def load_private_key(source: str | bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM text or a PEM file's path."""
    pem = _pem(source, "private")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise SigningError("the signing key is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"the signing key is a {type(key).__name__}, not an Ed25519 key")
    return key


def load_public_key(source: str | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM text or a PEM file's path."""
    pem = _pem(source, "public")
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise SigningError("the public key is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(f"the public key is a {type(key).__name__}, not an Ed25519 key")
    return key


def private_key_from_env() -> Ed25519PrivateKey | None:
    raw = os.environ.get(SIGNING_KEY_ENV, "").strip()
    return load_private_key(raw) if raw else None


def public_key_from_env() -> Ed25519PublicKey | None:
    raw = os.environ.get(PUBLIC_KEY_ENV, "").strip()
    return load_public_key(raw) if raw else None


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    """manifest.sig's bytes: the base64 of the 64-byte signature of `data`, and a newline."""
    return base64.b64encode(key.sign(data)) + b"\n"


def verify(key: Ed25519PublicKey, data: bytes, signature: bytes) -> None:
    """Raise SigningError unless `signature` (manifest.sig's bytes) signs `data` under `key`."""
    try:
        key.verify(base64.b64decode(signature.strip(), validate=True), data)
    except (InvalidSignature, binascii.Error, ValueError):
        raise SigningError("the signature does not verify against the configured public key") from None


def new_key_pair() -> tuple[bytes, bytes]:
    """A fresh (private PEM, public PEM) pair."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public
