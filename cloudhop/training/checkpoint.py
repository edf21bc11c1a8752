"""Checkpoint storage: where checkpoints live, how they are written and read, and whether one
may be resumed by a given training run.

Two kinds share one format (``torch.save`` of a dict of tensors and plain values, read back with
``weights_only=True``): a *resume* checkpoint holds everything the loop needs to continue
exactly (written by cloudhop.training.loop); a *final* one holds the best weights, the config
and the preprocessor (TrainResult.checkpoint; `load_model` rebuilds the model from it).
"""
from __future__ import annotations

import io
import logging
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

import torch

from cloudhop.store import Store
from cloudhop.training.config import TrainConfig
from cloudhop.training.errors import TrainingError
from cloudhop.training.model import TabularNet
from cloudhop.training.preprocess import Preprocessor

__all__ = ["CHECKPOINT_FORMAT", "CheckpointStore", "ResumePoint", "save_bytes", "load_bytes", "to_cpu",
           "load_model", "check_compatible"]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "cloudhop.training.checkpoint/1"
# Config fields a checkpoint must agree on to be resumed (device and checkpoint_every do not change the maths).
_RESUME_FIELDS = ("hidden", "embedding_dim", "dropout", "batch_size", "learning_rate", "weight_decay",
                  "max_epochs", "patience", "seed")


@dataclass(frozen=True)
class ResumePoint:
    """The newest readable resume checkpoint: its step, its bytes and what they hold."""
    step: int
    data: bytes
    state: dict[str, Any]


class CheckpointStore:
    """Checkpoints under ``prefix`` in a Store, as ``step-000000123.pt``; the newest two are kept."""

    _NAME = re.compile(r"^step-(\d{9,})\.pt$")

    def __init__(self, store: Store, prefix: str, keep: int = 2):
        self.store = store
        self.prefix = prefix.strip("/")
        self.keep = max(1, keep)

    @property
    def location(self) -> str:
        """Where the checkpoints are, for people (a URL of the prefix)."""
        return self.store.url(self.prefix or ".")

    def key(self, step: int) -> str:
        name = f"step-{step:09d}.pt"
        return f"{self.prefix}/{name}" if self.prefix else name

    def steps(self) -> list[int]:
        """Steps of the checkpoints present, oldest first."""
        found = []
        for key in self.store.list(self.prefix):
            rel = key[len(self.prefix):].lstrip("/") if self.prefix else key
            m = self._NAME.match(rel)
            if m:
                found.append(int(m.group(1)))
        return sorted(found)

    def save(self, step: int, payload: bytes) -> None:
        """Write atomically, then delete all but the newest ``keep``."""
        self.store.write_bytes(self.key(step), payload)
        for old in self.steps()[:-self.keep]:
            self.store.delete(self.key(old))

    def latest(self) -> tuple[int, bytes] | None:
        """The newest readable checkpoint; a corrupt or unreadable one is skipped for an older one."""
        found = self.resume_point()
        return (found.step, found.data) if found else None

    def resume_point(self) -> ResumePoint | None:
        """As `latest`, with the checkpoint's contents; only cloudhop resume checkpoints count."""
        for step in reversed(self.steps()):
            key = self.key(step)
            try:
                data = self.store.read_bytes(key)
                obj = load_bytes(data)
            except Exception as e:  # truncated, garbage, vanished between list and read
                log.warning("skipping unreadable checkpoint %s: %s: %s", self.store.url(key), type(e).__name__, e)
                continue
            if obj.get("format") != CHECKPOINT_FORMAT or obj.get("kind") != "resume":
                log.warning("skipping %s: not a cloudhop resume checkpoint", self.store.url(key))
                continue
            return ResumePoint(step, data, obj)
        return None


def save_bytes(obj: dict[str, Any]) -> bytes:
    """A checkpoint dict as bytes (torch.save)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def load_bytes(data: bytes) -> dict[str, Any]:
    """Checkpoint bytes back as a dict, on the CPU; only tensors and plain values are accepted."""
    obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(obj, dict):
        raise ValueError("not a checkpoint dictionary")
    return obj


def to_cpu(obj: Any) -> Any:
    """Copy tensors (nested in dicts/lists) to the CPU, for a device-independent checkpoint."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def load_model(checkpoint: bytes) -> tuple[TabularNet, Preprocessor]:
    """Rebuild (model on the CPU in eval mode, preprocessor) from TrainResult.checkpoint."""
    try:
        obj = load_bytes(checkpoint)
    except Exception as e:
        raise TrainingError(f"cannot read model checkpoint: {type(e).__name__}: {e}") from None
    if obj.get("format") != CHECKPOINT_FORMAT or "model" not in obj:
        raise TrainingError("not a cloudhop model checkpoint")
    model = TabularNet(**obj["model_args"])
    model.load_state_dict(obj["model"])
    return model.eval(), Preprocessor.from_dict(obj["preprocessor"])


def check_compatible(state: dict[str, Any], config: TrainConfig, layout: dict[str, Any],
                     preprocessor: Preprocessor | None, where: str) -> None:
    """TrainingError unless the checkpoint `state` (from `where`) was written by a run with the same
    maths: the config's resume fields, the data `layout` and, when given, the same preprocessor."""
    saved_cfg = state.get("config", {})
    now_cfg = asdict(config)
    diff = [f"{k}: checkpoint {saved_cfg.get(k)!r} vs now {now_cfg[k]!r}"
            for k in _RESUME_FIELDS if saved_cfg.get(k) != now_cfg[k]]
    saved_layout = state.get("layout", {})
    diff += [f"{k}: checkpoint {saved_layout.get(k)!r} vs now {v!r}"
             for k, v in layout.items() if saved_layout.get(k) != v]
    if preprocessor is not None and not _same_preprocessor(preprocessor.to_dict(), state["preprocessor"]):
        diff.append("preprocessor: the one given differs from the checkpoint's")
    if diff:
        raise TrainingError(f"checkpoint in {where} does not match this training run and cannot be resumed "
                            f"({'; '.join(diff)}); use a fresh checkpoint prefix")


def _same_preprocessor(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a["categorical"] != b["categorical"] or a["numeric"] != b["numeric"] or a["vocab"] != b["vocab"]:
        return False
    return all(math.isclose(a[k][c], b[k][c], rel_tol=1e-9, abs_tol=1e-12) for k in ("mean", "std") for c in a["numeric"])
