"""Tiny real model versions: a seeded torch net exported to ONNX, published with its preprocessor
and smoke set, so serving and deploy code can be tested on real artifacts in seconds."""
from __future__ import annotations

import io
import json
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cloudhop.registry import Manifest, ModelVersion, Registry
from cloudhop.testing.frames import records
from cloudhop.training.preprocess import Preprocessor

__all__ = ["export_onnx", "ort_predict", "publish_version"]


def export_onnx(cardinalities: Sequence[int], n_numeric: int, seed: int, hidden: Sequence[int] = (8,)) -> bytes:
    """ONNX bytes of a seeded net with the serving signature (`cat`, `num` -> `prediction` in [0, 1]):
    a 3-wide embedding per categorical column, then ReLU layers of the `hidden` widths."""
    import torch

    class TinyNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.ModuleList(torch.nn.Embedding(c, 3) for c in cardinalities)
            widths = [3 * len(cardinalities) + n_numeric, *hidden]
            layers = [m for a, b in zip(widths, widths[1:]) for m in (torch.nn.Linear(a, b), torch.nn.ReLU())]
            self.mlp = torch.nn.Sequential(*layers, torch.nn.Linear(widths[-1], 1))

        def forward(self, cat, num):
            x = torch.cat([e(cat[:, i]) for i, e in enumerate(self.emb)] + [num], dim=1)
            return torch.sigmoid(self.mlp(x)).squeeze(1)

    torch.manual_seed(seed)
    net = TinyNet().eval()
    buf = io.BytesIO()
    example = (torch.zeros(2, len(cardinalities), dtype=torch.long), torch.zeros(2, n_numeric))
    torch.onnx.export(net, example, buf,  # type: ignore[arg-type]  # a file object works; the stubs say paths
                      input_names=["cat", "num"], output_names=["prediction"],
                      dynamic_axes={"cat": {0: "n"}, "num": {0: "n"}, "prediction": {0: "n"}},
                      opset_version=17, dynamo=False)
    return buf.getvalue()


def ort_predict(onnx_bytes: bytes, pre: Preprocessor, df: pd.DataFrame) -> np.ndarray:
    """The offline reference: the DataFrame transform + ONNX Runtime in this process."""
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    cat, num = pre.transform(df)
    return sess.run(["prediction"], {"cat": cat, "num": num})[0]


def publish_version(registry: Registry, pre: Preprocessor, seed: int, smoke_df: pd.DataFrame, *,
                    hidden: Sequence[int] = (8,), manifest: Manifest | None = None) -> ModelVersion:
    """Publish a new version: `export_onnx`'s model for `pre`, `pre` itself, and `smoke_df` with the
    reference predictions as its smoke set, under `manifest` (default: an empty one)."""
    onnx_bytes = export_onnx(pre.cardinalities, len(pre.numeric), seed, hidden)
    smoke = {"rows": records(smoke_df), "predictions": ort_predict(onnx_bytes, pre, smoke_df).tolist()}
    files = {"model.onnx": onnx_bytes, "preprocess.json": json.dumps(pre.to_dict()).encode(),
             "smoke.json": json.dumps(smoke).encode()}
    return registry.publish(files, Manifest() if manifest is None else manifest)
