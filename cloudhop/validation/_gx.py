"""The Great Expectations runtime: imported lazily (importing GX takes seconds).

`run_expectations(df, expectations)` runs a plain-data suite on one pandas frame in an
ephemeral GX context and returns one plain dict per expectation, in suite order.
"""
from __future__ import annotations

import functools
import math
import warnings
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import great_expectations as gx
    from great_expectations.core.metric_domain_types import MetricDomainTypes
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import PandasExecutionEngine
    from great_expectations.execution_engine.pandas_batch_data import PandasBatchData
    from great_expectations.expectations.expectation import BatchExpectation
    from great_expectations.expectations.registry import get_expectation_impl
    from great_expectations.validator.validator import Validator

from cloudhop.validation.expectation import DTYPE_CHECK, Expectation, dtype_matches

__all__ = ["run_expectations", "run_by_column", "check_expectation", "result_entry", "RESULT_FORMAT"]

# Counts plus a few unexpected examples; no full lists of values or row indices.
# The first 20 unexpected values are fetched; their distinct ones are kept (in row order).
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 20}
# Keys of a GX result worth keeping: figures that can be read (and summed across partitions).
_DROP_KEYS = ("partial_unexpected_index_list", "partial_unexpected_counts", "unexpected_list",
              "unexpected_index_list", "unexpected_index_query", "unexpected_rows")
_INDEX_KEY = "_cloudhop_i"


class ExpectColumnDtypeToBeKind(BatchExpectation):
    """The column's pandas dtype is one that a cloudhop spec type allows (see suite.KIND_DTYPES).

    GX's own ExpectColumnValuesToBeInTypeList compares exact dtypes and, on pandas 3,
    matches no type name for 'str', 'category' or time-zone-aware datetime columns.
    """
    column: str
    kind: str

    metric_dependencies = ("table.column_types",)
    success_keys = ("column", "kind")
    domain_keys = ("batch_id",)
    args_keys = ("column", "kind")

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        column = self.configuration.kwargs["column"]
        kind = self.configuration.kwargs["kind"]
        types = {t["name"]: t["type"] for t in metrics["table.column_types"]}
        if column not in types:
            raise ValueError(f'The column "{column}" in BatchData does not exist.')
        dtype = types[column]
        return {"success": dtype_matches(kind, dtype), "result": {"observed_value": str(dtype)}}


assert get_expectation_impl(DTYPE_CHECK) is ExpectColumnDtypeToBeKind


def check_expectation(exp: Expectation) -> str | None:
    """None if GX knows the type and accepts the kwargs; otherwise what is wrong, in words."""
    try:
        impl = get_expectation_impl(exp.type)
    except Exception:
        return f"unknown expectation type {exp.type!r} (not a Great Expectations {gx.__version__} expectation)"
    try:
        impl(**exp.kwargs, meta=exp.meta)
    except Exception as e:  # pydantic errors: name each bad field
        errors = getattr(e, "errors", None)
        if callable(errors):
            parts = [f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}" for err in errors()]
            return "invalid kwargs: " + "; ".join(parts)
        return f"invalid kwargs: {e}"
    return None


def _context():
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


@functools.lru_cache(maxsize=1)
def _quiet_context():
    """One context per process for run_by_column's Validators: it only turns their progress bars off."""
    return _context()


def jsonable(x: Any) -> Any:
    """Plain JSON types: numpy scalars to Python, NaN to None, timestamps to ISO text."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float):
        return None if math.isnan(x) else x if math.isfinite(x) else str(x)
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, (datetime, date, pd.Timestamp)):
        return x.isoformat()
    if x is pd.NaT or x is pd.NA:
        return None
    return str(x)


def _distinct(values: list[Any]) -> list[Any]:
    seen: set[str] = set()
    out = []
    for v in values:
        key = repr(v)
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out


def _exception_message(info: dict[str, Any] | None) -> str | None:
    """GX reports an expectation's exception either directly or keyed by metric id."""
    if not info:
        return None
    if "raised_exception" in info:
        return (info.get("exception_message") or "error") if info.get("raised_exception") else None
    for v in info.values():
        if isinstance(v, dict) and v.get("raised_exception"):
            return v.get("exception_message") or "error"
    return None


def result_entry(exp: Expectation, success: bool, result: dict[str, Any] | None, error: str | None,
                 distinct_examples: bool = True) -> dict[str, Any]:
    """One plain result dict from a GX result's `success` and JSON `result` (see run_expectations)."""
    observed = jsonable({k: v for k, v in (result or {}).items() if k not in _DROP_KEYS})
    if distinct_examples and "partial_unexpected_list" in observed:
        observed["partial_unexpected_list"] = _distinct(observed["partial_unexpected_list"])
    return {"type": exp.type, "column": exp.column, "kwargs": jsonable(exp.kwargs),
            "meta": jsonable(exp.meta), "success": bool(success) and error is None,
            "observed": observed, "error": error}


def _impls(expectations: list[Expectation], batch_ids: list[str | None] | None = None) -> list[Any]:
    """GX expectation objects for the suite, each tagged with its position (results come back by column)."""
    ids = batch_ids or [None] * len(expectations)
    extra: list[dict[str, Any]] = [{} if b is None else {"batch_id": b} for b in ids]
    return [get_expectation_impl(e.type)(**e.kwargs, **x, meta={**e.meta, _INDEX_KEY: i})
            for i, (e, x) in enumerate(zip(expectations, extra))]


def _entries(results: Any, expectations: list[Expectation], distinct_examples: bool) -> list[dict[str, Any]]:
    """GX's ExpectationValidationResults -> run_expectations' plain dicts, in suite order."""
    out: list[dict[str, Any] | None] = [None] * len(expectations)
    for r in results:
        i = r.expectation_config.meta[_INDEX_KEY]
        raw = r.to_json_dict()
        out[i] = result_entry(expectations[i], bool(raw.get("success")), raw.get("result"),
                              _exception_message(raw.get("exception_info")), distinct_examples)
    missing = [expectations[i].type for i, r in enumerate(out) if r is None]
    if missing:  # never expected; fail loudly rather than drop a check
        raise RuntimeError(f"Great Expectations returned no result for: {', '.join(missing)}")
    return out  # type: ignore[return-value]


def run_expectations(df: pd.DataFrame, expectations: list[Expectation],
                     distinct_examples: bool = True) -> list[dict[str, Any]]:
    """Run the suite on one pandas frame, as one GX batch (the reference: the pandas engine's run).

    Returns, per expectation and in order: {type, column, kwargs, meta, success, observed, error}.
    `observed` holds GX's result figures (element_count, unexpected_count, observed_value, ...);
    `error` is the message of an exception raised inside GX (then success is False).
    With distinct_examples False, `partial_unexpected_list` keeps GX's first unexpected
    values as they are, repeats included (what combining partitions needs).
    """
    if not expectations:
        return []
    ctx = _context()
    batch = (ctx.data_sources.add_pandas("cloudhop").add_dataframe_asset("table")
             .add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": df}))
    suite = gx.ExpectationSuite(name="cloudhop", expectations=_impls(expectations))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = batch.validate(suite, result_format=RESULT_FORMAT)
    return _entries(res.results, expectations, distinct_examples)


def run_by_column(df: pd.DataFrame, expectations: list[Expectation],
                  distinct_examples: bool = True) -> list[dict[str, Any]]:
    """`run_expectations`' results, each single-column expectation run on a frame of its column only.

    GX's pandas engine copies the whole frame for every column condition it computes (it
    drops the column's null rows from the frame first), and `get_batch` hashes the whole
    frame twice for a batch fingerprint; on a partition of a large table those copies and
    hashes cost more than the checks. Here the frame's columns are loaded as batches of one
    column each straight into a PandasExecutionEngine (no data context, no fingerprint) and
    the suite runs through the same Validator.graph_validate that `batch.validate` ends in,
    with the same result format. An expectation of one column depends on that column alone,
    so its result is the same; expectations of the table (`expect_column_to_exist` among them:
    it may check the column's position), and any whose column is missing (GX's own error), run
    on the whole frame, which for them costs no copy.
    """
    if not expectations:
        return []
    engine = PandasExecutionEngine()
    ids: list[str | None] = []
    for e in expectations:
        col = e.column
        of_column = getattr(get_expectation_impl(e.type), "domain_type", None) == MetricDomainTypes.COLUMN
        if of_column and isinstance(col, str) and col in df.columns and not e.kwargs.get("row_condition"):
            bid = f"column:{col}"
            if bid not in engine.batch_manager.batch_data_cache:
                engine.load_batch_data(bid, PandasBatchData(engine, df[[col]]))
        else:
            bid = "table"
            if bid not in engine.batch_manager.batch_data_cache:
                engine.load_batch_data(bid, PandasBatchData(engine, df))
        ids.append(bid)
    validator = Validator(execution_engine=engine, data_context=_quiet_context())
    configs = validator.process_expectations_for_validation([x.configuration for x in _impls(expectations, ids)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = validator.graph_validate(configurations=configs,
                                           runtime_configuration={"result_format": dict(RESULT_FORMAT)})
    return _entries(results, expectations, distinct_examples)
