"""The GX data gate: suites from the spec, user suites, readable failures."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cloudhop.data import flights_table
from cloudhop.spec import load_spec, parse_spec
from cloudhop.validation import (ValidationError, ValidationResult, build_expectations, load_suite, raise_for,
                                 validate)
from cloudhop.validation import SuiteError, dtype_matches

ROOT = Path(__file__).resolve().parents[2]
USER_SUITE = ROOT / "tests" / "data" / "flights_extra_suite.json"


@pytest.fixture(scope="module")
def spec():
    return load_spec(ROOT / "specs" / "flights.yaml")


@pytest.fixture(scope="module")
def flights():
    return flights_table().head(5000)


@pytest.fixture()
def small(flights):
    return flights.head(1000).copy()


def _failures(result: ValidationResult, column: str) -> list[str]:
    return [f.message for f in result.failures if f.column == column]


def test_good_flights_slice_passes(flights, spec):
    r = validate(flights, spec)
    assert r.success, r.failures
    assert r.row_count == 5000
    assert r.statistics["evaluated"] == len(build_expectations(spec)) == len(r.results)
    assert r.statistics["unsuccessful"] == 0 and r.failures == [] and r.table() == []
    raise_for(r)  # no error
    by_type = {(x["type"], x["column"]): x for x in r.results}
    assert by_type[("expect_column_values_to_not_be_null", "distance")]["observed"]["element_count"] == 5000
    assert by_type[("expect_column_dtype_to_be_kind", "carrier")]["observed"]["observed_value"] in ("str", "object")


def test_suite_from_spec(spec):
    exps = {(e.type, e.column): e for e in build_expectations(spec)}
    assert exps[("expect_column_values_to_be_in_set", "late")].kwargs["value_set"] == [0, 1]
    assert exps[("expect_column_values_to_be_in_set", "origin")].kwargs["value_set"] == ["EWR", "JFK", "LGA"]
    assert exps[("expect_column_unique_value_count_to_be_between", "late")].kwargs == {
        "column": "late", "min_value": 2, "max_value": 2}
    assert exps[("expect_column_values_to_be_between", "temp")].kwargs["mostly"] == 0.99
    assert ("expect_column_values_to_not_be_null", "distance") in exps          # nullable: false
    assert ("expect_column_values_to_not_be_null", "temp") not in exps          # nullable
    assert ("expect_column_proportion_of_non_null_values_to_be_between", "temp") in exps
    assert ("expect_column_values_to_not_be_null", "time_hour") in exps
    assert all(e.meta["source"] == "spec" for e in exps.values())
    json.dumps([e.to_dict() for e in exps.values()])  # plain data


def test_missing_column(small, spec):
    r = validate(small.drop(columns=["dest"]), spec)
    assert not r.success
    msgs = _failures(r, "dest")
    assert msgs[0] == "column 'dest' is missing from the table"
    assert all("dest" in m and "missing" in m for m in msgs)
    assert {f.column for f in r.failures} == {"dest"}


def test_wrong_type_is_a_readable_failure_not_a_crash(small, spec):
    small["distance"] = small["distance"].astype(str)
    r = validate(small, spec)
    msgs = _failures(r, "distance")
    assert any("has dtype str" in m and "spec type float" in m for m in msgs), msgs
    # the range check cannot run on text: reported as a failure that says so
    assert any("expect_column_values_to_be_between could not be checked" in m for m in msgs), msgs
    assert {f.column for f in r.failures} == {"distance"}


def test_int_with_missing_values_hint(small, spec):
    small["hour"] = small["hour"].astype("float64")
    (msg,) = _failures(validate(small, spec), "hour")
    assert "dtype float64" in msg and "declare the column float" in msg


def test_all_null_column_fails_one_value_passes(small, spec):
    small["temp"] = np.nan
    r = validate(small, spec)
    assert _failures(r, "temp") == ["column 'temp' is entirely null (1000 rows)"]
    small.loc[7, "temp"] = 50.0
    assert validate(small, spec).success


def test_out_of_range_values_with_counts(small, spec):
    small.loc[:11, "distance"] = -5
    small.loc[3, "distance"] = 99999
    r = validate(small, spec)
    (f,) = r.failures
    assert f.column == "distance" and f.observed["unexpected_count"] == 12
    assert f.message == "column 'distance': 12 of 1000 values (1.2%) outside [0, 6000], e.g. [-5, 99999]"
    (row,) = r.table()
    assert row == {"expectation": "expect_column_values_to_be_between", "column": "distance",
                   "expected": "values in [0, 6000]",
                   "observed": "unexpected_count=12; unexpected_percent=1.2%; e.g. [-5, 99999]"}
    checks = r.checks()  # every expectation, the failed one marked: the table a passing run shows too
    assert len(checks) == r.statistics["evaluated"] and [c["result"] for c in checks].count("FAILED") == 1
    (failed,) = [c for c in checks if c["result"] == "FAILED"]
    assert failed == {**row, "result": "FAILED"}
    assert {"expectation": "expect_column_values_to_be_in_set", "column": "origin", "result": "passed"}.items() \
        <= next(c for c in checks if c["column"] == "origin" and "in_set" in c["expectation"]).items()


def test_mostly_allows_a_few_out_of_range(small, spec):
    small["temp"] = small["temp"].fillna(20.0)
    small.loc[:4, "temp"] = 500.0       # 0.5% < 1% allowed
    assert validate(small, spec).success
    small.loc[:19, "temp"] = 500.0      # 2%
    (msg,) = _failures(validate(small, spec), "temp")
    assert "20 of 1000 values (2%) outside [-40, 130] (at most 1% allowed)" in msg


def test_unknown_category(small, spec):
    small.loc[:2, "origin"] = "XXX"
    (msg,) = _failures(validate(small, spec), "origin")
    assert msg == "column 'origin': 3 of 1000 values (0.3%) not in ['EWR', 'JFK', 'LGA'], e.g. ['XXX']"


def test_target_with_one_class(small, spec):
    small["late"] = 0
    r = validate(small, spec)
    assert [f.message for f in r.failures] == [
        "target column 'late' has 1 distinct value; a binary target needs exactly 2"]
    with pytest.raises(ValidationError, match="1 of 67 expectations failed on 1000 rows:\n  - target column 'late'"):
        raise_for(r)


def test_empty_table(flights, spec):
    r = validate(flights.head(0), spec)
    assert r.failures[0].message == "table has 0 rows; expected >= 1"


def test_categories_compare_in_the_columns_type():
    spec = parse_spec({
        "name": "t", "dataset": {"uri": "x.parquet"},
        "columns": {"t": {"type": "datetime", "role": "time"}, "code": {"type": "category", "categories": [1, 2]},
                    "flag": {"type": "int", "categories": ["0", "1"]}, "y": {"type": "float", "role": "target"}},
        "target": {"column": "y", "task": "regression"},
        "split": {"time_column": "t", "validation_start": "2020-01-02", "holdout_start": "2020-01-03"}})
    df = pd.DataFrame({"t": pd.date_range("2020-01-01", periods=4, freq="D", tz="UTC"),
                       "code": pd.Series(["1", "2", "2", "1"], dtype="category"),
                       "flag": pd.array([0, 1, None, 1], dtype="Int64"), "y": [1.0, 2.0, 3.0, 4.0]})
    assert validate(df, spec).success
    df["y"] = 1.0
    assert _failures(validate(df, spec), "y") == [
        "target column 'y' has 1 distinct value; a regression target needs at least 2"]


@pytest.mark.parametrize("kind,dtype,ok", [
    ("int", "int64", True), ("int", "Int64", True), ("int", "uint8", True), ("int", "float64", False),
    ("float", "float32", True), ("float", "int64", True), ("float", "str", False), ("float", "object", False),
    ("bool", "bool", True), ("bool", "boolean", True), ("bool", "int64", False),
    ("category", "str", True), ("category", "string", True), ("category", "object", True),
    ("category", "category", True), ("string", "int64", False),
    ("datetime", "datetime64[ns]", True), ("datetime", "datetime64[us]", True),
    ("datetime", "datetime64[ns, UTC]", True), ("datetime", "str", False),
])
def test_dtype_kinds(kind, dtype, ok):
    assert dtype_matches(kind, pd.Series([], dtype=dtype).dtype) is ok


def test_user_suite_adds_a_failing_expectation(flights, spec):
    r = validate(flights, spec, user_suite=str(USER_SUITE))
    assert r.statistics["evaluated"] == len(build_expectations(spec)) + 2
    (f,) = r.failures
    assert f.expectation == "expect_column_values_to_be_between" and f.column == "distance"
    assert f.observed["unexpected_count"] == (flights["distance"] > 2000).sum() > 0
    assert f.message.startswith(f"column 'distance': {f.observed['unexpected_count']} of 5000 values")
    assert "outside [0, 2000], e.g. [" in f.message
    assert all(v > 2000 for v in f.observed["partial_unexpected_list"])
    user = [x for x in r.results if x["meta"]["source"] == "user"]
    assert [x["meta"]["suite"] for x in user] == ["flights_extra", "flights_extra"]
    assert user[0]["success"]  # the regex one


def test_user_suite_from_the_spec_and_as_a_dict(flights, spec):
    via_spec = validate(flights, spec.model_copy(update={"expectations": str(USER_SUITE)}))
    assert [f.column for f in via_spec.failures] == ["distance"]
    suite = {"expectations": [{"expectation_type": "expect_column_values_to_be_in_set",
                               "kwargs": {"column": "carrier", "value_set": ["UA", "AA"]}}]}
    (f,) = validate(flights, spec, user_suite=suite).failures
    assert f.column == "carrier" and f.expectation == "expect_column_values_to_be_in_set"


@pytest.mark.parametrize("content,problem", [
    ("{not json", "is not valid JSON: Expecting property name"),
    ('{"name": "x"}', "expected a JSON object with an 'expectations' list"),
    ('{"expectations": [{"type": "expect_the_moon", "kwargs": {}}]}',
     "expectations[0] (expect_the_moon): unknown expectation type 'expect_the_moon'"),
    ('{"expectations": [{"type": "expect_column_values_to_be_between", "kwargs": {"column": "a", "mostly": 7}}]}',
     "expectations[0] (expect_column_values_to_be_between): invalid kwargs: mostly:"),
    ('{"expectations": [{"kwargs": {"column": "a"}}]}', "expectations[0] has no 'type'"),
])
def test_malformed_user_suite_is_a_clear_error(tmp_path, flights, spec, content, problem):
    path = tmp_path / "suite.json"
    path.write_text(content)
    with pytest.raises(ValidationError) as e:
        validate(flights, spec, user_suite=str(path))
    assert str(e.value).startswith(f"user expectation suite {path}")
    assert problem in str(e.value)


def test_missing_user_suite_file(tmp_path):
    with pytest.raises(SuiteError, match=r"user expectation suite .*nope.json does not exist"):
        load_suite(tmp_path / "nope.json")


def test_to_dict_is_json_and_summary_is_short(small, spec):
    small.loc[:3, "distance"] = -1
    small["late"] = 1
    r = validate(small, spec)
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["success"] is False and d["row_count"] == 1000
    assert len(d["results"]) == d["statistics"]["evaluated"] and len(d["failures"]) == 2
    assert r.summary() == {"success": False, "rows": 1000, "evaluated": d["statistics"]["evaluated"], "failed": 2,
                           "failed_expectations": ["expect_column_values_to_be_between(distance)",
                                                   "expect_column_unique_value_count_to_be_between(late)"]}
    assert [row["column"] for row in r.table()] == ["distance", "late"]


def test_not_a_pandas_frame():
    spec = load_spec(ROOT / "specs" / "flights.yaml")
    with pytest.raises(ValidationError, match="needs a pandas DataFrame, got builtins.dict"):
        validate({"a": [1]}, spec)  # type: ignore[arg-type]


def test_unlabelled_rows_pass_the_gate_unless_the_target_must_be_complete(small, spec):
    small["late"] = small["late"].astype("Int64")
    small.loc[[3, 30, 300], "late"] = pd.NA
    data = spec.model_dump(mode="json")
    data["columns"]["late"]["nullable"] = True
    assert validate(small, parse_spec(data)).success  # target.missing: drop (the default) drops them later
    data["target"]["missing"] = "fail"
    (msg,) = _failures(validate(small, parse_spec(data)), "late")
    assert "3" in msg and "null" in msg, msg
