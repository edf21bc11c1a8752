"""The data gate: expectation suites built from the spec (plus a user's GX suite), run with
Great Expectations, and a typed, readable result.

    result = validate_table(table, spec, executor=ex)   # any cloudhop.data Table; never raises for bad data
    result = validate(df, spec)                         # one pandas frame
    raise_for(result)                                   # ValidationError listing each failure, one per line

A table of one part is checked by one GX run on its frame; a table of many parts part by
part (on the executor), the results combined exactly (cloudhop.validation.partitioned):
the same figures and verdict either way. Great Expectations is imported on first use.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from cloudhop.data.executor import Executor
from cloudhop.data.table import Table
from cloudhop.spec import PipelineSpec
from cloudhop.validation.expectation import DTYPE_CHECK, KIND_DTYPES, Expectation, dtype_matches
from cloudhop.validation.partitioned import validate_partitioned
from cloudhop.validation.result import ExpectationFailure, ValidationError, ValidationResult, raise_for
from cloudhop.validation.suite import SuiteError, build_expectations, load_suite, spec_suite

__all__ = ["build_expectations", "spec_suite", "validate", "validate_table", "run_expectations", "load_suite",
           "raise_for", "Expectation", "ExpectationFailure", "ValidationResult", "ValidationError", "SuiteError",
           "dtype_matches", "DTYPE_CHECK", "KIND_DTYPES"]


def run_expectations(df: pd.DataFrame, expectations: list[Expectation]) -> list[dict[str, Any]]:
    """Run a plain-data suite on one pandas frame -> one dict per expectation, in order:
    {type, column, kwargs, meta, success, observed, error}. Feed them (or ones combined across
    partitions) to ValidationResult.from_results."""
    from cloudhop.validation._gx import run_expectations as run

    return run(df, expectations)


def validate(df: pd.DataFrame, spec: PipelineSpec,
             user_suite: str | Path | dict[str, Any] | None = None) -> ValidationResult:
    """Check a table against the spec's suite plus a user suite.

    `user_suite` is a path to a GX 1.x ExpectationSuite JSON file or the same as a dict;
    when None, the spec's `expectations` path is used (if set). Bad data gives a result
    with success False (never an exception); a bad user suite raises ValidationError.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValidationError(f"validate() needs a pandas DataFrame, got {type(df).__module__}.{type(df).__name__}"
                              " (use validate_table for a cloudhop.data Table)")
    expectations = spec_suite(spec, user_suite)
    return ValidationResult.from_results(run_expectations(df, expectations), row_count=len(df))


def validate_table(table: Table, spec: PipelineSpec, user_suite: str | Path | dict[str, Any] | None = None, *,
                   executor: Executor | None = None) -> ValidationResult:
    """`validate` for a Table: one GX run on the frame of a one-part table; part by part on
    `executor` and combined exactly for more (see the module docstring)."""
    if len(table.parts) == 1:
        return validate(table.parts[0].read(), spec, user_suite)
    return validate_partitioned(table.parts, spec, user_suite, executor=executor)
