"""What a served model's rows must look like, checked before anything is predicted or logged.

A row holds every feature of the model (its preprocess.json: categorical and numeric columns),
with null for a missing value (the preprocessor imputes it, as in training). Besides the
features, a row may carry the other columns the model's spec declares (an ignored column, the
time column): they are checked as plain values and not used. Anything else is refused:

- a missing feature or an unknown column;
- a numeric feature that is not a number (a bool too, unless the spec says the column is bool);
- a categorical value that is not a string, a number or a bool;
- a string longer than `max_string` characters; a non-finite number.

The check runs per column over all rows (C-level type sets), and only when something is
wrong walks the rows one by one to name the first row and field at fault.
"""
from __future__ import annotations

import math
from itertools import chain, repeat
from operator import itemgetter, ne
from typing import Any, Iterable, Mapping, Sequence

from cloudhop.serving.request import RequestError, json_type

__all__ = ["RowSchema", "MAX_STRING_CHARS"]

MAX_STRING_CHARS = 256

_NUMBER: frozenset[type] = frozenset({int, float, type(None)})
_BOOL_NUMBER: frozenset[type] = _NUMBER | {bool}
_CATEGORY: frozenset[type] = _BOOL_NUMBER | {str}
_EXPECTED = {_NUMBER: "a number or null", _BOOL_NUMBER: "a number, true/false or null",
             _CATEGORY: "a string, number, true/false or null"}


def _preview(v: Any) -> str:
    if isinstance(v, str):
        return f"string {v[:24]!r}{'…' if len(v) > 24 else ''}"
    return json_type(v)


class _Group:
    """Columns that take the same JSON types, read from every row at once."""

    def __init__(self, columns: Sequence[str], allowed: frozenset[type]):
        self.columns, self.allowed = tuple(columns), allowed
        getter = itemgetter(*self.columns)
        self.values = ((lambda rows: list(map(getter, rows))) if len(self.columns) == 1
                       else (lambda rows: list(chain.from_iterable(map(getter, rows)))))


class RowSchema:
    """The rows one model accepts (`check`), built from its features and, when known, its spec's columns."""

    def __init__(self, categorical: Sequence[str], numeric: Sequence[str], *, other: Iterable[str] = (),
                 bool_columns: Iterable[str] = (), max_string: int = MAX_STRING_CHARS):
        self.features = frozenset([*categorical, *numeric])
        self.other = frozenset(other) - self.features
        self.max_string = max_string
        bools = set(bool_columns)
        groups = [(list(categorical), _CATEGORY), ([c for c in numeric if c not in bools], _NUMBER),
                  ([c for c in numeric if c in bools], _BOOL_NUMBER)]
        self._groups = [_Group(cols, allowed) for cols, allowed in groups if cols]
        self._order = [*categorical, *numeric]

    @classmethod
    def for_model(cls, categorical: Sequence[str], numeric: Sequence[str], spec: Mapping[str, Any] | None,
                  max_string: int = MAX_STRING_CHARS) -> "RowSchema":
        """The schema of a model with these features; `spec` (the manifest's copy, may be None for a
        version registered without one) names the other columns a client may send and the bool columns."""
        columns = (spec or {}).get("columns") or {}
        columns = columns if isinstance(columns, Mapping) else {}
        bools = [c for c, d in columns.items() if isinstance(d, Mapping) and d.get("type") == "bool"]
        return cls(categorical, numeric, other=[str(c) for c in columns], bool_columns=bools, max_string=max_string)

    def check(self, rows: list[dict[str, Any]]) -> None:
        """Raise a 422 RequestError naming the first row and field that do not fit.

        Numbers are taken as finite, as `request.parse_json` guarantees for a parsed body."""
        # a row of as many keys as features, every feature among them, has exactly the features:
        # count the keys here, and let reading the features below fail on a missing one
        if any(map(ne, map(len, rows), repeat(len(self.features)))):
            self._check_all_columns(rows)
        for g in self._groups:
            try:
                values = g.values(rows)
            except KeyError:
                self._check_all_columns(rows)
                raise  # not reached: a missing feature is named above
            kinds = set(map(type, values))
            if not kinds <= g.allowed:
                self._find(rows, g)
            if str in kinds:
                strings = values if len(kinds) == 1 else [v for v in values if type(v) is str]
                if max(map(len, strings)) > self.max_string:
                    self._find(rows, g)

    def _check_all_columns(self, rows: list[dict[str, Any]]) -> None:
        for i, row in enumerate(rows):
            if row.keys() != self.features:
                self._check_columns(i, row)

    def _check_columns(self, i: int, row: dict[str, Any]) -> None:
        missing = [c for c in self._order if c not in row]
        if missing:
            raise RequestError(422, f"rows[{i}] lacks feature {missing[0]!r}"
                                    f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}: "
                                    f"send every feature, null where the value is missing", row=i, field=missing[0])
        for k in row.keys() - self.features:
            if k not in self.other:
                name = k[:64]
                raise RequestError(422, f"rows[{i}] has unknown column {name!r}; this model takes "
                                        f"{', '.join(self._order)}", row=i, field=name)
            v = row[k]
            if v is not None and not isinstance(v, (bool, int, float, str)):
                raise RequestError(422, f"rows[{i}].{k}: expected a plain value, got {_preview(v)}", row=i, field=k)
            self._check_value(i, k, v)

    def _check_value(self, i: int, column: str, v: Any) -> None:
        if type(v) is str and len(v) > self.max_string:
            raise RequestError(422, f"rows[{i}].{column}: string of {len(v)} characters; the limit is "
                                    f"{self.max_string}", row=i, field=column)
        if type(v) is float and not math.isfinite(v):
            raise RequestError(422, f"rows[{i}].{column}: {v} is not a finite number", row=i, field=column)

    def _find(self, rows: list[dict[str, Any]], g: _Group) -> None:
        for i, row in enumerate(rows):
            for c in g.columns:
                v = row[c]
                if type(v) not in g.allowed:
                    raise RequestError(422, f"rows[{i}].{c}: expected {_EXPECTED[g.allowed]}, got {_preview(v)}",
                                       row=i, field=c)
                self._check_value(i, c, v)
