"""train: the training step alone, run on one cloud's work pool by `retrain`.

Reads the dataset where it lives, trains with checkpoints in the shared store (resuming
from the newest one, whichever cloud wrote it) and leaves the result in the store for
`retrain`, which registers it. A heartbeat in the store tells `retrain` it is alive (and, with
its process id, which process trains). On SIGTERM (a spot machine taken back) training saves a
checkpoint at once and the run ends Failed with a message starting "preempted", which `retrain`'s
failover tells apart from a training error.
"""
from __future__ import annotations

import os

from prefect import flow
from prefect.states import Failed

from cloudhop import telemetry
from cloudhop.clouds.failover import PREEMPTED
from cloudhop.pipeline import open_registry
from cloudhop.training.preempt import Preempted
from cloudhop.training.handoff import Heartbeat, heartbeat_key, save_trained, trained_prefix
from tasks.pipeline import load_spec_task, open_table_task, run_executor, split_task, train_task

telemetry.setup("cloudhop-train")  # OTLP spans of this run and its stages when OTEL_EXPORTER_OTLP_ENDPOINT is set


@flow(name="train", log_prints=True)
def train(spec: str | dict = "specs/flights.yaml", overrides: dict | None = None, run_key: str = "adhoc",
          cloud: str = "local", attempt: int = 1) -> dict:
    """Train the spec's model on this worker's cloud.

    Args:
        spec: The pipeline spec's content (what retrain passes), or the path of a YAML spec
            as the worker sees it.
        overrides: Spec fields to override, as dotted keys (only cloudhop.guard.OVERRIDABLE ones).
        run_key: Names this training in the store (retrain passes its flow run id).
        cloud: The cloud this deployment's work pool belongs to.
        attempt: Attempt number on this cloud (set by retrain's failover).
    """
    s = load_spec_task(spec, overrides)
    store = open_registry(s).store
    prefix = trained_prefix(s.name, run_key)
    with Heartbeat(store, heartbeat_key(prefix, cloud, attempt), cloud=cloud, attempt=attempt, pid=os.getpid()) as hb:
        table, fp = open_table_task(s)
        with run_executor(table, s, start_cluster=False) as ex:  # only a scheduler already running
            windows = split_task(table, s, ex)
        del table
        try:
            trained = train_task(s, windows, fp, where=cloud, heartbeat=hb)
        except Preempted as e:
            return Failed(message=f"{PREEMPTED}: {e}")  # type: ignore[return-value]
        save_trained(store, f"{prefix}/result", trained)
    return {"cloud": cloud, "steps": trained.info["steps"], "resumed_from_step": trained.info["resumed_from_step"]}
