"""The handoff between a training run on a cloud's pool and the run that waits for it.

Both sides share only the store: the training run writes a heartbeat every few seconds
while it trains and, once done, its result; the waiting run reads the heartbeat to tell a
slow run from a dead one, then loads the result and registers it.

    with Heartbeat(store, heartbeat_key(prefix, cloud, attempt), cloud=cloud) as hb:
        trained = ...                       # hb.update(progress) from the training callback
        save_trained(store, f"{prefix}/result", trained)
    trained = load_trained(store, f"{prefix}/result")     # in the waiting run
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from cloudhop.store import Store, sha256_bytes

__all__ = ["Trained", "HandoffError", "trained_prefix", "heartbeat_key", "save_trained", "load_trained",
           "Heartbeat"]


class HandoffError(RuntimeError):
    """A training result that is missing or does not match its checksums."""


@dataclass
class Trained:
    """What the training step hands on: everything needed to evaluate and register."""
    onnx: bytes
    preprocess: dict[str, Any]
    checkpoint: bytes
    history: list[dict[str, Any]]
    info: dict[str, Any]  # steps, resumed_from_step, device, samples_per_s, parity, where
    baseline: Any = None  # the linear baseline the network started from (not stored; refitted when absent)


def trained_prefix(model: str, run_key: str) -> str:
    """Where a remote training run of `run_key` leaves its heartbeats and result."""
    return f"runs/{model}/{run_key}/training"


def heartbeat_key(prefix: str, cloud: str, attempt: int) -> str:
    """The heartbeat of one attempt on one cloud, under a run's `trained_prefix`."""
    return f"{prefix}/heartbeat-{cloud}-{attempt}.json"


_FILES = ("model.onnx", "preprocess.json", "checkpoint.pt", "history.json", "info.json")


def save_trained(store: Store, prefix: str, trained: Trained) -> None:
    """Hand a trained model to the run that registers it, through the store.

    `done.json` (with the sha256 of each file) is written last: a reader sees all or nothing.
    """
    blobs = {"model.onnx": trained.onnx, "preprocess.json": json.dumps(trained.preprocess).encode(),
             "checkpoint.pt": trained.checkpoint, "history.json": json.dumps(trained.history).encode(),
             "info.json": json.dumps(trained.info, default=str).encode()}
    for name, data in blobs.items():
        store.write_bytes(f"{prefix}/{name}", data)
    store.write_json(f"{prefix}/done.json", {n: sha256_bytes(d) for n, d in blobs.items()})


def load_trained(store: Store, prefix: str) -> Trained:
    if not store.exists(f"{prefix}/done.json"):
        raise HandoffError(f"no finished training result at {store.url(prefix)}")
    want = store.read_json(f"{prefix}/done.json")
    blobs = {}
    for name in _FILES:
        data = store.read_bytes(f"{prefix}/{name}")
        if sha256_bytes(data) != want[name]:
            raise HandoffError(f"training result {store.url(prefix + '/' + name)} does not match its checksum")
        blobs[name] = data
    return Trained(blobs["model.onnx"], json.loads(blobs["preprocess.json"]), blobs["checkpoint.pt"],
                   json.loads(blobs["history.json"]), json.loads(blobs["info.json"]))


class Heartbeat:
    """Writes {"at", "step", ...} to a store key every `interval` seconds from a thread,
    so whoever waits on a remote training run can tell a slow run from a dead one."""

    def __init__(self, store: Store, key: str, interval: float = 2.0, **fields: Any):
        self.store, self.key, self.interval, self.fields = store, key, interval, dict(fields)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cloudhop-heartbeat", daemon=True)
        self.progress: dict[str, Any] = {}

    def update(self, progress: dict[str, Any]) -> None:
        self.progress = dict(progress)

    def beat(self) -> None:
        self.store.write_json(self.key, {"at": time.time(), **self.fields, **self.progress})

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # a missed beat is not worth killing the training for
                pass

    def __enter__(self) -> "Heartbeat":
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
