"""Target columns as numbers: what training learns, what evaluation and the holdout scoring compare.

Imports no torch, so metrics, the baseline and the pipeline's holdout scoring can use it alone.

- binary: two values become float32 0/1 (`encode_binary`; the later of the two sorted values is
  the positive class);
- regression: numeric values, standardised for the network with the training rows' mean and
  standard deviation (`TargetCoding`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cloudhop.training.errors import TrainingError

__all__ = ["encode_binary", "regression_target", "TargetCoding", "fit_target", "binary_classes", "unit_scale",
           "target_values"]

_MIN_STD = 1e-12  # a smaller spread is a constant target: scaled by 1 instead


def encode_binary(values: pd.Series | np.ndarray, classes: list[Any] | None = None,
                  where: str = "target") -> tuple[np.ndarray, list[Any]]:
    """Map a two-valued target to float32 0/1.

    The classes are the two values in sorted order and the second is the positive one:
    1 for 0/1, True for booleans, the later string alphabetically ("yes" over "no").
    """
    s = pd.Series(values)
    missing = int(s.isna().sum())
    if missing:
        raise TrainingError(f"{where} has {missing} missing values; drop or fill them before training")
    if classes is None:
        classes = _two_classes(pd.unique(s), where)
    pos = (s == classes[1]).to_numpy(dtype=bool)
    unknown = ~(pos | (s == classes[0]).to_numpy(dtype=bool))
    if unknown.any():
        bad = _plain(s[unknown].iloc[0])
        raise TrainingError(f"{where} has value {bad!r}, which is not one of the training classes {classes!r}")
    return pos.astype(np.float32), list(classes)


def _two_classes(uniq: Any, where: str) -> list[Any]:
    """The distinct values, sorted (by type name and text when they do not compare); exactly two."""
    try:
        found = sorted(_plain(v) for v in uniq)
    except TypeError:
        found = sorted((_plain(v) for v in uniq), key=lambda v: (type(v).__name__, str(v)))
    if len(found) < 2:
        raise TrainingError(f"{where} has only one class ({found[0]!r}); a binary model needs both classes")
    if len(found) > 2:
        shown = ", ".join(repr(v) for v in found[:5])
        raise TrainingError(f"{where} has {len(found)} distinct values ({shown}{', ...' if len(found) > 5 else ''});"
                            " a binary target needs exactly two")
    return found


def binary_classes(counts: pd.Series, where: str) -> tuple[list[Any], float]:
    """From a target's value counts (summed over a table's parts): the classes as encode_binary
    finds them, and the number of positive rows."""
    _, classes = encode_binary(pd.Series(list(counts.index), dtype=object), where=where)
    return classes, float(counts[[k for k in counts.index if _plain(k) == classes[1]]].sum())


def _plain(v: Any) -> Any:
    """numpy scalars -> Python scalars (for sorting, comparing and saving)."""
    return v.item() if isinstance(v, np.generic) else v


def regression_target(values: pd.Series, where: str) -> np.ndarray:
    """The values as float64; a missing, infinite or non-numeric one is an error."""
    y = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    bad = int((~np.isfinite(y)).sum())
    if bad:
        raise TrainingError(f"{where} has {bad} missing, infinite or non-numeric values")
    return y


def unit_scale(std: float) -> float:
    """The standard deviation a target is divided by: 1 for a constant target."""
    return std if std > _MIN_STD else 1.0


@dataclass(frozen=True)
class TargetCoding:
    """How a target column becomes the float32 values the network learns: binary 0/1 by
    `classes`, or regression standardised by the training rows' `mean` and `std`."""
    task: str
    classes: list[Any] | None = None  # binary: [negative, positive]
    mean: float = 0.0
    std: float = 1.0

    def encode(self, values: pd.Series, where: str) -> np.ndarray:
        if self.task == "binary":
            return encode_binary(values, self.classes, where=where)[0]
        return ((regression_target(values, where) - self.mean) / self.std).astype(np.float32)


def fit_target(values: pd.Series, task: str, where: str) -> tuple[TargetCoding, np.ndarray, float]:
    """The coding fitted on a whole training column, that column encoded, and its sum (positive
    rows, or the sum of the raw values) that a checkpoint records to recognise the data."""
    if task == "binary":
        y, classes = encode_binary(values, where=where)
        return TargetCoding(task, classes), y, float(np.sum(y, dtype=np.float64))
    raw = regression_target(values, where)
    coding = TargetCoding(task, None, float(raw.mean()), float(unit_scale(raw.std())))
    return coding, ((raw - coding.mean) / coding.std).astype(np.float32), float(np.sum(raw, dtype=np.float64))


def target_values(col: pd.Series, task: str) -> np.ndarray:
    """A holdout's target as metrics() takes it: float64 (regression), or int64 0/1 (binary: 0/1
    and booleans as they are; otherwise the last of the values sorted as text is 1)."""
    if task == "regression":
        return col.to_numpy(dtype="float64")
    values = sorted(col.dropna().unique().tolist(), key=str)
    if set(values) <= {0, 1, True, False}:
        return col.astype("int64").to_numpy()
    return (col == values[-1]).astype("int64").to_numpy()
