"""Who may call the inference server, from tokens read out of secrets (never from argv, never logged).

- The admin token guards `/admin/*` always: without one configured the admin endpoints are
  closed to everyone. There is no loopback exception, and the client address plays no part
  (so no proxy header can buy access).
- `/predict` tokens are optional. Each has an id (`ID:TOKEN`); the caller's id namespaces the
  row ids it sends. With none configured `/predict` is open and every caller is `anon`. The
  admin token is also accepted on `/predict` (as `admin`), so a deployer can smoke-test.

A secret comes from a file named on the command line (its first line for the admin token,
every `ID:TOKEN` entry for /predict) or from an environment variable.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
from pathlib import Path

from cloudhop.serving.request import RequestError

__all__ = ["Callers", "TokenError", "read_secret", "parse_predict_tokens", "ANON", "ADMIN"]

ANON, ADMIN = "anon", "admin"
_TOKEN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class TokenError(ValueError):
    """A token file or variable that cannot be used; the message never holds a token."""


def read_secret(env_var: str, path: str | None) -> str | None:
    """The secret in the file at `path` when one is named, else in `env_var`; None when neither is set."""
    if path:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise TokenError(f"cannot read the secret file {path}: {e.strerror or e}") from None
        if not text.strip():
            raise TokenError(f"the secret file {path} is empty")
        return text
    value = os.environ.get(env_var, "")
    return value if value.strip() else None


def parse_predict_tokens(text: str, where: str) -> dict[str, str]:
    """`ID:TOKEN` entries, one per line or comma-separated ('#' starts a comment line) -> {id: token}."""
    out: dict[str, str] = {}
    entries = [e.strip() for line in text.splitlines() if not line.lstrip().startswith("#")
               for e in line.split(",")]
    for n, entry in enumerate((e for e in entries if e), 1):
        ident, sep, token = entry.partition(":")
        if not sep or not token.strip():
            raise TokenError(f"{where}: entry {n} is not ID:TOKEN")
        if not _TOKEN_ID.match(ident):
            raise TokenError(f"{where}: entry {n}: the id must be 1..64 of A-Z a-z 0-9 _ . -")
        if ident in out or ident in (ANON, ADMIN):
            raise TokenError(f"{where}: entry {n}: the id {ident!r} is taken")
        out[ident] = token.strip()
    if not out:
        raise TokenError(f"{where}: no ID:TOKEN entries")
    return out


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _bearer(header: str | None) -> str | None:
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


class Callers:
    """Checks the `Authorization: Bearer` header of a request against the configured tokens."""

    def __init__(self, admin_token: str | None, predict_tokens: dict[str, str] | None = None):
        self._admin = _digest(admin_token.strip()) if admin_token and admin_token.strip() else None
        self._predict = {_digest(t): i for i, t in (predict_tokens or {}).items()}

    @property
    def admin_enabled(self) -> bool:
        return self._admin is not None

    @property
    def admin_id(self) -> str | None:
        """The admin token's id for the audit trail: the first 12 hex digits of its sha256 (which
        names the token without revealing it)."""
        return f"admin-token:{self._admin.hex()[:12]}" if self._admin is not None else None

    def admin(self, header: str | None) -> None:
        """Raise 403 when no admin token is configured, 401 unless the header carries it."""
        if self._admin is None:
            raise RequestError(403, "admin endpoints are closed: the server was started without an admin "
                                    "token (CLOUDHOP_ADMIN_TOKEN or --admin-token-file)")
        token = _bearer(header)
        if token is None or not hmac.compare_digest(_digest(token), self._admin):
            raise RequestError(401, "admin endpoints need 'Authorization: Bearer <admin token>'")

    def predict(self, header: str | None) -> str:
        """The caller's id for /predict: its token's id, `admin`, or `anon` where no tokens are configured."""
        token = _bearer(header)
        if token is not None:
            d = _digest(token)  # looked up by digest: the dict's timing says nothing about the token
            if self._admin is not None and hmac.compare_digest(d, self._admin):
                return ADMIN
            ident = self._predict.get(d)
            if ident is not None:
                return ident
        if self._predict:
            raise RequestError(401, "/predict needs 'Authorization: Bearer <token>' with a token this server knows")
        return ANON
