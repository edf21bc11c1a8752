"""The audit trail: who moved which model from what to what, when and why.

Append-only by construction: every event is its own object, written create-only under
`audit/<model>/<UTC time>-<random id>.json`, so concurrent appends never race and no event is
ever rewritten. What stops a person with write access from deleting or editing events is the
bucket's versioning or object lock (README, "Audit trail"), not this code.

Actions: `promotion` and `rollback` (the champion alias), `alias` (any other alias move),
`deploy` (one target, ok or not), `hot-swap` (a running server switched version in place).
The actor names who did it: the flow run and deployment when the orchestrator acts, the user and
host otherwise, the admin token's id when a server is told to swap.
"""
from __future__ import annotations

import getpass
import json
import socket
import uuid
from datetime import datetime, timezone
from typing import Any

from cloudhop.store import Store

__all__ = ["AuditLog", "default_actor", "ACTIONS"]

ACTIONS = ("promotion", "rollback", "alias", "deploy", "hot-swap")


def default_actor() -> dict[str, str]:
    """Who acts when nobody said: this process's user and host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return {"user": user, "host": socket.gethostname()}


class AuditLog:
    """The audit events of one store (the registry's)."""

    def __init__(self, store: Store):
        self.store = store

    def record(self, model: str, action: str, subject: str, from_version: str | None, to_version: str | None, *,
               actor: dict[str, Any] | None = None, reason: str | None = None, **details: Any) -> dict[str, Any]:
        """Append one event; returns it. Never overwrites: a name that exists already gets a new id."""
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}; known: {', '.join(ACTIONS)}")
        now = datetime.now(timezone.utc)
        event = {"at": now.isoformat(timespec="microseconds"), "model": model, "action": action, "subject": subject,
                 "from": from_version, "to": to_version, "actor": actor or default_actor(), "reason": reason,
                 **details}
        data = json.dumps(event, sort_keys=True, default=str).encode()
        stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
        while not self.store.write_bytes_if_absent(f"audit/{model}/{stamp}-{uuid.uuid4().hex[:12]}.json", data):
            pass  # a 48-bit id collided: take another
        return event

    def events(self, model: str | None = None) -> list[dict[str, Any]]:
        """Every event (of `model`, else of every model), oldest first."""
        keys = [k for k in self.store.list(f"audit/{model}" if model else "audit") if k.endswith(".json")]
        events = [self.store.read_json(k) for k in keys]
        return sorted(events, key=lambda e: (e.get("at", ""), e.get("model", "")))
