"""Run training on the cheapest healthy cloud's work pool, failing over to the next.

The policy (what counts as a cloud fault, retries, order) is cloudhop.clouds; this module
only talks to Prefect: submit with run_deployment, watch the run, cancel or mark it crashed.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from prefect.events import emit_event
from prefect.states import Cancelled, Crashed

from cloudhop.clouds import TRAIN_TAG, BreakerPolicy, Candidate, TrainingRequest, cloud_tag, load_catalog
from cloudhop.clouds.cost import RetrainCost, attempt_cost
from cloudhop.clouds.failover import PREEMPTED, AllCloudsFailed, Attempt, AttemptOutcome, FailoverPolicy, run_with_failover
from cloudhop.clouds.speed import SpeedModel, Throughput
from cloudhop.clouds.spot import CapacityPlan, plan_capacity, spot_launcher
from cloudhop.costs import read_throughput, write_cost, write_throughput
from cloudhop.events import TRAINING_EXHAUSTED, model_resource
from cloudhop.pipeline import open_registry
from cloudhop.training.config import TRAINER_GPUS
from cloudhop.training.handoff import heartbeat_key, load_trained, trained_prefix
from cloudhop.spec import PipelineSpec

def deployment_name(pool: str) -> str:
    """The `train` deployment bound to a work pool (prefect.yaml has one per cloud pool)."""
    return f"train/train-{pool}"


def watch_run(client, run_id, store, heartbeat_key: str, f, poll: float = 0.5) -> AttemptOutcome:
    """Follow one training run until it ends or its cloud is judged faulty.

    `f` is the spec's failover section: start_timeout_s (until a worker picks the run up),
    startup_timeout_s (until it runs), heartbeat_timeout_s, run_timeout_s.
    """
    t0 = time.monotonic()
    picked_mono = started_mono = started_at = None

    def give_up(kind: str, state, why: str) -> AttemptOutcome:
        client.set_flow_run_state(run_id, state, force=True)
        return AttemptOutcome(kind, why, str(run_id), started_at)

    while True:
        fr = client.read_flow_run(run_id)
        st = fr.state.type if fr.state else StateType.SCHEDULED
        msg = (fr.state.message or "") if fr.state else ""
        if st == StateType.COMPLETED:
            return AttemptOutcome("completed", "completed", str(run_id), started_at)
        if st == StateType.FAILED:
            kind = PREEMPTED if msg.startswith(PREEMPTED) else "failed"  # flows/train.py on SIGTERM
            return AttemptOutcome(kind, msg or "the training run failed", str(run_id), started_at)
        if st == StateType.CRASHED:
            return AttemptOutcome("crashed", msg or "the training run crashed", str(run_id), started_at)
        if st in (StateType.CANCELLED, StateType.CANCELLING):
            return AttemptOutcome("infra_error", f"run was cancelled: {msg}", str(run_id), started_at)
        now = time.monotonic()
        if st != StateType.SCHEDULED and picked_mono is None:
            picked_mono = now
        if st == StateType.RUNNING and started_mono is None:
            started_mono, started_at = now, datetime.now(timezone.utc)
        if picked_mono is None and now - t0 > f.start_timeout_s:
            return give_up("not_started", Cancelled(message=f"not started: no worker picked the run up within "
                                                            f"{f.start_timeout_s:.0f}s"),
                           f"no worker picked the run up within the start timeout ({f.start_timeout_s:.0f}s)")
        if started_mono is None and picked_mono is not None and now - picked_mono > f.startup_timeout_s:
            return give_up("not_started", Cancelled(message=f"not started: not running {f.startup_timeout_s:.0f}s "
                                                            f"after a worker picked it up"),
                           f"picked up but not running within the startup timeout ({f.startup_timeout_s:.0f}s): "
                           f"no capacity? (state {st.value})")
        if started_mono is not None:
            last = started_mono
            if store.exists(heartbeat_key):
                try:
                    last = max(last, now - (time.time() - float(store.read_json(heartbeat_key)["at"])))
                except (ValueError, KeyError):
                    pass
            if now - last > f.heartbeat_timeout_s:
                return give_up("crashed", Crashed(message=f"no heartbeat for {f.heartbeat_timeout_s:.0f}s"),
                               f"no heartbeat for {f.heartbeat_timeout_s:.0f}s: the run's infrastructure is gone")
            if now - started_mono > f.run_timeout_s:
                return give_up("crashed", Cancelled(message="ran past the run timeout"),
                               f"ran past the run timeout ({f.run_timeout_s:.0f}s)")
        time.sleep(poll)


def dataset_bytes(spec: PipelineSpec, table=None) -> int:
    """Bytes to move for training: the file(s) at the dataset URI, else the table's frame in memory."""
    if not spec.dataset.uri.startswith("builtin://"):
        try:
            import fsspec

            fs, path = fsspec.core.url_to_fs(spec.dataset.uri, **spec.dataset.fs_options)
            return int(fs.du(path))
        except Exception:
            pass
    if table is None or not table.in_memory:
        return 0
    return int(table.to_pandas().memory_usage(deep=False).sum())


@task(name="place-training", cache_policy=NO_CACHE, persist_result=False)
def place_task(spec: PipelineSpec, data_bytes: int, work_samples: int | None = None) -> CapacityPlan:
    """Rank clouds by expected cost (hours from the model's measured throughput per offer),
    skipping disabled, unfit, too dear or circuit-open ones (on spot, on-demand or both, as the
    spec's spot policy says)."""
    from tasks.pools import fetch_cloud_failures

    c = spec.compute
    catalog = load_catalog(c.catalog)
    breaker = BreakerPolicy.from_spec(c.breaker)
    now = datetime.now(timezone.utc)
    with get_client(sync_client=True) as client:
        failures = fetch_cloud_failures(client, now - timedelta(minutes=breaker.window_minutes))
    history = read_throughput(open_registry(spec).store, spec.name)
    request = TrainingRequest(gpu_type=c.gpu_type, gpu_count=c.gpu_count, max_price_per_hour=c.max_price_per_hour,
                              dataset_bytes=data_bytes, dataset_location=spec.dataset.uri,
                              clouds=c.clouds, work_samples=work_samples, trainer_gpus=TRAINER_GPUS)
    placement = plan_capacity(catalog, request, failures, now, breaker, c.spot, SpeedModel(history),
                               on_preemption=c.failover.on_preemption)
    notes = "".join(f"; {n}" for n in placement.notes)
    create_table_artifact(key=f"{spec.name}-placement", table=placement.table(),
                          description=f"Training placement: order {placement.order_text()}; "
                                      f"{len(history)} measured run(s){notes}")
    get_run_logger().info("placement order: %s%s", placement.order_text(), notes)
    return placement


def _emit(spec: PipelineSpec, attempt: Attempt, cost: dict) -> None:
    emit_event(event=f"cloudhop.training.{attempt.outcome}", resource=model_resource(spec.name, cloud=attempt.cloud),
               payload={**attempt.row(), "cost": cost})


def _record_cost(spec: PipelineSpec, store, cost: RetrainCost, outcome: str) -> dict:
    """The retrain's cost into the store (its run record), a table artifact and one event."""
    d = cost.to_dict()
    write_cost(store, d)
    create_table_artifact(key=f"{spec.name}-training-cost", table=cost.table(),
                          description=f"Training cost ({outcome}): ${cost.total:.4f}, of which ${cost.wasted:.4f} "
                                      f"on attempts that did not complete")
    emit_event(event="cloudhop.training.cost", resource=model_resource(spec.name, run=cost.run_key), payload=d)
    return d


def _record_throughput(spec: PipelineSpec, store, c: Candidate, cloud: str, run_key: str, info: dict) -> None:
    """The successful attempt's measured samples/s on its offer `c`, for the next placement of this model."""
    if info.get("samples_per_s") and c.offer and c.gpu:
        write_throughput(store, run_key, Throughput(cloud, c.offer, c.gpu, float(info["samples_per_s"]),
                                                    datetime.now(timezone.utc), spec.name))


def emit_exhausted(model: str, error: AllCloudsFailed) -> None:
    """Training failed on every cloud (an alert): the message and every attempt in the payload."""
    emit_event(event=TRAINING_EXHAUSTED, resource=model_resource(model),
               payload={"message": str(error), "attempts": [a.row() for a in error.attempts]})


@task(name="train-with-failover", cache_policy=NO_CACHE, persist_result=False)
def train_with_failover_task(spec: PipelineSpec, placement: CapacityPlan, run_key: str):
    """Train on the placement's clouds in order. The run gets the spec by content (overrides
    applied), never a path: a container or a cloud job cannot read this machine's files.

    Every attempt is priced as it ends (an event each); the retrain's cost goes to the store,
    an artifact and an event, failed or not. Returns (trained, attempt rows, cost)."""
    logger = get_run_logger()
    f = spec.compute.failover
    store = open_registry(spec).store
    prefix = trained_prefix(spec.name, run_key)

    def launch(cloud: str, number: int, candidate: Candidate) -> AttemptOutcome:
        logger.info("training on %s (attempt %s, %s)", cloud, number, candidate.pool)
        fr = run_deployment(deployment_name(candidate.pool or cloud), timeout=0, as_subflow=True,
                            job_variables=candidate.job_variables or None,
                            parameters={"spec": spec.model_dump(mode="json"), "run_key": run_key,
                                        "cloud": cloud, "attempt": number},
                            tags=[TRAIN_TAG, cloud_tag(cloud)], flow_run_name=f"train-{cloud}-{number}")
        with get_client(sync_client=True) as client:
            return watch_run(client, fr.id, store, heartbeat_key(prefix, cloud, number), f)

    cost = RetrainCost(spec.name, run_key)

    def record(a: Attempt) -> None:
        priced = attempt_cost(placement.placement(bool(a.spot)), a)
        cost.attempts.append(priced)
        logger.info("attempt: %s, cost $%.4f", a.row(), priced.cost)
        _emit(spec, a, priced.row())

    try:
        result = run_with_failover(placement.order, spot_launcher(placement, launch), FailoverPolicy.from_spec(f),
                                   on_attempt=record)
    except Exception as e:
        if isinstance(e, AllCloudsFailed):
            emit_exhausted(spec.name, e)
        attempts = getattr(e, "attempts", [])
        if attempts:
            create_table_artifact(key=f"{spec.name}-training-attempts", table=[a.row() for a in attempts],
                                  description="Training attempts (failed)")
            try:
                _record_cost(spec, store, cost, "failed")
            except Exception as rec:  # the training error is what the run must report
                logger.warning("could not record the cost of this failed retrain: %s", rec)
        raise
    create_table_artifact(key=f"{spec.name}-training-attempts", table=[a.row() for a in result.attempts],
                          description=f"Training attempts: finished on {result.cloud}")
    priced = _record_cost(spec, store, cost, f"finished on {result.cloud}")
    trained = load_trained(store, f"{prefix}/result")
    last = result.attempts[-1]
    _record_throughput(spec, store, placement.candidate(result.cloud, bool(last.spot)), result.cloud, run_key,
                       trained.info)
    return trained, [a.row() for a in result.attempts], priced
