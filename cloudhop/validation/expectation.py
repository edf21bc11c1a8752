"""One expectation as plain data, and the dtype check cloudhop adds to Great Expectations.

An `Expectation` is what Great Expectations calls an expectation configuration: its
snake-case type name, its kwargs and its meta. Plain data (no GX objects) so the same
suite can be shipped to other processes, run per partition and the results combined.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["Expectation", "dtype_matches", "DTYPE_CHECK", "KIND_DTYPES"]

# The custom dtype check registered with GX by cloudhop.validation._gx.
DTYPE_CHECK = "expect_column_dtype_to_be_kind"

# What each spec column type accepts, in words (for messages).
KIND_DTYPES = {
    "int": "an integer dtype (int8..int64, uint8..uint64, Int64)",
    "float": "a numeric dtype (float32, float64, or any integer dtype)",
    "bool": "a boolean dtype (bool, boolean)",
    "category": "a text or categorical dtype (str, string, object, category)",
    "string": "a text or categorical dtype (str, string, object, category)",
    "datetime": "a datetime dtype (datetime64 of any unit, with or without time zone)",
}


@dataclass(frozen=True)
class Expectation:
    """One expectation: GX snake-case type (e.g. 'expect_column_values_to_not_be_null'), kwargs, meta."""
    type: str
    kwargs: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def column(self) -> str | None:
        return self.kwargs.get("column")

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "kwargs": dict(self.kwargs), "meta": dict(self.meta)}


def dtype_matches(kind: str, dtype: Any) -> bool:
    """Whether a pandas dtype is acceptable for a spec column type (lenient where sane)."""
    t = pd.api.types
    if kind == "int":
        return t.is_integer_dtype(dtype)
    if kind == "float":
        return t.is_float_dtype(dtype) or t.is_integer_dtype(dtype)
    if kind == "bool":
        return t.is_bool_dtype(dtype) and not t.is_object_dtype(dtype)
    if kind in ("category", "string"):
        return isinstance(dtype, pd.CategoricalDtype) or t.is_string_dtype(dtype)
    if kind == "datetime":
        return t.is_datetime64_any_dtype(dtype)
    raise ValueError(f"unknown column type {kind!r}")
