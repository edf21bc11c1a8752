"""Partitioned validation gives Great Expectations' own figures: every expectation type that
combines, run part by part (each column's checks on that column alone, no batch fingerprint)
and combined, equals one GX run on the whole pandas frame: counts, percentages, examples,
errors and verdicts. The flights suite plus the extra user suite likewise."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cloudhop.data import LocalExecutor, load_dataset, open_dataset, open_parquet
from cloudhop.spec import load_spec
from cloudhop.validation import DTYPE_CHECK, ValidationResult, run_expectations, validate, validate_table
from cloudhop.validation import Expectation as E
from cloudhop.validation._gx import run_by_column
from cloudhop.validation._gx import run_expectations as one_batch
from cloudhop.validation.partitioned import COMBINABLE, validate_partitions

ROOT = Path(__file__).resolve().parents[2]
EXTRA_SUITE = ROOT / "tests" / "data" / "flights_extra_suite.json"

EVERY_TYPE = [
    E("expect_table_row_count_to_be_between", {"min_value": 1, "max_value": 1000}),
    E("expect_table_row_count_to_equal", {"value": 1800}),
    E("expect_table_column_count_to_be_between", {"min_value": 1, "max_value": 5}),
    E("expect_table_column_count_to_equal", {"value": 6}),
    E("expect_table_columns_to_match_set", {"column_set": ["t", "k", "x", "s", "d", "j"]}),
    E("expect_table_columns_to_match_ordered_list", {"column_list": ["t", "k", "s", "x", "d", "j"]}),
    E("expect_column_to_exist", {"column": "nope"}),
    E("expect_column_to_exist", {"column": "k", "column_index": 1}),                         # its position too
    E(DTYPE_CHECK, {"column": "k", "kind": "int"}),
    E(DTYPE_CHECK, {"column": "s", "kind": "float"}),
    E("expect_column_values_to_not_be_null", {"column": "x"}),
    E("expect_column_values_to_be_null", {"column": "x", "mostly": 0.001}),
    E("expect_column_values_to_be_between", {"column": "x", "min_value": -3, "max_value": 3, "mostly": 0.95}),
    E("expect_column_values_to_be_between", {"column": "t", "min_value": "2024-01-02", "strict_min": True}),
    E("expect_column_values_to_be_in_set", {"column": "s", "value_set": ["a", "b", "c"]}),
    E("expect_column_values_to_not_be_in_set", {"column": "s", "value_set": ["zz"]}),
    E("expect_column_values_to_match_regex", {"column": "s", "regex": "^[a-c]$"}),
    E("expect_column_values_to_match_regex", {"column": "k", "regex": "^1$"}),             # GX raises: ints
    E("expect_column_values_to_not_match_regex", {"column": "s", "regex": "long"}),
    E("expect_column_values_to_match_regex_list", {"column": "s", "regex_list": ["^a", "^b"], "match_on": "any"}),
    E("expect_column_values_to_not_match_regex_list", {"column": "s", "regex_list": ["z", "very"]}),
    E("expect_column_values_to_match_like_pattern", {"column": "s", "like_pattern": "a%"}),  # SQL only: GX raises
    E("expect_column_values_to_not_match_like_pattern", {"column": "s", "like_pattern": "z%"}),
    E("expect_column_values_to_match_like_pattern_list", {"column": "s", "like_pattern_list": ["a%"]}),
    E("expect_column_values_to_not_match_like_pattern_list", {"column": "s", "like_pattern_list": ["z%"]}),
    E("expect_column_value_lengths_to_be_between", {"column": "s", "min_value": 1, "max_value": 2}),
    E("expect_column_value_lengths_to_equal", {"column": "s", "value": 1, "mostly": 0.5}),
    E("expect_column_values_to_match_strftime_format", {"column": "d", "strftime_format": "%Y-%m-%d"}),
    E("expect_column_values_to_be_dateutil_parseable", {"column": "d"}),
    E("expect_column_values_to_be_json_parseable", {"column": "j"}),
    E("expect_column_values_to_match_json_schema", {"column": "j",
                                                    "json_schema": {"type": "object", "required": ["a"]}}),
    E("expect_column_values_to_be_in_set", {"column": "nope", "value_set": [1]}),            # GX: no such column
    E("expect_column_min_to_be_between", {"column": "x", "min_value": -10}),
    E("expect_column_max_to_be_between", {"column": "t", "max_value": "2024-03-01"}),
    E("expect_column_unique_value_count_to_be_between", {"column": "s", "min_value": 1, "max_value": 3}),
    E("expect_column_proportion_of_unique_values_to_be_between", {"column": "k", "max_value": 0.5}),
    E("expect_column_proportion_of_non_null_values_to_be_between", {"column": "x", "min_value": 0.999}),
]


def _strip(results):
    return [{k: v for k, v in r.items() if k != "partitions"} for r in results]


def _part(i: int, n: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(i)
    df = pd.DataFrame({
        "t": pd.date_range("2024-01-01", periods=n, freq="h") + pd.Timedelta(hours=i * n),
        "k": rng.integers(0, 5, n),
        "x": rng.normal(0, 1, n).clip(-2.9, 2.9),
        "s": rng.choice(["a", "b", "c"], n),
        "d": [f"2024-{1 + j % 12:02d}-{1 + j % 28:02d}" for j in range(n)],
        "j": [f'{{"a": {j}}}' for j in range(n)],
    })
    if i == 0:
        df.loc[10:34, "x"] = -50.0                  # more than 20 of one bad value first
        df.loc[40:41, "d"] = "2024/01/02"
    if i == 1:
        df.loc[3, "x"] = 99999.0
        df.loc[7:9, "s"] = "zz"
        df.loc[20:22, "d"] = "not a date"
        df.loc[30, "j"] = '{"b": 1}'
    if i == 2:
        df.loc[0:3, "x"] = np.nan
        df.loc[50:60, "s"] = "a-very-long-value"
        df.loc[70:71, "j"] = "{broken"
    return df


@pytest.fixture(scope="module")
def parted(tmp_path_factory):
    d = tmp_path_factory.mktemp("every-type")
    frames = [_part(i) for i in range(3)]
    for i, df in enumerate(frames):
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), d / f"p{i}.parquet", row_group_size=300)
    return d, pd.concat(frames, ignore_index=True)


def test_the_suite_here_covers_every_type_that_combines():
    assert {e.type for e in EVERY_TYPE} == COMBINABLE


def test_every_type_combined_equals_gx_on_the_whole_frame(parted):
    d, whole = parted
    ds = open_dataset(str(d), partition_bytes=1)
    assert len(ds.parts) == 6
    got = validate_partitions(ds.parts, EVERY_TYPE)
    want = ValidationResult.from_results(run_expectations(whole, EVERY_TYPE), row_count=len(whole))
    assert _strip(got.results) == want.results
    assert got.statistics == want.statistics and got.success is want.success is False
    # the figures are real: failures with counts and examples, and GX's errors, all compared above
    by = {(r["type"], r["column"], str(r["kwargs"])): r for r in got.results}
    failed = {t for (t, _, _), r in by.items() if not r["success"]}
    assert len(failed) >= 20
    between = next(r for (t, c, _), r in by.items() if t == "expect_column_values_to_be_between" and c == "x")
    assert between["observed"]["unexpected_count"] == 26
    assert between["observed"]["partial_unexpected_list"] == [-50.0]   # the first 20 bad values are all -50
    json_ok = next(r for (t, _, _), r in by.items() if t == "expect_column_values_to_be_json_parseable")
    assert json_ok["observed"]["unexpected_count"] == 2
    assert [p["first_row"] for p in json_ok["partitions"]] == [1200]
    errors = [r for r in got.results if r["error"]]
    assert {r["type"] for r in errors} >= {"expect_column_values_to_match_like_pattern",
                                           "expect_column_values_to_be_in_set"}


def test_column_by_column_equals_one_gx_batch_on_the_same_frame(parted):
    """What each partition runs (a batch per column, no fingerprint) against GX's own batch.validate,
    result by result, examples with repeats and errors included."""
    _, whole = parted
    for df in (whole, _part(1), whole.iloc[:0]):
        assert run_by_column(df, EVERY_TYPE, distinct_examples=False) == \
            one_batch(df, EVERY_TYPE, distinct_examples=False)
    exists = [r for r in run_by_column(whole, EVERY_TYPE) if r["type"] == "expect_column_to_exist"]
    assert [r["success"] for r in exists] == [False, True]


def test_part_by_part_on_a_small_and_an_odd_split(parted):
    """Splits at other row counts (one part; parts of 600) give the same figures too."""
    d, whole = parted
    want = run_expectations(whole, EVERY_TYPE)
    assert _strip(validate_partitions(open_dataset(str(d)).parts, EVERY_TYPE).results) == want
    one = open_dataset(str(d / "p1.parquet"))
    assert _strip(validate_partitions(one.parts, EVERY_TYPE).results) == run_expectations(_part(1), EVERY_TYPE)


@pytest.fixture(scope="module")
def flights_parts(tmp_path_factory):
    """9,000 flights in 3 files; file 1 has bad carriers, negative distances and unknown origins."""
    from cloudhop.data import flights_table

    d = tmp_path_factory.mktemp("flights-parts")
    df = flights_table().head(9000).copy()
    df.loc[3100:3130, "carrier"] = "X9Z"
    df.loc[3500:3510, "distance"] = -1.0
    df.loc[4000:4004, "origin"] = "XXX"
    df.loc[10:12, "temp"] = None
    for i in range(3):
        pq.write_table(pa.Table.from_pandas(df.iloc[i * 3000:(i + 1) * 3000], preserve_index=False),
                       d / f"part-{i}.parquet", row_group_size=1000)
    spec = load_spec(ROOT / "specs" / "flights.yaml").model_copy(deep=True)
    spec.dataset.uri, spec.dataset.engine = str(d), "dask"
    return spec


def test_flights_suite_and_extra_suite_same_as_pandas(flights_parts):
    spec = flights_parts
    whole = load_dataset(spec)
    want = validate(whole, spec, EXTRA_SUITE)
    ds = open_parquet(spec, partition_bytes=1)
    assert len(ds.parts) == 9
    got = validate_table(ds, spec, EXTRA_SUITE, executor=LocalExecutor())
    assert _strip(got.results) == want.results and got.statistics == want.statistics
    assert not want.success
    failed = {(f.expectation, f.column) for f in want.failures}
    assert failed >= {("expect_column_values_to_match_regex", "carrier"),
                      ("expect_column_values_to_be_between", "distance"),
                      ("expect_column_values_to_be_in_set", "origin")}
    types = {r["type"] for r in got.results}
    assert types == {"expect_table_row_count_to_be_between", "expect_column_to_exist", DTYPE_CHECK,
                     "expect_column_values_to_not_be_null", "expect_column_proportion_of_non_null_values_to_be_between",
                     "expect_column_values_to_be_between", "expect_column_values_to_be_in_set",
                     "expect_column_unique_value_count_to_be_between", "expect_column_values_to_match_regex"}
    regex = next(r for r in got.results if r["type"] == "expect_column_values_to_match_regex")
    assert regex["observed"]["unexpected_count"] == 31 and regex["observed"]["partial_unexpected_list"] == ["X9Z"]
