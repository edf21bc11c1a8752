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
  preempted      the cloud took spot capacity back; the trainer checkpointed and stopped.
not_started, crashed and infra_error are cloud faults: retry the same cloud per policy (with
backoff), then move to the next. A spot loss (a preemption, or a spot run that did not start:
`data["spot"]` set by the launcher) is its own case with its own budget and no backoff: the
policy's `on_preemption` says whether to try the same cloud again (under the `auto` spot policy
cloudhop.clouds.spot makes that try on-demand) or to move on at once.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Literal

__all__ = ["Attempt", "AttemptOutcome", "FailoverPolicy", "FailoverResult", "TrainingFailed", "AllCloudsFailed",
           "CLOUD_FAULTS", "PREEMPTED", "run_with_failover",
           "spot_lost"]

CLOUD_FAULTS = frozenset({"not_started", "crashed", "infra_error"})
PREEMPTED = "preempted"
OUTCOMES = CLOUD_FAULTS | {"completed", "failed", PREEMPTED}


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
    spot: bool | None = None  # spot capacity (None: the launcher did not say)

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
    on_preemption: Literal["same-cloud", "next-cloud"] = "same-cloud"  # after a spot loss
    spot_retries: int = 1  # extra attempts on the same cloud after spot losses (same-cloud only)

    @classmethod
    def from_spec(cls, f) -> "FailoverPolicy":
        return cls(retries=f.retries, backoff_seconds=f.backoff_seconds, on_preemption=f.on_preemption,
                   spot_retries=f.spot_retries)


def spot_lost(out: AttemptOutcome) -> bool:
    """Whether `out` lost spot capacity: preempted, or a spot run that never started."""
    return out.kind == PREEMPTED or (out.kind == "not_started" and bool(out.data.get("spot")))


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
                      sleep: Callable[[float], None] = time.sleep,
                      now: Callable[[], datetime] = _now) -> FailoverResult:
    """Run `launch(cloud, attempt_number)` over clouds in order until one completes.

    A launch that raises is an infra_error of that cloud (the submission itself failed).
    `sleep` and `now` are the clock (a simulation passes its own).
    """
    attempts: list[Attempt] = []
    for cloud in clouds:
        delay = policy.backoff_seconds
        number = faults = spot_losses = 0
        while True:
            number += 1
            submitted = now()
            try:
                out = launch(cloud, number)
            except Exception as e:  # the platform refused the submission
                out = AttemptOutcome("infra_error", f"{type(e).__name__}: {e}")
            attempt = Attempt(cloud, number, submitted, now(), out.kind, out.detail, out.run_id, out.started_at,
                              out.data.get("spot"))
            attempts.append(attempt)
            if on_attempt:
                on_attempt(attempt)
            if out.kind == "completed":
                return FailoverResult(cloud, out, attempts)
            if out.kind == "failed":
                raise TrainingFailed(f"training failed on {cloud} (not a cloud fault, no failover): {out.detail}",
                                     attempts)
            if spot_lost(out):
                spot_losses += 1
                if policy.on_preemption == "next-cloud" or spot_losses > policy.spot_retries:
                    break
                continue  # another capacity pool, not a flaky platform: no backoff
            faults += 1
            if faults > policy.retries:
                break
            sleep(delay)
            delay *= 2
    raise AllCloudsFailed(attempts)
