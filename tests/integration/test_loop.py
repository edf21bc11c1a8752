"""The closed loop on a real Prefect server, a real `process` worker and the real drift trigger.

Train on January..May flights (validated on June), serve it, replay traffic: January..May
rows (no drift: nothing happens), then September rows (drift: the monitor emits
`cloudhop.drift.detected`, the deployed automation starts `retrain` on the worker, and a new
version ends up served). The test never calls retrain for that. Then the cooldown after the
redeploy, a storm of drift events that yields one retrain, and a burst of concurrent runs.

Every test runs on both control planes (the `loop` fixture, tests/integration/conftest.py):
the session's Prefect server on SQLite, then one on a real PostgreSQL.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import datetime, timezone

import pytest

from cloudhop.drift import monitor as mon
from ops.loop import RETRAIN_WINDOW

pytestmark = pytest.mark.integration


def test_replay_without_drift_triggers_nothing(loop):
    start = loop.replay("2013-01-01", "2013-06-01", seed=1)
    out = loop.monitor(start, retrain_window=RETRAIN_WINDOW)
    assert out["status"] == "ok" and out["event"] == mon.EVENT_CHECKED, out["summary"]
    assert out["rows"] == loop.REPLAY_ROWS and out["version"] == "1"
    assert out["share"] < loop.spec.drift.threshold
    assert out["report"] and b"<html" in open(out["report"], "rb").read(4096).lower()  # a local store: a path
    time.sleep(5)  # the trigger reacts within a second or two to an event it matches
    assert loop.retrain_runs() == []
    assert loop.served_version() == "1"


def test_drift_starts_retrain_on_the_worker_and_a_new_version_is_served(loop):
    start = loop.replay("2013-09-01", "2013-10-01", seed=2, labels=True)
    out = loop.monitor(start, retrain_window=RETRAIN_WINDOW)
    assert out["status"] == "drift" and out["event"] == mon.EVENT_DETECTED, out["summary"]
    perf = out["performance"]  # labels joined on the logged row ids
    assert perf["rows"] == loop.REPLAY_ROWS and perf["metric"] == "roc_auc" and 0 <= perf["value"] <= 1
    assert out["share"] >= loop.spec.drift.threshold and {"temp", "dewp"} <= set(out["drifted_columns"])
    assert out["window"]["start"] == start.isoformat() and out["version"] == "1"

    deadline = time.monotonic() + 600  # a failure deadline, not a speed check (see benchmarks/)
    while True:
        runs = loop.retrain_runs()
        if len(runs) == 1 and runs[0].state.is_completed():
            break
        failed = [r for r in runs if r.state and r.state.is_final() and not r.state.is_completed()]
        assert not failed, f"retrain ended {failed[0].state.type}; worker log:\n{loop.worker_tail()}"
        assert time.monotonic() < deadline, f"retrain did not complete; runs: {runs}; worker log:\n{loop.worker_tail()}"
        time.sleep(1)

    (run,) = loop.retrain_runs()
    # The event named the model only; the run found its spec by that name in CLOUDHOP_SPECS.
    assert run.parameters["model"] == loop.spec.name and run.parameters["spec"] is None
    assert run.parameters["window"] == RETRAIN_WINDOW
    assert run.parameters["reason"].startswith(f"drift event {out['event_id']}")
    reg = loop.registry()
    assert loop.served_version() == "2" == reg.alias("champion")["version"] == reg.alias("live-local")["version"]
    assert reg.get("2").manifest.spec["split"]["validation_start"].startswith(RETRAIN_WINDOW["validation_start"])


def test_after_the_redeploy_the_cooldown_holds_drift_back(loop):
    # September traffic again, now served by v2; inside the cooldown it asks for nothing.
    start = loop.replay("2013-09-01", "2013-10-01", seed=3)
    out = loop.monitor(start, cooldown_minutes=30.0, retrain_window=RETRAIN_WINDOW)
    assert out["version"] == "2" and out["rows"] == loop.REPLAY_ROWS  # only rows served by the new champion count
    assert out["status"] == "cooldown" and out["event"] == mon.EVENT_CHECKED, out["summary"]
    assert out["cooldown_until"] > datetime.now(timezone.utc).isoformat()
    time.sleep(3)
    assert len(loop.retrain_runs()) == 1


def test_a_storm_of_drift_events_starts_one_retrain(loop):
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    model = f"storm-{uuid.uuid4().hex[:6]}"
    resource = mon.model_resource(model, "1")
    ids = [str(emit_event(mon.EVENT_DETECTED, resource=resource,
                          payload={"spec": str(loop.root / "no-such-spec.yaml"), "share": 0.9,
                                   "retrain_window": None}).id) for _ in range(8)]
    EventsWorker.drain_all()
    for i in ids:
        loop.wait_for_event(mon.EVENT_DETECTED, resource["prefect.resource.id"], i)
    deadline = time.monotonic() + 30
    while not loop.retrain_runs(model):
        assert time.monotonic() < deadline, "the drift trigger started no retrain"
        time.sleep(0.5)
    time.sleep(5)
    runs = loop.retrain_runs(model)
    assert len(runs) == 1, [(r.name, r.parameters) for r in runs]
    assert runs[0].parameters["window"] is None
    # It fails at once (the payload's spec path is not taken; no spec is named so); let it end, so it holds no retrain concurrency slot after this module.
    deadline = time.monotonic() + 180
    while not (loop.retrain_runs(model)[0].state.is_final()):
        assert time.monotonic() < deadline, "the storm's retrain run did not end"
        time.sleep(1)
    assert loop.retrain_runs(model)[0].state.is_failed()


def test_eight_concurrent_runs_are_all_recorded_and_all_end(loop):
    """Retrain, monitor and deploy runs asked for at once (eight requests in flight): the control plane
    keeps every one, the worker runs them side by side, and each reaches a final state. A retrain
    or monitor asked for while one runs is cancelled by its deployment's concurrency limit
    (CANCEL_NEW); that is an end too, never a run left pending."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    tag = f"burst-{uuid.uuid4().hex[:6]}"
    spec = loop.spec_path
    asks = [("retrain", {"spec": spec, "window": RETRAIN_WINDOW, "max_epochs": 1, "deploy": False,
                         "reason": "test: burst"})] * 3 \
        + [("monitor", {"spec": spec, "cooldown_minutes": 0.0, "on_drift": "report-only"})] * 3 \
        + [("deploy", {"spec": spec, "version": "2"})] * 2  # what is served: two deploys agree

    async def ask_all() -> list:
        async with get_client() as c:  # eight requests in flight at once
            return await asyncio.gather(*(c.create_flow_run_from_deployment(
                loop.deployments[name].id, parameters=parameters, tags=[tag]) for name, parameters in asks))

    ids = [run.id for run in asyncio.run(ask_all())]
    by_id = {run_id: name for run_id, (name, _) in zip(ids, asks)}

    def burst() -> list:
        with get_client(sync_client=True) as c:
            return c.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])))

    deadline = time.monotonic() + 480  # a failure deadline, not a speed check (inside the 600 s test timeout)
    while True:
        runs = burst()
        states = Counter((by_id.get(r.id, "?"), r.state.type.value if r.state else None) for r in runs)
        if len(runs) == len(asks) and all(r.state is not None and r.state.is_final() for r in runs):
            break
        assert time.monotonic() < deadline, f"runs still not final after 480 s: {dict(states)}\n{loop.worker_tail()}"
        time.sleep(2)
    assert sorted(str(r.id) for r in runs) == sorted(map(str, ids)), "a run was lost"
    for name in ("retrain", "monitor"):  # one ran to completion, the others (if they overlapped) were cancelled
        ends = {s: n for (d, s), n in states.items() if d == name}
        assert ends.get("COMPLETED", 0) >= 1 and set(ends) <= {"COMPLETED", "CANCELLED"}, (name, dict(states),
                                                                                          loop.worker_tail())
    assert states[("deploy", "COMPLETED")] == 2, (dict(states), loop.worker_tail())
