"""Training on CUDA with mixed precision: autocast (bf16, or fp16 with a GradScaler where the GPU
has no bf16), checkpoints that resume on the CPU, and an ONNX export that matches torch on the GPU.
Each test needs a GPU and skips cleanly without one (benchmarks/gpu_check.sh runs them there);
the last checks that the GPU check itself stops clearly where there is none."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cloudhop.store import Store
from cloudhop.training import CheckpointStore, TrainConfig, export_onnx, onnx_predict, train
from cloudhop.training.loop import amp_settings

ROOT = Path(__file__).resolve().parents[2]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def rows(n: int, seed: int) -> pd.DataFrame:
    """A label that depends on a category and a number."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"c": rng.choice(["p", "q", "r", "s"], n), "x": rng.normal(0, 1, n)})
    logit = 2.0 * df["x"].to_numpy() + df["c"].map({"p": 1.0, "q": -1.0, "r": 0.5, "s": 0.0}).to_numpy()
    df["y"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")
    return df


def run(device: str, checkpoints=None, progress=None, epochs: int = 3):
    config = TrainConfig(hidden=[64, 32], embedding_dim=4, batch_size=256, max_epochs=epochs, patience=epochs + 1,
                         checkpoint_every=5, seed=2, device=device)
    return train(rows(4000, 0), rows(1000, 1), categorical=["c"], numeric=["x"], target="y", task="binary",
                 config=config, checkpoints=checkpoints, progress=progress)


@pytest.fixture()
def linear_dtypes():
    """The dtypes of every nn.Linear output computed while a module is in training mode."""
    seen: set[torch.dtype] = set()

    def hook(module, args, out):
        if isinstance(module, torch.nn.Linear) and module.training:
            seen.add(out.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    yield seen
    handle.remove()


@needs_cuda
def test_cuda_training_autocasts_and_learns(linear_dtypes):
    dtype, scaler = amp_settings(torch.device("cuda"))
    assert (dtype, scaler) == ((torch.bfloat16, False) if torch.cuda.is_bf16_supported() else (torch.float16, True))
    r = run("cuda")
    assert r.device.startswith("cuda")
    assert linear_dtypes == {dtype}                    # every training forward ran under autocast
    losses = [h["valid_loss"] for h in r.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0] < 0.69
    assert next(r.model.parameters()).device.type == "cpu"  # handed back on the CPU, float32
    assert all(p.dtype == torch.float32 for p in r.model.parameters())


@needs_cuda
def test_fp16_with_grad_scaler_where_bf16_is_missing(tmp_path, monkeypatch, linear_dtypes):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # an older GPU
    assert amp_settings(torch.device("cuda")) == (torch.float16, True)
    store = CheckpointStore(Store(str(tmp_path)), "fp16")
    r = run("cuda", checkpoints=store)
    assert linear_dtypes == {torch.float16}
    assert np.isfinite(r.best_valid_loss) and r.history[-1]["valid_loss"] < 0.69
    scaler = store.resume_point().state["scaler"]
    assert scaler["scale"] > 0 and scaler["_growth_tracker"] >= 0   # the scaler ran and was saved


@needs_cuda
def test_a_gpu_checkpoint_resumes_on_the_cpu(tmp_path):
    class Stop(Exception):
        pass

    def stop(e):
        if e["event"] == "checkpoint" and e["step"] >= 20:
            raise Stop

    store = CheckpointStore(Store(str(tmp_path)), "moved")
    with pytest.raises(Stop):
        run("cuda", checkpoints=store, progress=stop)
    resumed = run("cpu", checkpoints=store)
    assert resumed.resumed_from_step == 20 and resumed.device == "cpu"
    assert resumed.steps == run("cpu").steps and np.isfinite(resumed.best_valid_loss)


@needs_cuda
def test_onnx_export_of_a_gpu_model_matches_torch_on_the_gpu():
    r = run("cuda", epochs=2)
    hold = rows(3000, 9)
    onnx_bytes = export_onnx(r.model, r.preprocessor)
    cat, num = (torch.from_numpy(a).cuda() for a in r.preprocessor.transform(hold))
    with torch.inference_mode():
        on_gpu = r.model.cuda().eval().predict(cat, num).cpu().numpy()
    diff = np.abs(on_gpu.astype(np.float64) - onnx_predict(onnx_bytes, r.preprocessor, hold))
    assert diff.max() < 1e-4


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_gpu_check_stops_clearly_without_cuda():
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                       timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert p.returncode == 2, p.stderr
    assert "no CUDA device" in p.stderr and "--cpu-dry-run" in p.stderr
    assert "== 1/2" not in p.stdout  # nothing ran
