"""Validation of data too big for one pandas frame: the suite runs on each partition (a
pandas batch, on a Dask cluster or one after another in this process) and the results are
combined exactly, giving the figures and the verdict of one Great Expectations run on the
whole table.

    result = validate_partitioned(table.parts, spec, executor=ex)   # a ValidationResult

On a partition, GX runs each column's expectations on a frame of that column alone, loaded
straight into its pandas execution engine (`_gx.run_by_column`): an expectation of one column
depends on that column only, so the results are those of GX on the whole partition, without
the batch fingerprint and the copies of the whole frame that cost more than the checks.

How results combine (Great Expectations' own `_validate` then turns the combined metrics
into the result, so percentages and `mostly` are worked out as GX works them out):
- row counts, null counts, unexpected counts: summed;
- examples of unexpected values: each partition's first 20 (repeats kept), joined in row
  order, first 20 kept: what GX picks on the whole table;
- min / max: of the partitions' min / max; non-null share: from summed non-null counts;
- distinct-value counts and unique proportions: from the union of each partition's
  distinct values (held in memory: cheap for targets and categories);
- column present, dtype: must hold in every partition.
Expectations that cannot be combined exactly (means, medians, quantiles, value uniqueness,
ordering, z-scores, row conditions, ...) are refused before any data is read.

Each result dict also has `partitions`: the ones with unexpected values, a missing column,
another dtype or an error, each with its file, row range, rows and unexpected count; a
failure's message names them.

A partition is a cloudhop.data Part (`read()` and `describe()`: `file`, `first_row`, `rows`),
e.g. cloudhop.data.parquet.Partition; the parts run on a cloudhop.data Executor.
"""
from __future__ import annotations

import gc
from pathlib import Path
from typing import Any, Sequence

from cloudhop.data.executor import Executor, run_parts
from cloudhop.data.table import Part
from cloudhop.spec import PipelineSpec
from cloudhop.validation.expectation import DTYPE_CHECK, Expectation
from cloudhop.validation.result import ValidationError, ValidationResult
from cloudhop.validation.suite import spec_suite

__all__ = ["validate_partitioned", "validate_partitions", "suite_for", "check_partition", "partition_needs",
           "combine", "check_combinable", "COMBINABLE"]

_TABLE = {"expect_table_row_count_to_be_between", "expect_table_row_count_to_equal",
          "expect_table_column_count_to_be_between", "expect_table_column_count_to_equal",
          "expect_table_columns_to_match_set", "expect_table_columns_to_match_ordered_list",
          "expect_column_to_exist", DTYPE_CHECK}
# Column map expectations whose verdict on a row depends on that row only.
_ROW_LOCAL = {"expect_column_values_to_not_be_null", "expect_column_values_to_be_null",
              "expect_column_values_to_be_between", "expect_column_values_to_be_in_set",
              "expect_column_values_to_not_be_in_set", "expect_column_values_to_match_regex",
              "expect_column_values_to_not_match_regex", "expect_column_values_to_match_regex_list",
              "expect_column_values_to_not_match_regex_list", "expect_column_values_to_match_like_pattern",
              "expect_column_values_to_not_match_like_pattern", "expect_column_values_to_match_like_pattern_list",
              "expect_column_values_to_not_match_like_pattern_list", "expect_column_value_lengths_to_be_between",
              "expect_column_value_lengths_to_equal", "expect_column_values_to_match_strftime_format",
              "expect_column_values_to_be_dateutil_parseable", "expect_column_values_to_be_json_parseable",
              "expect_column_values_to_match_json_schema"}
_MINMAX = {"expect_column_min_to_be_between": "min", "expect_column_max_to_be_between": "max"}
_DISTINCT = {"expect_column_unique_value_count_to_be_between",
             "expect_column_proportion_of_unique_values_to_be_between"}
_NONNULL_SHARE = "expect_column_proportion_of_non_null_values_to_be_between"
COMBINABLE = frozenset(_TABLE | _ROW_LOCAL | set(_MINMAX) | _DISTINCT | {_NONNULL_SHARE})
_PARTITION_LOCAL = {"expect_column_to_exist", DTYPE_CHECK, "expect_table_columns_to_match_set",
                    "expect_table_columns_to_match_ordered_list", "expect_table_column_count_to_equal",
                    "expect_table_column_count_to_be_between"}


def check_combinable(expectations: Sequence[Expectation]) -> None:
    """Raise ValidationError naming every expectation whose partition results cannot be combined exactly."""
    bad = []
    for e in expectations:
        if e.type not in COMBINABLE:
            bad.append(f"{e.type}({e.column})" if e.column else e.type)
        elif e.kwargs.get("row_condition"):
            bad.append(f"{e.type}({e.column}) with a row_condition")
    if bad:
        raise ValidationError(
            f"cannot validate partition by partition: {', '.join(bad)} cannot be combined exactly across "
            f"partitions; use the pandas engine for this suite, or only: {', '.join(sorted(COMBINABLE))}")


def suite_for(spec: PipelineSpec, user_suite: str | Path | dict[str, Any] | None = None) -> list[Expectation]:
    """The spec's suite plus the user suite (as `validate` builds it), checked to combine exactly."""
    expectations = spec_suite(spec, user_suite)
    check_combinable(expectations)
    return expectations


def validate_partitioned(partitions: Sequence[Part], spec: PipelineSpec,
                         user_suite: str | Path | dict[str, Any] | None = None, *,
                         executor: Executor | None = None) -> ValidationResult:
    """`validate(df, spec, user_suite)` for a partitioned dataset (see the module docstring)."""
    return validate_partitions(partitions, suite_for(spec, user_suite), executor=executor)


def validate_partitions(partitions: Sequence[Part], expectations: list[Expectation], *,
                        executor: Executor | None = None) -> ValidationResult:
    """Run `expectations` on every partition (on `executor`, else in this process) and combine."""
    check_combinable(expectations)
    if not partitions:
        raise ValidationError("no partitions to validate: the dataset holds no rows")
    summaries = run_parts(executor, check_partition, list(partitions), expectations=expectations,
                          **partition_needs(expectations))
    return combine(summaries, expectations)


def partition_needs(expectations: list[Expectation]) -> dict[str, list[str]]:
    """check_partition's extra arguments: columns whose distinct values, or min and max, are needed."""
    return {"distinct": sorted({e.column for e in expectations if e.type in _DISTINCT and e.column}),
            "minmax": sorted({e.column for e in expectations if e.type in _MINMAX and e.column})}


def combine(summaries: list[dict[str, Any]], expectations: list[Expectation]) -> ValidationResult:
    """One ValidationResult from every partition's check_partition summary, in row order."""
    if not summaries:
        raise ValidationError("no partitions to validate: the dataset holds no rows")
    results = [_combine(i, e, summaries) for i, e in enumerate(expectations)]
    result = ValidationResult.from_results(results, row_count=sum(s["rows"] for s in summaries))
    for f, r in zip(result.failures, [r for r in results if not r["success"]]):
        if r["partitions"]:
            f.message += " " + _where(r["partitions"])
    return result


def check_partition(part: Part, expectations: list[Expectation], distinct: list[str],
                    minmax: list[str]) -> dict[str, Any]:
    """What one partition contributes: GX's results (examples with repeats) and a few counts.

    GX runs each column's expectations on that column alone (`_gx.run_by_column`: no batch
    fingerprint, no copies of the whole partition), which gives the same results."""
    from cloudhop.validation._gx import run_by_column

    df = part.read()
    out: dict[str, Any] = {"where": part.describe(), "rows": len(df), "columns": list(df.columns),
                           "dtypes": {c: df[c].dtype for c in df.columns},
                           "nulls": {c: int(df[c].isna().sum()) for c in df.columns},
                           "distinct": {}, "min": {}, "max": {}}
    for c in distinct:
        if c in df.columns:
            out["distinct"][c] = set(df[c].dropna().unique())
    for c in minmax:
        if c in df.columns:
            s = df[c].dropna()
            try:
                out["min"][c], out["max"][c] = (s.min(), s.max()) if len(s) else (None, None)
            except TypeError:  # unorderable values: GX reports the error itself
                pass
    out["results"] = run_by_column(df, expectations, distinct_examples=False)
    del df
    gc.collect()  # GX leaves reference cycles holding the batch; unfreed, a worker's memory grows per partition
    return out


def _combine(i: int, exp: Expectation, parts: list[dict[str, Any]]) -> dict[str, Any]:
    from great_expectations.expectations.registry import get_expectation_impl
    from great_expectations.util import convert_to_json_serializable

    from cloudhop.validation._gx import result_entry  # also registers cloudhop's own expectation type

    rs = [p["results"][i] for p in parts]
    errors = [(p, r) for p, r in zip(parts, rs) if r["error"]]
    if errors:
        entry = dict(errors[0][1])
        entry["success"] = False
    else:
        impl = get_expectation_impl(exp.type)(**exp.kwargs, meta=exp.meta)
        raw = _validate(exp, impl, parts, rs)
        result = convert_to_json_serializable(raw.get("result") or {})
        entry = result_entry(exp, bool(raw["success"]), result, None)
    where = []
    for p, r in zip(parts, rs):
        n = (r.get("observed") or {}).get("unexpected_count")
        if r["error"] or n or (exp.type in _PARTITION_LOCAL and not r["success"]):
            item = {**p["where"]}
            if n:
                item["unexpected_count"] = n
            if r["error"]:
                item["error"] = r["error"]
            elif exp.type in _PARTITION_LOCAL and "observed_value" in (r.get("observed") or {}):
                item["observed_value"] = r["observed"]["observed_value"]
            where.append(item)
    entry["partitions"] = where
    return entry


def _validate(exp: Expectation, impl: Any, parts: list[dict[str, Any]], rs: list[dict[str, Any]]) -> dict:
    """GX's own verdict and result, from metrics combined across partitions."""
    from great_expectations.expectations.metrics.column_aggregate_metrics import (
        column_proportion_of_non_null_values as non_null, column_proportion_of_unique_values as unique)

    from cloudhop.validation._gx import RESULT_FORMAT

    t, col = exp.type, exp.column
    rows = sum(p["rows"] for p in parts)
    nulls = sum(p["nulls"].get(col, 0) for p in parts) if col else 0
    common = [c for c in parts[0]["columns"] if all(c in p["columns"] for p in parts)]
    metrics: dict[str, Any] = {"table.row_count": rows, "table.columns": common, "table.column_count": len(common),
                               "column_values.nonnull.unexpected_count": nulls}
    if t == DTYPE_CHECK:
        kinds = [p["dtypes"][col] for p in parts]
        names = list(dict.fromkeys(str(k) for k in kinds))
        if len(names) > 1:
            counts = ", ".join(f"{n} in {sum(str(k) == n for k in kinds)}" for n in names)
            return {"success": False, "result": {"observed_value": f"mixed across partitions: {counts}"}}
        metrics["table.column_types"] = [{"name": col, "type": kinds[0]}]
    elif t in _ROW_LOCAL:
        mm = impl.map_metric
        metrics[f"{mm}.unexpected_count"] = sum(r["observed"].get("unexpected_count") or 0 for r in rs)
        metrics[f"{mm}.unexpected_values"] = [v for r in rs for v in r["observed"].get("partial_unexpected_list") or []]
    elif t in _MINMAX:
        which = _MINMAX[t]
        values = [p[which][col] for p in parts if p[which].get(col) is not None]
        metrics[f"column.{which}"] = (min(values) if which == "min" else max(values)) if values else None
    elif t in _DISTINCT:
        union: set[Any] = set().union(*(p["distinct"].get(col, set()) for p in parts))
        metrics["column.distinct_values.count"] = len(union)
        metrics["column.unique_proportion"] = unique.unique_proportion(metrics)
    elif t == _NONNULL_SHARE:
        metrics["column.non_null_proportion"] = non_null.nonnull_proportion({"table.row_count": rows,
                                                                             "column.non_null_count": rows - nulls})
    return impl._validate(metrics=metrics, runtime_configuration={"result_format": RESULT_FORMAT})


def _where(parts: list[dict[str, Any]], limit: int = 3) -> str:
    """'(in f.parquet rows 0-999: 12 unexpected; ...)' for a failure message."""
    items = []
    for p in parts[:limit]:
        text = f"{p['file']} rows {p['first_row']}-{p['first_row'] + p['rows'] - 1}"
        if p.get("unexpected_count"):
            text += f": {p['unexpected_count']} unexpected"
        elif p.get("error"):
            text += f": {p['error']}"
        elif p.get("observed_value") is not None:
            text += f": {p['observed_value']}"
        items.append(text)
    more = f"; and {len(parts) - limit} more partition(s)" if len(parts) > limit else ""
    return f"(in {'; '.join(items)}{more})"
