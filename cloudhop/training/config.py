"""Training settings: checked once, here, so a bad value fails before any data is read.

Imports no torch: a spec's model section can be checked where torch is not installed.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from cloudhop.training.errors import TrainingError

__all__ = ["TrainConfig", "TRAINER_GPUS"]

TRAINER_GPUS = 1  # the loop trains on one device (loop.pick_device): placement asks for no more


@dataclass
class TrainConfig:
    hidden: list[int] = field(default_factory=lambda: [128, 64])
    embedding_dim: int = 8
    dropout: float = 0.1
    batch_size: int = 1024
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    max_epochs: int = 8
    patience: int = 2
    checkpoint_every: int = 200
    seed: int = 0
    device: str = "auto"  # 'auto' | 'cpu' | 'cuda'
    cpu_threads: int | None = 1  # torch intra-op threads on CPU; None keeps torch's setting

    def __post_init__(self) -> None:
        self.hidden = [int(h) for h in self.hidden]
        problems = []
        if any(h < 1 for h in self.hidden):
            problems.append(f"hidden sizes must be >= 1, got {self.hidden}")
        for name in ("embedding_dim", "batch_size", "max_epochs", "patience", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if problems:
            raise TrainingError("invalid training config: " + "; ".join(problems))

    @classmethod
    def from_spec(cls, model_spec: Any) -> "TrainConfig":
        """From the spec's ``model`` section (a pydantic ModelSpec or a plain dict)."""
        data = model_spec.model_dump() if hasattr(model_spec, "model_dump") else dict(model_spec)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
