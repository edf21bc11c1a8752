"""Feature preprocessing fitted on the training window and shipped with the model.

Imports neither torch nor onnxruntime: the inference server, the evaluator and the
trainer all use this one implementation, so offline and served predictions agree.

Categoricals map to integer ids (0 is "unseen or missing"); numerics are
standardised with the training window's mean and std (missing -> the mean, i.e. 0).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["Preprocessor", "category_key", "category_keys", "FEW_ROWS"]


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


_LOOKUP_TYPES = frozenset({str, int, float, type(None)})  # what `_lookup` maps without category_key
FEW_ROWS = 4  # up to this many rows, transform_columns works value by value


def _lookup(vocab: list[str]) -> dict[Any, int]:
    """Category key -> id (1-based), plus each key's number form: int 5 for "5" and float 2.5 for
    "2.5", so a JSON number finds its id without `category_key` (5.0 equals 5 as a dict key, and
    category_key(5.0) is "5"). Only number forms that `category_key` would write back as the same
    string are added, so no two keys can claim one number. Bools are not numbers here (True == 1):
    a column holding one takes the slow path."""
    out: dict[Any, int] = {k: i + 1 for i, k in enumerate(vocab)}
    for k, i in list(out.items()):
        number: int | float
        try:
            number = int(k)
        except ValueError:
            try:
                number = float(k)
            except ValueError:
                continue
        if category_key(number) == k:  # the number that category_key writes back as this key
            out[number] = i
    return out


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
        """`transform` for a list of JSON objects (a missing key reads as null)."""
        rows = rows if isinstance(rows, list) else list(rows)
        return self.transform_columns({c: [r.get(c) for r in rows] for c in (*self.categorical, *self.numeric)},
                                      len(rows))

    def transform_columns(self, columns: Mapping[str, Sequence[Any]], n: int) -> tuple[np.ndarray, np.ndarray]:
        """The server's path: `n` rows as one sequence of JSON values per column (a missing column reads
        as nulls); the same result as `transform` on a frame of those values.

        A categorical column of strings, numbers and nulls maps through one dict lookup per value
        (`_lookups` also holds each key's number form, so 5, 5.0 and "5" find the same id); a column
        that holds a bool or anything else takes `category_key` value by value. The numeric columns
        convert in one C-level call when they hold only numbers and nulls. A few rows (the common
        one-row request) skip numpy's per-call cost and go value by value (`_transform_few`)."""
        if n <= FEW_ROWS:
            return self._transform_few(columns, n)
        cat = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for j, (c, lk) in enumerate(zip(self.categorical, self._lookups())):
            values = columns.get(c)
            if values is None:
                continue
            if set(map(type, values)) <= _LOOKUP_TYPES:
                cat[:, j] = list(map(lk.get, values, repeat(0)))
            else:
                cat[:, j] = [0 if v is None else lk.get(category_key(v), 0) for v in values]
        k = len(self.numeric)
        cols = [columns.get(c) or [None] * n for c in self.numeric]
        try:  # JSON numbers and nulls (None -> NaN) in one C-level conversion
            raw = np.array(cols, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raw = None
        if raw is None or raw.shape != (k, n):  # strings, objects, arrays, huge ints: one by one
            raw = np.array([[_to_float(v) for v in col] for col in cols], dtype=np.float64).reshape(k, n)
        mean, std = self._scale()
        with np.errstate(invalid="ignore", over="ignore"):
            num = ((raw.T - mean) / std).astype(np.float32)
        num[~np.isfinite(num)] = 0.0  # after the float32 cast, so a huge value cannot become inf
        return cat, num

    def _transform_few(self, columns: Mapping[str, Sequence[Any]], n: int) -> tuple[np.ndarray, np.ndarray]:
        """transform_columns for a few rows, in plain Python: the same ids and the same float32 values."""
        cats = []
        for c, lk in zip(self.categorical, self._lookups()):
            values = columns.get(c) or (None,) * n
            cats.append([0 if v is None else lk.get(v, 0) if type(v) in _LOOKUP_TYPES
                         else lk.get(category_key(v), 0) for v in values])
        nums = []
        for c, mean, std in zip(self.numeric, *self._scale()):
            values = columns.get(c) or (None,) * n
            nums.append([0.0 if v is None else (_to_float(v) - mean) / std for v in values])
        cat = np.array(list(zip(*cats)), dtype=np.int64).reshape(n, len(self.categorical))
        with np.errstate(invalid="ignore", over="ignore"):
            num = np.array(list(zip(*nums)), dtype=np.float32).reshape(n, len(self.numeric))
        if not np.isfinite(num).all():  # NaN from an unusable value, or one that float32 cannot hold
            num[~np.isfinite(num)] = 0.0
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
            cached = [_lookup(self.vocab[c]) for c in self.categorical]
            object.__setattr__(self, "_lk", cached)
        return cached

    def to_dict(self) -> dict[str, Any]:
        return {"categorical": self.categorical, "numeric": self.numeric,
                "vocab": self.vocab, "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessor":
        return cls(list(d["categorical"]), list(d["numeric"]), {k: list(v) for k, v in d["vocab"].items()},
                   {k: float(v) for k, v in d["mean"].items()}, {k: float(v) for k, v in d["std"].items()})
