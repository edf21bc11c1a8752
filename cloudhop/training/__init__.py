"""Training: the tabular torch model, the loop with checkpoint/resume, ONNX export, metrics, plots.

    result = train(windows.train, windows.validation, categorical=..., numeric=..., target=..., task=...,
                   config=TrainConfig.from_spec(spec.model), checkpoints=CheckpointStore(store, prefix))
    onnx = export_onnx(result.model, result.preprocessor)
    check_parity(result.model, onnx, result.preprocessor, windows.holdout)

Modules, lowest first: ``errors``, ``config``, ``labels`` (target encoding) and ``preprocess``
(features) import no torch; ``model``; ``checkpoint`` (storage, load_model, check_compatible);
``batches`` (the batch sources: in memory, or streamed from a table's parts); ``preempt`` (SIGTERM
stops training as preempted); ``loop`` (the one training loop); ``trainer`` (``train``, which picks
the batch source); then ``evaluate`` (metrics, baseline, promotion; no torch), ``onnx_export``, ``plots`` and ``handoff``.

Names load lazily: ``cloudhop.training.preprocess`` (used by the inference server) must not pull in torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "config", "TrainResult": "loop", "TrainingError": "errors", "CheckpointStore": "checkpoint",
    "train": "trainer", "load_model": "checkpoint", "encode_binary": "labels",
    "export_onnx": "onnx_export", "onnx_predict": "onnx_export", "check_parity": "onnx_export",
    "loss_curve_png": "plots", "Preprocessor": "preprocess", "Preempted": "preempt",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
