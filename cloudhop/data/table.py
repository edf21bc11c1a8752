"""One shape for a dataset: a `Table` of `Part`s, a frame in memory or partitioned Parquet.

    table = open_table(spec)                    # cloudhop.data.engine: the engine is chosen here, once
    table.parts, table.count(), table.fingerprint, table.in_memory
    windows = split(table, spec, executor)      # Windows of Tables: train, validation, holdout
    windows.train.sample(n, seed)               # the one seeded sampler (sample_table)
    for df in windows.holdout.frames(columns): ...

`FrameTable` is one part held in memory (what the pandas engine gives);
`cloudhop.data.parquet.ParquetTable` is runs of row groups of partitioned Parquet, read a
part at a time, in this process or by an `Executor` (cloudhop.data.executor).

Sampling (`sample_table`): `n` rows without replacement, in row order, all rows when the
table has no more than `n`: positions `np.sort(rng.choice(total, n, replace=False))` over
the table's rows in order, each part reading only its own. A table's rows are the same
whichever engine holds them, so both engines draw the same sample for the same seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd

from cloudhop.data.executor import Executor, run_parts
from cloudhop.data.load import DataError, fingerprint as frame_fingerprint
from cloudhop.spec import PipelineSpec

__all__ = ["Part", "Table", "FramePart", "FrameTable", "Windows", "split", "sample_table", "count_parts", "sample_positions",
           "time_mask"]


@runtime_checkable
class Part(Protocol):
    """A piece of a table that one process reads whole."""

    @property
    def label(self) -> str:
        """Where its rows come from, for people (file and row range)."""
        ...

    def read(self, columns: Sequence[str] | None = None) -> pd.DataFrame: ...

    def count(self) -> int: ...

    def describe(self) -> dict[str, Any]:
        """Where its rows come from, for reports: `file`, `first_row`, `rows` (and more)."""
        ...


@runtime_checkable
class Table(Protocol):
    """A dataset of one or more parts, in row order (see the module docstring)."""

    @property
    def uri(self) -> str: ...

    @property
    def columns(self) -> list[str]: ...

    @property
    def fingerprint(self) -> str:
        """Identifies the data (the same data gives the same value, in any process)."""
        ...

    @property
    def in_memory(self) -> bool:
        """Whether the rows are held in memory as one frame (else read a part at a time)."""
        ...

    @property
    def parts(self) -> Sequence[Part]: ...

    def count(self) -> int:
        """Rows (in the window, when windowed)."""
        ...

    def window(self, start: Any = None, end: Any = None) -> "Table":
        """Rows with start <= time < end on the spec's time column (either bound None)."""
        ...

    def labelled(self, column: str) -> "Table":
        """Rows where `column` holds a value (not null): a target's labelled rows."""
        ...

    def with_counts(self, counts: Sequence[int]) -> "Table":
        """The same table with its parts' row counts known (`counts`, one per part, as each part's
        `count()` gave), so later counts read nothing."""
        ...

    def frames(self, columns: Sequence[str] | None = None, *, order: Sequence[int] | None = None
               ) -> Iterator[pd.DataFrame]:
        """The parts as frames, one at a time in this process (`order`: part indices)."""
        ...

    def sample(self, n: int, seed: int, columns: Sequence[str] | None = None,
               executor: Executor | None = None) -> pd.DataFrame: ...

    def head(self, n: int, columns: Sequence[str] | None = None) -> pd.DataFrame: ...

    def to_pandas(self, columns: Sequence[str] | None = None) -> pd.DataFrame: ...


def _cols(columns: Sequence[str] | None) -> list[str] | None:
    return None if columns is None else list(dict.fromkeys(columns))


def time_mask(t: pd.Series, start: pd.Timestamp | None, end: pd.Timestamp | None) -> np.ndarray:
    """start <= t < end (either bound None): the one definition of a time window."""
    keep = np.ones(len(t), dtype=bool)
    if start is not None:
        keep &= (t >= start).to_numpy()
    if end is not None:
        keep &= (t < end).to_numpy()
    return keep


def _bounds(start: Any, end: Any) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    return (None if start is None else pd.Timestamp(start), None if end is None else pd.Timestamp(end))


# -- the sampler ---------------------------------------------------------------------
def sample_positions(total: int, n: int, rng: np.random.Generator) -> np.ndarray | None:
    """Sorted row positions of a seeded draw of `n` of `total` rows; None (all rows) when total <= n."""
    return np.sort(rng.choice(total, size=n, replace=False)) if total > n else None


def sample_table(table: Table, n: int, rng: np.random.Generator | int,
                 columns: Sequence[str] | None = None, executor: Executor | None = None,
                 counts: Sequence[int] | None = None) -> pd.DataFrame:
    """`n` rows of `table` drawn without replacement by `rng` (a Generator, or a seed for
    `np.random.default_rng`), in row order; all rows when it has no more. Parts are counted
    (unless their `counts` are given, see `count_parts`) and read on `executor`, each
    returning only its sampled rows."""
    if n < 1:
        raise DataError(f"a sample needs at least 1 row, got {n}")
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    parts = list(table.parts)
    if counts is None:
        counts = run_parts(executor, _count, parts)
    elif len(counts) != len(parts):
        raise DataError(f"{len(counts)} counts given for a table of {len(parts)} parts")
    pos = sample_positions(int(sum(counts)), n, rng)
    jobs, start = [], 0
    for part, k in zip(parts, counts):
        take = None
        if pos is not None:
            lo, hi = np.searchsorted(pos, [start, start + k])
            take = pos[lo:hi] - start
        if k and (take is None or len(take)):
            jobs.append((part, take))
        start += k
    if not jobs:
        return parts[0].read(columns).head(0) if parts else pd.DataFrame(columns=list(columns or table.columns))
    frames = run_parts(executor, _take, jobs, columns=_cols(columns))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def count_parts(tables: Sequence[Table], executor: Executor | None = None) -> list[list[int]]:
    """Each table's part row counts, all counted in one pass on `executor`."""
    parts = [p for t in tables for p in t.parts]
    flat, out = iter(run_parts(executor, _count, parts)), []
    for t in tables:
        out.append([next(flat) for _ in t.parts])
    return out


def _count(part: Part) -> int:
    return part.count()


def _count_labelled(part: Part, column: str | None) -> tuple[int, int]:
    """(rows, rows where `column` holds a value) of a part; both its rows when `column` is None."""
    if column is None:
        n = part.count()
        return n, n
    values = part.read([column])[column]
    return len(values), int(values.notna().sum())


def _take(job: tuple[Part, np.ndarray | None], columns: list[str] | None) -> pd.DataFrame:
    part, take = job
    df = part.read(columns)
    if take is None:  # the whole part, numbered from 0 like a sampled one
        return df if df.index.equals(pd.RangeIndex(len(df))) else df.reset_index(drop=True)
    return df.iloc[take].reset_index(drop=True)


# -- a frame in memory -------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class FramePart:
    """A whole frame as the one part of a FrameTable."""
    frame: pd.DataFrame
    label: str = "in memory"

    def read(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        return self.frame if columns is None else self.frame[_cols(columns)]

    def count(self) -> int:
        return len(self.frame)

    def describe(self) -> dict[str, Any]:
        return {"file": self.label, "first_row": 0, "rows": len(self.frame)}


class FrameTable:
    """A table held in memory as one pandas frame: one part (the pandas engine's table).

    `fingerprint` defaults to a hash of the frame's content (computed on first use);
    `time_column` is what `window` cuts on.
    """
    in_memory = True

    def __init__(self, frame: pd.DataFrame, *, uri: str = "memory", time_column: str | None = None,
                 fingerprint: str | None = None):
        if not isinstance(frame, pd.DataFrame):
            raise DataError(f"a FrameTable holds a pandas DataFrame, got {type(frame).__name__}")
        self.frame, self.uri, self.time_column = frame, uri, time_column
        self._fingerprint = fingerprint

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = frame_fingerprint(self.frame)
        return self._fingerprint

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    @property
    def parts(self) -> list[FramePart]:
        return [FramePart(self.frame, self.uri)]

    def count(self) -> int:
        return len(self.frame)

    def window(self, start: Any = None, end: Any = None) -> "FrameTable":
        if not self.time_column or self.time_column not in self.frame.columns:
            raise DataError(f"dataset {self.uri}: a window needs the spec's time column "
                            f"({self.time_column or 'none set'})")
        keep = time_mask(self.frame[self.time_column], *_bounds(start, end))
        return FrameTable(self.frame[keep].reset_index(drop=True), uri=self.uri, time_column=self.time_column,
                          fingerprint=self._fingerprint)

    def labelled(self, column: str) -> "FrameTable":
        keep = self.frame[column].notna().to_numpy()
        return FrameTable(self.frame[keep].reset_index(drop=True), uri=self.uri, time_column=self.time_column,
                          fingerprint=self._fingerprint)

    def with_counts(self, counts: Sequence[int]) -> "FrameTable":
        return self  # a frame's count costs nothing

    def frames(self, columns: Sequence[str] | None = None, *, order: Sequence[int] | None = None
               ) -> Iterator[pd.DataFrame]:
        for i in (range(1) if order is None else order):
            if i != 0:
                raise IndexError(f"a FrameTable has one part (0), not {i}")
            yield self.to_pandas(columns)

    def sample(self, n: int, seed: int, columns: Sequence[str] | None = None,
               executor: Executor | None = None) -> pd.DataFrame:
        return sample_table(self, n, seed, columns, executor)

    def head(self, n: int, columns: Sequence[str] | None = None) -> pd.DataFrame:
        return self.to_pandas(columns).head(n)

    def to_pandas(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        return self.parts[0].read(columns)

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        return f"FrameTable({self.uri}, {len(self.frame)} rows)"


# -- windows -------------------------------------------------------------------------
@dataclass
class Windows:
    """The spec's time windows of one table: train < validation < holdout; `unlabelled_dropped`
    rows of them had no target value and were left out (target.missing: drop)."""
    train: Table
    validation: Table
    holdout: Table
    unlabelled_dropped: int = 0

    def sizes(self) -> dict[str, int]:
        return {"train": self.train.count(), "validation": self.validation.count(), "holdout": self.holdout.count()}


def split(table: Table, spec: PipelineSpec, executor: Executor | None = None) -> Windows:
    """The spec's time windows of `table`, each part's rows in its window counted once here (on
    `executor`) for every later step. With target.missing `drop` (the default), rows without a
    target value are left out of every window and counted in the same pass. DataError when a
    window is empty, or has no labelled rows."""
    s = spec.split
    v, h = pd.Timestamp(s.validation_start), pd.Timestamp(s.holdout_start)
    start = pd.Timestamp(s.train_start) if s.train_start else None
    end = pd.Timestamp(s.holdout_end) if s.holdout_end else None
    tables = [table.window(a, b) for a, b in ((start, v), (v, h), (h, end))]
    target = spec.target.column if spec.target.missing == "drop" else None
    counted = run_parts(executor, _count_labelled, [p for t in tables for p in t.parts], column=target)
    if target:
        tables = [t.labelled(target) for t in tables]
    counts = iter(counted)
    train, validation, holdout = (t.with_counts([next(counts)[1] for _ in t.parts]) for t in tables)
    w = Windows(train, validation, holdout, unlabelled_dropped=sum(rows - labelled for rows, labelled in counted))
    empty = [k for k, n in w.sizes().items() if n == 0]
    if empty:
        unlabelled = f" of labelled rows ({w.unlabelled_dropped} rows without {target!r} dropped)" \
            if w.unlabelled_dropped else ""
        raise DataError(f"time windows {', '.join(empty)} are empty{unlabelled} in {table.uri}: "
                        f"split is validation_start={v}, holdout_start={h}")
    return w
