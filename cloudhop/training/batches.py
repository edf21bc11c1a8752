"""Batch sources: the training rows as batches of tensors, for the one training loop.

Two sources, one contract (`BatchSource`): each epoch's batches come in an order that is a
function of (seed, epoch) only, and `batches(epoch, first)` can start at any batch, so a resumed
run trains on exactly the batches an uninterrupted one would have.

- `InMemoryBatches`: a pandas frame (or an in-memory table) encoded once into tensors on the
  training device; each epoch is a seeded ``torch.randperm`` and index slicing, with no DataLoader.
- `StreamedBatches`: a partitioned table (see `Table`) read a part at a time, plus the next one
  read ahead, never the whole table:
  - a first pass over the parts counts their rows and fits what training needs: the
    preprocessor (vocabularies from summed value counts; means and standard deviations combined
    from each part's count, mean and squared deviations) and the target's classes (binary) or
    mean and standard deviation (regression);
  - each epoch visits the parts in an order drawn from (seed, epoch) and shuffles the rows within
    each part (seeded by seed, epoch and part); batches run across part boundaries, so an epoch
    has ceil(rows / batch_size) steps, as in memory;
  - resume: a position inside an epoch (rows done) is found again by skipping whole parts unread.
Validation rows, from a frame or a table, are held as encoded tensors (`encode_validation`; 8 bytes
per categorical and 4 per numeric value per row), built a part at a time.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd
import torch

from cloudhop.training.errors import TrainingError
from cloudhop.training.labels import TargetCoding, binary_classes, fit_target, regression_target, unit_scale
from cloudhop.training.preprocess import Preprocessor, category_keys

__all__ = ["Table", "Batch", "BatchSource", "InMemoryBatches", "StreamedBatches", "as_frame",
           "encode_validation", "epoch_permutation", "fit_preprocessor", "fit_preprocessor_for"]

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (cat int64 [B, C], num float32 [B, K], y float32 [B])


@runtime_checkable
class Table(Protocol):
    """What training needs of a table (cloudhop.data's tables have this shape): its parts, read
    one at a time as pandas frames, or all of it at once when it is in memory anyway."""
    in_memory: bool

    @property
    def parts(self) -> Sequence[Any]: ...

    def count(self) -> int: ...

    def frames(self, columns: Sequence[str] | None = None, *, order: Sequence[int] | None = None
               ) -> Iterator[pd.DataFrame]: ...

    def to_pandas(self, columns: Sequence[str] | None = None) -> pd.DataFrame: ...


class BatchSource(Protocol):
    """The training rows, encoded by `preprocessor` and `coding`, as batches on the training device."""
    preprocessor: Preprocessor
    coding: TargetCoding
    rows: int
    target_sum: float  # positive rows (binary) or the sum of the raw target: recorded to recognise the data

    def batches(self, epoch: int, first: int) -> Iterator[Batch]:
        """The epoch's batches from batch `first` on, in the epoch's seeded order."""
        ...


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order of one epoch's n rows (or parts): a function of (seed, epoch) only, so a resume replays it."""
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2 ** 63))
    return torch.randperm(n, generator=g)


def _part_permutation(seed: int, epoch: int, part: int, n: int) -> torch.Tensor:
    """The row order inside one part in one epoch: a function of its arguments only."""
    g = torch.Generator().manual_seed(((int(seed) * 1_000_003 + int(epoch)) * 1_000_003 + part + 1) % (2 ** 63))
    return torch.randperm(n, generator=g)


def _tensors(arrays: Iterable[np.ndarray], device: torch.device) -> Batch:
    cat, num, y = (torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays)
    return cat, num, y


def as_frame(data: Any, what: str) -> pd.DataFrame | None:
    """`data` as one frame when it is in memory (a DataFrame or an in-memory table); None for a
    table to read a part at a time; TrainingError for anything else."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, Table):
        return data.to_pandas() if data.in_memory else None
    raise TrainingError(f"{what} must be a pandas DataFrame or a table (with parts, frames and to_pandas), "
                        f"got {type(data).__name__}")


def _check_frame(df: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise TrainingError(f"{what} lacks column(s) {', '.join(map(repr, missing))}")
    if len(df) == 0:
        raise TrainingError(f"{what} is empty (0 rows); nothing to train or validate on")


def _read(table: Table, i: int, columns: list[str], what: str = "training") -> pd.DataFrame:
    df = next(iter(table.frames(columns, order=[i])))
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise TrainingError(f"{what} partition {i} lacks column(s) {', '.join(map(repr, missing))}")
    return df


def encode_validation(data: Any, columns: list[str], target: str, preprocessor: Preprocessor,
                      coding: TargetCoding, device: torch.device) -> Batch:
    """The validation rows (a frame or a table) as encoded tensors, built one part at a time."""
    frame = as_frame(data, "validation data")
    if frame is not None:
        _check_frame(frame, columns, "validation data")
        frames: Iterable[pd.DataFrame] = [frame]
    else:
        frames = (_read(data, i, columns, "validation") for i in range(len(data.parts)))
    cats, nums, ys = [], [], []
    for df in frames:
        cat, num = preprocessor.transform(df)
        cats.append(cat)
        nums.append(num)
        ys.append(coding.encode(df[target], f"target {target!r} in the validation data"))
    if sum(len(y) for y in ys) == 0:
        raise TrainingError("validation data is empty (0 rows); nothing to train or validate on")
    return _tensors((a[0] if len(a) == 1 else np.concatenate(a) for a in (cats, nums, ys)), device)


class InMemoryBatches:
    """A frame encoded once into tensors on the device; an epoch is a seeded permutation of its rows."""

    def __init__(self, df: pd.DataFrame, *, categorical: list[str], numeric: list[str], target: str, task: str,
                 preprocessor: Preprocessor | None, device: torch.device, seed: int, batch_size: int):
        _check_frame(df, categorical + numeric + [target], "training data")
        self.coding, y, self.target_sum = fit_target(df[target], task, f"target {target!r} in the training data")
        self.preprocessor = preprocessor or Preprocessor.fit(df, categorical, numeric)
        self.rows, self.seed, self.batch_size, self.device = len(df), seed, batch_size, device
        self.cat, self.num, self.y = _tensors((*self.preprocessor.transform(df), y), device)

    def batches(self, epoch: int, first: int) -> Iterator[Batch]:
        bs = self.batch_size
        perm = epoch_permutation(self.seed, epoch, self.rows).to(self.device)
        for b in range(first, math.ceil(self.rows / bs)):
            idx = perm[b * bs:(b + 1) * bs]
            yield self.cat[idx], self.num[idx], self.y[idx]


class StreamedBatches:
    """A table read a part at a time, the next part read ahead while one trains (see the module docstring)."""

    def __init__(self, table: Table, *, categorical: list[str], numeric: list[str], target: str, task: str,
                 preprocessor: Preprocessor | None, device: torch.device, seed: int, batch_size: int):
        self.table, self.columns, self.target = table, categorical + numeric + [target], target
        self.device, self.seed, self.batch_size = device, seed, batch_size
        where = f"target {target!r} in the training data"
        # the first pass: rows per part, target classes or scale, preprocessor statistics
        self.lengths: list[int] = []
        features = _FeatureStats(categorical, numeric) if preprocessor is None else None
        target_counts = pd.Series(dtype="int64")
        target_moments = _Moments()
        for i in range(len(table.parts)):
            df = _read(table, i, self.columns)
            self.lengths.append(len(df))
            if features is not None:
                features.add(df)
            if task == "binary":
                missing = int(df[target].isna().sum())
                if missing:
                    raise TrainingError(f"{where} has {missing} missing values (partition {i}); drop or fill them "
                                        "before training")
                target_counts = target_counts.add(df[target].value_counts(), fill_value=0)
            else:
                target_moments.add(regression_target(df[target], f"{where} (partition {i})"))
        self.rows = sum(self.lengths)
        if self.rows == 0:
            raise TrainingError("training data is empty (0 rows); nothing to train or validate on")
        if task == "binary":
            classes, self.target_sum = binary_classes(target_counts, where)
            self.coding = TargetCoding(task, classes)
        else:
            self.coding = TargetCoding(task, None, target_moments.mean, unit_scale(target_moments.std))
            self.target_sum = target_moments.total
        self.preprocessor = preprocessor or features.preprocessor()  # type: ignore[union-attr]

    def _load(self, epoch: int, i: int, skip: int) -> Batch:
        df = _read(self.table, i, self.columns)
        if len(df) != self.lengths[i]:
            raise TrainingError(f"training partition {i} changed while training: {len(df)} rows, "
                                f"{self.lengths[i]} before")
        cat, num = self.preprocessor.transform(df)
        y = self.coding.encode(df[self.target], f"target {self.target!r} in the training data")
        perm = _part_permutation(self.seed, epoch, i, len(df))[skip:]
        cat_t, num_t, y_t = (torch.from_numpy(np.ascontiguousarray(a))[perm].to(self.device) for a in (cat, num, y))
        return cat_t, num_t, y_t

    def batches(self, epoch: int, first: int) -> Iterator[Batch]:
        """The epoch's batches from batch `first` on; the next part is read while one trains."""
        bs = self.batch_size
        skip = first * bs  # rows already trained on in this epoch
        todo = []
        for i in epoch_permutation(self.seed, epoch, len(self.lengths)).tolist():
            if skip >= self.lengths[i]:
                skip -= self.lengths[i]
                continue
            todo.append((i, skip))
            skip = 0
        carry: Batch | None = None  # rows read but not yet batched: fewer than a batch
        with ThreadPoolExecutor(1, thread_name_prefix="cloudhop-read") as pool:
            ahead = pool.submit(self._load, epoch, *todo[0]) if todo else None
            for k in range(len(todo)):
                assert ahead is not None
                rows = ahead.result()
                ahead = pool.submit(self._load, epoch, *todo[k + 1]) if k + 1 < len(todo) else None
                if carry is not None:
                    rows = (torch.cat([carry[0], rows[0]]), torch.cat([carry[1], rows[1]]),
                            torch.cat([carry[2], rows[2]]))
                while rows[2].shape[0] >= bs:
                    yield rows[0][:bs], rows[1][:bs], rows[2][:bs]
                    rows = rows[0][bs:], rows[1][bs:], rows[2][bs:]
                carry = rows
            if carry is not None and carry[2].shape[0]:
                yield carry


# -- the streamed preprocessor fit ---------------------------------------------------

class _Moments:
    """Count, mean and sum of squared deviations, merged across parts (Chan et al.)."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2, self.total = 0, 0.0, 0.0, 0.0

    def add(self, v: np.ndarray) -> None:
        v = v[~np.isnan(v)]
        if not len(v):
            return
        n, mean = len(v), float(v.mean())
        m2 = float(((v - mean) ** 2).sum())
        both = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / both
        self.m2 += m2 + delta * delta * self.n * n / both
        self.n = both
        self.total += float(v.sum())

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.n) if self.n else 0.0


class _FeatureStats:
    """What Preprocessor.fit computes, gathered one frame at a time."""

    def __init__(self, categorical: list[str], numeric: list[str]):
        self.categorical, self.numeric = list(categorical), list(numeric)
        self.counts: dict[str, pd.Series] = {c: pd.Series(dtype="int64") for c in categorical}
        self.moments = {c: _Moments() for c in numeric}

    def add(self, df: pd.DataFrame) -> None:
        for c, acc in self.counts.items():
            self.counts[c] = acc.add(category_keys(df[c]).dropna().value_counts(), fill_value=0)
        for c, m in self.moments.items():
            m.add(pd.to_numeric(df[c], errors="coerce").to_numpy(dtype="float64", na_value=np.nan))

    def preprocessor(self, max_categories: int = 10_000) -> Preprocessor:
        counts, moments = self.counts, self.moments
        vocab = {c: sorted(counts[c].sort_values(ascending=False, kind="stable").index[:max_categories].tolist())
                 for c in self.categorical}
        mean = {c: moments[c].mean if moments[c].n else 0.0 for c in self.numeric}
        std = {c: unit_scale(moments[c].std) if moments[c].n > 1 else 1.0 for c in self.numeric}
        return Preprocessor(list(self.categorical), list(self.numeric), vocab, mean, std)


def fit_preprocessor(frames: Iterable[pd.DataFrame], categorical: list[str], numeric: list[str],
                     max_categories: int = 10_000) -> Preprocessor:
    """Preprocessor.fit over frames streamed one at a time (same vocabularies; same means and
    standard deviations but for rounding; ties at the max_categories cut may break otherwise)."""
    stats = _FeatureStats(categorical, numeric)
    for df in frames:
        stats.add(df)
    return stats.preprocessor(max_categories)


def fit_preprocessor_for(data: Any, categorical: list[str], numeric: list[str]) -> Preprocessor:
    """The preprocessor for training data: the exact fit on a frame in memory (a DataFrame or an
    in-memory table), the streamed one (same vocabularies, moments merged part by part) otherwise."""
    frame = as_frame(data, "training data")
    if frame is not None:
        return Preprocessor.fit(frame, categorical, numeric)
    return fit_preprocessor(data.frames(categorical + numeric), categorical, numeric)
