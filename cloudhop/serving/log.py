"""The prediction log: every served row, its prediction, the version, the time and the target.

Parts are Parquet files under the store::

    predictions/<model>/date=YYYY-MM-DD/part-<HHMMSS>-<uuid8>.parquet

Every part has the same column types: served_at timestamp (UTC), model/version/target/row_id
strings, prediction float64, categorical features as strings (the preprocessor's
category form, so 5 and "5" agree) and numeric features as float64. Missing or
unusable values are nulls. Requests only append to a buffer; a background thread writes.
"""
from __future__ import annotations

import io
import math
import sys
import threading
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cloudhop.store import Store
from cloudhop.training.preprocess import category_key

__all__ = ["PredictionLog", "read_prediction_log", "META_COLUMNS", "part_key"]

META_COLUMNS = ("served_at", "model", "version", "target", "row_id", "prediction")
_META_SCHEMA = [pa.field("served_at", pa.timestamp("us", tz="UTC")), pa.field("model", pa.string()),
                pa.field("version", pa.string()), pa.field("target", pa.string()),
                pa.field("row_id", pa.string()), pa.field("prediction", pa.float64())]


def prefix(model: str) -> str:
    return f"predictions/{model}"


def part_key(model: str, at: datetime) -> str:
    at = at.astimezone(timezone.utc)
    return f"{prefix(model)}/date={at:%Y-%m-%d}/part-{at:%H%M%S}-{uuid.uuid4().hex[:8]}.parquet"


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


@dataclass
class _Batch:
    served_at: datetime
    version: str
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    rows: list[dict[str, Any]]
    predictions: list[float]
    row_ids: list[str] | None


def _table(model: str, target: str, batches: list[_Batch]) -> pa.Table:
    """One Arrow table for batches that share a feature layout."""
    cats, nums = batches[0].categorical, batches[0].numeric
    served, versions, ids, preds = [], [], [], []
    for b in batches:
        n = len(b.rows)
        served += [b.served_at] * n
        versions += [b.version] * n
        ids += b.row_ids if b.row_ids is not None else [None] * n
        preds += b.predictions
    rows = [r for b in batches for r in b.rows]
    n = len(rows)
    columns = [pa.array(served, pa.timestamp("us", tz="UTC")), pa.array([model] * n, pa.string()),
               pa.array(versions, pa.string()), pa.array([target] * n, pa.string()),
               pa.array(ids, pa.string()), pa.array(preds, pa.float64(), from_pandas=True)]
    fields = list(_META_SCHEMA)
    for c in cats:
        if c not in META_COLUMNS:
            columns.append(pa.array([v if type(v) is str else _cat(v) for v in [r.get(c) for r in rows]],
                                    pa.string()))
            fields.append(pa.field(c, pa.string()))
    for c in nums:
        if c not in META_COLUMNS:
            columns.append(_numeric_column([r.get(c) for r in rows]))
            fields.append(pa.field(c, pa.float64()))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _numeric_column(values: list[Any]) -> pa.Array:
    """float64 with nulls for missing or unusable values; JSON numbers and nulls take the fast path."""
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        arr = None
    if arr is None or arr.shape != (len(values),):
        arr = np.array([_num(v) for v in values], dtype=np.float64)  # None -> NaN
    return pa.array(arr, pa.float64(), mask=~np.isfinite(arr))


class PredictionLog:
    """Buffers served rows and appends them to the store as Parquet parts, off the request path.

    A flush happens every `flush_rows` rows or `flush_seconds` seconds (whichever first),
    and on close(). A failed write keeps the rows for the next try, up to `max_buffer_rows`
    (beyond that the oldest are dropped and counted in `dropped_rows`).
    """

    def __init__(self, store: Store, model: str, target: str = "local", flush_rows: int = 1000,
                 flush_seconds: float = 10.0, max_buffer_rows: int = 1_000_000,
                 on_error: Callable[[Exception], None] | None = None,
                 on_written: Callable[[int], None] | None = None):
        if flush_rows < 1 or flush_seconds <= 0:
            raise ValueError("flush_rows must be >= 1 and flush_seconds > 0")
        self.store, self.model, self.target = store, model, target
        self.flush_rows, self.flush_seconds, self.max_buffer_rows = flush_rows, flush_seconds, max_buffer_rows
        self.on_error, self.on_written = on_error, on_written
        self.written_rows = self.written_parts = self.dropped_rows = 0
        self._buf: list[_Batch] = []
        self._pending = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pending_rows(self) -> int:
        return self._pending

    def add(self, version: str, categorical: list[str], numeric: list[str], rows: list[dict[str, Any]],
            predictions: list[float], row_ids: list[str] | None = None, served_at: datetime | None = None) -> None:
        """Cheap: appends references to the buffer (call from the request path)."""
        b = _Batch(served_at or datetime.now(timezone.utc), version, tuple(categorical), tuple(numeric),
                   rows, predictions, row_ids)
        with self._lock:
            self._buf.append(b)
            self._pending += len(rows)
            full = self._pending >= self.flush_rows
        if full:
            self._wake.set()

    def flush(self) -> list[str]:
        """Write everything buffered now; returns the keys written."""
        with self._flush_lock:
            with self._lock:
                batches, self._buf, self._pending = self._buf, [], 0
            if not batches:
                return []
            groups: dict[tuple, list[_Batch]] = {}
            for b in batches:
                groups.setdefault((b.served_at.date(), b.categorical, b.numeric), []).append(b)
            keys, failed = [], []
            for group in groups.values():
                try:
                    keys.append(self._write(group))
                except Exception as e:  # store unreachable: keep the rows for the next flush
                    failed += group
                    self._report(e)
            if failed:
                self._requeue(failed)
            return keys

    def _write(self, batches: list[_Batch]) -> str:
        table = _table(self.model, self.target, batches)
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        key = part_key(self.model, batches[0].served_at)
        self.store.write_bytes(key, sink.getvalue())
        self.written_rows += table.num_rows
        self.written_parts += 1
        if self.on_written:
            self.on_written(table.num_rows)
        return key

    def _requeue(self, failed: list[_Batch]) -> None:
        with self._lock:
            self._buf = failed + self._buf
            self._pending = sum(len(b.rows) for b in self._buf)
            while self._pending > self.max_buffer_rows and len(self._buf) > 1:
                gone = self._buf.pop(0)
                self._pending -= len(gone.rows)
                self.dropped_rows += len(gone.rows)

    def _report(self, e: Exception) -> None:
        if self.on_error:
            self.on_error(e)
        print(f"cloudhop.serving: prediction log write to {self.store.uri} failed: {e}", file=sys.stderr, flush=True)

    # -- background thread ------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if not self._stop.is_set():
                self.flush()

    def close(self) -> list[str]:
        """Stop the thread and write what is left."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        return self.flush()


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
    tables = []
    for d in store.list_dirs(prefix(model)):
        if not d.startswith("date="):
            continue
        try:
            day = date.fromisoformat(d[5:])
        except ValueError:
            continue
        if (lo is not None and day < lo.date()) or (hi is not None and day > hi.date()):
            continue
        for key in store.list(f"{prefix(model)}/{d}"):
            if key.endswith(".parquet"):
                tables.append(pq.read_table(io.BytesIO(store.read_bytes(key))))
    if not tables:
        return pa.schema(_META_SCHEMA).empty_table().to_pandas()
    df = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    if lo is not None:
        df = df[df["served_at"] >= lo]
    if hi is not None:
        df = df[df["served_at"] < hi]
    return df.sort_values("served_at", kind="stable").reset_index(drop=True)
