"""GPU check: train the flights model on CUDA (mixed precision) and print its figures.

    python benchmarks/gpu_check.py [--epochs 3] [--batch-size N] [--peak-tflops T] [--cpu-dry-run] [--rows N]
    (benchmarks/gpu_check.sh runs the CUDA tests first, then this, within 8 minutes)

Figures, each beside its baseline from the same run:
- training samples/s on the GPU (TrainResult.samples_per_s: optimizer steps, checkpoints and
  progress included, validation passes not), beside the same model, batch size and rows on the CPU
  (one epoch on at most --cpu-rows rows);
- model FLOP/s: FLOPs of one training step (forward and backward, counted by
  torch.utils.flop_counter on one batch) per sample, times samples/s; utilisation against the
  GPU's dense peak for the autocast dtype, from PEAK_TFLOPS by device name or --peak-tflops;
- parity of the GPU-trained model's ONNX export: max |torch on the GPU (float32) - ONNX Runtime on
  the CPU| over the holdout window; above 1e-4 the check fails (exit 1).

Without CUDA it stops at once with exit code 2 and says why, unless --cpu-dry-run: then every
step runs on the CPU (few rows, one epoch) to check this script's plumbing, and no GPU figure
is claimed.
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402

NO_CUDA = 2
PARITY_ATOL = 1e-4

# Dense (no sparsity) tensor-core peak in TFLOP/s for the dtype the training loop autocasts to
# (bf16; fp16 where the GPU has no bf16), from the vendors' datasheets, as of 2026-12-01.
# Matched against torch.cuda.get_device_name(), first match wins (so "H100 PCIe" before "H100").
PEAK_TFLOPS_DATE = "2026-12-01"
PEAK_TFLOPS = [
    ("B200", 2250.0), ("H200", 989.4), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4),
    ("A100", 312.0), ("L40S", 362.1), ("L4", 121.0), ("A10", 125.0), ("V100", 125.0), ("T4", 65.0),
]


def peak_tflops(name: str) -> float | None:
    return next((t for key, t in PEAK_TFLOPS if key.lower() in name.lower()), None)


def train_flops_per_sample(model: torch.nn.Module, cat: torch.Tensor, num: torch.Tensor, task: str) -> float:
    """FLOPs of one training step (forward + backward) per sample, counted on a copy of the model on the CPU."""
    from torch.utils.flop_counter import FlopCounterMode

    from cloudhop.training.loop import loss_fn

    net = copy.deepcopy(model).cpu().float().train()
    with FlopCounterMode(display=False) as counter:
        out = net(cat, num)
        loss_fn(task, out, torch.zeros_like(out)).backward()
    return counter.get_total_flops() / cat.shape[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default=str(ROOT / "specs" / "flights.yaml"))
    ap.add_argument("--epochs", type=int, default=3, help="training epochs (early stopping off)")
    ap.add_argument("--batch-size", type=int, default=0, help="batch size (0: the spec's)")
    ap.add_argument("--rows", type=int, default=0, help="training rows used (0: the whole training window)")
    ap.add_argument("--cpu-rows", type=int, default=20_000, help="rows of the CPU baseline's one epoch")
    ap.add_argument("--peak-tflops", type=float, default=0.0, help="the GPU's peak TFLOP/s (else from the table)")
    ap.add_argument("--cpu-dry-run", action="store_true", help="no GPU: run every step on the CPU, few rows")
    ap.add_argument("--probe", action="store_true", help="only check that CUDA is there (exit 2, and why, if not)")
    a = ap.parse_args(argv)

    cuda = torch.cuda.is_available()
    if not cuda and not a.cpu_dry_run:
        print(f"gpu_check: no CUDA device: torch {torch.__version__} (built for CUDA {torch.version.cuda or 'none'}) "
              "sees no GPU. Run it on a machine with CUDA and a CUDA build of torch, or pass --cpu-dry-run "
              "to check the plumbing on the CPU.", file=sys.stderr)
        return NO_CUDA
    if a.probe:
        print(f"gpu_check: CUDA device {torch.cuda.get_device_name()} (torch {torch.__version__}, "
              f"CUDA {torch.version.cuda})" if cuda else "gpu_check: CPU dry run")
        return 0
    if a.cpu_dry_run:
        a.rows, a.epochs = a.rows or 20_000, 1

    from cloudhop.data import FrameTable, flights_table, split
    from cloudhop.spec import load_spec
    from cloudhop.store import Store
    from cloudhop.training import CheckpointStore, TrainConfig, export_onnx, onnx_predict, train
    from cloudhop.training.evaluate import metrics
    from cloudhop.training.loop import amp_settings, pick_device

    t0 = time.perf_counter()
    spec = load_spec(a.spec)
    w = split(FrameTable(flights_table(), time_column=spec.split.time_column), spec)
    train_df, valid_df, hold = (x.to_pandas() for x in (w.train, w.validation, w.holdout))
    if a.rows:
        train_df = train_df.head(a.rows)
    base = TrainConfig.from_spec(spec.model)
    cfg = replace(base, max_epochs=a.epochs, patience=a.epochs + 1, batch_size=a.batch_size or base.batch_size,
                  device="cpu" if a.cpu_dry_run else "cuda")
    device = pick_device(cfg.device)
    amp_dtype, scaler = amp_settings(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run)"
    kw = dict(categorical=spec.categorical, numeric=spec.numeric, target=spec.target.column, task=spec.target.task)
    print(f"device: {name}; torch {torch.__version__}, CUDA {torch.version.cuda or 'none'}; autocast "
          f"{amp_dtype or 'off'}{' + GradScaler' if scaler else ''}; {len(train_df):,} training rows, "
          f"batch {cfg.batch_size}, {cfg.max_epochs} epoch(s); "
          f"data ready in {time.perf_counter() - t0:.1f} s", flush=True)

    with tempfile.TemporaryDirectory(prefix="cloudhop-gpu-check-") as tmp:
        t = time.perf_counter()
        result = train(train_df, valid_df, config=cfg, checkpoints=CheckpointStore(Store(tmp), "gpu"), **kw)
        train_s = time.perf_counter() - t
    cpu_cfg = replace(cfg, max_epochs=1, patience=2, device="cpu")
    cpu = train(train_df.head(a.cpu_rows), valid_df.head(2_000), config=cpu_cfg, preprocessor=result.preprocessor, **kw)

    pre = result.preprocessor
    cat, num = (torch.from_numpy(x) for x in pre.transform(train_df.head(cfg.batch_size)))
    flops = train_flops_per_sample(result.model, cat, num, spec.target.task)
    peak = a.peak_tflops or (peak_tflops(name) if device.type == "cuda" else None)
    achieved = result.samples_per_s * flops / 1e12

    onnx_bytes = export_onnx(result.model, pre)
    hcat, hnum = (torch.from_numpy(x).to(device) for x in pre.transform(hold))
    net = copy.deepcopy(result.model).to(device).float().eval()
    with torch.inference_mode():
        ref = net.predict(hcat, hnum).cpu().numpy().astype(np.float64)
    got = onnx_predict(onnx_bytes, pre, hold).astype(np.float64)
    parity = float(np.abs(ref - got).max())
    auc = metrics(spec.target.task, hold[spec.target.column], got, classes=result.classes)["roc_auc"]

    where = "GPU" if device.type == "cuda" else "CPU (dry run)"
    print()
    print(f"{'figure':<58}{where:>16}{'baseline':>16}")
    print(f"{'training samples/s':<58}{result.samples_per_s:>16,.0f}{cpu.samples_per_s:>16,.0f}"
          f"   (baseline: CPU, {min(a.cpu_rows, len(train_df)):,} rows, 1 epoch)")
    print(f"{'model FLOPs per training sample (fwd + bwd)':<58}{flops:>16,.0f}")
    print(f"{'model TFLOP/s':<58}{achieved:>16.4f}{cpu.samples_per_s * flops / 1e12:>16.4f}")
    if peak:
        src = "--peak-tflops" if a.peak_tflops else f"table of {PEAK_TFLOPS_DATE}"
        print(f"{'peak TFLOP/s (dense, ' + str(amp_dtype or 'fp32') + ', ' + src + ')':<58}{peak:>16,.1f}")
        print(f"{'model FLOP/s utilisation':<58}{achieved / peak:>16.4%}")
    else:
        print(f"{'model FLOP/s utilisation':<58}{'n/a':>16}   (no peak for {name!r}: pass --peak-tflops)")
    print(f"{'ONNX parity: max |torch on ' + where + ' - onnxruntime CPU|':<58}{parity:>16.2e}"
          f"   ({len(hold):,} holdout rows; bound {PARITY_ATOL:g})")
    print(f"{'holdout ROC AUC (through ONNX)':<58}{auc:>16.4f}")
    print(f"train {train_s:.1f} s ({result.steps} steps, {len(result.history)} epoch(s)); whole check "
          f"{time.perf_counter() - t0:.1f} s")
    if parity > PARITY_ATOL:
        print(f"gpu_check: FAIL: ONNX parity {parity:.2e} above {PARITY_ATOL:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
