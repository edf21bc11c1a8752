"""Leases: a time-limited, exclusive hold on a name in a store (one deploy per target at a time).

A lease is one small object: taken with a create-only write, renewed and released by its holder,
and taken over by compare-and-swap once it has expired (so a holder that crashed blocks others
only until its expiry). Whoever cannot take it waits, then fails with the holder's name.
"""
from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from cloudhop.store import Store, StoreError

__all__ = ["Lease", "LeaseError"]


class LeaseError(StoreError):
    """A lease that could not be taken in time (the message names its holder) or was lost."""


class Lease:
    """`with Lease(store, "leases/deploy/aws-use1.json", holder="run 42"):` ... the work ... """

    def __init__(self, store: Store, key: str, holder: str, *, ttl: float = 900.0, wait: float = 600.0,
                 poll: float = 0.1):
        self.store, self.key, self.holder = store, key, holder
        self.ttl, self.wait, self.poll = ttl, wait, poll
        self.id = uuid.uuid4().hex

    def _record(self) -> bytes:
        return json.dumps({"holder": self.holder, "id": self.id, "expires_at": time.time() + self.ttl}).encode()

    def _current(self) -> tuple[dict[str, Any], str] | None:
        found = self.store.read_versioned(self.key)
        if found is None:
            return None
        try:
            held = json.loads(found[0])
            float(held["expires_at"])
        except (ValueError, KeyError, TypeError):
            raise LeaseError(f"{self.store.url(self.key)} is not a lease record; remove it if nothing holds it")
        return held, found[1]

    def acquire(self) -> None:
        """Take the lease, waiting up to `wait` seconds for its holder to release it or for it to expire."""
        deadline = time.monotonic() + self.wait
        while True:
            if self.store.write_bytes_if_absent(self.key, self._record()):
                return
            current = self._current()
            if current is not None:
                held, token = current
                if float(held["expires_at"]) < time.time():  # its holder died: take it over
                    if self.store.write_bytes_if_match(self.key, self._record(), token):
                        return
                    continue
                if time.monotonic() >= deadline:
                    until = datetime.fromtimestamp(float(held["expires_at"]), timezone.utc)
                    raise LeaseError(f"{self.store.url(self.key)} is held by {held.get('holder')!r} until "
                                     f"{until.isoformat(timespec='seconds')}; "
                                     f"gave up after waiting {self.wait:g}s")
            time.sleep(self.poll)

    def renew(self) -> None:
        """Push the expiry `ttl` seconds ahead; LeaseError when the lease is no longer ours."""
        current = self._current()
        if current is None or current[0].get("id") != self.id \
                or not self.store.write_bytes_if_match(self.key, self._record(), current[1]):
            raise LeaseError(f"lost the lease {self.store.url(self.key)} (it expired and was taken over)")

    def release(self) -> None:
        """Give the lease up, if it is still ours."""
        current = self._current()
        if current is not None and current[0].get("id") == self.id:
            self.store.delete(self.key)

    def __enter__(self) -> "Lease":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
