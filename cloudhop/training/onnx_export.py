"""ONNX export of a trained TabularNet, ONNX Runtime predictions, and a torch-vs-ONNX parity check.

The graph has inputs ``cat`` (int64 [N, C]) and ``num`` (float32 [N, K]) with a dynamic batch N,
and one output ``prediction`` (float32 [N]): the positive-class probability (binary) or the value
in the target's units (regression).
"""
from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from cloudhop.training.model import PredictionHead, TabularNet
from cloudhop.training.preprocess import Preprocessor
from cloudhop.training.errors import TrainingError

__all__ = ["export_onnx", "onnx_predict", "check_parity", "onnx_session"]

_OPSET = 18


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter warns about optional torchvision ops and renamed axes; neither concerns us."""
    noisy = [logging.getLogger(n) for n in ("torch.onnx", "torch.onnx._internal.exporter._registration", "torch.export")]
    levels = [lg.level for lg in noisy]
    try:
        for lg in noisy:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(noisy, levels):
            lg.setLevel(lvl)


def export_onnx(model: TabularNet, preprocessor: Preprocessor) -> bytes:
    """Serialise ``model.predict`` to ONNX bytes (torch.export-based exporter)."""
    n_cat, n_num = len(preprocessor.categorical), len(preprocessor.numeric)
    if model.cardinalities != preprocessor.cardinalities or model.n_numeric != n_num:
        raise TrainingError(f"model expects cardinalities {model.cardinalities} and {model.n_numeric} numerics; "
                            f"the preprocessor gives {preprocessor.cardinalities} and {n_num}")
    head = PredictionHead(copy.deepcopy(model).cpu().float().eval())
    example = (torch.zeros(2, n_cat, dtype=torch.int64), torch.zeros(2, n_num, dtype=torch.float32))
    batch = torch.export.Dim("batch", min=1)
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(head, example, None, input_names=["cat", "num"],
                                        output_names=["prediction"], opset_version=_OPSET, dynamo=True,
                                        dynamic_shapes={"cat": {0: batch}, "num": {0: batch}}, verbose=False)
    except Exception as e:
        raise TrainingError(f"ONNX export failed: {type(e).__name__}: {e}") from e
    if program is None:  # only when a file path is given, which this call does not
        raise TrainingError("ONNX export returned no program")
    data = program.model_proto.SerializeToString()
    names = [i.name for i in onnx_session(data).get_inputs()]
    if names != ["cat", "num"]:  # the exporter drops unused inputs; the serving contract needs both
        raise TrainingError(f"exported ONNX graph has inputs {names}, expected ['cat', 'num']")
    return data


def onnx_session(onnx_bytes: bytes):
    """An ONNX Runtime CPU session over the bytes."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes, sess_options=opts, providers=["CPUExecutionProvider"])


def onnx_predict(onnx_bytes: bytes, preprocessor: Preprocessor, df: pd.DataFrame) -> np.ndarray:
    """Predictions (float32 [N]) for the rows of df, via ONNX Runtime on the CPU."""
    cat, num = preprocessor.transform(df)
    if len(df) == 0:
        return np.zeros(0, dtype=np.float32)
    (out,) = onnx_session(onnx_bytes).run(["prediction"], {"cat": cat, "num": num})
    return np.asarray(out, dtype=np.float32).reshape(-1)


def check_parity(model: TabularNet, onnx_bytes: bytes, preprocessor: Preprocessor, df: pd.DataFrame,
                 atol: float = 1e-4, rtol: float = 1e-5) -> float:
    """Max |torch - onnx| over df's rows; TrainingError where a row differs by more than atol + rtol*|torch|."""
    if len(df) == 0:
        raise TrainingError("parity check needs at least one row")
    cat, num = preprocessor.transform(df)
    net = copy.deepcopy(model).cpu().float().eval()
    with torch.inference_mode():
        ref = net.predict(torch.from_numpy(cat), torch.from_numpy(num)).numpy().astype(np.float64)
    got = onnx_predict(onnx_bytes, preprocessor, df).astype(np.float64)
    if got.shape != ref.shape:
        raise TrainingError(f"ONNX output has shape {got.shape}, torch {ref.shape}")
    diff = np.abs(got - ref)
    if not np.all(np.isfinite(got)):
        raise TrainingError(f"ONNX predictions contain {int((~np.isfinite(got)).sum())} non-finite values")
    over = diff > atol + rtol * np.abs(ref)
    if over.any():
        i = int(np.argmax(np.where(over, diff, -1.0)))
        raise TrainingError(f"ONNX and torch predictions differ: {int(over.sum())} of {len(diff)} rows beyond "
                            f"atol={atol}, rtol={rtol}; worst row {i}: torch {ref[i]:.6g}, onnx {got[i]:.6g}")
    return float(diff.max())
