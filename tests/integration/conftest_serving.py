"""Fixtures for the serving tests: real ONNX model versions in a tmp store, a real server process.

Import explicitly: `from tests.integration.conftest_serving import ...` (not a pytest conftest).
"""
from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from cloudhop.registry import Manifest, ModelVersion, Registry
from cloudhop.training.preprocess import Preprocessor

CATEGORICAL = ["carrier", "origin"]
NUMERIC = ["distance", "temp", "hour"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    temp = rng.normal(55, 15, n)
    temp[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({
        "carrier": rng.choice(["AA", "B6", "DL", "UA", "WN"], n),
        "origin": rng.choice(["EWR", "JFK", "LGA"], n),
        "distance": rng.uniform(100, 2500, n).round(),
        "temp": temp,
        "hour": rng.integers(5, 23, n),
    })


def records(df: pd.DataFrame) -> list[dict]:
    """JSON-able rows, NaN -> None (what an HTTP client sends)."""
    return json.loads(df.to_json(orient="records"))


def export_onnx(cardinalities: list[int], n_numeric: int, seed: int) -> bytes:
    import torch

    class TinyNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.ModuleList(torch.nn.Embedding(c, 3) for c in cardinalities)
            self.mlp = torch.nn.Sequential(torch.nn.Linear(3 * len(cardinalities) + n_numeric, 8),
                                           torch.nn.ReLU(), torch.nn.Linear(8, 1))

        def forward(self, cat, num):
            x = torch.cat([e(cat[:, i]) for i, e in enumerate(self.emb)] + [num], dim=1)
            return torch.sigmoid(self.mlp(x)).squeeze(1)

    torch.manual_seed(seed)
    net = TinyNet().eval()
    buf = io.BytesIO()
    example = (torch.zeros(2, len(cardinalities), dtype=torch.long), torch.zeros(2, n_numeric))
    torch.onnx.export(net, example, buf, input_names=["cat", "num"], output_names=["prediction"],
                      dynamic_axes={"cat": {0: "n"}, "num": {0: "n"}, "prediction": {0: "n"}},
                      opset_version=17, dynamo=False)
    return buf.getvalue()


def ort_predict(onnx_bytes: bytes, pre: Preprocessor, df: pd.DataFrame) -> np.ndarray:
    """The offline reference: the DataFrame transform + ONNX Runtime in this process."""
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    cat, num = pre.transform(df)
    return sess.run(["prediction"], {"cat": cat, "num": num})[0]


def publish_version(registry: Registry, pre: Preprocessor, seed: int, smoke_df: pd.DataFrame) -> ModelVersion:
    onnx_bytes = export_onnx(pre.cardinalities, len(pre.numeric), seed)
    preds = ort_predict(onnx_bytes, pre, smoke_df)
    smoke = {"rows": records(smoke_df), "predictions": preds.tolist()}
    files = {"model.onnx": onnx_bytes, "preprocess.json": json.dumps(pre.to_dict()).encode(),
             "smoke.json": json.dumps(smoke).encode()}
    return registry.publish(files, Manifest())


class ServerProcess:
    """`python -m cloudhop.serving` on a free port, stopped by its pid."""

    def __init__(self, store_uri: str, model: str, version: str, log_path: Path, *args: str,
                 env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        cmd = [sys.executable, "-m", "cloudhop.serving", "--store", store_uri, "--model", model,
               "--version", version, "--port", str(self.port), *args]
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 60.0) -> "ServerProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not healthy in {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
