"""The tabular network: one embedding per categorical, concatenated with the numerics, then an MLP,
plus a wide (linear) part over the same inputs: a wide-and-deep model, so the network contains a
logistic/linear regression on one-hot categoricals and can only add to it."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

__all__ = ["TabularNet", "PredictionHead"]


class TabularNet(nn.Module):
    """Embeddings + MLP with one output.

    All categoricals share one embedding table, each in its own slice (an offset per column):
    the same maths as one ``nn.Embedding`` per column, done in a single gather.

    ``forward`` gives the training-scale output: a logit (binary) or the standardised target
    (regression). ``predict`` gives real units: the positive-class probability or the target value.
    """

    offsets: torch.Tensor  # buffers (register_buffer), typed for the checker
    target_mean: torch.Tensor
    target_std: torch.Tensor

    def __init__(self, cardinalities: Sequence[int], n_numeric: int, hidden: Sequence[int],
                 embedding_dim: int, dropout: float, task: str,
                 target_mean: float = 0.0, target_std: float = 1.0, wide: bool = True):
        super().__init__()
        if task not in ("binary", "regression"):
            raise ValueError(f"task must be 'binary' or 'regression', not {task!r}")
        self.task = task
        self.cardinalities = [int(c) for c in cardinalities]
        self.n_numeric = int(n_numeric)
        self.hidden = [int(h) for h in hidden]
        self.embedding_dim = int(embedding_dim)
        self.dropout = float(dropout)
        offsets = [0]
        for c in self.cardinalities[:-1]:
            offsets.append(offsets[-1] + c)
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.int64).reshape(1, -1))
        self.embedding = nn.Embedding(max(sum(self.cardinalities), 1), self.embedding_dim)
        layers: list[nn.Module] = []
        width = len(self.cardinalities) * self.embedding_dim + self.n_numeric
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(self.dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)
        self.wide = bool(wide)
        if self.wide:  # one weight per category (one-hot), one per numeric: starts at zero
            self.wide_cat = nn.Embedding(max(sum(self.cardinalities), 1), 1)
            nn.init.zeros_(self.wide_cat.weight)
            self.wide_num = nn.Linear(self.n_numeric, 1) if self.n_numeric else None
            if self.wide_num is not None:
                nn.init.zeros_(self.wide_num.weight)
                nn.init.zeros_(self.wide_num.bias)
        self.register_buffer("target_mean", torch.tensor(float(target_mean)))
        self.register_buffer("target_std", torch.tensor(float(target_std)))

    def init_args(self) -> dict[str, Any]:
        """The constructor arguments (for rebuilding from a checkpoint)."""
        return {"cardinalities": self.cardinalities, "n_numeric": self.n_numeric, "hidden": self.hidden,
                "embedding_dim": self.embedding_dim, "dropout": self.dropout, "task": self.task,
                "target_mean": float(self.target_mean), "target_std": float(self.target_std), "wide": self.wide}

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        """cat int64 [N, C], num float32 [N, K] -> logit or standardised value [N]."""
        if self.cardinalities:
            ids = cat + self.offsets
            emb = self.embedding(ids).flatten(1)
            x = torch.cat([emb, num], dim=1) if self.n_numeric else emb
        else:
            x = num
        out = self.mlp(x).squeeze(-1)
        if self.wide:
            if self.cardinalities:
                out = out + self.wide_cat(ids).sum(dim=(1, 2))
            if self.wide_num is not None:
                out = out + self.wide_num(num).squeeze(-1)
        return out

    def predict(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        """Real units: the positive-class probability (binary) or the target value (regression)."""
        out = self.forward(cat, num).float()
        if self.task == "binary":
            return torch.sigmoid(out)
        return out * self.target_std + self.target_mean


class PredictionHead(nn.Module):
    """Wraps a TabularNet so that ``forward`` is ``predict`` (what ONNX export traces)."""

    def __init__(self, net: TabularNet):
        super().__init__()
        self.net = net

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        return self.net.predict(cat, num)
