"""What a served model's input must look like, checked before anything is predicted or logged.

A request holds every feature of the model (its preprocess.json: categorical and numeric
columns), with null for a missing value (the preprocessor imputes it, as in training), sent as
rows or as columns (`request.PredictBody`). Besides the features, it may carry the other columns
the model's spec declares (an ignored column, the time column): they are checked as plain values
and not used. Anything else is refused:

- a missing feature or an unknown column;
- a numeric feature that is not a number (a bool too, unless the spec says the column is bool);
- a categorical value that is not a string, a number or a bool;
- a string longer than `max_string` characters; a non-finite number.

`read` turns either form into one sequence of values per feature, and checks each column at
once (C-level type sets); only when something is wrong does it walk the values one by one to
name the first row and field at fault. No per-row dict is made for the columnar form, and the
rows form is transposed in C (`itemgetter`, `zip`).
"""
from __future__ import annotations

from itertools import repeat
from operator import itemgetter, ne
from typing import Any, Callable, Iterable, Mapping, Sequence

from cloudhop.serving.request import PredictBody, RequestError, json_type

__all__ = ["RowSchema", "MAX_STRING_CHARS", "Columns"]

MAX_STRING_CHARS = 256

Columns = dict[str, Sequence[Any]]  # feature -> one value per row, in the model's feature order

_NUMBER: frozenset[type] = frozenset({int, float, type(None)})
_BOOL_NUMBER: frozenset[type] = _NUMBER | {bool}
_CATEGORY: frozenset[type] = _BOOL_NUMBER | {str}
_EXPECTED = {_NUMBER: "a number or null", _BOOL_NUMBER: "a number, true/false or null",
             _CATEGORY: "a string, number, true/false or null"}


def _preview(v: Any) -> str:
    if isinstance(v, str):
        return f"string {v[:24]!r}{'…' if len(v) > 24 else ''}"
    return json_type(v)


def _row_at(i: int, column: str) -> str:
    return f"rows[{i}].{column}"


def _column_at(i: int, column: str) -> str:
    return f"columns.{column}[{i}]"


class RowSchema:
    """The input one model accepts (`read`), built from its features and, when known, its spec's columns."""

    def __init__(self, categorical: Sequence[str], numeric: Sequence[str], *, other: Iterable[str] = (),
                 bool_columns: Iterable[str] = (), max_string: int = MAX_STRING_CHARS):
        self.features = frozenset([*categorical, *numeric])
        self.other = frozenset(other) - self.features
        self.max_string = max_string
        bools = set(bool_columns)
        self._order = [*categorical, *numeric]
        self._allowed = {**{c: _CATEGORY for c in categorical},
                         **{c: _BOOL_NUMBER if c in bools else _NUMBER for c in numeric}}
        self._getter = itemgetter(*self._order)

    @classmethod
    def for_model(cls, categorical: Sequence[str], numeric: Sequence[str], spec: Mapping[str, Any] | None,
                  max_string: int = MAX_STRING_CHARS) -> "RowSchema":
        """The schema of a model with these features; `spec` (the manifest's copy, may be None for a
        version registered without one) names the other columns a client may send and the bool columns."""
        columns = (spec or {}).get("columns") or {}
        columns = columns if isinstance(columns, Mapping) else {}
        bools = [c for c, d in columns.items() if isinstance(d, Mapping) and d.get("type") == "bool"]
        return cls(categorical, numeric, other=[str(c) for c in columns], bool_columns=bools, max_string=max_string)

    # -- the checked read ----------------------------------------------------------------
    def read(self, body: PredictBody) -> Columns:
        """The features of every row, one sequence per feature; a 422 RequestError naming the first
        row and field that do not fit. Numbers are finite, as `request.parse_json` guarantees."""
        if body.columns is not None:
            self._check_column_names(body.columns, body.n)
            cols: Columns = {c: body.columns[c] for c in self._order}
            where = _column_at
        else:
            assert body.rows is not None
            cols = self._transpose(body.rows)
            where = _row_at
        for c, values in cols.items():
            self._check_values(c, values, self._allowed[c], where)
        return cols

    def check(self, rows: list[dict[str, Any]]) -> None:
        """Raise a 422 RequestError naming the first row and field of `rows` that do not fit."""
        self.read(PredictBody(len(rows), rows=rows))

    def _transpose(self, rows: list[dict[str, Any]]) -> Columns:
        # a row of as many keys as features, every feature among them, has exactly the features:
        # count the keys here, and let reading the features below fail on a missing one
        if any(map(ne, map(len, rows), repeat(len(self._order)))):
            self._check_row_names(rows)
        try:
            values = list(map(self._getter, rows))
        except KeyError:
            self._check_row_names(rows)
            raise  # not reached: a missing feature is named above
        if len(self._order) == 1:
            return {self._order[0]: values}
        return dict(zip(self._order, zip(*values)))

    def _check_values(self, column: str, values: Sequence[Any], allowed: frozenset[type],
                      where: Callable[[int, str], str]) -> None:
        kinds = set(map(type, values))
        if not kinds <= allowed:
            i, v = next((i, v) for i, v in enumerate(values) if type(v) not in allowed)
            expected = _EXPECTED.get(allowed, "a plain value")
            raise RequestError(422, f"{where(i, column)}: expected {expected}, got {_preview(v)}", row=i, field=column)
        if str in kinds:
            strings = values if len(kinds) == 1 else [v for v in values if type(v) is str]
            if max(map(len, strings)) > self.max_string:
                i, v = next((i, v) for i, v in enumerate(values) if type(v) is str and len(v) > self.max_string)
                raise RequestError(422, f"{where(i, column)}: string of {len(v)} characters; the limit is "
                                        f"{self.max_string}", row=i, field=column)

    # -- names: what is missing or unknown ------------------------------------------------
    def _missing_message(self, missing: list[str], where: str) -> str:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        return f"{where} lacks feature {missing[0]!r}{more}: send every feature, null where the value is missing"

    def _unknown_message(self, name: str, where: str) -> str:
        return f"{where} has unknown column {name[:64]!r}; this model takes {', '.join(self._order)}"

    def _check_column_names(self, columns: dict[str, list[Any]], n: int) -> None:
        missing = [c for c in self._order if c not in columns]
        if missing:
            raise RequestError(422, self._missing_message(missing, "columns"), field=missing[0])
        for k in columns.keys() - self.features:
            if k not in self.other:
                raise RequestError(422, self._unknown_message(k, "columns"), field=k[:64])
            self._check_values(k, columns[k], _CATEGORY, _column_at)

    def _check_row_names(self, rows: list[dict[str, Any]]) -> None:
        for i, row in enumerate(rows):
            if row.keys() == self.features:
                continue
            missing = [c for c in self._order if c not in row]
            if missing:
                raise RequestError(422, self._missing_message(missing, f"rows[{i}]"), row=i, field=missing[0])
            for k in row.keys() - self.features:
                if k not in self.other:
                    raise RequestError(422, self._unknown_message(k, f"rows[{i}]"), row=i, field=k[:64])
                v = row[k]
                if type(v) not in _CATEGORY:
                    raise RequestError(422, f"rows[{i}].{k}: expected a plain value, got {_preview(v)}", row=i, field=k)
                if type(v) is str and len(v) > self.max_string:
                    raise RequestError(422, f"rows[{i}].{k}: string of {len(v)} characters; the limit is "
                                            f"{self.max_string}", row=i, field=k)

    # -- for the serving benchmark's A/B only ---------------------------------------------
    def read_unchecked(self, body: PredictBody) -> Columns:
        """The features as sent, nothing checked (a missing one reads as nulls): what `read` costs is
        measured against this, and nothing else uses it."""
        if body.columns is not None:
            return {c: body.columns.get(c) or [None] * body.n for c in self._order}
        assert body.rows is not None
        return {c: [r.get(c) for r in body.rows] for c in self._order}
