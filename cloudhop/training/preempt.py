"""Preemption: a spot machine taken back gives notice (AWS two minutes, GCP 30 s, Azure at least
30 s), then the platform stops the container with SIGTERM and a grace period (30 s by default on
Kubernetes and ECS) before SIGKILL.

While training runs, SIGTERM only sets a flag; the loop sees it after the current step, saves a
checkpoint at once and raises `Preempted`, so the next attempt (on-demand, or another cloud)
resumes from that step instead of the last periodic checkpoint. Outside training, and where no
handler can be set (a thread other than the main one), SIGTERM keeps its previous behaviour.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

__all__ = ["Preempted", "stop_on_sigterm"]


class Preempted(RuntimeError):
    """Training stopped because the machine is being taken back; a checkpoint at `step` was saved.

    Not a TrainingError: the code and the data are fine, so failover may run it again elsewhere."""

    def __init__(self, step: int):
        super().__init__(f"SIGTERM received: stopped at step {step} with a checkpoint saved")
        self.step = step


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[threading.Event]:
    """An Event set when SIGTERM arrives inside the block (the previous handler is restored after).

    In a thread other than the main one no handler can be installed: the Event is never set."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)
