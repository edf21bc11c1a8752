"""Feature preprocessing fitted on the training window and shipped with the model.

Imports neither torch nor onnxruntime: the inference server, the evaluator and the
trainer all use this one implementation, so offline and served predictions agree.

Categoricals map to integer ids (0 is "unseen or missing"); numerics are
standardised with the training window's mean and std (missing -> the mean, i.e. 0).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd

__all__ = ["Preprocessor", "category_key", "category_keys"]


def category_key(v: Any) -> str:
    """The one string form of a category value: 5, 5.0 and "5" are the same category."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (np.floating,)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def category_keys(col: pd.Series) -> pd.Series:
    """category_key over a column, None where missing."""
    if pd.api.types.is_integer_dtype(col) and not col.isna().any():
        return col.astype(str)
    if pd.api.types.is_float_dtype(col):
        return col.map(lambda x: None if pd.isna(x) else category_key(float(x)))
    if isinstance(col.dtype, pd.StringDtype):  # holds only strings: no need to look at each value
        return col.astype(object).where(col.notna(), None)
    if pd.api.types.is_string_dtype(col) or pd.api.types.is_object_dtype(col):
        if len(col) == 0 or all(type(x) is str for x in col.dropna()):  # plain strings, maybe missing
            return col.astype(object).where(col.notna(), None)
    return col.astype(object).map(lambda x: None if x is None or (not isinstance(x, str) and pd.isna(x)) else category_key(x))


def _to_float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):
        return float("nan")


@dataclass
class Preprocessor:
    categorical: list[str]
    numeric: list[str]
    vocab: dict[str, list[str]] = field(default_factory=dict)
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fit(cls, df: pd.DataFrame, categorical: list[str], numeric: list[str],
            max_categories: int = 10_000) -> "Preprocessor":
        vocab = {}
        for c in categorical:
            counts = category_keys(df[c]).dropna().value_counts()
            vocab[c] = sorted(counts.index[:max_categories].tolist())
        mean, std = {}, {}
        for c in numeric:
            v = pd.to_numeric(df[c], errors="coerce").astype("float64")
            m = float(v.mean()) if v.notna().any() else 0.0
            s = float(v.std(ddof=0)) if v.notna().sum() > 1 else 1.0
            mean[c], std[c] = m, (s if s > 1e-12 else 1.0)
        return cls(list(categorical), list(numeric), vocab, mean, std)

    @property
    def cardinalities(self) -> list[int]:
        """Embedding sizes: vocabulary + 1 for the unseen/missing id 0."""
        return [len(self.vocab[c]) + 1 for c in self.categorical]

    def transform(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """-> (cat int64 [N, C], num float32 [N, K])."""
        n = len(df)
        cat = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for j, c in enumerate(self.categorical):
            pos = pd.Index(self.vocab[c]).get_indexer(category_keys(df[c]))
            cat[:, j] = np.where(pos >= 0, pos + 1, 0)
        num = np.zeros((n, len(self.numeric)), dtype=np.float32)
        for j, c in enumerate(self.numeric):
            v = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            z = (v - self.mean[c]) / self.std[c]
            num[:, j] = np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
        return cat, num

    def transform_records(self, rows: Iterable[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """Fast path for the server: a list of JSON objects (same result as transform on a frame)."""
        rows = rows if isinstance(rows, list) else list(rows)
        n = len(rows)
        cat = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for j, (c, lk) in enumerate(zip(self.categorical, self._lookups())):
            cat[:, j] = [0 if v is None else lk.get(v if type(v) is str else category_key(v), 0)
                         for v in [r.get(c) for r in rows]]
        cols, k = self.numeric, len(self.numeric)
        try:  # JSON numbers and nulls (None -> NaN) in one C-level conversion
            raw = np.array([[r.get(c) for c in cols] for r in rows], dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raw = None
        if raw is None or raw.shape != (n, k):  # strings, objects, arrays, huge ints: one by one
            raw = np.array([[_to_float(r.get(c)) for c in cols] for r in rows], dtype=np.float64).reshape(n, k)
        mean, std = self._scale()
        with np.errstate(invalid="ignore", over="ignore"):
            num = ((raw - mean) / std).astype(np.float32)
        num[~np.isfinite(num)] = 0.0  # after the float32 cast, so a huge value cannot become inf
        return cat, num

    def _scale(self) -> tuple[np.ndarray, np.ndarray]:
        cached = getattr(self, "_sc", None)
        if cached is None:
            cached = (np.array([self.mean[c] for c in self.numeric], dtype=np.float64),
                      np.array([self.std[c] for c in self.numeric], dtype=np.float64))
            object.__setattr__(self, "_sc", cached)
        return cached

    def _lookups(self) -> list[dict[str, int]]:
        cached = getattr(self, "_lk", None)
        if cached is None:
            cached = [{v: i + 1 for i, v in enumerate(self.vocab[c])} for c in self.categorical]
            object.__setattr__(self, "_lk", cached)
        return cached

    def to_dict(self) -> dict[str, Any]:
        return {"categorical": self.categorical, "numeric": self.numeric,
                "vocab": self.vocab, "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessor":
        return cls(list(d["categorical"]), list(d["numeric"]), {k: list(v) for k, v in d["vocab"].items()},
                   {k: float(v) for k, v in d["mean"].items()}, {k: float(v) for k, v in d["std"].items()})
