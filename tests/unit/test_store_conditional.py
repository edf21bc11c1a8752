"""The store's conditional writes on a local folder: compare-and-swap across processes, and what
the store refuses rather than fake (the object-store backends: tests/integration/test_registry_backends.py)."""
from __future__ import annotations

import multiprocessing
import time

import pytest

from cloudhop.store import Store, StoreError


def increment(root: str, times: int) -> None:
    """Add 1 to the counter `times` times, each by compare-and-swap (retrying when another won)."""
    store = Store(root)
    for _ in range(times):
        while True:
            found = store.read_versioned("counter")
            value, token = (int(found[0]), found[1]) if found else (0, None)
            if store.write_bytes_if_match("counter", str(value + 1).encode(), token):
                break


def test_compare_and_swap_loses_no_increment_across_processes(tmp_path):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.starmap(increment, [(str(tmp_path), 25)] * 4)
    assert Store(str(tmp_path)).read_bytes("counter") == b"100"


def test_compare_and_swap_refuses_a_stale_token(tmp_path):
    s = Store(str(tmp_path))
    assert s.read_versioned("k") is None
    assert s.write_bytes_if_match("k", b"1", None) and not s.write_bytes_if_match("k", b"x", None)
    _, token = s.read_versioned("k")
    assert s.write_bytes_if_match("k", b"2", token)
    assert not s.write_bytes_if_match("k", b"stale", token)
    assert s.read_bytes("k") == b"2" and s.list() == ["k"]  # the lock file is not a key


def test_a_store_without_real_conditional_writes_refuses_them():
    s = Store("memory://cloudhop-conditional")
    s.write_bytes("plain", b"unconditional writes still work")
    with pytest.raises(StoreError, match="no provider gives memory:// create-only"):
        s.write_bytes_if_absent("once", b"x")
    assert not s.exists("once")


def test_encryption_is_refused_on_a_local_folder(tmp_path):
    with pytest.raises(StoreError, match="encryption is for object stores"):
        Store(str(tmp_path), {"encryption": {"kms_key": "k"}})


def test_a_lease_outlives_its_ttl_while_its_holder_works(tmp_path):
    from cloudhop.store.lease import Lease, LeaseError

    s = Store(str(tmp_path))
    with Lease(s, "lease.json", "worker", ttl=0.3):
        time.sleep(0.8)  # past two ttls: the heartbeat renewed it
        with pytest.raises(LeaseError, match="held by 'worker'"):
            Lease(s, "lease.json", "second", wait=0.2).acquire()
    assert not s.exists("lease.json")
