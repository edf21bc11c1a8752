"""Leases: a time-limited, exclusive hold on a name in a store (one deploy per target at a time).

A lease is one small object: taken with a create-only write, kept alive by its holder (a
heartbeat renews it while a `with Lease(...)` block runs), released at the end, and taken over
by compare-and-swap once it is abandoned: expired, or held by a process of this host that no
longer exists (a killed deploy is followed at once by the next). Whoever cannot take it waits,
then fails with the holder's name.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from cloudhop.store import Store, StoreError

__all__ = ["Lease", "LeaseError"]


class LeaseError(StoreError):
    """A lease that could not be taken in time (the message names its holder) or was lost."""


def _abandoned(held: dict[str, Any]) -> bool:
    """Expired, or held by a process of this host that is gone."""
    if float(held["expires_at"]) < time.time():
        return True
    pid = held.get("pid")
    if held.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class Lease:
    """`with Lease(store, "leases/deploy/aws-use1.json", holder="run 42"):` ... the work ...

    `acquire()` alone takes it without a heartbeat (it then lasts `ttl` seconds unless renewed)."""

    def __init__(self, store: Store, key: str, holder: str, *, ttl: float = 60.0, wait: float = 600.0,
                 poll: float = 0.1):
        self.store, self.key, self.holder = store, key, holder
        self.ttl, self.wait, self.poll = ttl, wait, poll
        self.id = uuid.uuid4().hex
        self._lock = threading.Lock()  # the heartbeat and an explicit renew() never race each other
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def _record(self) -> bytes:
        return json.dumps({"holder": self.holder, "id": self.id, "expires_at": time.time() + self.ttl,
                           "host": socket.gethostname(), "pid": os.getpid()}).encode()

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
        """Take the lease, waiting up to `wait` seconds for its holder to release or abandon it."""
        deadline = time.monotonic() + self.wait
        while True:
            if self.store.write_bytes_if_absent(self.key, self._record()):
                return
            current = self._current()
            if current is not None:
                held, token = current
                if _abandoned(held):
                    if self.store.write_bytes_if_match(self.key, self._record(), token):
                        return
                    continue
                if time.monotonic() >= deadline:
                    until = datetime.fromtimestamp(float(held["expires_at"]), timezone.utc)
                    raise LeaseError(f"{self.store.url(self.key)} is held by {held.get('holder')!r} until "
                                     f"{until.isoformat(timespec='seconds')} unless renewed; "
                                     f"gave up after waiting {self.wait:g}s")
            time.sleep(self.poll)

    def renew(self) -> None:
        """Push the expiry `ttl` seconds ahead; LeaseError when the lease is no longer ours."""
        with self._lock:
            current = self._current()
            if current is None or current[0].get("id") != self.id \
                    or not self.store.write_bytes_if_match(self.key, self._record(), current[1]):
                raise LeaseError(f"lost the lease {self.store.url(self.key)} (it expired and was taken over)")

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.renew()
            except Exception:  # lost, or the store is unreachable: the holder's next renew() says which
                return

    def release(self) -> None:
        """Stop the heartbeat and give the lease up, if it is still ours."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        with self._lock:
            current = self._current()
            if current is not None and current[0].get("id") == self.id:
                self.store.delete(self.key)

    def __enter__(self) -> "Lease":
        self.acquire()
        self._heartbeat = threading.Thread(target=self._beat, name=f"lease {self.key}", daemon=True)
        self._heartbeat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
