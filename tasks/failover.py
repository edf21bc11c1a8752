"""Run training on the cheapest healthy cloud's work pool, failing over to the next.

The policy (what counts as a cloud fault, retries, order) is cloudhop.clouds; this module
only talks to Prefect: submit with run_deployment, watch the run, cancel or mark it crashed.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from prefect.events import emit_event
from prefect.states import Cancelled, Crashed

from cloudhop.clouds.failover import Attempt, AttemptOutcome, FailoverPolicy, run_with_failover
from cloudhop.pipeline import load_trained, open_registry, trained_prefix
from cloudhop.spec import PipelineSpec

TRAIN_TAG = "cloudhop-train"


def deployment_name(cloud: str) -> str:
    return f"train/train-{cloud}"


def watch_run(client, run_id, store, heartbeat_key: str, start_timeout: float, heartbeat_timeout: float,
              run_timeout: float, poll: float = 0.5) -> AttemptOutcome:
    """Follow one training run until it ends or its cloud is judged faulty."""
    t0 = time.monotonic()
    started_mono = started_at = None
    while True:
        fr = client.read_flow_run(run_id)
        st = fr.state.type if fr.state else StateType.SCHEDULED
        msg = (fr.state.message or "") if fr.state else ""
        if st == StateType.COMPLETED:
            return AttemptOutcome("completed", "completed", str(run_id), started_at)
        if st == StateType.FAILED:
            return AttemptOutcome("failed", msg or "the training run failed", str(run_id), started_at)
        if st == StateType.CRASHED:
            return AttemptOutcome("crashed", msg or "the training run crashed", str(run_id), started_at)
        if st in (StateType.CANCELLED, StateType.CANCELLING):
            return AttemptOutcome("infra_error", f"run was cancelled: {msg}", str(run_id), started_at)
        now = time.monotonic()
        if st == StateType.RUNNING and started_mono is None:
            started_mono, started_at = now, datetime.now(timezone.utc)
        if started_mono is None:
            if now - t0 > start_timeout:
                client.set_flow_run_state(run_id, Cancelled(message=f"not started within {start_timeout:.0f}s"),
                                          force=True)
                return AttemptOutcome("not_started", f"not running within the start timeout ({start_timeout:.0f}s): "
                                      f"no worker or no capacity (last state {st.value})", str(run_id))
        else:
            last = started_mono
            if store.exists(heartbeat_key):
                try:
                    last = max(last, now - (time.time() - float(store.read_json(heartbeat_key)["at"])))
                except (ValueError, KeyError):
                    pass
            if now - last > heartbeat_timeout:
                client.set_flow_run_state(run_id, Crashed(message=f"no heartbeat for {heartbeat_timeout:.0f}s"),
                                          force=True)
                return AttemptOutcome("crashed", f"no heartbeat for {heartbeat_timeout:.0f}s: the run's "
                                      "infrastructure is gone", str(run_id), started_at)
            if now - started_mono > run_timeout:
                client.set_flow_run_state(run_id, Cancelled(message="ran past the run timeout"), force=True)
                return AttemptOutcome("crashed", f"ran past the run timeout ({run_timeout:.0f}s)", str(run_id),
                                      started_at)
        time.sleep(poll)


def _emit(spec: PipelineSpec, attempt: Attempt) -> None:
    emit_event(event=f"cloudhop.training.{attempt.outcome}",
               resource={"prefect.resource.id": f"cloudhop.model.{spec.name}", "cloudhop.cloud": attempt.cloud},
               payload=attempt.row())


@task(name="train-with-failover", cache_policy=NO_CACHE, persist_result=False)
def train_with_failover_task(spec: PipelineSpec, spec_path: str, overrides: dict | None, clouds: list[str],
                             run_key: str):
    logger = get_run_logger()
    f = spec.compute.failover
    store = open_registry(spec).store
    prefix = trained_prefix(spec, run_key)

    def launch(cloud: str, number: int) -> AttemptOutcome:
        logger.info("training on %s (attempt %s)", cloud, number)
        fr = run_deployment(deployment_name(cloud), timeout=0, as_subflow=True,
                            parameters={"spec": spec_path, "overrides": overrides, "run_key": run_key,
                                        "cloud": cloud, "attempt": number},
                            tags=[TRAIN_TAG, f"cloud:{cloud}"], flow_run_name=f"train-{cloud}-{number}")
        with get_client(sync_client=True) as client:
            return watch_run(client, fr.id, store, f"{prefix}/heartbeat-{cloud}-{number}.json",
                             f.start_timeout_s, f.heartbeat_timeout_s, f.run_timeout_s)

    def record(a: Attempt) -> None:
        logger.info("attempt: %s", a.row())
        _emit(spec, a)

    try:
        result = run_with_failover(clouds, launch, FailoverPolicy.from_spec(f), on_attempt=record)
    except Exception as e:
        attempts = getattr(e, "attempts", [])
        if attempts:
            create_table_artifact(key=f"{spec.name}-training-attempts", table=[a.row() for a in attempts],
                                  description="Training attempts (failed)")
        raise
    create_table_artifact(key=f"{spec.name}-training-attempts", table=[a.row() for a in result.attempts],
                          description=f"Training attempts: finished on {result.cloud}")
    trained = load_trained(store, f"{prefix}/result")
    return trained, [a.row() for a in result.attempts]
