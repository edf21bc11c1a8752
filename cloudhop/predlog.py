"""The prediction log: every served row, its prediction, the version, the time and the target.

Parts are Parquet files under the store::

    predictions/<model>/date=YYYY-MM-DD/part-<HHMMSS>-<uuid8>.parquet

Every part has the same column types: served_at timestamp (UTC), model/version/target/row_id
strings, prediction float64, categorical features as strings (the preprocessor's
category form, so 5 and "5" agree) and numeric features as float64. Missing or
unusable values are nulls.

The inference server writes it (`cloudhop.serving.log` buffers rows off the request path and
calls `write_part`); the drift monitor reads a time range back and brings its reference
sample into the same form (`feature_frame`). This module is the one place that knows the
layout and the encoding, so it sits low: it imports the store and the category form the
model's preprocessor uses (a numpy/pandas helper that pulls in no training code).
"""
from __future__ import annotations

import io
import math
import uuid
from itertools import chain, repeat
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cloudhop.store import Store
from cloudhop.training.preprocess import category_key, category_keys

__all__ = ["META_COLUMNS", "Batch", "log_prefix", "part_key", "dated_parts", "write_part",
           "read_prediction_log", "feature_frame"]

META_COLUMNS = ("served_at", "model", "version", "target", "row_id", "prediction")
_META_SCHEMA = [pa.field("served_at", pa.timestamp("us", tz="UTC")), pa.field("model", pa.string()),
                pa.field("version", pa.string()), pa.field("target", pa.string()),
                pa.field("row_id", pa.string()), pa.field("prediction", pa.float64())]


# -- layout ------------------------------------------------------------------------
def log_prefix(model: str) -> str:
    return f"predictions/{model}"


def part_key(model: str, at: datetime) -> str:
    """A new part's key, in the date partition of `at` (UTC)."""
    at = at.astimezone(timezone.utc)
    return f"{log_prefix(model)}/date={at:%Y-%m-%d}/part-{at:%H%M%S}-{uuid.uuid4().hex[:8]}.parquet"


def dated_parts(store: Store, prefix: str, first: date | None = None, last: date | None = None) -> list[str]:
    """Parquet keys under `prefix`/date=YYYY-MM-DD/ whose date lies in [first, last] (either end open).

    Only the partitions in range are listed; folders that are not a date partition are skipped.
    """
    keys = []
    for d in store.list_dirs(prefix):
        try:
            day = date.fromisoformat(d[5:]) if d.startswith("date=") else None
        except ValueError:
            day = None
        if day is None or (first is not None and day < first) or (last is not None and day > last):
            continue
        keys += [k for k in store.list(f"{prefix}/{d}") if k.endswith(".parquet")]
    return keys


# -- a row's encoding ----------------------------------------------------------------
def _cat(v: Any) -> str | None:
    if v is None or isinstance(v, (dict, list)):
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    return category_key(v)


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, (dict, list)):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _numeric_column(values: list[Any]) -> pa.Array:
    """float64 with nulls for missing or unusable values; JSON numbers and nulls take the fast path."""
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        arr = None
    if arr is None or arr.shape != (len(values),):
        arr = np.array([_num(v) for v in values], dtype=np.float64)  # None -> NaN
    return pa.array(arr, pa.float64(), mask=~np.isfinite(arr))


@dataclass
class Batch:
    """Rows served in one request: their features as sent (one sequence of `n` values per feature;
    a feature missing here is logged as null), the predictions and the row ids."""
    served_at: datetime
    version: str
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    columns: Mapping[str, Sequence[Any]]
    n: int
    predictions: list[float]
    row_ids: list[str] | None

    @classmethod
    def from_rows(cls, served_at: datetime, version: str, categorical: Sequence[str], numeric: Sequence[str],
                  rows: list[dict[str, Any]], predictions: list[float], row_ids: list[str] | None = None) -> "Batch":
        """A batch from one JSON object per row (a missing key is null)."""
        columns = {c: [r.get(c) for r in rows] for c in (*categorical, *numeric)}
        return cls(served_at, version, tuple(categorical), tuple(numeric), columns, len(rows), predictions, row_ids)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _micros(t: datetime) -> int:
    """Microseconds since the epoch, exactly (a naive time is UTC)."""
    aware = t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)
    return (aware - _EPOCH) // timedelta(microseconds=1)


def _column(batches: Sequence[Batch], c: str) -> list[Any]:
    return list(chain.from_iterable(b.columns.get(c) or repeat(None, b.n) for b in batches))


def _category_column(values: list[Any]) -> pa.Array:
    """string with nulls: strings go to Arrow as they are and integers through Arrow's cast (both as
    category_key writes them); a column with anything else goes through category_key value by value."""
    kinds = set(map(type, values)) - {type(None)}
    if kinds <= {str}:
        return pa.array(values, pa.string())
    if kinds == {int}:
        try:
            return pa.array(values, pa.int64()).cast(pa.string())
        except OverflowError:  # beyond int64 (JSON allows it): the slow path below
            pass
    return pa.array([v if type(v) is str else _cat(v) for v in values], pa.string())


def _to_table(model: str, target: str, batches: Sequence[Batch]) -> pa.Table:
    """One Arrow table in the log's schema, for batches that share a feature layout."""
    cats, nums = batches[0].categorical, batches[0].numeric
    versions: list[str] = []
    ids: list[str | None] = []
    preds: list[float] = []
    for b in batches:
        versions += [b.version] * b.n
        ids += b.row_ids if b.row_ids is not None else [None] * b.n
        preds += b.predictions
    n = len(preds)
    served = np.repeat(np.array([_micros(b.served_at) for b in batches], dtype=np.int64), [b.n for b in batches])
    columns = [pa.array(served, pa.timestamp("us", tz="UTC")), pa.array([model] * n, pa.string()),
               pa.array(versions, pa.string()), pa.array([target] * n, pa.string()),
               pa.array(ids, pa.string()), pa.array(preds, pa.float64(), from_pandas=True)]
    fields = list(_META_SCHEMA)
    for c in cats:
        if c not in META_COLUMNS:
            columns.append(_category_column(_column(batches, c)))
            fields.append(pa.field(c, pa.string()))
    for c in nums:
        if c not in META_COLUMNS:
            columns.append(_numeric_column(_column(batches, c)))
            fields.append(pa.field(c, pa.float64()))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def write_part(store: Store, model: str, target: str, batches: Sequence[Batch]) -> tuple[str, int]:
    """Write batches that share a date and a feature layout as one part; returns (key, rows written)."""
    table = _to_table(model, target, batches)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    key = part_key(model, batches[0].served_at)
    store.write_bytes(key, sink.getvalue())
    return key, table.num_rows


# -- reading -----------------------------------------------------------------------------
def _utc(t: datetime | str | date | None) -> pd.Timestamp | None:
    if t is None:
        return None
    ts = pd.Timestamp(t)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def read_prediction_log(store: Store | str, model: str, start: datetime | str | None = None,
                        end: datetime | str | None = None) -> pd.DataFrame:
    """Logged rows with start <= served_at < end (naive times are UTC), oldest first.

    Reads only the date partitions that overlap the range.
    """
    store = Store(store) if isinstance(store, str) else store
    lo, hi = _utc(start), _utc(end)
    keys = dated_parts(store, log_prefix(model), lo.date() if lo is not None else None,
                       hi.date() if hi is not None else None)
    tables = [pq.read_table(io.BytesIO(store.read_bytes(k))) for k in keys]
    if not tables:
        return pa.schema(_META_SCHEMA).empty_table().to_pandas()
    df = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    if lo is not None:
        df = df[df["served_at"] >= lo]
    if hi is not None:
        df = df[df["served_at"] < hi]
    return df.sort_values("served_at", kind="stable").reset_index(drop=True)


def feature_frame(df: pd.DataFrame, categorical: Sequence[str], numeric: Sequence[str]) -> pd.DataFrame:
    """A frame's feature columns in the log's form (categories as strings, numbers as float64),
    so that a training sample compares with served rows. Every column named must be in `df`."""
    out = {}
    for c in categorical:
        keys = category_keys(df[c]).astype(object)
        out[c] = keys.where(keys.notna(), None)
    out.update({c: pd.to_numeric(df[c], errors="coerce").astype("float64") for c in numeric})
    return pd.DataFrame(out, index=df.index)[[*categorical, *numeric]].reset_index(drop=True)
