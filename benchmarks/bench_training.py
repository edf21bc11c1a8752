"""Training benchmark: cloudhop's `train` against a bare torch loop, same model, data and epochs.

    python benchmarks/bench_training.py [--epochs 2] [--repeats 2] [--full] [--threads N]

Data: the full flights table (specs/flights.yaml), split into the spec's time windows.
Both sides: the same TabularNet (seed, layout, spec hidden/embedding/dropout), the same
preprocessed tensors, batch size, optimizer (AdamW), loss, epoch permutations and number of
epochs (early stopping off). cloudhop also writes a checkpoint to a temporary local store
every `checkpoint_every` steps (spec value) plus one per epoch, and calls a progress callback.

Figures:
- training samples/s: optimizer steps only. cloudhop's figure is TrainResult.samples_per_s, which
  includes its checkpoint writes and progress calls but not the per-epoch validation pass; the
  bare loop has no checkpoints, progress or validation.
- whole call: wall seconds of `train()` (tensor building, per-epoch validation, checkpoints) against
  the bare loop plus the same tensor building and one validation pass per epoch.
Runs alternate (bare, cloudhop, bare, cloudhop, ...) and the best of --repeats is kept, since
this machine's cores are shared. torch's thread count is left at its default unless --threads;
on a busy 2-core machine two OpenMP threads spin against other processes and both sides slow
down several-fold and erratically (`--threads 1` or OMP_WAIT_POLICY=PASSIVE gives steadier figures).
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from cloudhop.data import FrameTable, flights_table, split  # noqa: E402
from cloudhop.spec import load_spec  # noqa: E402
from cloudhop.store import Store  # noqa: E402
from cloudhop.training import CheckpointStore, TrainConfig, export_onnx, check_parity, onnx_predict, train  # noqa: E402
from cloudhop.training.evaluate import fit_baseline, metrics  # noqa: E402
from cloudhop.training.model import TabularNet  # noqa: E402
from cloudhop.training.preprocess import Preprocessor  # noqa: E402
from cloudhop.training.batches import epoch_permutation  # noqa: E402
from cloudhop.training.labels import encode_binary  # noqa: E402
from cloudhop.training.loop import amp_settings, loss_fn, make_optimizer, pick_device  # noqa: E402


def bare_loop(pre: Preprocessor, train_df, valid_df, target: str, task: str, config: TrainConfig,
              validate: bool) -> tuple[float, float]:
    """-> (samples/s of the optimizer steps, wall seconds incl. tensor building and validation)."""
    t_call = time.perf_counter()
    device = pick_device(config.device)
    amp_dtype, _ = amp_settings(device)

    def tensors(df):
        cat, num = pre.transform(df)
        y, _ = encode_binary(df[target])
        return [torch.from_numpy(a).to(device) for a in (cat, num, y)]

    cat, num, y = tensors(train_df)
    vcat, vnum, vy = tensors(valid_df)
    torch.manual_seed(config.seed)
    model = TabularNet(pre.cardinalities, len(pre.numeric), config.hidden, config.embedding_dim,
                       config.dropout, task).to(device)
    opt = make_optimizer(model, config, device)
    n, bs = len(y), config.batch_size
    samples, loop_s = 0, 0.0
    for epoch in range(config.max_epochs):
        perm = epoch_permutation(config.seed, epoch, n).to(device)
        model.train()
        t = time.perf_counter()
        for b in range(math.ceil(n / bs)):
            idx = perm[b * bs:(b + 1) * bs]
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                out = model(cat[idx], num[idx])
            loss = loss_fn(task, out, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            samples += idx.shape[0]
        if device.type == "cuda":
            torch.cuda.synchronize()
        loop_s += time.perf_counter() - t
        if validate:
            model.eval()
            with torch.inference_mode(), torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                total = sum(float(loss_fn(task, model(vcat[i:i + 65536], vnum[i:i + 65536]), vy[i:i + 65536],
                                          reduction="sum")) for i in range(0, len(vy), 65536))
            assert math.isfinite(total)
    return samples / loop_s, time.perf_counter() - t_call


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default=str(ROOT / "specs" / "flights.yaml"))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads for both sides (0: the spec's model.cpu_threads)")
    ap.add_argument("--full", action="store_true", help="also time one train with the spec's own settings")
    args = ap.parse_args()
    spec = load_spec(args.spec)
    threads = args.threads or spec.model.cpu_threads or torch.get_num_threads()
    torch.set_num_threads(threads)  # the bare loop's; cloudhop's train sets cfg.cpu_threads itself
    t = time.perf_counter()
    w = split(FrameTable(flights_table(), time_column=spec.split.time_column), spec)
    train_df, valid_df = w.train.to_pandas(), w.validation.to_pandas()
    target, task = spec.target.column, spec.target.task
    cat_cols, num_cols = spec.categorical, spec.numeric
    base_cfg = TrainConfig.from_spec(spec.model)
    cfg = replace(base_cfg, max_epochs=args.epochs, patience=args.epochs + 1, cpu_threads=threads)
    pre = Preprocessor.fit(train_df, cat_cols, num_cols)
    device = pick_device(cfg.device)
    print(f"data: {w.sizes()} rows, loaded in {time.perf_counter() - t:.1f}s; device {device}, "
          f"torch threads {torch.get_num_threads()}, batch {cfg.batch_size}, {args.epochs} epochs, "
          f"checkpoint every {cfg.checkpoint_every} steps, hidden {cfg.hidden}, embedding {cfg.embedding_dim}")

    bare_sps, bare_wall, ch_sps, ch_wall = [], [], [], []
    events: list[dict] = []
    result = None
    for r in range(args.repeats):
        sps, wall = bare_loop(pre, train_df, valid_df, target, task, cfg, validate=True)
        bare_sps.append(sps)
        bare_wall.append(wall)
        with tempfile.TemporaryDirectory(prefix="cloudhop-bench-train-") as tmp:
            ckpts = CheckpointStore(Store(tmp), "bench/checkpoints")
            t = time.perf_counter()
            result = train(train_df, valid_df, categorical=cat_cols, numeric=num_cols, target=target, task=task,
                           config=cfg, checkpoints=ckpts, progress=events.append, preprocessor=pre)
            ch_wall.append(time.perf_counter() - t)
            ch_sps.append(result.samples_per_s)
            n_ckpt = sum(1 for e in events if e["event"] == "checkpoint")
        print(f"  round {r + 1}: bare {sps:,.0f}/s ({wall:.1f}s), cloudhop {result.samples_per_s:,.0f}/s "
              f"({ch_wall[-1]:.1f}s, {result.steps} steps, {n_ckpt} step checkpoints)")
        events.clear()

    print()
    print(f"{'figure':<52}{'cloudhop':>12}{'bare loop':>12}{'ratio':>8}")
    b, c = max(bare_sps), max(ch_sps)
    print(f"{'training samples/s (best of %d)' % args.repeats:<52}{c:>12,.0f}{b:>12,.0f}{c / b:>8.2f}")
    bw, cw = min(bare_wall), min(ch_wall)
    print(f"{'whole call s, incl. tensors + validation (best)':<52}{cw:>12.2f}{bw:>12.2f}{bw / cw:>8.2f}")
    print("  (ratio: cloudhop / bare for samples/s, bare / cloudhop for seconds; >= 0.9 is the bar)")

    hold = w.holdout.to_pandas()
    t = time.perf_counter()
    base = fit_baseline(train_df, categorical=cat_cols, numeric=num_cols, target=target, task=task, preprocessor=pre)
    base_s = time.perf_counter() - t
    t = time.perf_counter()
    onnx_bytes = export_onnx(result.model, pre)
    diff = check_parity(result.model, onnx_bytes, pre, hold)
    onnx_s = time.perf_counter() - t
    y_hold = hold[target]
    model_m = metrics(task, y_hold, onnx_predict(onnx_bytes, pre, hold), classes=result.classes)
    base_m = metrics(task, y_hold, base.predict(hold), classes=result.classes)
    print()
    print(f"{'holdout (%d rows)' % len(hold):<52}{'model':>12}{'baseline':>12}{'diff':>8}")
    for k in ("roc_auc", "log_loss", "accuracy"):
        print(f"{k:<52}{model_m[k]:>12.4f}{base_m[k]:>12.4f}{model_m[k] - base_m[k]:>+8.4f}")
    print(f"  model: {args.epochs}-epoch run above, scored through ONNX (export + parity {onnx_s:.1f}s, "
          f"max |torch-onnx| {diff:.2e}); baseline: logistic regression, fitted in {base_s:.1f}s")

    if args.full:
        with tempfile.TemporaryDirectory(prefix="cloudhop-bench-full-") as tmp:
            t = time.perf_counter()
            full = train(train_df, valid_df, categorical=cat_cols, numeric=num_cols, target=target, task=task,
                         config=base_cfg, checkpoints=CheckpointStore(Store(tmp), "full"), progress=lambda e: None)
            wall = time.perf_counter() - t
        auc = metrics(task, y_hold, onnx_predict(export_onnx(full.model, full.preprocessor), full.preprocessor,
                                                 hold), classes=full.classes)["roc_auc"]
        print()
        print(f"spec defaults ({base_cfg.max_epochs} epochs max, patience {base_cfg.patience}): {wall:.1f}s wall, "
              f"{len(full.history)} epochs, best epoch {full.best_epoch}, {full.steps} steps, "
              f"{full.samples_per_s:,.0f} samples/s, holdout ROC AUC {auc:.4f} (baseline {base_m['roc_auc']:.4f})")
        for h in full.history:
            print(f"  epoch {h['epoch']}: train {h['train_loss']:.4f} valid {h['valid_loss']:.4f} ({h['seconds']:.1f}s)")


if __name__ == "__main__":
    main()
