"""Thin Prefect tasks around cloudhop.pipeline: retries, artifacts and logging only.

A flow opens the table (`open_table_task`: the engine is chosen there, once), holds
`run_executor(table, spec)` open around the steps that run per part (validate, split,
drift), and passes the executor to them: a Dask cluster for a partitioned table (the
spec's or CLOUDHOP_DASK_ADDRESS's scheduler, else a LocalCluster with this run's
PREFECT_API_URL), this process otherwise.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Any, Iterator

from prefect import get_run_logger, task
from prefect.artifacts import (create_markdown_artifact, create_progress_artifact, create_table_artifact,
                               update_progress_artifact)
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.runtime import flow_run

from cloudhop import guard, pipeline
from cloudhop.data import VALIDATION_PRELOAD, DaskExecutor, Executor, Table, executor_for
from cloudhop.events import VALIDATION_FAILED, model_resource
from cloudhop.registry.signing import load_private_key
from cloudhop.spec import PipelineSpec, SpecError, find_spec, parse_spec
from tasks.credentials import load_resolved_spec, resolve_spec

__all__ = ["spec_for_run", "check_run_inputs", "load_spec_task", "open_table_task", "run_executor", "validate_task",
           "report_validation", "split_task", "train_task",
           "evaluate_task", "drift_task", "register_task", "smoke_task"]

# Inputs here are DataFrames and model bytes: hashing them for a cache key would cost
# more than the work, so no task caches.
_task = dict(cache_policy=NO_CACHE, persist_result=False)


class ValidationFailed(RuntimeError):
    """The data did not pass the validation gate; nothing was trained."""


def _key(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")[:60]


def spec_for_run(spec: str | None, model: str | None) -> str:
    """The spec file a run uses. Given a model name (a drift event names one), the spec named so in
    the deployment's spec folder (cloudhop.spec.find_spec); a path given with it must be that file,
    so no event can point a run at a spec of its choosing."""
    if not model:
        if not spec:
            raise SpecError("give a spec path or a model name")
        return spec
    found = find_spec(model)
    if spec and os.path.realpath(spec) != os.path.realpath(found):
        raise SpecError(f"model {model!r} is specified by {found}; a different spec path ({spec}) is not "
                        f"accepted with a model name")
    return str(found)


def check_run_inputs(**inputs: Any) -> None:
    """Refuse free-text run parameters that carry a credential (an event's payload lands in them);
    overrides are checked with the spec (cloudhop.spec.parse_spec)."""
    problems = guard.credential_problems(inputs)
    if problems:
        raise SpecError("refused run parameters:\n" + "\n".join(f"  {p}" for p in problems))


@task(name="load-spec", **_task)
def load_spec_task(spec: str | dict[str, Any], overrides: dict[str, Any] | None = None) -> PipelineSpec:
    """A spec from a YAML file, or from its content (what `retrain` hands a training run: a run
    in a container or on a cloud cannot read a file of the machine that submitted it); credentials
    and unknown overrides refused, its store and dataset read with the credentials blocks it names."""
    if isinstance(spec, dict):
        return resolve_spec(parse_spec(spec, "(passed as content)", overrides))
    return load_resolved_spec(spec, overrides)


@task(name="open-table", **_task)
def open_table_task(spec: PipelineSpec, engine: str | None = None) -> tuple[Table, str]:
    """The dataset as a Table and its fingerprint; the engine is chosen here: `engine` when given,
    else dataset.engine, or by size for `auto`."""
    table = pipeline.open_data(spec, engine)
    fp = table.fingerprint
    get_run_logger().info("opened %s: %s engine, %s rows x %s columns in %s part(s) (fingerprint %s)",
                          spec.dataset.uri, "pandas" if table.in_memory else "dask", table.count(),
                          len(table.columns), len(table.parts), fp)
    return table, fp


def prefect_api_url() -> str | None:
    """The API this run talks to, to hand to Dask workers (else each starts its own temporary server)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value() or os.environ.get("PREFECT_API_URL")
    if not url:
        with get_client(sync_client=True) as client:  # an ephemeral run: its temporary server
            url = str(client.api_url)
    return url.rstrip("/") or None


def worker_env() -> dict[str, str]:
    url = prefect_api_url()
    return {"PREFECT_API_URL": url} if url else {}


@contextmanager
def run_executor(table: Table, spec: PipelineSpec, start_cluster: bool = True) -> Iterator[Executor]:
    """Where the table's per-part work runs while a flow holds this open (cloudhop.data.executor_for):
    a Dask cluster for a partitioned table, with this run's PREFECT_API_URL and the GX import in
    each worker of a cluster started here; this process for a table in memory (or, with
    start_cluster False, when no scheduler address is set). Not a task: a flow holds it open."""
    env = worker_env() if not table.in_memory else None
    with executor_for(table, spec, start_cluster=start_cluster, env=env, preload=VALIDATION_PRELOAD) as ex:
        if isinstance(ex, DaskExecutor):
            get_run_logger().info("per-part work on the Dask cluster at %s (%s workers)", ex.address,
                                  len(ex.client.scheduler_info()["workers"]))
        yield ex


@task(name="validate", **_task)
def validate_task(table: Table, spec: PipelineSpec, executor: Executor | None = None):
    """The gate: a failed suite stops the run with a table of what failed, saved to the store."""
    result = pipeline.check_data(table, spec, executor)
    report_validation(spec, result)
    return result


def report_validation(spec: PipelineSpec, result, raise_on_failure: bool = True) -> None:
    """Save a validation result to the store; a failure leaves a table artifact of what failed,
    emits cloudhop.validation.failed (labelled with the run's `reason`: a refused scheduled run is
    an alert) and stops the run (or, with raise_on_failure False, only warns)."""
    run_id = str(flow_run.get_id() or "adhoc")
    registry = pipeline.open_registry(spec)
    key = f"runs/{spec.name}/{run_id}/validation.json"
    registry.store.write_json(key, result.to_dict())
    s = result.statistics
    if not result.success:
        create_table_artifact(key=_key(f"{spec.name}-validation-failures"), table=result.table(),
                              description=f"Validation failed: {s.get('unsuccessful')} of {s.get('evaluated')} "
                                          f"expectations. Full result: {registry.store.url(key)}")
        lines = "\n".join(f"  - {f.message}" for f in result.failures)
        message = (f"data in {spec.dataset.uri} failed validation "
                   f"({s.get('unsuccessful')} of {s.get('evaluated')} expectations):\n{lines}")
        emit_event(event=VALIDATION_FAILED,
                   resource=model_resource(spec.name, run_reason=flow_run.parameters.get("reason"), run_id=run_id),
                   payload={"message": message, "dataset": spec.dataset.uri, "failures": result.table(),
                            "result": registry.store.url(key)})
        if not raise_on_failure:
            get_run_logger().warning("validation failed:\n%s", lines)
            return
        raise ValidationFailed(message)
    create_table_artifact(key=_key(f"{spec.name}-validation"), table=result.checks(),
                          description=f"Validation passed: {s.get('evaluated')} expectations on {result.row_count} "
                                      f"rows. Full result: {registry.store.url(key)}")
    get_run_logger().info("validation passed: %s expectations on %s rows", s.get("evaluated"), result.row_count)


@task(name="split-windows", **_task)
def split_task(table: Table, spec: PipelineSpec, executor: Executor | None = None):
    w = pipeline.split(table, spec, executor)
    logger = get_run_logger()
    if w.unlabelled_dropped:
        logger.warning("dropped %s unlabelled rows (no %r value; target.missing: drop)", w.unlabelled_dropped,
                       spec.target.column)
    logger.info("windows: %s", w.sizes())
    return w


class _Progress:
    """Feeds the trainer's progress callback into one Prefect progress artifact."""

    def __init__(self, name: str, heartbeat=None):
        self.heartbeat = heartbeat
        self.id = create_progress_artifact(progress=0.0, key=_key(f"{name}-training"),
                                           description=f"Training {name}")
        self.logger = get_run_logger()
        self.last = 0.0

    def __call__(self, p: dict) -> None:
        if self.heartbeat is not None:
            self.heartbeat.update(p)
        now = time.monotonic()
        if now - self.last < 2.0 and p.get("fraction", 0) < 1.0:
            return
        self.last = now
        update_progress_artifact(self.id, progress=round(100 * float(p.get("fraction", 0.0)), 1))
        self.logger.info("epoch %s/%s step %s train_loss %.4f valid_loss %s", p.get("epoch"), p.get("max_epochs"),
                         p.get("step"), p.get("train_loss") or float("nan"), p.get("valid_loss"))


@task(name="train", **_task)
def train_task(spec: PipelineSpec, windows, data_fingerprint: str, where: str = "local", heartbeat=None):
    trained = pipeline.train_model(spec, windows, data_fingerprint, progress=_Progress(spec.name, heartbeat),
                                   where=where)
    get_run_logger().info("trained: %s", trained.info)
    return trained


@task(name="evaluate", **_task)
def evaluate_task(spec: PipelineSpec, windows, trained, registry):
    ev = pipeline.evaluate(spec, windows, trained, registry)
    create_table_artifact(key=_key(f"{spec.name}-evaluation"), table=ev.table(),
                          description=f"Holdout metrics: candidate vs champion vs baseline. {ev.reason}")
    get_run_logger().info("evaluation: %s", ev.reason)
    return ev


@task(name="drift", **_task)
def drift_task(spec: PipelineSpec, windows, executor: Executor | None = None):
    """Training vs holdout window: their seeded samples drawn a part at a time, then Evidently here."""
    d = pipeline.drift_summary(spec, windows, executor)
    get_run_logger().info("drift share %.3f (%s of %s columns; %s-row samples): %s", d.share,
                          len(d.drifted_columns), d.n_columns, spec.drift.sample_size, d.drifted_columns)
    return d


def signing_registry(registry):
    """The registry signing with the key of the Prefect Secret block named by CLOUDHOP_SIGNING_KEY_BLOCK
    (else as it is: CLOUDHOP_SIGNING_KEY, or unsigned). The key is never logged."""
    block = os.environ.get("CLOUDHOP_SIGNING_KEY_BLOCK")
    if not block:
        return registry
    from prefect.blocks.system import Secret

    return registry.with_keys(signing_key=load_private_key(Secret.load(block).get()))


@task(name="register", **_task)
def register_task(spec, registry, trained, evaluation, validation, drift, smoke, data_fingerprint, windows,
                  cost: dict | None = None):
    run_id = flow_run.get_id()
    registry = signing_registry(registry)
    mv = pipeline.register(spec, registry, trained, evaluation, validation.summary(), validation.to_dict(), drift,
                           smoke, data_fingerprint, windows, run_id=str(run_id) if run_id else None, cost=cost)
    files = mv.manifest.files
    links = "\n".join(f"- `{f}`: {registry.store.url(mv.key(f))}" for f in sorted(files))
    create_markdown_artifact(
        key=_key(f"{spec.name}-version"),
        markdown=(f"# {spec.name} v{mv.version}\n\n{evaluation.reason}\n\n"
                  f"Drift (training vs holdout window): share {drift.share:.3f}, drifted: "
                  f"{', '.join(drift.drifted_columns) or 'none'}. Report: {registry.store.url(mv.key('drift.html'))}\n\n"
                  f"## Files\n{links}\n"),
        description=f"Model version {mv.version}")
    return mv


@task(name="smoke-set", **_task)
def smoke_task(spec, windows, trained):
    return pipeline.smoke_set(spec, windows, trained)
