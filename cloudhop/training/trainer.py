"""`train`: a TabularNet trained on a frame or a table, with early stopping and checkpoint/resume.

It checks the layout, picks the batch source (cloudhop.training.batches: in memory for a frame
or an in-memory table, streamed a part at a time for any other table), encodes the validation
rows, checks a checkpoint found against this run, and hands over to the one training loop
(cloudhop.training.loop).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from cloudhop.training.batches import (BatchSource, InMemoryBatches, StreamedBatches, Table, as_frame,
                                       encode_validation)
from cloudhop.training.checkpoint import CheckpointStore, check_compatible
from cloudhop.training.config import TrainConfig
from cloudhop.training.errors import TrainingError
from cloudhop.training.loop import Progress, TrainingLoop, TrainResult, pick_device
from cloudhop.training.preprocess import Preprocessor

if TYPE_CHECKING:
    from cloudhop.training.evaluate import Baseline

__all__ = ["train", "check_layout", "check_preprocessor"]


def train(train: pd.DataFrame | Table, valid: pd.DataFrame | Table, *, categorical: list[str], numeric: list[str],
          target: str, task: str, config: TrainConfig, checkpoints: CheckpointStore | None = None,
          progress: Progress | None = None, preprocessor: Preprocessor | None = None,
          init_linear: "Baseline | None" = None) -> TrainResult:
    """Train a TabularNet with early stopping on `valid`; resume from ``checkpoints`` when it holds one.

    ``train`` and ``valid`` are each a pandas DataFrame or a table (`cloudhop.training.batches.Table`,
    e.g. one of cloudhop.data's): a table that is not in memory is streamed a part at a time.

    ``preprocessor``: fitted on the training rows when not given (nor taken from a checkpoint).
    ``init_linear``: a fitted linear baseline (cloudhop.training.evaluate.fit_baseline, on the same
    preprocessor) whose weights start the network's wide part, so training begins at the baseline
    and the deep part learns what it misses; the starting point also counts for early stopping.

    Binary targets map to 0/1 as in encode_binary. Reported losses are BCE (binary) or MSE on the
    standardised target (regression). Runs inside a forked RNG, so the caller's RNG state is untouched.
    """
    categorical, numeric, cols = check_layout(task, categorical, numeric, target)
    if preprocessor is not None:
        check_preprocessor(preprocessor, categorical, numeric)
    device = pick_device(config.device)
    resume = checkpoints.resume_point() if checkpoints is not None else None
    if resume is not None and preprocessor is None:  # the checkpoint's own: no refit, and exactly the same features
        preprocessor = Preprocessor.from_dict(resume.state["preprocessor"])

    kw: dict[str, Any] = dict(categorical=categorical, numeric=numeric, target=target, task=task,
                              preprocessor=preprocessor, device=device, seed=config.seed,
                              batch_size=config.batch_size)
    frame = as_frame(train, "training data")
    source: BatchSource = InMemoryBatches(frame, **kw) if frame is not None else StreamedBatches(train, **kw)
    valid_t = encode_validation(valid, cols, target, source.preprocessor, source.coding, device)
    layout = {"categorical": categorical, "numeric": numeric, "target": target, "task": task,
              "classes": source.coding.classes, "n_train": source.rows, "n_valid": int(valid_t[2].shape[0]),
              "target_sum": float(f"{source.target_sum:.6g}")}
    if resume is not None:
        check_compatible(resume.state, config, layout, source.preprocessor, checkpoints.location)  # type: ignore[union-attr]
    return TrainingLoop(config, device, task, layout, source, valid_t, checkpoints, progress).run(init_linear, resume)


def check_layout(task: str, categorical: list[str], numeric: list[str], target: str
                 ) -> tuple[list[str], list[str], list[str]]:
    """TrainingError for a task or feature layout that cannot be trained; else the feature lists
    and every column training reads."""
    if task not in ("binary", "regression"):
        raise TrainingError(f"task must be 'binary' or 'regression', not {task!r}")
    categorical, numeric = list(categorical), list(numeric)
    if not categorical and not numeric:
        raise TrainingError("no feature columns: give at least one categorical or numeric column")
    if target in categorical or target in numeric:
        raise TrainingError(f"target column {target!r} is also listed as a feature")
    return categorical, numeric, categorical + numeric + [target]


def check_preprocessor(preprocessor: Preprocessor, categorical: list[str], numeric: list[str]) -> None:
    """TrainingError unless `preprocessor` was fitted on exactly these features, in this order."""
    if preprocessor.categorical != categorical or preprocessor.numeric != numeric:
        raise TrainingError(f"the preprocessor was fitted on features {preprocessor.categorical + preprocessor.numeric}, "
                            f"not {categorical + numeric}")
