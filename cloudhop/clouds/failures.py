"""Which finished training runs count as a cloud's infrastructure failure (for the circuit breaker).

Naming assumed for training runs (set by the retrain flow when it starts a run):
- every training run carries the tag TRAIN_TAG ('cloudhop-train') and 'cloud:<name>';
- a run the orchestrator cancels because it did not start in time is set Cancelled with a
  message starting with NOT_STARTED ('not started', as tasks/failover.py writes it).

A run counts when it ended CRASHED (its infrastructure died or could not be submitted), or
CANCELLED with the NOT_STARTED message. FAILED runs (the training code raised, or a preempted
spot run: flows/train.py ends it Failed with a message starting "preempted") and other
cancellations (a person pressed cancel) do not count.
"""
from __future__ import annotations

from datetime import datetime
from typing import Iterable

from cloudhop.clouds.placement import Failure

__all__ = ["TRAIN_TAG", "CLOUD_TAG_PREFIX", "NOT_STARTED", "cloud_tag", "cloud_of", "failure_from_run"]

TRAIN_TAG = "cloudhop-train"
CLOUD_TAG_PREFIX = "cloud:"
NOT_STARTED = "not started"


def cloud_tag(cloud: str) -> str:
    return f"{CLOUD_TAG_PREFIX}{cloud}"


def cloud_of(tags: Iterable[str]) -> str | None:
    for t in tags:
        if t.startswith(CLOUD_TAG_PREFIX) and len(t) > len(CLOUD_TAG_PREFIX):
            return t[len(CLOUD_TAG_PREFIX):]
    return None


def failure_from_run(tags: Iterable[str], state_type: str, message: str | None, at: datetime,
                     run_name: str = "") -> Failure | None:
    """A Failure for a training run that ended in an infrastructure fault, else None.

    `state_type` is the Prefect state type's value ('CRASHED', 'CANCELLED', ...).
    """
    tags = list(tags)
    cloud = cloud_of(tags)
    if TRAIN_TAG not in tags or cloud is None:
        return None
    message = (message or "").strip()
    label = f"{run_name}: " if run_name else ""
    if state_type == "CRASHED":
        return Failure(cloud, at, f"{label}crashed{': ' + message if message else ''}")
    if state_type == "CANCELLED" and message.startswith(NOT_STARTED):
        return Failure(cloud, at, f"{label}{message}")
    return None
