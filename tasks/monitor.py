"""Thin Prefect tasks around cloudhop.drift.monitor: logging, artifacts and the event."""
from __future__ import annotations

from datetime import datetime

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.runtime import flow_run

from cloudhop.drift import monitor as mon
from cloudhop.registry import ModelVersion, Registry
from cloudhop.spec import PipelineSpec
from cloudhop.store import Store
from cloudhop.targets import prediction_log_store
from tasks.credentials import target_secrets

__all__ = ["log_sources_task", "read_log_task", "reference_task", "drift_task", "performance_task", "report_task", "emit_task"]

_task = dict(cache_policy=NO_CACHE, persist_result=False)


def _key(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")[:60]


def _num(v) -> str:
    return "" if v is None else f"{v:.4g}"


@task(name="prediction-log-stores", **_task)
def log_sources_task(spec: PipelineSpec) -> list[tuple[str, Store]]:
    """Each serving target of the spec and the store its servers log to, opened with its credentials."""
    sources = [(t.name, prediction_log_store(t, spec, target_secrets(t))) for t in spec.targets]
    get_run_logger().info("prediction logs: %s", ", ".join(f"{n} in {st.uri}" for n, st in sources))
    return sources


@task(name="read-prediction-log", **_task)
def read_log_task(sources: list[tuple[str, Store]], model: str, start: datetime, end: datetime,
                  version: str | None) -> dict[str, pd.DataFrame]:
    served = mon.read_served_by_target(sources, model, start, end, version)
    get_run_logger().info("rows served by v%s in %s .. %s: %s", version, start.isoformat(), end.isoformat(),
                          ", ".join(f"{n} {len(df)}" for n, df in served.items()))
    return served


@task(name="reference-sample", **_task)
def reference_task(registry: Registry, champion: ModelVersion, sample_size: int, seed: int):
    ref, source = mon.load_reference(registry, champion, sample_size, seed)
    get_run_logger().info("reference sample of v%s: %s rows from %s", champion.version, len(ref), source)
    return ref, source


@task(name="drift-report", **_task)
def drift_task(spec: PipelineSpec, reference: pd.DataFrame, served: pd.DataFrame, categorical: list[str],
               numeric: list[str], sample_size: int, seed: int, threshold: float):
    from cloudhop.drift import drift_report

    current = mon.normalize(mon.sample_rows(served, sample_size, seed), categorical, numeric, "prediction log")
    d = drift_report(mon.normalize(reference, categorical, numeric, "reference sample"), current,
                     numeric=numeric, categorical=categorical, threshold=threshold, sample_size=sample_size,
                     seed=seed, html=True)
    get_run_logger().info("drift share %.3f (%s of %s columns, threshold %s): %s", d.share,
                          len(d.drifted_columns), d.n_columns, threshold, d.drifted_columns)
    return d


@task(name="labels", **_task)
def performance_task(spec: PipelineSpec, registry: Registry, champion: ModelVersion, served: pd.DataFrame,
                     start: datetime, max_drop: float):
    if "row_id" not in served.columns:
        return None, "no performance check: the prediction log has no row_id column to join labels on"
    joined = mon.join_labels(served, mon.read_labels(registry.store, registry.name, start))
    metric = spec.metric
    ref = champion.manifest.metrics.candidate.get(metric)
    perf = mon.performance(spec.target.task, metric, joined, ref, max_drop)
    if perf is None:
        return None, f"no performance check: {len(joined)} labeled rows in the window (need 50)"
    get_run_logger().info("performance on %s labeled rows: %s %.4f (holdout %s)", perf.rows, metric, perf.value, ref)
    return perf, None


@task(name="save-report", **_task)
def report_task(registry: Registry, result: mon.MonitorResult) -> str | None:
    """Save the HTML report to the store and link it, with a summary, from the run."""
    d = result.drift
    url = None
    scope = "" if result.target is None else f"-{result.target}"
    if d is not None and d.html:
        key = (f"monitor/{result.model}/reports/{result.end:%Y%m%dT%H%M%S}-{flow_run.get_id() or 'adhoc'}"
               f"{scope}.html")
        registry.store.write_bytes(key, d.html if isinstance(d.html, bytes) else str(d.html).encode())
        url = registry.store.url(key)
        link = f"file://{url}" if url.startswith("/") else url
        create_link_artifact(key=_key(f"{result.model}{scope}-drift-report"), link=link,
                             link_text=f"Evidently drift report, {result.model} v{result.version}{scope}",
                             description="Served traffic vs the champion's reference sample")
    result.report = url
    cols = "" if d is None else "\n".join(
        f"| {c} | {v.get('stattest')} | {_num(v.get('score'))} | {_num(v.get('threshold'))} | "
        f"{'**yes**' if v.get('drifted') else ''} |" for c, v in d.columns.items())
    table = f"\n\n| column | test | score | threshold | drifted |\n|---|---|---|---|---|\n{cols}\n" if cols else "\n"
    create_markdown_artifact(key=_key(f"{result.model}{scope}-monitor"), description="monitor verdict",
                             markdown=f"# {result.status}\n\n{result.summary()}\n\n"
                                      f"Reference: {result.reference}\n\nReport: {url or '(none)'}{table}"
                                      + "".join(f"\n- {n}" for n in result.notes))
    return url


@task(name="emit-event", **_task)
def emit_task(result: mon.MonitorResult) -> dict:
    name, resource, payload = result.event()
    ev = emit_event(event=name, resource=resource, payload=payload, related=result.related())
    get_run_logger().info("emitted %s for %s (event id %s)", name, resource["prefect.resource.id"],
                          getattr(ev, "id", None))
    return {"event": name, "id": str(ev.id) if ev is not None else None, "payload": payload}
