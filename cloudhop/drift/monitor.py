"""Drift monitoring of served traffic.

The prediction log of a time window (what the servers answered, read through
`cloudhop.predlog`) is compared with the champion's reference sample (a seeded sample of
its training window) by Evidently; where labels have arrived for logged rows, the
champion's metric on them is compared with its holdout metric. The verdict becomes one event: `cloudhop.drift.detected` or
`cloudhop.drift.checked`. No Prefect here: the `monitor` flow emits what `MonitorResult.event()`
describes.

Every serving target logs to its own store (a cloud's servers to that cloud's bucket), and
several targets may share one. The monitor reads each target's rows where that target logs them
(`read_served_by_target`: each store once, rows split by the `target` column) and judges each
target's traffic alone and, with more than one target, all of it together (`scopes`): one
verdict and one event per scope, each naming its target(s).

Labels arrive later than predictions. They land beside the log, keyed by the row id the
server logged for the row (column `row_id`)::

    labels/<model>/date=YYYY-MM-DD/part-<HHMMSS>-<uuid8>.parquet    row_id, label, labeled_at
"""
from __future__ import annotations

import io
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Literal, Sequence

import pandas as pd

from cloudhop.predlog import dated_parts, feature_frame, read_prediction_log
from cloudhop.registry import ModelVersion, Registry
from cloudhop.store import Store

__all__ = ["MonitorError", "MonitorResult", "Performance", "EVENT_DETECTED", "EVENT_CHECKED", "REFERENCE_FILE",
           "served_window", "model_resource", "normalize", "sample_rows", "reference_bytes", "load_reference",
           "read_served", "read_served_by_target", "scopes", "target_resource", "write_labels", "read_labels", "join_labels", "performance", "cooldown_until", "decide"]

EVENT_DETECTED = "cloudhop.drift.detected"
EVENT_CHECKED = "cloudhop.drift.checked"
REFERENCE_FILE = "reference.parquet"  # a version's reference sample, when `register` stores one

Status = Literal["drift", "ok", "cooldown", "too-few-rows"]


class MonitorError(ValueError):
    """The monitor cannot run: the message says what is missing or wrong."""


# -- windows and resources -------------------------------------------------------
def _utc(t: datetime | str | date) -> datetime:
    ts = pd.Timestamp(t)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def served_window(start: datetime | str | None = None, end: datetime | str | None = None, minutes: float = 60.0,
                  now: datetime | None = None) -> tuple[datetime, datetime]:
    """[start, end) in UTC: `end` defaults to now, `start` to `end` minus `minutes` (naive times are UTC)."""
    hi = _utc(end) if end is not None else _utc(now or datetime.now(timezone.utc))
    if start is None:
        if not minutes > 0:
            raise MonitorError(f"window minutes must be > 0, got {minutes}")
        lo = hi - timedelta(minutes=minutes)
    else:
        lo = _utc(start)
    if lo >= hi:
        raise MonitorError(f"window start {lo.isoformat()} is not before its end {hi.isoformat()}")
    return lo, hi


def model_resource(model: str, version: str | None) -> dict[str, str]:
    """The event resource of a model: id `cloudhop.model.<name>`, with the version served."""
    return {"prefect.resource.id": f"cloudhop.model.{model}", "prefect.resource.name": model,
            "cloudhop.model.name": model, "cloudhop.model.version": str(version or "")}


def target_resource(target: str) -> dict[str, str]:
    """A serving target as an event's related resource (role `target`)."""
    return {"prefect.resource.id": f"cloudhop.target.{target}", "prefect.resource.role": "target",
            "prefect.resource.name": target}


# -- frames ------------------------------------------------------------------------
def normalize(df: pd.DataFrame, categorical: Sequence[str], numeric: Sequence[str], where: str) -> pd.DataFrame:
    """The feature columns in the prediction log's form: categories as strings, numbers as float64."""
    missing = [c for c in [*categorical, *numeric] if c not in df.columns]
    if missing:
        raise MonitorError(f"{where} lacks feature column(s) {missing} (has {sorted(map(str, df.columns))[:20]})")
    return feature_frame(df, categorical, numeric)


def sample_rows(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """At most n rows, the same ones for the same frame and seed (order kept): the rows of the one
    table sampler (cloudhop.data.table), with the frame's own index."""
    import numpy as np

    from cloudhop.data.table import sample_positions

    pos = sample_positions(len(df), n, np.random.default_rng(seed))
    return df if pos is None else df.iloc[pos]


def reference_bytes(train: pd.DataFrame, categorical: Sequence[str], numeric: Sequence[str], sample_size: int,
                    seed: int) -> bytes:
    """A version's reference sample as Parquet: `sample_size` seeded rows of its training window."""
    ref = normalize(sample_rows(train, sample_size, seed), categorical, numeric, "training window")
    sink = io.BytesIO()
    ref.to_parquet(sink, index=False)
    return sink.getvalue()


def _features(mv: ModelVersion) -> tuple[list[str], list[str]]:
    f = mv.manifest.features
    if not f.categorical and not f.numeric:
        raise MonitorError(f"{mv.name} v{mv.version}: manifest has no features")
    return list(f.categorical), list(f.numeric)


def load_reference(registry: Registry, mv: ModelVersion, sample_size: int, seed: int) -> tuple[pd.DataFrame, str]:
    """The champion's reference sample and where it came from.

    In order: the version's own `reference.parquet`; a sample cached by an earlier monitor run
    under `monitor/<model>/reference/`; else the training window rebuilt from the version's
    manifest (its spec, with the windows it trained on) and cached for next time.
    """
    categorical, numeric = _features(mv)
    if REFERENCE_FILE in mv.manifest.files:
        ref = pd.read_parquet(io.BytesIO(registry.read_file(mv, REFERENCE_FILE)))
        return sample_rows(ref, sample_size, seed), registry.store.url(mv.key(REFERENCE_FILE))
    cache = f"monitor/{mv.name}/reference/v{mv.version}-n{sample_size}-s{seed}.parquet"
    if registry.store.exists(cache):
        return pd.read_parquet(io.BytesIO(registry.store.read_bytes(cache))), registry.store.url(cache)
    from cloudhop.data import open_table, split
    from cloudhop.spec import parse_spec

    if mv.manifest.spec is None:
        raise MonitorError(f"{mv.name} v{mv.version}: manifest has no spec to rebuild the reference sample from")
    spec = parse_spec(mv.manifest.spec, f"manifest of {mv.name} v{mv.version}")
    table = open_table(spec)
    note = ""
    want = mv.manifest.dataset.fingerprint
    if want and table.fingerprint != want:
        note = f" (dataset changed since training: fingerprint {table.fingerprint} != {want})"
    train = split(table, spec).train.sample(sample_size, seed, columns=[*categorical, *numeric])
    registry.store.write_bytes(cache, reference_bytes(train, categorical, numeric, sample_size, seed))
    ref = pd.read_parquet(io.BytesIO(registry.store.read_bytes(cache)))
    return ref, f"rebuilt from {spec.dataset.uri}{note}; cached at {registry.store.url(cache)}"


def read_served(store: Store, model: str, start: datetime, end: datetime, version: str | None = None) -> pd.DataFrame:
    """Logged rows served in [start, end), by `version` only when given."""
    df = read_prediction_log(store, model, start, end)
    if version is not None and len(df):
        df = df[df["version"] == str(version)].reset_index(drop=True)
    return df


def read_served_by_target(sources: Sequence[tuple[str, Store]], model: str, start: datetime, end: datetime,
                          version: str | None = None) -> dict[str, pd.DataFrame]:
    """Each target's logged rows in [start, end), read from the store that target logs to.

    `sources` are (target name, its log store) in the spec's order. A store shared by several
    targets is read once; its rows go to the target named in their `target` column (rows of a
    target not in `sources` are not counted)."""
    by_uri: dict[str, pd.DataFrame] = {}
    out: dict[str, pd.DataFrame] = {}
    for name, store in sources:
        if store.uri not in by_uri:
            by_uri[store.uri] = read_served(store, model, start, end, version)
        df = by_uri[store.uri]
        out[name] = df[df["target"] == name].reset_index(drop=True) if len(df) else df
    return out


def scopes(served: dict[str, pd.DataFrame]) -> list[tuple[str | None, pd.DataFrame]]:
    """What to judge: each target's rows alone, then (target None) all of them together, which a
    single target's rows already are."""
    each: list[tuple[str | None, pd.DataFrame]] = list(served.items())
    if len(each) <= 1:
        return each
    return [*each, (None, pd.concat([df for _, df in each], ignore_index=True))]


# -- labels ------------------------------------------------------------------------
def _labels_prefix(model: str) -> str:
    return f"labels/{model}"


def write_labels(store: Store, model: str, row_ids: Sequence[str], labels: Sequence[Any],
                 at: datetime | None = None) -> str:
    """Append labels for logged rows (by the row id the server logged); returns the part's key."""
    if len(row_ids) != len(labels):
        raise MonitorError(f"{len(row_ids)} row ids but {len(labels)} labels")
    if not len(row_ids):
        raise MonitorError("no labels to write")
    at = _utc(at or datetime.now(timezone.utc))
    df = pd.DataFrame({"row_id": [str(r) for r in row_ids], "label": list(labels),
                       "labeled_at": pd.Timestamp(at)})
    sink = io.BytesIO()
    df.to_parquet(sink, index=False)
    key = f"{_labels_prefix(model)}/date={at:%Y-%m-%d}/part-{at:%H%M%S}-{uuid.uuid4().hex[:8]}.parquet"
    store.write_bytes(key, sink.getvalue())
    return key


def read_labels(store: Store, model: str, since: datetime | None = None) -> pd.DataFrame:
    """Every label part dated on or after `since` (labels arrive after the rows were served)."""
    lo = _utc(since).date() if since is not None else None
    parts = [pd.read_parquet(io.BytesIO(store.read_bytes(k))) for k in dated_parts(store, _labels_prefix(model), lo)]
    if not parts:
        return pd.DataFrame({"row_id": pd.Series(dtype=object), "label": pd.Series(dtype=object),
                             "labeled_at": pd.Series(dtype="datetime64[ns, UTC]")})
    return pd.concat(parts, ignore_index=True)


def join_labels(served: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Served rows that have a label (the newest label of a row wins); empty without row ids."""
    if "row_id" not in served.columns or not len(labels):
        return served.iloc[0:0].assign(label=pd.Series(dtype=object))
    latest = labels.sort_values("labeled_at", kind="stable").drop_duplicates("row_id", keep="last")
    return served.merge(latest[["row_id", "label"]], on="row_id", how="inner")


@dataclass
class Performance:
    metric: str
    value: float
    reference: float | None  # the champion's holdout value
    drop: float | None       # how much worse than on the holdout (positive = worse)
    max_drop: float
    rows: int
    drifted: bool

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("metric", "value", "reference", "drop", "max_drop", "rows", "drifted")}


def performance(task: str, metric: str, joined: pd.DataFrame, reference: float | None, max_drop: float,
                min_rows: int = 50) -> Performance | None:
    """The served predictions' metric on labeled rows vs the champion's holdout metric; None with too few rows."""
    from cloudhop.training.evaluate import HIGHER_IS_BETTER, metrics

    if len(joined) < min_rows:
        return None
    labels = joined["label"]
    if task == "binary":
        labels = labels.map(lambda v: 1 if str(v).lower() in ("1", "1.0", "true") else 0)
    value = metrics(task, labels.to_numpy(), joined["prediction"].to_numpy())[metric]
    drop = None
    if reference is not None and value == value:
        drop = (reference - value) if HIGHER_IS_BETTER[metric] else (value - reference)
    drifted = drop is not None and drop > max_drop
    return Performance(metric, float(value), reference, None if drop is None else float(drop), max_drop,
                       len(joined), drifted)


# -- the verdict -------------------------------------------------------------------
def cooldown_until(registry: Registry, minutes: float) -> datetime | None:
    """When the cooldown after the last champion change ends (None: no champion or no cooldown)."""
    alias = registry.alias("champion")
    if not alias or minutes <= 0 or not alias.get("updated_at"):
        return None
    return _utc(alias["updated_at"]) + timedelta(minutes=minutes)


@dataclass
class MonitorResult:
    model: str
    version: str | None
    start: datetime
    end: datetime
    rows: int                       # logged rows of this version in the window
    status: Status
    threshold: float
    drift: Any = None               # cloudhop.drift.DriftResult, None when not computed
    performance: Performance | None = None
    cooldown_until: datetime | None = None
    reference: str = ""
    report: str | None = None       # URL of the HTML report in the store
    retrain_window: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    report_only: bool = False       # drift is reported with cloudhop.drift.checked: nothing acts on it
    target: str | None = None       # the target whose traffic this is; None: every target's in `targets`
    targets: list[str] = field(default_factory=list)  # the targets whose traffic was judged

    @property
    def detected(self) -> bool:
        return self.status == "drift" and not self.report_only

    def event(self) -> tuple[str, dict[str, str], dict[str, Any]]:
        """(event name, resource, payload) to emit for this verdict."""
        d = self.drift
        payload = {
            "status": self.status,
            "report_only": self.report_only,
            "model": self.model,
            "version": self.version,
            "window": {"start": self.start.isoformat(), "end": self.end.isoformat()},
            "rows": self.rows,
            "threshold": self.threshold,
            "share": None if d is None else round(float(d.share), 4),
            "drifted_columns": [] if d is None else list(d.drifted_columns),
            "n_columns": None if d is None else d.n_columns,
            "sample_size": None if d is None else d.sample_size,
            "seed": None if d is None else d.seed,
            "current_rows": None if d is None else d.current_rows,
            "reference_rows": None if d is None else d.reference_rows,
            "performance": None if self.performance is None else self.performance.to_dict(),
            "cooldown_until": None if self.cooldown_until is None else self.cooldown_until.isoformat(),
            "report": self.report,
            "retrain_window": self.retrain_window,
            "notes": self.notes,
            "target": self.target,
            "targets": list(self.targets) if self.target is None else [self.target],
        }
        resource = model_resource(self.model, self.version)
        if self.target is not None:
            resource["cloudhop.target.name"] = self.target
        return (EVENT_DETECTED if self.detected else EVENT_CHECKED), resource, payload

    def related(self) -> list[dict[str, str]]:
        """The event's related resources: the target(s) whose traffic was judged."""
        return [target_resource(t) for t in ([self.target] if self.target is not None else self.targets)]

    def summary(self) -> str:
        d = self.drift
        what = {"drift": "DRIFT detected", "ok": "no drift", "cooldown": "drift ignored (cooldown after a redeploy)",
                "too-few-rows": "too few rows to judge"}[self.status]
        if self.status == "cooldown" and not self._would_drift():
            what = "no drift (in cooldown after a redeploy)"
        share = "" if d is None else (f"; drift share {d.share:.3f} (threshold {self.threshold}), drifted: "
                                      f"{', '.join(d.drifted_columns) or 'none'}")
        perf = ""
        if self.performance is not None:
            p = self.performance
            perf = f"; {p.metric} {p.value:.4f} on {p.rows} labeled rows (holdout {p.reference})"
        scope = (f", target {self.target}" if self.target is not None
                 else f", all targets ({', '.join(self.targets)})" if self.targets else "")
        return (f"{self.model} v{self.version}{scope}: {what}; {self.rows} rows served "
                f"{self.start:%Y-%m-%d %H:%M:%S} .. {self.end:%H:%M:%S} UTC{share}{perf}")

    def _would_drift(self) -> bool:
        return bool((self.drift is not None and self.drift.dataset_drift)
                    or (self.performance is not None and self.performance.drifted))


def decide(rows: int, min_rows: int, drift: Any, perf: Performance | None, now: datetime,
           cooldown_end: datetime | None) -> Status:
    """The verdict: too few rows, cooldown (drift while a new champion settles), drift, or ok."""
    if rows < min_rows:
        return "too-few-rows"
    drifted = bool((drift is not None and drift.dataset_drift) or (perf is not None and perf.drifted))
    if cooldown_end is not None and now < cooldown_end:
        return "cooldown"
    return "drift" if drifted else "ok"
