"""monitor: served traffic of a window vs the champion's reference sample -> a drift event.

Every serving target's traffic is read from the store that target logs to and judged alone,
then (with several targets) all together: one event per verdict, naming its target(s).
`cloudhop.drift.detected` starts the `retrain` deployment (its trigger in prefect.yaml, one
retrain per model however many targets drifted); `cloudhop.drift.checked` says the check ran
and found nothing to act on.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from cloudhop.drift import monitor as mon
from cloudhop.pipeline import open_registry
from flows.retrain import Window
from tasks.credentials import load_resolved_spec
from tasks.monitor import (drift_task, emit_task, log_sources_task, performance_task, read_log_task, reference_task,
                           report_task)

__all__ = ["ServedWindow", "monitor"]


class ServedWindow(BaseModel):
    """Which served traffic to look at, by the time it was served (UTC)."""
    start: datetime | None = Field(None, description="first served time to include; empty: `end` minus `minutes`")
    end: datetime | None = Field(None, description="end of the window (excluded); empty: now")
    minutes: float = Field(60.0, gt=0, description="window length when `start` is empty")


@flow(name="monitor", log_prints=True)
def monitor(
    spec: str = "specs/flights.yaml",
    window: ServedWindow = ServedWindow(),
    sample_size: int | None = None,
    seed: int = 0,
    min_rows: int = 200,
    cooldown_minutes: float = 30.0,
    max_metric_drop: float = 0.05,
    on_drift: Literal["event", "report-only"] = "event",
    retrain_window: Window | None = None,
) -> dict:
    """Check the champion's served traffic for drift, on each target and on all together, and say so with events.

    Returns the verdict on all targets' traffic (status, event, event_id, summary and the event's
    payload) and each target's own under `by_target`.

    Args:
        spec: Path to the pipeline spec (YAML) of the model to watch.
        window: Served traffic to check; by default the last 60 minutes.
        sample_size: Rows compared per side (seeded sample); empty: the spec's drift.sample_size.
        seed: Seed of the samples, so a check can be repeated exactly.
        min_rows: Fewer logged rows than this in the window: no verdict, no retrain.
        cooldown_minutes: After the champion changed, drift is reported but starts no retrain for this long.
        max_metric_drop: Where labels arrived: a drop of the spec's metric below the champion's holdout value
            by more than this counts as drift.
        on_drift: event: emit cloudhop.drift.detected (which starts retrain); report-only: emit
            cloudhop.drift.checked whatever the verdict.
        retrain_window: Data windows the triggered retrain trains on (passed on in the event); empty: the spec's split.
    """
    logger = get_run_logger()
    s = load_resolved_spec(spec)
    registry = open_registry(s)
    champion = registry.champion()
    if champion is None:  # a fresh install on its schedule: nothing to watch yet, nothing to fail
        logger.warning("model %s has no champion in %s: nothing is served, nothing to monitor", s.name,
                       registry.store.uri)
        return {"status": "no-champion", "event": None, "event_id": None, "model": s.name,
                "summary": f"{s.name}: no champion in {registry.store.uri}"}
    if not s.targets:
        logger.warning("model %s has no serving targets: no traffic to monitor", s.name)
        return {"status": "no-targets", "event": None, "event_id": None, "model": s.name,
                "summary": f"{s.name}: the spec has no serving targets"}
    now = datetime.now(timezone.utc)
    start, end = mon.served_window(window.start, window.end, window.minutes, now)
    n = sample_size or s.drift.sample_size
    categorical = list(champion.manifest.features.categorical)
    numeric = list(champion.manifest.features.numeric)

    served_by = read_log_task(log_sources_task(s), s.name, start, end, champion.version)
    cooldown = mon.cooldown_until(registry, cooldown_minutes)
    reference = None
    verdicts = {}
    for target, served in mon.scopes(served_by):
        result = mon.MonitorResult(
            s.name, champion.version, start, end, len(served), "too-few-rows", s.drift.threshold,
            cooldown_until=cooldown, target=target, targets=list(served_by),
            retrain_window=None if retrain_window is None else retrain_window.model_dump(mode="json"))
        if len(served) >= min_rows:
            if reference is None:
                reference, source = reference_task(registry, champion, n, seed)
            result.reference = f"{len(reference)} rows of v{champion.version}'s training window ({source})"
            result.drift = drift_task(s, reference, served, categorical, numeric, n, seed, s.drift.threshold)
            result.performance, note = performance_task(s, registry, champion, served, start, max_metric_drop)
            if note:
                result.notes.append(note)
        else:
            result.notes.append(f"{len(served)} rows served by v{champion.version} in the window; need {min_rows}")
        result.status = mon.decide(len(served), min_rows, result.drift, result.performance, now, cooldown)
        if on_drift == "report-only":
            result.report_only = True
            result.notes.append("report-only run: no retrain is asked for, whatever the verdict")
        report_task(registry, result)
        emitted = emit_task(result)
        logger.info(result.summary())
        verdicts[result.target] = {"status": result.status, "event": emitted["event"], "event_id": emitted["id"],
                                   "summary": result.summary(), **emitted["payload"]}
    combined = verdicts.pop(None, None) or next(iter(verdicts.values()))  # one target: its verdict is the whole
    return {**combined, "by_target": verdicts}


if __name__ == "__main__":
    import sys

    print(monitor(*sys.argv[1:2]))
