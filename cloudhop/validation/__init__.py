"""The data gate: expectation suites built from the spec (plus a user's GX suite), run with
Great Expectations, and a typed, readable result.

    result = validate(df, spec)            # never raises for bad data
    raise_for(result)                      # ValidationError listing each failure, one per line

Great Expectations is imported on first use (the import takes seconds).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from cloudhop.spec import PipelineSpec
from cloudhop.validation.result import ExpectationFailure, ValidationError, ValidationResult, raise_for
from cloudhop.validation.suite import Expectation, SuiteError, build_expectations, load_suite

__all__ = ["build_expectations", "spec_suite", "validate", "run_expectations", "load_suite", "raise_for", "Expectation",
           "ExpectationFailure", "ValidationResult", "ValidationError"]


def run_expectations(df: pd.DataFrame, expectations: list[Expectation]) -> list[dict[str, Any]]:
    """Run a plain-data suite on one pandas frame -> one dict per expectation, in order:
    {type, column, kwargs, meta, success, observed, error}. Feed them (or ones combined across
    partitions) to ValidationResult.from_results."""
    from cloudhop.validation import _gx

    return _gx.run_expectations(df, expectations)


def validate(df: pd.DataFrame, spec: PipelineSpec,
             user_suite: str | Path | dict[str, Any] | None = None) -> ValidationResult:
    """Check a table against the spec's suite plus a user suite.

    `user_suite` is a path to a GX 1.x ExpectationSuite JSON file or the same as a dict;
    when None, the spec's `expectations` path is used (if set). Bad data gives a result
    with success False (never an exception); a bad user suite raises ValidationError.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValidationError(f"validate() needs a pandas DataFrame, got {type(df).__module__}.{type(df).__name__}"
                              " (compute or sample a Dask frame first)")
    expectations = spec_suite(spec, user_suite)
    return ValidationResult.from_results(run_expectations(df, expectations), row_count=len(df))


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
