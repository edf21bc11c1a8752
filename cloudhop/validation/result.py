"""The typed validation result, built from plain per-expectation results, with readable messages."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cloudhop.validation.expectation import DTYPE_CHECK, KIND_DTYPES

__all__ = ["ExpectationFailure", "ValidationResult", "ValidationError", "raise_for"]


class ValidationError(ValueError):
    """Data (or a user suite) that failed validation; `result` is set when data was checked."""

    def __init__(self, message: str, result: "ValidationResult | None" = None):
        super().__init__(message)
        self.result = result


@dataclass
class ExpectationFailure:
    expectation: str
    column: str | None
    kwargs: dict[str, Any]
    observed: dict[str, Any]
    message: str


@dataclass
class ValidationResult:
    success: bool
    statistics: dict[str, Any]
    failures: list[ExpectationFailure]
    results: list[dict[str, Any]]
    row_count: int

    @classmethod
    def from_results(cls, results: list[dict[str, Any]], row_count: int) -> "ValidationResult":
        """Assemble from run_expectations() dicts (or ones combined across partitions)."""
        failures = [ExpectationFailure(r["type"], r.get("column"), r["kwargs"], _observed(r),
                                       failure_message(r, row_count))
                    for r in results if not r["success"]]
        n, bad = len(results), len(failures)
        stats = {"evaluated": n, "successful": n - bad, "unsuccessful": bad,
                 "success_percent": 100.0 * (n - bad) / n if n else 100.0}
        return cls(success=bad == 0, statistics=stats, failures=failures, results=results, row_count=row_count)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (saved as validation.json)."""
        return {"success": self.success, "row_count": self.row_count, "statistics": dict(self.statistics),
                "failures": [asdict(f) for f in self.failures], "results": list(self.results)}

    def table(self) -> list[dict[str, str]]:
        """One row per failed expectation: expectation, column, expected, observed (short text)."""
        return [{"expectation": f.expectation, "column": f.column or "",
                 "expected": expected_text(f.expectation, f.kwargs), "observed": observed_text(f.observed)}
                for f in self.failures]

    def checks(self) -> list[dict[str, str]]:
        """One row per expectation evaluated, passed or not: what the gate checked (a run's table)."""
        return [{"expectation": r["type"], "column": r.get("column") or "",
                 "expected": expected_text(r["type"], r["kwargs"]), "result": "passed" if r["success"] else "FAILED",
                 "observed": observed_text(_observed(r))}
                for r in self.results]

    def summary(self) -> dict[str, Any]:
        """Short form for a manifest."""
        return {"success": self.success, "rows": self.row_count, "evaluated": self.statistics["evaluated"],
                "failed": self.statistics["unsuccessful"],
                "failed_expectations": [f"{f.expectation}({f.column})" if f.column else f.expectation
                                        for f in self.failures]}

    def message(self) -> str:
        n, bad = self.statistics["evaluated"], self.statistics["unsuccessful"]
        head = f"data validation failed: {bad} of {n} expectations failed on {self.row_count} rows:"
        return "\n".join([head] + [f"  - {f.message}" for f in self.failures])


def raise_for(result: ValidationResult) -> ValidationResult:
    """Raise ValidationError (one failure message per line) unless the result succeeded."""
    if not result.success:
        raise ValidationError(result.message(), result)
    return result


# -- words ------------------------------------------------------------------------
def _observed(r: dict[str, Any]) -> dict[str, Any]:
    """What was observed for one expectation result, with its error when it could not be checked."""
    return {**(r.get("observed") or {}), **({"error": r["error"]} if r.get("error") else {})}


def _v(x: Any) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    if isinstance(x, str):
        return repr(x)
    return str(x)


def _list(xs: Any, limit: int = 8, total: bool = True) -> str:
    xs = list(xs or [])
    more = (f", ... ({len(xs)} in all)" if total else ", ...") if len(xs) > limit else ""
    return "[" + ", ".join(_v(x) for x in xs[:limit]) + more + "]"


def _pct(p: float | None) -> str:
    return "?" if p is None else f"{p:.3g}%"


def _range(kw: dict[str, Any]) -> str:
    lo, hi = kw.get("min_value"), kw.get("max_value")
    if lo is not None and hi is not None:
        return f"[{_v(lo)}, {_v(hi)}]"
    return f">= {_v(lo)}" if lo is not None else f"<= {_v(hi)}" if hi is not None else "any"


def expected_text(type_: str, kw: dict[str, Any]) -> str:
    mostly = f" (mostly {kw['mostly']:.3g})" if kw.get("mostly") is not None and kw["mostly"] < 1 else ""
    if type_ == "expect_table_row_count_to_be_between":
        return f"row count {_range(kw)}"
    if type_ == "expect_column_to_exist":
        return "column exists"
    if type_ == DTYPE_CHECK:
        return f"{kw.get('kind')}: {KIND_DTYPES.get(str(kw.get('kind')), '?')}"
    if type_ == "expect_column_values_to_not_be_null":
        return "no nulls" + mostly
    if type_ == "expect_column_proportion_of_non_null_values_to_be_between":
        return "not entirely null" if kw.get("strict_min") and kw.get("min_value") == 0 else f"non-null share {_range(kw)}"
    if type_ == "expect_column_values_to_be_between":
        return f"values in {_range(kw)}" + mostly
    if type_ == "expect_column_values_to_be_in_set":
        return f"values in {_list(kw.get('value_set'))}" + mostly
    if type_ == "expect_column_unique_value_count_to_be_between":
        return f"distinct values {_range(kw)}"
    shown = {k: v for k, v in kw.items() if k != "column"}
    return ", ".join(f"{k}={_v(v) if not isinstance(v, list) else _list(v)}" for k, v in shown.items())[:200]


def observed_text(obs: dict[str, Any]) -> str:
    parts = []
    if obs.get("unexpected_count") is not None:
        parts.append(f"unexpected_count={obs['unexpected_count']}")
        parts.append(f"unexpected_percent={_pct(obs.get('unexpected_percent'))}")
        if obs.get("partial_unexpected_list"):
            parts.append(f"e.g. {_list(obs['partial_unexpected_list'], 5, total=False)}")
    if "observed_value" in obs:
        parts.append(f"observed_value={_v(obs['observed_value'])}")
    if obs.get("error"):
        parts.append(f"error: {obs['error']}")
    return "; ".join(parts)[:300]


def _unexpected(obs: dict[str, Any], kw: dict[str, Any], what: str) -> str:
    n = obs.get("element_count", 0) - (obs.get("missing_count") or 0)
    values = "values" if not obs.get("missing_count") else "non-null values"
    text = f"{obs.get('unexpected_count')} of {n} {values} ({_pct(obs.get('unexpected_percent'))}) {what}"
    if kw.get("mostly") is not None and kw["mostly"] < 1:
        text += f" (at most {100 * (1 - kw['mostly']):.3g}% allowed)"
    if obs.get("partial_unexpected_list"):
        text += f", e.g. {_list(obs['partial_unexpected_list'], 5, total=False)}"
    return text


def failure_message(r: dict[str, Any], row_count: int) -> str:
    """One readable line for a failed expectation result."""
    type_, kw, obs, col = r["type"], r["kwargs"], r.get("observed") or {}, r.get("column")
    where = f"column {col!r}" if col else "table"
    if r.get("error"):
        if col and "does not exist" in r["error"]:
            return f"{where} is missing, so {type_} was not checked"
        return f"{where}: {type_} could not be checked: {r['error']}"
    if type_ == "expect_table_row_count_to_be_between":
        return f"table has {obs.get('observed_value')} rows; expected {_range(kw)}"
    if row_count == 0:
        return f"{where}: {type_} cannot pass on an empty table"
    if type_ == "expect_column_to_exist":
        return f"{where} is missing from the table"
    if type_ == DTYPE_CHECK:
        kind, dt = kw.get("kind"), obs.get("observed_value")
        text = f"{where} has dtype {dt}; spec type {kind} needs {KIND_DTYPES.get(kind, '?')}"
        if kind == "int" and str(dt).startswith("float"):
            text += " (integers with missing values load as float64: declare the column float, or use Int64)"
        return text
    if type_ == "expect_column_values_to_not_be_null":
        if obs.get("unexpected_count") and obs.get("unexpected_count") == obs.get("element_count"):
            return f"{where} is entirely null ({obs['element_count']} values)"
        return f"{where}: " + _unexpected(obs, kw, "are null")
    if type_ == "expect_column_proportion_of_non_null_values_to_be_between":
        share = obs.get("observed_value")
        if share == 0 or share is None:
            return f"{where} is entirely null ({row_count} rows)"
        return f"{where}: non-null share {share:.3g} outside {_range(kw)}"
    if type_ == "expect_column_values_to_be_between":
        return f"{where}: " + _unexpected(obs, kw, f"outside {_range(kw)}")
    if type_ == "expect_column_values_to_be_in_set":
        return f"{where}: " + _unexpected(obs, kw, f"not in {_list(kw.get('value_set'))}")
    if type_ == "expect_column_unique_value_count_to_be_between":
        n = obs.get("observed_value")
        task = (r.get("meta") or {}).get("task")
        if task == "binary":
            return f"target {where} has {n} distinct value{'s' if n != 1 else ''}; a binary target needs exactly 2"
        if task == "regression":
            return f"target {where} has {n} distinct value{'s' if n != 1 else ''}; a regression target needs at least 2"
        return f"{where} has {n} distinct values; expected {_range(kw)}"
    text = observed_text(obs)
    return f"{where}: {type_} failed ({expected_text(type_, kw)})" + (f": {text}" if text else "")
