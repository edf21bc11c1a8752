"""Buffering of served rows for the prediction log (`cloudhop.predlog`: its layout and encoding).

Requests only append to a buffer; a background thread writes the rows as Parquet parts.
"""
from __future__ import annotations

import sys
import threading
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence

from cloudhop.predlog import Batch, write_part
from cloudhop.store import Store

__all__ = ["PredictionLog"]


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
        self._buf: list[Batch] = []
        self._pending = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pending_rows(self) -> int:
        return self._pending

    def add(self, version: str, categorical: list[str], numeric: list[str], columns: Mapping[str, Sequence[Any]],
            n: int, predictions: list[float], row_ids: list[str] | None = None,
            served_at: datetime | None = None) -> None:
        """Cheap: appends references to the buffer (call from the request path). `columns` holds
        `n` values per feature (as `rows.RowSchema.read` returns them)."""
        self._append(Batch(served_at or datetime.now(timezone.utc), version, tuple(categorical), tuple(numeric),
                           columns, n, predictions, row_ids))

    def add_rows(self, version: str, categorical: list[str], numeric: list[str], rows: list[dict[str, Any]],
                 predictions: list[float], row_ids: list[str] | None = None,
                 served_at: datetime | None = None) -> None:
        """`add` for rows as JSON objects (a missing key is logged as null)."""
        self._append(Batch.from_rows(served_at or datetime.now(timezone.utc), version, categorical, numeric, rows,
                                     predictions, row_ids))

    def _append(self, b: Batch) -> None:
        with self._lock:
            self._buf.append(b)
            self._pending += b.n
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
            groups: dict[tuple, list[Batch]] = {}
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

    def _write(self, batches: list[Batch]) -> str:
        key, rows = write_part(self.store, self.model, self.target, batches)
        self.written_rows += rows
        self.written_parts += 1
        if self.on_written:
            self.on_written(rows)
        return key

    def _requeue(self, failed: list[Batch]) -> None:
        with self._lock:
            self._buf = failed + self._buf
            self._pending = sum(b.n for b in self._buf)
            while self._pending > self.max_buffer_rows and len(self._buf) > 1:
                gone = self._buf.pop(0)
                self._pending -= gone.n
                self.dropped_rows += gone.n

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

