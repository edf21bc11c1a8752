"""Training on cloud work pools with failover, against a real Prefect server and real workers.

Each cloud is a `process` work pool of the catalog's name with a real `prefect worker`
process. A cloud that is down has no worker, or its worker (and the run it carries) is
killed with SIGKILL. Nothing in the code under test is told about it.

The tests run in file order: the breaker test at the end counts the infrastructure
failures the earlier tests caused.
"""
from __future__ import annotations

import contextvars
import json
import os
import signal
import threading
import time
from datetime import datetime

import pytest
import yaml

from cloudhop.clouds.failover import AllCloudsFailed, TrainingFailed
from cloudhop.data import flights_table
from cloudhop.store import Store
from ops.deploy import deploy_project
from ops.localserver import prefect_env
from ops.procs import ROOT
from ops.workers import Workers, process_catalog

pytestmark = pytest.mark.integration

FIRST, SECOND = "coreweave", "gcp"  # A100: CoreWeave's per-GPU share is cheaper than GCP's a2-highgpu-1g
PRICE = {FIRST: 21.60 / 8, SECOND: 3.67}  # $/hour of one A100 in deployments/clouds.yaml


@pytest.fixture(scope="module")
def setup(prefect_api_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("failover")
    deploy_project(prefect_env(prefect_api_url), names=["train-coreweave-gpu", "train-gcp-gpu"], timeout=180)
    data = root / "flights.parquet"
    flights_table().iloc[::12].reset_index(drop=True).to_parquet(data)
    workers = Workers(prefect_api_url, root, {"coreweave": "coreweave-gpu", "gcp": "gcp-gpu"})
    yield {"root": root, "data": data, "workers": workers, "catalog": process_catalog(root / "clouds.yaml")}
    workers.stop_all()


FAILOVER = {"retries": 0, "backoff_seconds": 1, "start_timeout_s": 20, "startup_timeout_s": 180,
            "heartbeat_timeout_s": 8}


def write_spec(setup, name: str, *, model: dict | None = None, compute: dict | None = None) -> str:
    spec = yaml.safe_load(open(ROOT / "specs/flights.yaml"))
    spec["dataset"] = {"uri": str(setup["data"])}
    spec["store"] = str(setup["root"] / f"store-{name}")
    spec["model"].update({"max_epochs": 2, "checkpoint_every": 25, "hidden": [32, 16], "batch_size": 256,
                          **(model or {})})
    spec["compute"] = {"mode": "pools", "catalog": str(setup["catalog"]),
                       "clouds": [FIRST, SECOND], "gpu_type": "A100",
                       "failover": FAILOVER,
                       "breaker": {"failures": 10, "window_minutes": 30}, **(compute or {})}
    path = setup["root"] / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def retrain(path: str, **kw):
    from flows.retrain import retrain as flow

    return flow(spec=path, deploy=False, reason="failover-test", **kw)


def retrain_in_background(path: str) -> tuple[threading.Thread, dict]:
    """retrain in a thread (with the test's Prefect settings); the dict gets its summary or error."""
    result: dict = {}

    def run():
        try:
            result["summary"] = retrain(path)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            result["error"] = e

    t = threading.Thread(target=contextvars.copy_context().run, args=(run,))
    t.start()
    return t, result


def test_training_code_error_is_not_failed_over(setup):
    setup["workers"].start(FIRST)
    setup["workers"].start(SECOND)
    path = write_spec(setup, "nan", model={"learning_rate": 1e30})
    with pytest.raises(TrainingFailed) as e:
        retrain(path)
    assert "no failover" in str(e.value) and "NaN" in str(e.value)
    assert [a.cloud for a in e.value.attempts] == [FIRST]


def test_killed_cloud_fails_over_and_resumes_from_checkpoint(setup):
    w = setup["workers"]
    w.start(FIRST)
    w.start(SECOND)
    # ~320 heavy steps (a wide net, 80 steps an epoch): long enough to be killed in the middle.
    path = write_spec(setup, "kill", model={"batch_size": 256, "max_epochs": 4, "patience": 4,
                                            "hidden": [1024, 1024], "checkpoint_every": 20})
    store = Store(yaml.safe_load(open(path))["store"])
    t, result = retrain_in_background(path)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # wait for two checkpoints from the first cloud
        ckpts = [k for k in store.list("checkpoints") if k.endswith(".pt")]
        if len(ckpts) >= 2:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the first cloud never wrote two checkpoints")
    killed_at_step = max(int(k.rsplit("step-", 1)[1].split(".")[0]) for k in ckpts)
    w.kill(FIRST)
    t.join(600)
    assert not t.is_alive()
    assert "error" not in result, result.get("error")
    s = result["summary"]
    attempts = s["attempts"]
    assert [(a["cloud"], a["outcome"]) for a in attempts] == [(FIRST, "crashed"), (SECOND, "completed")]
    assert "heartbeat" in attempts[0]["detail"]
    info = s["training"]
    assert info["where"] == SECOND
    assert info["resumed_from_step"] is not None and info["resumed_from_step"] >= killed_at_step
    assert info["steps_run"] < info["steps"], "the second cloud redid everything"
    check_cost(s, store, [(FIRST, "crashed"), (SECOND, "completed")], setup["data"].stat().st_size)
    [measured] = store.list("throughput")  # the successful attempt's speed, for the next placement
    assert store.read_json(measured)["cloud"] == SECOND
    assert store.read_json(measured)["samples_per_s"] == info["samples_per_s"] > 0


def check_cost(summary: dict, store: Store, expect: list[tuple[str, str]], data_bytes: int) -> None:
    """Every attempt costs price x measured time, and the same cost is in the manifest, the run
    record, the table artifact and the events."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter

    from cloudhop.registry import Registry

    cost = summary["cost"]
    assert [(a["cloud"], a["outcome"]) for a in cost["attempts"]] == expect
    with get_client(sync_client=True) as c:
        for a in cost["attempts"]:
            assert a["price_per_hour"] == pytest.approx(PRICE[a["cloud"]])
            measured = (datetime.fromisoformat(a["ended_at"]) - datetime.fromisoformat(a["started_at"])).total_seconds()
            assert a["billed_seconds"] == pytest.approx(measured) and measured > 0
            assert a["cost"] == pytest.approx(a["price_per_hour"] * measured / 3600)
            # each started attempt read the dataset from this machine: bytes moved, no per-GB fee
            assert a["egress_bytes"] == data_bytes and a["egress_cost"] == 0
            run = c.read_flow_run(a["run_id"])  # Prefect's own clock of the training run agrees
            assert abs((run.end_time - run.start_time).total_seconds() - measured) < 5, (run.start_time, a)
        assert cost["total"] == pytest.approx(sum(a["cost"] for a in cost["attempts"]))
        assert cost["wasted"] == pytest.approx(sum(a["cost"] for a in cost["attempts"] if a["outcome"] != "completed"))
        assert cost["wasted"] > 0
        mv = Registry(store, summary["model"]).get(summary["version"])
        assert mv.manifest.cost.model_dump() == store.read_json(f"costs/{summary['model']}/{cost['run_key']}.json")
        assert mv.manifest.cost.total == pytest.approx(cost["total"])
        arts = c.read_artifacts(artifact_filter=ArtifactFilter(key={"any_": [f"{summary['model']}-training-cost"]}))
        tables = [json.loads(x.data) if isinstance(x.data, str) else x.data for x in arts]
        assert any(t[-1]["attempt"] == "total" and t[-1]["cost $"] == pytest.approx(cost["total"], abs=1e-4)
                   for t in tables)
        deadline = time.monotonic() + 30
        while True:  # events reach the server asynchronously
            found = c.request("POST", "/events/filter", json={"filter": {
                "event": {"name": ["cloudhop.training.cost"]},
                "resource": {"id": [f"cloudhop.model.{summary['model']}"]},
                "occurred": {"since": "2000-01-01T00:00:00Z"}}, "limit": 50}).json()["events"]
            mine = [e for e in found if e["payload"].get("run_key") == cost["run_key"]]
            if mine or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert mine and mine[0]["payload"]["total"] == pytest.approx(cost["total"])
        crashed = c.request("POST", "/events/filter", json={"filter": {
            "event": {"name": [f"cloudhop.training.{expect[0][1]}"]},
            "occurred": {"since": "2000-01-01T00:00:00Z"}}, "limit": 50}).json()["events"]
        assert any(e["payload"].get("cost", {}).get("run_id") == cost["attempts"][0]["run_id"]
                   and e["payload"]["cost"]["cost"] == pytest.approx(cost["attempts"][0]["cost"]) for e in crashed)


def test_cloud_without_worker_fails_over_after_start_timeout(setup):
    w = setup["workers"]
    w.kill(FIRST) if FIRST in w.procs else None
    w.start(SECOND)
    path = write_spec(setup, "noworker", compute={"failover": {"retries": 0, "start_timeout_s": 8,
                                                              "heartbeat_timeout_s": 10}})
    t0 = time.monotonic()
    s = retrain(path)
    assert [(a["cloud"], a["outcome"]) for a in s["attempts"]] == [(FIRST, "not_started"), (SECOND, "completed")]
    assert s["attempts"][0]["seconds"] >= 8
    assert "no worker picked the run up within the start timeout" in s["attempts"][0]["detail"]
    assert s["training"]["where"] == SECOND
    assert time.monotonic() - t0 < 240


def test_every_cloud_down_lists_each_attempt(setup):
    setup["workers"].stop_all()
    path = write_spec(setup, "alldown", compute={"failover": {"retries": 1, "backoff_seconds": 0.5,
                                                             "start_timeout_s": 4, "heartbeat_timeout_s": 10}})
    with pytest.raises(AllCloudsFailed) as e:
        retrain(path)
    attempts = [(a.cloud, a.number, a.outcome) for a in e.value.attempts]
    assert attempts == [(FIRST, 1, "not_started"), (FIRST, 2, "not_started"),
                        (SECOND, 1, "not_started"), (SECOND, 2, "not_started")]
    assert f"{FIRST} attempt 2: not_started" in str(e.value)
    # a failed retrain still has its run record: four attempts that never ran cost nothing
    store = Store(yaml.safe_load(open(path))["store"])
    [key] = store.list("costs")
    record = store.read_json(key)
    assert [(a["cloud"], a["outcome"], a["billed_seconds"], a["cost"]) for a in record["attempts"]] == [
        (c, "not_started", 0.0, 0.0) for c in (FIRST, FIRST, SECOND, SECOND)]


def test_circuit_breaker_skips_a_cloud_with_repeated_failures(setup):
    # The tests above left the first cloud with 4 infrastructure failures (1 crash, 3 not started).
    setup["workers"].start(FIRST)
    setup["workers"].start(SECOND)
    path = write_spec(setup, "breaker", compute={"breaker": {"failures": 3, "window_minutes": 30}})
    s = retrain(path)
    assert [a["cloud"] for a in s["attempts"]] == [SECOND]
    row = next(r for r in s["placement"] if r["cloud"] == FIRST)
    assert row["eligible"] is False and "circuit" in row["reason"]


@pytest.mark.parametrize("on_preemption", ["same-cloud", "next-cloud"])
def test_sigterm_preempts_spot_and_auto_falls_back_to_on_demand(setup, on_preemption):
    """A real SIGTERM to the training process of a spot attempt: it checkpoints at once and ends
    preempted; under the `auto` spot policy the next attempt is on-demand, resuming: on the same
    cloud (`same-cloud`), or on the next one (`next-cloud`, the default)."""
    w = setup["workers"]
    w.start(FIRST)
    w.start(SECOND)
    # auto, A100: only GCP has a spot price among the two, so it is tried first, on spot
    path = write_spec(setup, f"spot-{on_preemption}", model={"batch_size": 256, "max_epochs": 4, "patience": 4,
                                            "hidden": [1024, 1024], "checkpoint_every": 1000},
                      compute={"spot": "auto", "breaker": {"failures": 50, "window_minutes": 30},
                               "failover": {**FAILOVER, "on_preemption": on_preemption}})
    store = Store(yaml.safe_load(open(path))["store"])
    t, result = retrain_in_background(path)
    deadline = time.monotonic() + 240
    beat: dict = {}
    while time.monotonic() < deadline:  # the spot attempt's heartbeat, once it has trained some steps
        keys = [k for k in store.list("runs") if k.endswith(f"heartbeat-{SECOND}-1.json")]
        beat = store.read_json(keys[0]) if keys else {}
        if beat.get("step", 0) >= 30:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the spot attempt never trained 30 steps (last heartbeat {beat})")
    # no periodic checkpoint is due (checkpoint_every 1000); an epoch's end may have written one by now
    os.kill(beat["pid"], signal.SIGTERM)  # the training process itself, not its worker
    t.join(600)
    assert not t.is_alive()
    assert "error" not in result, result.get("error")
    s = result["summary"]
    then = SECOND if on_preemption == "same-cloud" else FIRST
    assert [(a["cloud"], a["outcome"], a["spot"]) for a in s["attempts"]] == [
        (SECOND, "preempted", True), (then, "completed", False)]
    assert "SIGTERM" in s["attempts"][0]["detail"]
    rows = {(r["cloud"], r["capacity"]): r for r in s["placement"]}
    assert rows[(SECOND, "spot")]["eligible"] and not rows[(FIRST, "spot")]["eligible"]
    info = s["training"]
    assert info["where"] == then
    # resumed from the checkpoint written on SIGTERM, at or after the step the heartbeat showed before
    # the kill (no periodic one was due), not from scratch or an older one
    assert info["resumed_from_step"] is not None and info["resumed_from_step"] >= beat["step"]
