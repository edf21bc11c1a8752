"""The one interface every serving target implements, and what its calls return."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

from cloudhop.registry import Registry
from cloudhop.store import Store

__all__ = ["Target", "LogsPredictions", "SmokeResult", "TargetError", "compare_predictions"]


class TargetError(RuntimeError):
    """A target operation failed; the message names the target and what went wrong."""


@dataclass
class SmokeResult:
    ok: bool
    max_abs_diff: float
    n: int
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Target(Protocol):
    name: str

    def publish(self, registry: Registry, version: str) -> None:
        """Make the version's artifacts available to the target (upload + verify checksums)."""

    def roll_out(self, version: str) -> None:
        """Point the target's serving at the version (it must be published)."""

    def live_version(self) -> str | None:
        """The version the target serves now; None when nothing serves."""

    def health(self) -> dict:
        """{"status": "ok" | ..., ...}; never raises for a target that is down."""

    def smoke_test(self, rows: list[dict], expected: list[float], atol: float = 1e-4) -> SmokeResult:
        """Send rows to the live endpoint and compare its predictions with expected."""

    def roll_back(self, version: str) -> None:
        """Point serving back at an earlier version."""


@runtime_checkable
class LogsPredictions(Protocol):
    """A target whose servers keep a prediction log, and know where: the drift monitor reads each
    target's traffic from there (a cloud's servers log to the cloud's own store)."""

    def prediction_log_store(self) -> Store:
        """The store this target's servers write the prediction log to."""


def compare_predictions(got: Sequence[Any], expected: Sequence[float], atol: float) -> SmokeResult:
    """The smoke verdict: same count, every |got - expected| <= atol (NaN or null fails)."""
    n = len(expected)
    if len(got) != n:
        return SmokeResult(False, float("inf"), n, f"got {len(got)} predictions for {n} rows")
    worst, worst_i = 0.0, -1
    for i, (g, e) in enumerate(zip(got, expected)):
        try:
            d = abs(float(g) - float(e))
        except (TypeError, ValueError):
            d = float("inf")
        if not d <= worst:  # also catches NaN
            worst, worst_i = (d if d == d else float("inf")), i
    if worst <= atol:
        return SmokeResult(True, worst, n, None)
    return SmokeResult(False, worst, n, f"row {worst_i}: got {got[worst_i]}, expected {expected[worst_i]} "
                                        f"(|diff| {worst:.3g} > atol {atol:g})")
