"""Training on a partitioned training window, streamed: one partition in memory at a time
(plus the next one, read ahead), never the whole window.

`train()` comes here when `train_df` is a partitioned table: an object with `parts`
(a sequence; one entry per partition) and `frames(columns, order=[i, ...])` yielding those
partitions as pandas frames, e.g. cloudhop.data.ParquetTable or one of its windows.

What differs from training on a frame:
- a first pass over the partitions counts their rows and fits what training needs: the
  preprocessor (vocabularies from summed value counts; means and standard deviations
  combined from each partition's count, mean and squared deviations) and the target's
  classes (binary) or mean and standard deviation (regression);
- each epoch visits the partitions in an order drawn from (seed, epoch) and shuffles the
  rows within each partition (seeded by seed, epoch and partition); batches run across
  partition boundaries, so an epoch has ceil(rows / batch_size) steps, as in memory;
- a validation window given as a source is held as its encoded tensors (8 bytes per
  categorical and 4 per numeric value per row), built one partition at a time;
- resume: a checkpoint's position in its epoch (rows done) is found again by skipping whole
  partitions unread, so a resumed run ends with the same weights as an uninterrupted one.
Reading partitions counts towards the training time in `samples_per_s`.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np
import pandas as pd
import torch

from cloudhop.training.preprocess import Preprocessor, category_keys
from cloudhop.training.trainer import (CheckpointStore, TrainConfig, TrainingError, TrainResult, _check_compatible,
                                       _check_frame, _plain, _regression_target, _Run, check_layout,
                                       check_preprocessor, encode_binary, epoch_permutation, pick_device)

__all__ = ["FrameSource", "train_streamed", "fit_preprocessor"]


class FrameSource(Protocol):
    parts: Sequence[Any]

    def frames(self, columns: Sequence[str] | None = None, *, order: Sequence[int] | None = None
               ) -> Iterator[pd.DataFrame]: ...


def _read(src: FrameSource, i: int, columns: list[str], what: str = "training") -> pd.DataFrame:
    df = next(iter(src.frames(columns, order=[i])))
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise TrainingError(f"{what} partition {i} lacks column(s) {', '.join(map(repr, missing))}")
    return df


class _Moments:
    """Count, mean and sum of squared deviations, merged across partitions (Chan et al.)."""

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


def fit_preprocessor(frames: Iterator[pd.DataFrame], categorical: list[str], numeric: list[str],
                     max_categories: int = 10_000) -> Preprocessor:
    """Preprocessor.fit over frames streamed one at a time (same vocabularies; same means and
    standard deviations but for rounding; ties at the max_categories cut may break otherwise)."""
    counts: dict[str, pd.Series] = {c: pd.Series(dtype="int64") for c in categorical}
    moments = {c: _Moments() for c in numeric}
    for df in frames:
        _add_features(df, counts, moments)
    return _preprocessor(categorical, numeric, counts, moments, max_categories)


def _add_features(df: pd.DataFrame, counts: dict[str, pd.Series], moments: dict[str, _Moments]) -> None:
    for c, acc in counts.items():
        counts[c] = acc.add(category_keys(df[c]).dropna().value_counts(), fill_value=0)
    for c, m in moments.items():
        m.add(pd.to_numeric(df[c], errors="coerce").to_numpy(dtype="float64", na_value=np.nan))


def _preprocessor(categorical: list[str], numeric: list[str], counts: dict[str, pd.Series],
                  moments: dict[str, _Moments], max_categories: int = 10_000) -> Preprocessor:
    vocab = {c: sorted(counts[c].sort_values(ascending=False, kind="stable").index[:max_categories].tolist())
             for c in categorical}
    mean = {c: moments[c].mean if moments[c].n else 0.0 for c in numeric}
    std = {c: (moments[c].std if moments[c].std > 1e-12 else 1.0) if moments[c].n > 1 else 1.0 for c in numeric}
    return Preprocessor(list(categorical), list(numeric), vocab, mean, std)


def train_streamed(source: FrameSource, valid: pd.DataFrame | FrameSource, *, categorical: list[str],
                   numeric: list[str], target: str, task: str, config: TrainConfig,
                   checkpoints: CheckpointStore | None = None, progress: Callable[[dict[str, Any]], None] | None = None,
                   preprocessor: Preprocessor | None = None, init_linear: Any = None) -> TrainResult:
    """trainer.train for a partition source (see the module docstring); same arguments and result."""
    categorical, numeric, cols = check_layout(task, categorical, numeric, target)
    device = pick_device(config.device)
    where = f"target {target!r} in the training data"

    # the first pass: rows per partition, target classes or scale, preprocessor statistics
    lengths: list[int] = []
    counts = {c: pd.Series(dtype="int64") for c in categorical}
    moments = {c: _Moments() for c in numeric}
    target_counts = pd.Series(dtype="int64")
    target_moments = _Moments()
    for i in range(len(source.parts)):
        df = _read(source, i, cols)
        lengths.append(len(df))
        if preprocessor is None:
            _add_features(df, counts, moments)
        if task == "binary":
            missing = int(df[target].isna().sum())
            if missing:
                raise TrainingError(f"{where} has {missing} missing values (partition {i}); drop or fill them "
                                    "before training")
            target_counts = target_counts.add(df[target].value_counts(), fill_value=0)
        else:
            target_moments.add(_regression_target(df[target], f"{where} (partition {i})"))
    n_train = sum(lengths)
    if n_train == 0:
        raise TrainingError("training data is empty (0 rows); nothing to train or validate on")
    if task == "binary":
        _, classes = encode_binary(pd.Series(list(target_counts.index), dtype=object), where=where)
        t_mean, t_std = 0.0, 1.0
        target_sum = float(target_counts[[k for k in target_counts.index if _plain(k) == classes[1]]].sum())
    else:
        classes = None
        t_mean = target_moments.mean
        t_std = target_moments.std if target_moments.std > 1e-12 else 1.0
        target_sum = target_moments.total

    def encode(df: pd.DataFrame, what: str) -> np.ndarray:
        if task == "binary":
            return encode_binary(df[target], classes, where=f"target {target!r} in the {what}")[0]
        raw = _regression_target(df[target], f"target {target!r} in the {what}")
        return ((raw - t_mean) / t_std).astype(np.float32)

    resume = checkpoints._latest_loaded() if checkpoints is not None else None
    if resume is not None and preprocessor is None:
        preprocessor = Preprocessor.from_dict(resume[2]["preprocessor"])
    if preprocessor is None:
        preprocessor = _preprocessor(categorical, numeric, counts, moments)
    else:
        check_preprocessor(preprocessor, categorical, numeric)

    if not isinstance(valid, pd.DataFrame):
        valid_frames: Iterable[pd.DataFrame] = (_read(valid, i, cols, "validation")
                                                for i in range(len(valid.parts)))
    else:
        _check_frame(valid, cols, "validation data")  # type: ignore[arg-type]
        valid_frames = [valid]  # type: ignore[list-item]
    valid_t = _valid_tensors(valid_frames, preprocessor, encode, device)
    layout = {"categorical": categorical, "numeric": numeric, "target": target, "task": task,
              "classes": classes, "n_train": n_train, "n_valid": int(valid_t[2].shape[0]),
              "target_sum": float(f"{target_sum:.6g}")}
    if resume is not None:
        _check_compatible(resume[2], config, layout, preprocessor, checkpoints)  # type: ignore[arg-type]

    run = _StreamRun(config, device, task, layout, preprocessor, (t_mean, t_std), checkpoints, progress)
    run.set_stream(source, lengths, cols, encode, valid_t)
    return run.run(init_linear, resume, classes)


def _valid_tensors(frames: Iterable[pd.DataFrame], pre: Preprocessor,
                   encode: Callable[[pd.DataFrame, str], np.ndarray], device: torch.device) -> tuple[torch.Tensor, ...]:
    """The validation rows as encoded tensors, built one frame at a time."""
    cats, nums, ys = [], [], []
    for df in frames:
        cat, num = pre.transform(df)
        cats.append(cat)
        nums.append(num)
        ys.append(encode(df, "validation data"))
    if sum(len(y) for y in ys) == 0:
        raise TrainingError("validation data is empty (0 rows); nothing to train or validate on")
    return tuple(torch.from_numpy(np.ascontiguousarray(np.concatenate(a))).to(device) for a in (cats, nums, ys))


def partition_permutation(seed: int, epoch: int, partition: int, n: int) -> torch.Tensor:
    """The row order inside one partition in one epoch: a function of its arguments only."""
    g = torch.Generator().manual_seed(((int(seed) * 1_000_003 + int(epoch)) * 1_000_003 + partition + 1) % (2 ** 63))
    return torch.randperm(n, generator=g)


class _StreamRun(_Run):
    """_Run with the training window read partition by partition each epoch."""

    def set_stream(self, source: FrameSource, lengths: list[int], cols: list[str],
                   encode: Callable[[pd.DataFrame, str], np.ndarray], valid_t: tuple[torch.Tensor, ...]) -> None:
        self.source, self.lengths, self.cols, self.encode = source, lengths, cols, encode
        self.valid_t = valid_t
        self.n = sum(lengths)
        self.steps_per_epoch = math.ceil(self.n / self.config.batch_size)
        self.planned_steps = self.steps_per_epoch * self.config.max_epochs

    def _load(self, epoch: int, i: int, skip: int) -> tuple[torch.Tensor, ...]:
        df = _read(self.source, i, self.cols)
        if len(df) != self.lengths[i]:
            raise TrainingError(f"training partition {i} changed while training: {len(df)} rows, "
                                f"{self.lengths[i]} before")
        cat, num = self.preprocessor.transform(df)
        y = self.encode(df, "training data")
        perm = partition_permutation(self.config.seed, epoch, i, len(df))[skip:]
        return tuple(torch.from_numpy(np.ascontiguousarray(a))[perm].to(self.device) for a in (cat, num, y))

    def batches(self, epoch: int, first: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """The epoch's batches from batch `first` on; the next partition is read while one trains."""
        bs = self.config.batch_size
        skip = first * bs  # rows already trained on in this epoch
        todo = []
        for i in epoch_permutation(self.config.seed, epoch, len(self.lengths)).tolist():
            if skip >= self.lengths[i]:
                skip -= self.lengths[i]
                continue
            todo.append((i, skip))
            skip = 0
        carry: tuple[torch.Tensor, ...] | None = None
        with ThreadPoolExecutor(1, thread_name_prefix="cloudhop-read") as pool:
            ahead = pool.submit(self._load, epoch, *todo[0]) if todo else None
            for k in range(len(todo)):
                part = ahead.result()  # type: ignore[union-attr]
                ahead = pool.submit(self._load, epoch, *todo[k + 1]) if k + 1 < len(todo) else None
                carry = part if carry is None else tuple(torch.cat([a, b]) for a, b in zip(carry, part))
                while carry[2].shape[0] >= bs:
                    yield tuple(t[:bs] for t in carry)
                    carry = tuple(t[bs:] for t in carry)
            if carry is not None and carry[2].shape[0]:
                yield carry
