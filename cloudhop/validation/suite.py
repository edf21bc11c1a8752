"""Expectation suites as plain data (cloudhop.validation.expectation): built from the spec,
or read from a user's GX suite."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cloudhop.spec import ColumnSpec, PipelineSpec
from cloudhop.validation.expectation import DTYPE_CHECK, Expectation
from cloudhop.validation.result import ValidationError

__all__ = ["SuiteError", "build_expectations", "load_suite", "spec_suite"]


class SuiteError(ValueError):
    """A user expectation suite that cannot be used (the message names the file and the problem)."""


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


def _value_set(col: ColumnSpec) -> list[Any]:
    """Allowed values in the column's own type, so the comparison is native and consistent.

    int columns compare as ints ("1" in the spec means 1); bool columns as bools;
    category/string columns as text, plus the native value for numbers written in the
    spec (a category column of ints [1, 2] matches 1 and "1").
    """
    out: list[Any] = []
    for v in col.categories or []:
        if col.type == "int":
            out.append(int(v) if isinstance(v, str) and v.strip().lstrip("-").isdigit() else v)
        elif col.type == "bool":
            s = str(v).strip().lower()
            out.append(True if s in ("1", "true") else False if s in ("0", "false") else v)
        else:
            out.append(str(v))
            if not isinstance(v, str):
                out.append(v)
    seen: list[Any] = []
    for v in out:  # dedupe, keep order (1 and True hash alike, so no set())
        if not any(type(v) is type(s) and v == s for s in seen):
            seen.append(v)
    return seen


def build_expectations(spec: PipelineSpec) -> list[Expectation]:
    """The suite the spec implies, grouped by column, table checks first.

    - the table has at least one row; every spec column exists and has a dtype its type allows;
    - nullable: false (and a target with `missing: fail`) -> no nulls; nullable columns -> not entirely null;
    - min/max -> values between (with the column's `mostly`); categories -> values in set (`mostly`);
    - the target has 2 distinct values (binary) or at least 2 (regression);
    - the time column has no nulls.
    """
    E = Expectation
    out = [E("expect_table_row_count_to_be_between", {"min_value": 1, "max_value": None},
             {"source": "spec", "check": "rows"})]
    target, time_col = spec.target.column, spec.split.time_column
    for name, col in spec.columns.items():
        m = {"source": "spec"}
        out.append(E("expect_column_to_exist", {"column": name}, {**m, "check": "exists"}))
        out.append(E(DTYPE_CHECK, {"column": name, "kind": col.type}, {**m, "check": "type"}))
        if not col.nullable or name == time_col or (name == target and spec.target.missing == "fail"):
            out.append(E("expect_column_values_to_not_be_null", {"column": name}, {**m, "check": "not_null"}))
        else:
            out.append(E("expect_column_proportion_of_non_null_values_to_be_between",
                         {"column": name, "min_value": 0, "max_value": None, "strict_min": True},
                         {**m, "check": "not_all_null"}))
        if col.min is not None or col.max is not None:
            kw: dict[str, Any] = {"column": name,
                                  "min_value": None if col.min is None else _num(col.min),
                                  "max_value": None if col.max is None else _num(col.max)}
            if col.mostly < 1:
                kw["mostly"] = col.mostly
            out.append(E("expect_column_values_to_be_between", kw, {**m, "check": "range"}))
        if col.categories is not None:
            kw = {"column": name, "value_set": _value_set(col)}
            if col.mostly < 1:
                kw["mostly"] = col.mostly
            out.append(E("expect_column_values_to_be_in_set", kw, {**m, "check": "categories"}))
        if name == target:
            hi = 2 if spec.target.task == "binary" else None
            out.append(E("expect_column_unique_value_count_to_be_between",
                         {"column": name, "min_value": 2, "max_value": hi},
                         {**m, "check": "target_classes", "task": spec.target.task}))
    return out


def load_suite(source: str | Path | dict[str, Any]) -> list[Expectation]:
    """Read a user suite: a path to a GX 1.x ExpectationSuite JSON file, or the same as a dict.

    Each entry needs `type` (the older `expectation_type` is accepted) and `kwargs`.
    Types and kwargs are checked against Great Expectations here, so a bad suite fails
    before any data is read. Raises SuiteError naming the file and the entry.
    """
    if isinstance(source, dict):
        where, data = "<dict>", source
    else:
        where = str(source)
        p = Path(source)
        if not p.is_file():
            raise SuiteError(f"user expectation suite {where} does not exist")
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise SuiteError(f"user expectation suite {where} is not valid JSON: {e}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise SuiteError(f"user expectation suite {where} cannot be read: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("expectations"), list):
        raise SuiteError(f"user expectation suite {where}: expected a JSON object with an "
                         f"'expectations' list (GX 1.x ExpectationSuite format)")
    suite_name = data.get("name") or data.get("expectation_suite_name") or where
    out = []
    for i, item in enumerate(data["expectations"]):
        if not isinstance(item, dict):
            raise SuiteError(f"user expectation suite {where}: expectations[{i}] is not an object")
        type_ = item.get("type", item.get("expectation_type"))
        if not isinstance(type_, str) or not type_:
            raise SuiteError(f"user expectation suite {where}: expectations[{i}] has no 'type'")
        kwargs = item.get("kwargs", {})
        meta = item.get("meta") or {}
        if not isinstance(kwargs, dict) or not isinstance(meta, dict):
            raise SuiteError(f"user expectation suite {where}: expectations[{i}] ({type_}): "
                             f"'kwargs' and 'meta' must be objects")
        out.append(Expectation(type_, dict(kwargs), {**meta, "source": "user", "suite": str(suite_name)}))
    from cloudhop.validation._gx import check_expectation  # checks types and kwargs against GX

    for i, exp in enumerate(out):
        problem = check_expectation(exp)
        if problem:
            raise SuiteError(f"user expectation suite {where}: expectations[{i}] ({exp.type}): {problem}")
    return out


def spec_suite(spec: PipelineSpec, user_suite: str | Path | dict[str, Any] | None = None) -> list[Expectation]:
    """The spec's suite plus the user suite (`user_suite`, else the spec's `expectations` file)."""
    expectations = build_expectations(spec)
    source = user_suite if user_suite is not None else spec.expectations
    if source is not None:
        try:
            expectations += load_suite(source)
        except SuiteError as e:
            raise ValidationError(str(e)) from None
    return expectations
