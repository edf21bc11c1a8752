"""Hostile input against the registry: tampered and unsigned versions, moved aliases, races.

Each case asserts the clear error it must get and that nothing already committed was lost.
Everything runs on a local-folder store; tests/integration/test_registry_backends.py runs the
races on S3, GCS and Azure.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import pytest
from starlette.testclient import TestClient

from cloudhop.registry import AliasError, IntegrityError, Manifest, Registry, RegistryError
from cloudhop.registry.signing import load_private_key, load_public_key, new_key_pair
from cloudhop.serving.app import create_app
from cloudhop.serving.model import ModelLoadError, load_model
from cloudhop.store import Store, sha256_bytes
from cloudhop.store.lease import Lease, LeaseError
from cloudhop.targets.deploy import deploy_to_target
from cloudhop.testing import CATEGORICAL, NUMERIC, MemoryTarget, export_onnx, make_frame
from cloudhop.training.preprocess import Preprocessor

TOKEN = "admin-token-for-tests"


@pytest.fixture(scope="module")
def files() -> dict[str, dict[str, bytes]]:
    """Two real servable versions' files (different weights), exported once."""
    pre = Preprocessor.fit(make_frame(200, seed=0), CATEGORICAL, NUMERIC)
    pre_bytes = json.dumps(pre.to_dict()).encode()
    return {name: {"model.onnx": export_onnx(pre.cardinalities, len(pre.numeric), seed), "preprocess.json": pre_bytes}
            for name, seed in (("a", 1), ("b", 2))}


@pytest.fixture(scope="module")
def keys():
    private, public = new_key_pair()
    other_private, _ = new_key_pair()
    return {"private": load_private_key(private), "public": load_public_key(public),
            "other": load_private_key(other_private)}


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(str(tmp_path / "store"))


def signed(store: Store, keys) -> Registry:
    return Registry(store, "m", signing_key=keys["private"])


def verifying(store: Store, keys) -> Registry:
    return Registry(store, "m", public_key=keys["public"])


def admin_load(registry: Registry, serving: str, ref: str):
    """POST /admin/load on a real app serving version `serving`; returns (status, JSON body, served version)."""
    app = create_app(registry, load_model(registry, serving), admin_token=TOKEN)
    with TestClient(app, client=("10.0.0.1", 1234)) as c:
        r = c.post("/admin/load", json={"version": ref}, headers={"Authorization": f"Bearer {TOKEN}"})
        return r.status_code, r.json(), c.get("/version").json()["version"]


def test_tampered_model_file_is_refused_with_409_and_the_old_version_keeps_serving(store, keys, files):
    signed(store, keys).publish(files["a"], Manifest())
    mv = signed(store, keys).publish(files["b"], Manifest())
    store.write_bytes(mv.key("model.onnx"), files["a"]["model.onnx"])  # a valid model, not the signed bytes
    reg = verifying(store, keys)
    with pytest.raises(ModelLoadError, match="sha256 mismatch") as e:
        load_model(reg, "2")
    assert e.value.status == 409
    status, body, served = admin_load(reg, "1", "2")
    assert status == 409 and "sha256 mismatch" in body["error"] and served == "1"
    assert reg.verify("1") == []


def test_tampered_manifest_fails_its_signature(store, keys, files):
    mv = signed(store, keys).publish(files["a"], Manifest())
    evil = files["b"]["model.onnx"]
    store.write_bytes(mv.key("model.onnx"), evil)
    doc = json.loads(store.read_bytes(mv.key("manifest.json")))
    doc["files"]["model.onnx"] = {"sha256": sha256_bytes(evil), "bytes": len(evil)}  # checksums made to match
    store.write_bytes(mv.key("manifest.json"), json.dumps(doc, indent=2, sort_keys=True).encode())
    reg = verifying(store, keys)
    with pytest.raises(IntegrityError, match="manifest.sig does not verify"):
        reg.get("1")
    with pytest.raises(ModelLoadError, match="does not verify") as e:
        load_model(reg, "1")
    assert e.value.status == 409
    assert Registry(store, "m").verify("1") == []  # without a key the edit is invisible: what the key is for


def test_version_signed_by_another_key_is_refused(store, keys, files):
    good = signed(store, keys).publish(files["a"], Manifest())
    Registry(store, "m", signing_key=keys["other"]).publish(files["b"], Manifest())
    reg = verifying(store, keys)
    status, body, served = admin_load(reg, good.version, "2")
    assert status == 409 and "does not verify against the configured public key" in body["error"]
    assert served == "1"
    assert reg.verify("2") and "does not verify" in reg.verify("2")[0]


def test_unsigned_version_is_refused_when_a_key_is_configured(store, keys, files):
    signed(store, keys).publish(files["a"], Manifest())
    Registry(store, "m").publish(files["b"], Manifest())  # a publisher without the key
    reg = verifying(store, keys)
    status, body, served = admin_load(reg, "1", "2")
    assert status == 409 and "unsigned" in body["error"] and "manifest.sig" in body["error"]
    assert served == "1"


def test_deploy_refuses_an_unsigned_version_before_touching_the_target(store, keys, files):
    Registry(store, "m").publish(files["a"], Manifest())
    target = MemoryTarget("edge", live=None)
    out = deploy_to_target(verifying(store, keys), target, "1")
    assert not out.ok and out.error.startswith("refused:") and "unsigned" in out.error
    assert target.calls == [] and target.live is None
    assert Registry(store, "m").alias("live-edge") is None


def test_alias_pointing_at_a_manifest_that_changed_is_refused(store, files):
    reg = Registry(store, "m")
    mv = reg.publish(files["a"], Manifest())
    reg.set_alias("champion", "1")
    doc = json.loads(store.read_bytes(mv.key("manifest.json")))
    doc["metrics"] = {"candidate": {"auc": 0.99}}  # a quiet edit: files untouched, no key configured
    store.write_bytes(mv.key("manifest.json"), json.dumps(doc).encode())
    with pytest.raises(IntegrityError, match="changed after the alias was set"):
        reg.get("champion")
    with pytest.raises(ModelLoadError, match="changed after the alias was set") as e:
        load_model(reg, "champion")
    assert e.value.status == 409
    assert reg.get("1").version == "1"  # by number it is still readable: only the alias's promise broke


def test_concurrent_publishes_never_overwrite_each_other(store):
    reg, n = Registry(store, "m"), 12
    got: dict[str, bytes] = {}
    barrier = threading.Barrier(n)

    def publish(i: int) -> None:
        payload = f"model-{i}".encode() * 1000
        barrier.wait()
        got[reg.publish({"model.onnx": payload}, Manifest()).version] = payload

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(n)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(got, key=int) == reg.versions() == [str(i) for i in range(1, n + 1)]
    for v, payload in got.items():
        assert reg.verify(v) == [] and reg.read_file(reg.get(v), "model.onnx") == payload


def test_champion_never_moves_back_when_runs_finish_out_of_order(store):
    reg = Registry(store, "m")
    for i in range(3):
        reg.publish({"model.onnx": bytes([i])}, Manifest())
    reg.set_alias("champion", "3", reason="run for v3 finished first")
    with pytest.raises(AliasError, match="back from v3 to v2"):
        reg.set_alias("champion", "2", reason="run for v2 finished late")
    assert reg.alias("champion")["version"] == "3"
    assert [e["to"] for e in reg.audit.events("m")] == ["3"]  # the refused move left no event
    back = reg.set_alias("champion", "1", rollback=True, reason="bad release")
    assert back["previous"] == "3" and reg.resolve("champion") == "1"
    last = reg.audit.events("m")[-1]
    assert (last["action"], last["subject"], last["from"], last["to"], last["reason"]) == \
        ("rollback", "champion", "3", "1", "bad release")
    assert last["actor"]["user"]  # who did it


def test_concurrent_alias_moves_form_one_history(store):
    """Compare-and-swap: every move replaced exactly the record it read, so the audit's from -> to
    pairs chain into one line; a lost update would show two moves from the same version."""
    reg, n = Registry(store, "m"), 10
    for i in range(n):
        reg.publish({"model.onnx": bytes([i])}, Manifest())
    barrier = threading.Barrier(n)

    def move(i: int) -> None:
        barrier.wait()
        reg.set_alias("live-edge", str(i + 1))

    threads = [threading.Thread(target=move, args=(i,)) for i in range(n)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    events = reg.audit.events("m")
    assert len(events) == n
    froms = [e["from"] for e in events]
    assert len(set(froms)) == n  # no two moves replaced the same record
    tos = {e["to"] for e in events}
    assert set(froms) - {None} == tos - {reg.alias("live-edge")["version"]}


class SlowTarget(MemoryTarget):
    """A MemoryTarget whose roll-out takes a while, so concurrent deploys overlap."""

    def roll_out(self, version: str) -> None:
        time.sleep(0.3)
        super().roll_out(version)


def test_concurrent_deploys_to_one_target_end_with_the_alias_on_what_is_served(store, files):
    reg = Registry(store, "m")
    for name in ("a", "b", "a"):
        reg.publish(files[name], Manifest())
    target = SlowTarget("edge", live="1")
    outcomes = {}
    threads = [threading.Thread(target=lambda v=v: outcomes.__setitem__(v, deploy_to_target(reg, target, v)))
               for v in ("2", "3")]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert all(o.ok for o in outcomes.values()), outcomes
    assert reg.alias("live-edge")["version"] == target.live
    rollouts = [c for c in target.calls if c[0] == "roll_out"]
    assert len(rollouts) == 2
    deploys = [e for e in reg.audit.events("m") if e["action"] == "deploy"]
    assert sorted(e["to"] for e in deploys) == ["2", "3"]
    assert not store.exists("leases/deploy/edge.json")  # released


def test_a_held_deploy_lease_fails_a_second_deploy_clearly(store, files):
    reg = Registry(store, "m")
    reg.publish(files["a"], Manifest())
    target = MemoryTarget("edge")
    with Lease(store, "leases/deploy/edge.json", "another deploy"):
        out = deploy_to_target(reg, target, "1", lease_wait=0.3)
    assert not out.ok and "held by 'another deploy'" in out.error and "gave up after waiting 0.3s" in out.error
    assert target.calls == [] and reg.alias("live-edge") is None
    assert deploy_to_target(reg, target, "1").ok  # released: the next one goes through


def test_a_lease_left_by_a_crashed_deploy_expires(store, files):
    reg = Registry(store, "m")
    reg.publish(files["a"], Manifest())
    crashed = Lease(store, "leases/deploy/edge.json", "crashed run", ttl=0.2)
    crashed.acquire()  # never released
    time.sleep(0.3)
    assert deploy_to_target(reg, MemoryTarget("edge"), "1", lease_wait=1).ok
    with pytest.raises(LeaseError, match="lost the lease"):
        crashed.renew()


def test_a_lease_held_by_a_killed_deploy_on_this_host_is_taken_over_at_once(store, files):
    reg = Registry(store, "m")
    reg.publish(files["a"], Manifest())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    store.write_json("leases/deploy/edge.json", {"holder": "killed run", "id": "x", "expires_at": time.time() + 3600,
                                                 "host": socket.gethostname(), "pid": int(dead.stdout)})
    out = deploy_to_target(reg, MemoryTarget("edge"), "1", lease_wait=0.5)
    assert out.ok, out.error
    assert reg.alias("live-edge")["version"] == "1" and not store.exists("leases/deploy/edge.json")


def test_a_claim_left_by_a_crashed_publish_is_invisible_and_skipped(store):
    reg = Registry(store, "m")
    reg.publish({"model.onnx": b"one"}, Manifest())
    assert store.write_bytes_if_absent("models/m/2/claim.json", b'{"pid": 1}')  # claimed, then died
    store.write_bytes("models/m/2/model.onnx", b"half")
    assert reg.versions() == ["1"]
    with pytest.raises(RegistryError, match="no version 2"):
        reg.get("2")
    assert reg.publish({"model.onnx": b"three"}, Manifest()).version == "3"
    assert reg.versions() == ["1", "3"] and reg.verify("1") == [] and reg.verify("3") == []


def test_audit_appends_never_race(store):
    reg, n = Registry(store, "m"), 40
    barrier = threading.Barrier(n)

    def append(i: int) -> None:
        barrier.wait()
        reg.audit.record("m", "deploy", "edge", None, str(i), actor={"user": f"u{i}"})

    threads = [threading.Thread(target=append, args=(i,)) for i in range(n)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    events = reg.audit.events("m")
    assert sorted(int(e["to"]) for e in events) == list(range(n))
    assert len(store.list("audit/m")) == n


def test_registry_files_cannot_be_smuggled_in_a_publish(store):
    reg = Registry(store, "m")
    for name in ("manifest.json", "manifest.sig", "claim.json"):
        with pytest.raises(RegistryError, match=f"{name} is written by the registry"):
            reg.publish({"model.onnx": b"x", name: b"forged"}, Manifest())
    assert reg.versions() == [] and store.list("models") == []
