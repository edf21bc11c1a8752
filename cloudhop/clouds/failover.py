"""Failover: try clouds in placement order, retry a cloud's faults, never retry a training error.

Pure policy. Starting a run on a cloud and watching it is the caller's `launch`
callable (the orchestrator's job); this module only decides what happens next.

Outcomes of one attempt:
  completed      training finished; stop.
  failed         the training code or the data failed (exception, NaN loss): not the cloud's
                 fault, so no failover; raise TrainingFailed with that error.
  not_started    the run did not start within the start timeout (no worker, no capacity).
  crashed        the run's infrastructure died (process killed, node lost, no heartbeat).
  infra_error    the platform refused or errored (submission failed, image pull, quota).
The last three are cloud faults: retry the same cloud per policy, then move to the next.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

__all__ = ["Attempt", "AttemptOutcome", "FailoverPolicy", "FailoverResult", "TrainingFailed", "AllCloudsFailed",
           "CLOUD_FAULTS", "run_with_failover"]

CLOUD_FAULTS = frozenset({"not_started", "crashed", "infra_error"})
OUTCOMES = CLOUD_FAULTS | {"completed", "failed"}


@dataclass
class AttemptOutcome:
    kind: str  # one of OUTCOMES
    detail: str = ""
    run_id: str | None = None
    started_at: datetime | None = None  # when the run was seen running
    data: dict[str, Any] = field(default_factory=dict)  # whatever the launcher wants to hand back

    def __post_init__(self):
        if self.kind not in OUTCOMES:
            raise ValueError(f"unknown attempt outcome {self.kind!r}")


@dataclass
class Attempt:
    cloud: str
    number: int  # 1-based, per cloud
    submitted_at: datetime
    ended_at: datetime
    outcome: str
    detail: str
    run_id: str | None
    started_at: datetime | None = None

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("submitted_at", "ended_at", "started_at"):
            d[k] = d[k].isoformat(timespec="seconds") if d[k] else None
        d["seconds"] = round((self.ended_at - self.submitted_at).total_seconds(), 1)
        return d


@dataclass
class FailoverPolicy:
    retries: int = 1  # extra attempts on the same cloud
    backoff_seconds: float = 2.0  # before the first retry; doubles after each

    @classmethod
    def from_spec(cls, f) -> "FailoverPolicy":
        return cls(retries=f.retries, backoff_seconds=f.backoff_seconds)


@dataclass
class FailoverResult:
    cloud: str
    outcome: AttemptOutcome
    attempts: list[Attempt]


class TrainingFailed(RuntimeError):
    """The training itself failed on a healthy cloud: failing over would fail the same way."""

    def __init__(self, message: str, attempts: list[Attempt]):
        super().__init__(message)
        self.attempts = attempts


class AllCloudsFailed(RuntimeError):
    def __init__(self, attempts: list[Attempt]):
        lines = [f"  {a.cloud} attempt {a.number}: {a.outcome}: {a.detail}" for a in attempts]
        super().__init__("training failed on every cloud:\n" + "\n".join(lines) if attempts
                         else "no cloud to train on: every candidate was skipped")
        self.attempts = attempts


def _now() -> datetime:
    return datetime.now(timezone.utc)


def run_with_failover(clouds: Iterable[str], launch: Callable[[str, int], AttemptOutcome],
                      policy: FailoverPolicy, *, on_attempt: Callable[[Attempt], None] | None = None,
                      sleep: Callable[[float], None] = time.sleep) -> FailoverResult:
    """Run `launch(cloud, attempt_number)` over clouds in order until one completes.

    A launch that raises is an infra_error of that cloud (the submission itself failed).
    """
    attempts: list[Attempt] = []
    for cloud in clouds:
        delay = policy.backoff_seconds
        for number in range(1, policy.retries + 2):
            submitted = _now()
            try:
                out = launch(cloud, number)
            except Exception as e:  # the platform refused the submission
                out = AttemptOutcome("infra_error", f"{type(e).__name__}: {e}")
            attempt = Attempt(cloud, number, submitted, _now(), out.kind, out.detail, out.run_id, out.started_at)
            attempts.append(attempt)
            if on_attempt:
                on_attempt(attempt)
            if out.kind == "completed":
                return FailoverResult(cloud, out, attempts)
            if out.kind == "failed":
                raise TrainingFailed(f"training failed on {cloud} (not a cloud fault, no failover): {out.detail}",
                                     attempts)
            if number <= policy.retries:
                sleep(delay)
                delay *= 2
    raise AllCloudsFailed(attempts)
