"""Data drift between a reference table and a current one, measured with Evidently.

    result = drift_report(train_df, served_df, numeric=spec.numeric, categorical=spec.categorical,
                          threshold=spec.drift.threshold, sample_size=spec.drift.sample_size)
    result = drift_tables(windows.train, windows.holdout, ..., executor=ex)   # any cloudhop.data Tables
    result.dataset_drift, result.drifted_columns, result.summary(), result.html

Each column gets Evidently's default test for its type and size (normed Wasserstein for
numeric, Jensen-Shannon for categorical when the reference has over 1000 rows; K-S and
chi-squared/Z below that; numeric columns with very few distinct values are compared as
categories). The dataset drifts when the share of drifted columns reaches `threshold`.
A column with no values on one side counts as drifted (Evidently cannot compare it).
Evidently is imported on first use (the import takes seconds).

Sampling: each side larger than `sample_size` is sampled without replacement by the one
table sampler (cloudhop.data.table.sample_table) with one numpy Generator seeded with
`seed` (`np.random.default_rng(seed)`; reference positions drawn first, then current),
rows kept in their original order. Same rows and seed give the same sample and the same
result, whichever engine holds the tables: `drift_tables` draws each side's sample a part
at a time (on an executor), then runs `drift_report` on the samples.

The drift of served traffic (the prediction log against the champion's reference sample, and
the event it leads to) is `cloudhop.drift.monitor`, imported on its own.
"""
from __future__ import annotations

import html as html_lib
import json
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cloudhop.data.executor import Executor
from cloudhop.data.table import FrameTable, Table, count_parts, sample_table

__all__ = ["drift_report", "drift_tables", "DriftResult", "DriftError"]


class DriftError(ValueError):
    """Inputs that cannot be compared (the message says which side and which column)."""


@dataclass
class DriftResult:
    dataset_drift: bool
    share: float
    drifted_columns: list[str]
    n_columns: int
    columns: dict[str, dict[str, Any]]
    reference_rows: int
    current_rows: int
    sample_size: int
    seed: int
    threshold: float
    notes: list[str] = field(default_factory=list)
    html: bytes | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-safe, without the HTML (for manifests and event payloads)."""
        return {"dataset_drift": self.dataset_drift, "share": self.share, "threshold": self.threshold,
                "drifted_columns": list(self.drifted_columns), "n_columns": self.n_columns,
                "columns": {k: dict(v) for k, v in self.columns.items()},
                "reference_rows": self.reference_rows, "current_rows": self.current_rows,
                "sample_size": self.sample_size, "seed": self.seed, "notes": list(self.notes)}


def _as_text(col: pd.Series) -> pd.Series:
    """Categories as text on both sides, so 5, 5.0 and "5" are one category; nulls stay None."""
    if pd.api.types.is_integer_dtype(col) and not col.isna().any():
        return col.astype(str).astype(object)
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype(object)
    if pd.api.types.is_string_dtype(col) and col.dropna().map(type).eq(str).all():
        return col.astype(object).where(col.notna(), None)

    def key(v: Any) -> Any:
        if v is None or (not isinstance(v, str) and pd.isna(v)):
            return None
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return str(int(v))
        return str(v)
    return col.astype(object).map(key).astype(object)


def _check(df: pd.DataFrame, side: str, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise DriftError(f"{side} data must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in numeric + categorical if c not in df.columns]
    if missing:
        raise DriftError(f"{side} data lacks column(s) {', '.join(missing)}")
    if len(df) == 0:
        raise DriftError(f"{side} data has no rows")
    for c in numeric:
        s = df[c]
        if not (pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s)):
            raise DriftError(f"numeric column {c!r} in {side} data has dtype {s.dtype}, not a number")
    return df[numeric + categorical]


def _convert(df: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """Numbers as float64 (infinities as missing), categories as text."""
    out = {c: df[c].astype("float64").replace([np.inf, -np.inf], np.nan) for c in numeric}
    out.update({c: _as_text(df[c]) for c in categorical})
    return pd.DataFrame(out, index=df.index)


def _empty_page(title: str, notes: list[str]) -> bytes:
    items = "".join(f"<li>{html_lib.escape(n)}</li>" for n in notes)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html_lib.escape(title)}</title></head>"
            f"<body><h1>{html_lib.escape(title)}</h1><ul>{items}</ul></body></html>").encode()


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, *, numeric: list[str], categorical: list[str],
                 threshold: float = 0.3, sample_size: int = 50_000, seed: int = 0,
                 html: bool = True) -> DriftResult:
    """Compare `current` with `reference` column by column; see the module docstring."""
    numeric, categorical = list(numeric), list(categorical)
    both = sorted(set(numeric) & set(categorical))
    if both:
        raise DriftError(f"column(s) {', '.join(both)} listed as both numeric and categorical")
    if not numeric and not categorical:
        raise DriftError("no columns to compare: give numeric and/or categorical columns")
    if not 0 < threshold <= 1:
        raise DriftError(f"threshold must be in (0, 1], got {threshold}")
    if sample_size < 1:
        raise DriftError(f"sample_size must be at least 1, got {sample_size}")
    ref = _check(reference, "reference", numeric, categorical)
    cur = _check(current, "current", numeric, categorical)
    rng = np.random.default_rng(seed)
    ref = _convert(sample_table(FrameTable(ref), sample_size, rng), numeric, categorical)
    cur = _convert(sample_table(FrameTable(cur), sample_size, rng), numeric, categorical)

    columns: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for c in numeric + categorical:  # Evidently refuses an all-null column: judge those here
        ref_empty, cur_empty = ref[c].isna().all(), cur[c].isna().all()
        if ref_empty or cur_empty:
            one_side = not (ref_empty and cur_empty)
            where = "both sides" if not one_side else ("reference" if ref_empty else "current")
            columns[c] = {"stattest": "all null", "score": 1.0 if one_side else 0.0, "threshold": 1.0,
                          "drifted": one_side}
            notes.append(f"{c}: every value is null in {where}" + ("; counted as drifted" if one_side else
                                                                      "; counted as not drifted"))
    compared = [c for c in numeric + categorical if c not in columns]
    page = None
    if compared:
        scores, page = _evidently(ref, cur, [c for c in numeric if c in compared],
                                  [c for c in categorical if c in compared], threshold, html)
        columns.update(scores)
    elif html:
        page = _empty_page("Data drift", notes + ["no column has values on both sides; nothing was compared"])
    order = numeric + categorical
    columns = {c: columns[c] for c in order}
    drifted = [c for c in order if columns[c]["drifted"]]
    share = len(drifted) / len(order)
    return DriftResult(dataset_drift=share >= threshold, share=share, drifted_columns=drifted,
                       n_columns=len(order), columns=columns, reference_rows=len(ref), current_rows=len(cur),
                       sample_size=sample_size, seed=seed, threshold=threshold, notes=notes, html=page)


def drift_tables(reference: Table, current: Table, *, numeric: list[str], categorical: list[str],
                 threshold: float = 0.3, sample_size: int = 50_000, seed: int = 0, html: bool = True,
                 executor: Executor | None = None) -> DriftResult:
    """`drift_report` on two Tables: each side's seeded sample drawn a part at a time (on
    `executor`), exactly the rows `drift_report` would draw from the whole frames; memory: the
    samples here, one part at a time where the parts are read."""
    if sample_size < 1:
        raise DriftError(f"sample_size must be at least 1, got {sample_size}")
    columns = list(dict.fromkeys(list(numeric) + list(categorical)))
    for side, table in (("reference", reference), ("current", current)):
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise DriftError(f"{side} data lacks column(s) {', '.join(missing)}")
    rng = np.random.default_rng(seed)
    counts = count_parts([reference, current], executor)  # one pass on the cluster for both sides
    samples = [sample_table(t, sample_size, rng, columns, executor, counts=c)
               for t, c in zip((reference, current), counts)]
    return drift_report(samples[0], samples[1], numeric=numeric, categorical=categorical, threshold=threshold,
                        sample_size=sample_size, seed=seed, html=html)


def _evidently(ref: pd.DataFrame, cur: pd.DataFrame, numeric: list[str], categorical: list[str],
               threshold: float, html: bool) -> tuple[dict[str, dict[str, Any]], bytes | None]:
    """Per-column drift from Evidently: {column: {stattest, score, threshold, drifted}} and the HTML.

    With html, the DataDriftPreset (its drift table is the page people know); without,
    only the per-column ValueDrift metrics (same tests, same verdicts, less rendering).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from evidently import DataDefinition, Dataset, Report
        from evidently.metrics import ValueDrift
        from evidently.presets import DataDriftPreset

        cols = numeric + categorical
        definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
        metrics = ([DataDriftPreset(columns=cols, drift_share=threshold)] if html
                   else [ValueDrift(column=c) for c in cols])
        snapshot = Report(metrics, include_tests=True).run(  # positional order is (current, reference)
            current_data=Dataset.from_pandas(cur[cols], data_definition=definition),
            reference_data=Dataset.from_pandas(ref[cols], data_definition=definition))
        data = json.loads(snapshot.json())
        page = snapshot.get_html_str(as_iframe=False).encode() if html else None

    status = {t["metric_config"]["params"].get("column"): t["status"] for t in data.get("tests", [])
              if t.get("metric_config", {}).get("params", {}).get("type", "").endswith(":ValueDrift")}
    out: dict[str, dict[str, Any]] = {}
    for m in data["metrics"]:
        cfg = m["config"]
        if not cfg.get("type", "").endswith(":ValueDrift"):
            continue
        c = cfg["column"]
        score = float(m["value"])
        if c not in status:
            raise RuntimeError(f"Evidently reported no drift test for column {c!r}")
        out[c] = {"stattest": cfg["method"], "score": score if math.isfinite(score) else None,
                  "threshold": float(cfg["threshold"]), "drifted": status[c] in ("FAIL", "WARNING")}
    lost = [c for c in cols if c not in out]
    if lost:
        raise RuntimeError(f"Evidently returned no drift score for column(s) {', '.join(lost)}")
    return out, page
