"""The closed loop on a real Prefect server, a real `process` worker and the real drift trigger.

Train on January..May flights (validated on June), serve it, replay traffic: January..May
rows (no drift: nothing happens), then September rows (drift: the monitor emits
`cloudhop.drift.detected`, the deployed automation starts `retrain` on the worker, and a new
version ends up served). The test never calls retrain for that. Then the cooldown after the
redeploy, and a storm of drift events that yields one retrain.
"""
from __future__ import annotations

import copy
import time
import uuid
from datetime import datetime, timezone

import httpx
import pytest
import yaml

from cloudhop.drift import monitor as mon
from cloudhop.data import flights_table
from cloudhop.registry import Registry
from cloudhop.replay import window_rows, replay
from cloudhop.spec import load_spec
from cloudhop.store import Store
from cloudhop.providers.local.target import LocalTarget
from ops.localserver import prefect_env
from ops.loop import CHAMPION_WINDOW, RETRAIN_WINDOW
from ops.net import free_port
from ops.procs import stop
from ops.workers import start_worker

pytestmark = pytest.mark.integration

BASE = yaml.safe_load(open("specs/flights.yaml"))
REPLAY_ROWS = 600


@pytest.fixture(scope="module")
def loop(tmp_path_factory, prefect_api_url, deployed):
    """A spec on a flights slice, the deployments, a worker on the `local` pool, and the champion served."""
    root = tmp_path_factory.mktemp("loop")
    data = root / "flights.parquet"
    flights_table().iloc[::12].reset_index(drop=True).to_parquet(data)  # ~27k rows over the whole year
    port = free_port()
    spec = copy.deepcopy(BASE)
    spec["dataset"] = {"uri": str(data)}
    spec["store"] = str(root / "store")
    spec["model"].update(max_epochs=2, checkpoint_every=50, hidden=[32, 16])
    spec["evaluation"]["promote_margin"] = 0.0
    # A network of two epochs on a few months of a 1/12 slice scores within a thousandth of the linear baseline either way; this test is
    # about the drift loop, not the model's quality: the baseline gate is off (tests/integration/test_gates.py tests it).
    spec["evaluation"]["require_beat_baseline"] = False
    spec["drift"]["sample_size"] = 5000
    spec["targets"] = [{"name": "local", "kind": "local",
                        "options": {"port": port, "state_dir": str(root / "serving"),
                                    "server_args": ["--log-flush-seconds", "0.5"]}}]
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))

    env = prefect_env(prefect_api_url, home=root / "worker-home")
    env["PREFECT_WORKER_QUERY_SECONDS"] = "1"
    env["CLOUDHOP_SPECS"] = str(root)  # where a drift event's model name is looked up
    log = root / "worker.log"
    worker = start_worker("local", log, env, cwd=root)
    target = LocalTarget("local", spec["store"], spec["name"], port=port, state_dir=root / "serving")
    try:
        from flows.retrain import Window, retrain

        first = retrain(spec=str(path), window=Window(**CHAMPION_WINDOW), reason="test: first champion")
        assert first["promoted"] and first["version"] == "1", first
        yield {"root": root, "spec": load_spec(path), "spec_path": str(path), "url": f"http://127.0.0.1:{port}",
               "retrain_id": deployed["deployments"]["retrain"].id, "worker_log": log, "worker": worker}
    finally:
        stop(worker)
        target.stop()


def _served_version(loop) -> str:
    return httpx.get(f"{loop['url']}/version", timeout=10).json()["version"]


def _registry(loop) -> Registry:
    s = loop["spec"]
    return Registry(Store(s.store), s.name)


def _replay(loop, start: str, end: str, seed: int = 0, labels: bool = False) -> tuple[datetime, int]:
    """Send REPLAY_ROWS rows of the window; returns when it started, once every row is in the log.

    With `labels`, their true labels then land in the store, keyed by the row ids the server logged.
    """
    s = loop["spec"]
    t0 = datetime.now(timezone.utc)
    rows = window_rows(s, start, end, max_rows=REPLAY_ROWS, seed=seed, with_target=True)
    stats = replay(rows[s.features], loop["url"], rate=5000, batch=100)
    assert stats.rows == REPLAY_ROWS and stats.errors == 0
    if labels:
        mon.write_labels(_registry(loop).store, s.name, stats.row_ids, rows[s.target.column].tolist())
    deadline = time.monotonic() + 30
    while len(mon.read_served(_registry(loop).store, loop["spec"].name, t0, datetime.now(timezone.utc))) < REPLAY_ROWS:
        assert time.monotonic() < deadline, "replayed rows did not reach the prediction log"
        time.sleep(0.2)
    return t0, stats.rows


def _retrain_runs(loop, model: str | None = None):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter

    with get_client(sync_client=True) as c:
        runs = c.read_flow_runs(deployment_filter=DeploymentFilter(id={"any_": [loop["retrain_id"]]}))
    return [r for r in runs if model is None or r.parameters.get("model") == model]


def _events(name: str, resource_id: str) -> list[dict]:
    """Events of one name and resource the server has stored (proves the automation saw them)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as c:
        r = c.request("POST", "/events/filter", json={"filter": {
            "event": {"name": [name]}, "resource": {"id": [resource_id]},
            "occurred": {"since": "2000-01-01T00:00:00Z"}}, "limit": 50})
    return r.json()["events"]


def _wait_for_event(name: str, resource_id: str, event_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not any(e["id"] == event_id for e in _events(name, resource_id)):
        assert time.monotonic() < deadline, f"event {name} {event_id} never reached the server"
        time.sleep(0.5)


def _monitor(loop, start: datetime, **kw) -> dict:
    from flows.monitor import ServedWindow, monitor

    kw.setdefault("cooldown_minutes", 0.0)
    out = monitor(spec=loop["spec_path"], window=ServedWindow(start=start), **kw)
    if out["event_id"]:
        _wait_for_event(out["event"], f"cloudhop.model.{loop['spec'].name}", out["event_id"])
    return out


def test_replay_without_drift_triggers_nothing(loop):
    start, _ = _replay(loop, "2013-01-01", "2013-06-01", seed=1)
    out = _monitor(loop, start, retrain_window=RETRAIN_WINDOW)
    assert out["status"] == "ok" and out["event"] == mon.EVENT_CHECKED, out["summary"]
    assert out["rows"] == REPLAY_ROWS and out["version"] == "1"
    assert out["share"] < loop["spec"].drift.threshold
    assert out["report"] and b"<html" in open(out["report"], "rb").read(4096).lower()  # a local store: a path
    time.sleep(5)  # the trigger reacts within a second or two to an event it matches
    assert _retrain_runs(loop) == []
    assert _served_version(loop) == "1"


def test_drift_starts_retrain_on_the_worker_and_a_new_version_is_served(loop):
    start, _ = _replay(loop, "2013-09-01", "2013-10-01", seed=2, labels=True)
    out = _monitor(loop, start, retrain_window=RETRAIN_WINDOW)
    assert out["status"] == "drift" and out["event"] == mon.EVENT_DETECTED, out["summary"]
    perf = out["performance"]  # labels joined on the logged row ids
    assert perf["rows"] == REPLAY_ROWS and perf["metric"] == "roc_auc" and 0 <= perf["value"] <= 1
    assert out["share"] >= loop["spec"].drift.threshold and {"temp", "dewp"} <= set(out["drifted_columns"])
    assert out["window"]["start"] == start.isoformat() and out["version"] == "1"

    deadline = time.monotonic() + 600  # a failure deadline, not a speed check (see benchmarks/)
    while True:
        runs = _retrain_runs(loop)
        if len(runs) == 1 and runs[0].state.is_completed():
            break
        failed = [r for r in runs if r.state and r.state.is_final() and not r.state.is_completed()]
        assert not failed, f"retrain ended {failed[0].state.type}; worker log:\n{loop['worker_log'].read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"retrain did not complete; runs: {runs}; worker log:\n" \
                                            f"{loop['worker_log'].read_text()[-3000:]}"
        time.sleep(1)

    (run,) = _retrain_runs(loop)
    # The event named the model only; the run found its spec by that name in CLOUDHOP_SPECS.
    assert run.parameters["model"] == loop["spec"].name and run.parameters["spec"] is None
    assert run.parameters["window"] == RETRAIN_WINDOW
    assert run.parameters["reason"].startswith(f"drift event {out['event_id']}")
    reg = _registry(loop)
    assert _served_version(loop) == "2" == reg.alias("champion")["version"] == reg.alias("live-local")["version"]
    assert reg.get("2").manifest.spec["split"]["validation_start"].startswith(RETRAIN_WINDOW["validation_start"])


def test_after_the_redeploy_the_cooldown_holds_drift_back(loop):
    # September traffic again, now served by v2; inside the cooldown it asks for nothing.
    start, _ = _replay(loop, "2013-09-01", "2013-10-01", seed=3)
    out = _monitor(loop, start, cooldown_minutes=30.0, retrain_window=RETRAIN_WINDOW)
    assert out["version"] == "2" and out["rows"] == REPLAY_ROWS  # only rows served by the new champion count
    assert out["status"] == "cooldown" and out["event"] == mon.EVENT_CHECKED, out["summary"]
    assert out["cooldown_until"] > datetime.now(timezone.utc).isoformat()
    time.sleep(3)
    assert len(_retrain_runs(loop)) == 1


def test_a_storm_of_drift_events_starts_one_retrain(loop):
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    model = f"storm-{uuid.uuid4().hex[:6]}"
    resource = mon.model_resource(model, "1")
    ids = [str(emit_event(mon.EVENT_DETECTED, resource=resource,
                          payload={"spec": str(loop["root"] / "no-such-spec.yaml"), "share": 0.9,
                                   "retrain_window": None}).id) for _ in range(8)]
    EventsWorker.drain_all()
    for i in ids:
        _wait_for_event(mon.EVENT_DETECTED, resource["prefect.resource.id"], i)
    deadline = time.monotonic() + 30
    while not _retrain_runs(loop, model):
        assert time.monotonic() < deadline, "the drift trigger started no retrain"
        time.sleep(0.5)
    time.sleep(5)
    runs = _retrain_runs(loop, model)
    assert len(runs) == 1, [(r.name, r.parameters) for r in runs]
    assert runs[0].parameters["window"] is None
    # It fails at once (the payload's spec path is not taken; no spec is named so); let it end, so it holds no retrain concurrency slot after this module.
    deadline = time.monotonic() + 180
    while not (_retrain_runs(loop, model)[0].state.is_final()):
        assert time.monotonic() < deadline, "the storm's retrain run did not end"
        time.sleep(1)
    assert _retrain_runs(loop, model)[0].state.is_failed()
