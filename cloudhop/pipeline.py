"""The retraining pipeline's steps as plain functions.

Each Prefect task in `tasks/` wraps exactly one of these, and the plain-script
baseline in `benchmarks/` calls the same functions in the same order, so the
orchestration overhead is measured against identical work. No Prefect here.
"""
from __future__ import annotations

import json
import platform
import socket
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np
import pandas as pd

from cloudhop.data import Executor, Table, Windows, open_table, split as split_table
from cloudhop.registry import ModelVersion, Registry
from cloudhop.registry import signing
from cloudhop.registry.manifest import (CostInfo, DatasetInfo, DriftSummary, Features, Manifest, Metrics,
                                        TrainingInfo, ValidationSummary)
from cloudhop.registry.revision import code_revision
from cloudhop.spec import PipelineSpec
from cloudhop.store import Store
from cloudhop.training.handoff import Trained
from cloudhop.training.labels import target_values

if TYPE_CHECKING:
    from cloudhop.training.evaluate import Evaluation

__all__ = ["open_registry", "open_data", "check_data", "split", "checkpoint_prefix", "train_model", "evaluate",
           "drift_summary", "smoke_set", "register"]


def open_registry(spec: PipelineSpec) -> Registry:
    """The spec's registry, signing with CLOUDHOP_SIGNING_KEY and verifying with CLOUDHOP_PUBLIC_KEY when set."""
    return Registry(Store(spec.store, spec.store_fs_options), spec.name, signing_key=signing.private_key_from_env(),
                    public_key=signing.public_key_from_env())


# -- data ----------------------------------------------------------------------
# Every step takes the dataset as a cloudhop.data Table (a frame in memory, or partitioned
# Parquet read a part at a time) and per-part work runs on an optional Executor; no step
# asks which engine it is.
def open_data(spec: PipelineSpec, engine: Literal["pandas", "dask"] | None = None) -> Table:
    """The spec's dataset as a Table: the engine (`engine`, else the spec's dataset.engine, or
    by size for `auto`) is chosen here, once."""
    return open_table(spec, engine)


def check_data(table: Table, spec: PipelineSpec, executor: Executor | None = None):
    """Run the validation suite; returns a ValidationResult (the caller decides to stop)."""
    from cloudhop.validation import validate_table

    return validate_table(table, spec, spec.expectations, executor=executor)


def split(table: Table, spec: PipelineSpec, executor: Executor | None = None) -> Windows:
    return split_table(table, spec, executor)


# Steps that need one frame of a window take a seeded sample of it (the whole window when
# it is smaller), of at most:
BASELINE_MAX_ROWS = 1_000_000   # rows the linear baseline is fitted on


# -- training ------------------------------------------------------------------
def checkpoint_prefix(spec: PipelineSpec, data_fingerprint: str) -> str:
    """Checkpoints are keyed by what is trained: the same spec on the same data resumes."""
    return f"checkpoints/{spec.name}/{spec.training_hash()}-{data_fingerprint}"


def train_model(spec: PipelineSpec, windows: Windows, data_fingerprint: str,
                progress: Callable[[dict], None] | None = None, where: str = "local") -> Trained:
    """Train on the training window (the trainer streams a partitioned one a part at a time)."""
    from cloudhop.training import (CheckpointStore, TrainConfig, check_parity, export_onnx, train)
    from cloudhop.training.evaluate import fit_baseline
    from cloudhop.training.batches import fit_preprocessor_for

    store = Store(spec.store, spec.store_fs_options)
    ckpt = CheckpointStore(store, checkpoint_prefix(spec, data_fingerprint))
    pre = fit_preprocessor_for(windows.train, spec.categorical, spec.numeric)
    # The network starts as the linear baseline and learns what it misses (a wide-and-deep model).
    baseline = fit_baseline(windows.train.sample(BASELINE_MAX_ROWS, spec.model.seed), categorical=spec.categorical,
                            numeric=spec.numeric, target=spec.target.column, task=spec.target.task,
                            preprocessor=pre)
    result = train(windows.train, windows.validation, categorical=spec.categorical, numeric=spec.numeric,
                   target=spec.target.column, task=spec.target.task, config=TrainConfig.from_spec(spec.model),
                   checkpoints=ckpt, progress=progress, preprocessor=pre, init_linear=baseline)
    onnx = export_onnx(result.model, result.preprocessor)
    parity = check_parity(result.model, onnx, result.preprocessor, windows.holdout.head(5000))
    info = {"steps": result.steps, "steps_run": result.steps_run, "resumed_from_step": result.resumed_from_step,
            "device": result.device, "samples_per_s": round(result.samples_per_s, 1),
            "best_epoch": result.best_epoch, "best_valid_loss": result.best_valid_loss,
            "onnx_torch_max_abs_diff": parity, "where": where, "host": socket.gethostname()}
    return Trained(onnx, result.preprocessor.to_dict(), result.checkpoint, result.history, info, baseline)


# -- evaluation ----------------------------------------------------------------
def evaluate(spec: PipelineSpec, windows: Windows, trained: Trained, registry: Registry) -> Evaluation:
    """Candidate vs the current champion vs a baseline fitted now, all on the holdout window
    (every row of it, scored a part at a time)."""
    from cloudhop.training import onnx_predict
    from cloudhop.training.evaluate import Evaluation, fit_baseline, metrics, promotion
    from cloudhop.training.preprocess import Preprocessor

    task, target = spec.target.task, spec.target.column
    pre = Preprocessor.from_dict(trained.preprocess)
    baseline_model = trained.baseline or fit_baseline(
        windows.train.sample(BASELINE_MAX_ROWS, spec.model.seed), categorical=spec.categorical,
        numeric=spec.numeric, target=target, task=task, preprocessor=pre)
    scorers: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
        "candidate": lambda df: onnx_predict(trained.onnx, pre, df), "baseline": baseline_model.predict}
    champ_mv = registry.champion()
    if champ_mv is not None:
        c_onnx = registry.read_file(champ_mv, "model.onnx")
        c_pre = Preprocessor.from_dict(json.loads(registry.read_file(champ_mv, "preprocess.json")))
        scorers["champion"] = lambda df: onnx_predict(c_onnx, c_pre, df)
    y, preds, failed = _score(windows.holdout, spec.features + [target], target, task, scorers)
    if "candidate" in failed or "baseline" in failed:
        raise failed.get("candidate") or failed["baseline"]
    cand, base = metrics(task, y, preds["candidate"]), metrics(task, y, preds["baseline"])
    champ, champ_error = None, ""
    if champ_mv is not None:
        if "champion" in failed:  # a champion trained on other columns cannot be compared
            champ_error = f"champion v{champ_mv.version} cannot score this holdout ({failed['champion']}); "
        else:
            champ = metrics(task, y, preds["champion"])
    promote, reason = promotion(spec.metric, spec.evaluation.promote_margin, cand, base, champ,
                                champ_mv.version if champ_mv else None, champ_error,
                                require_beat_baseline=spec.evaluation.require_beat_baseline)
    return Evaluation(spec.metric, cand, champ, champ_mv.version if champ_mv else None, base, promote, reason)


def _score(holdout: Table, columns: list[str], target: str, task: str,
           scorers: dict[str, Callable[[pd.DataFrame], np.ndarray]]
           ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Exception]]:
    """Target values and each scorer's predictions over every holdout row, a frame at a time;
    a scorer that raises is left out of `preds` and its exception put in `failed`."""
    frames = holdout.frames(columns)
    ys: list[pd.Series] = []
    parts: dict[str, list[np.ndarray]] = {k: [] for k in scorers}
    failed: dict[str, Exception] = {}
    for df in frames:
        ys.append(df[target])
        for name, fn in scorers.items():
            if name not in failed:
                try:
                    parts[name].append(np.asarray(fn(df)))
                except Exception as e:
                    failed[name] = e
    y = target_values(pd.concat(ys, ignore_index=True) if len(ys) > 1 else ys[0], task)
    return y, {k: np.concatenate(v) for k, v in parts.items() if k not in failed}, failed


# -- drift ---------------------------------------------------------------------
def drift_summary(spec: PipelineSpec, windows: Windows, executor: Executor | None = None):
    """Evidently drift: reference = training window, current = holdout window, each a seeded
    sample drawn a part at a time (on `executor` when given)."""
    from cloudhop.drift import drift_tables

    return drift_tables(windows.train, windows.holdout, numeric=spec.numeric, categorical=spec.categorical,
                        threshold=spec.drift.threshold, sample_size=spec.drift.sample_size, seed=spec.model.seed,
                        executor=executor)


# -- registry ------------------------------------------------------------------
def smoke_set(spec: PipelineSpec, windows: Windows, trained: Trained, n: int = 32) -> dict[str, Any]:
    """Holdout rows and their offline ONNX predictions: what a served model must answer."""
    from cloudhop.training import onnx_predict
    from cloudhop.training.preprocess import Preprocessor

    feats = windows.holdout.sample(n, spec.model.seed, columns=spec.features)
    preds = onnx_predict(trained.onnx, Preprocessor.from_dict(trained.preprocess), feats)
    records = json.loads(feats.to_json(orient="records", date_format="iso"))
    return {"rows": records, "predictions": [float(p) for p in preds]}


def register(spec: PipelineSpec, registry: Registry, trained: Trained, evaluation: Evaluation,
             validation_summary: dict, validation_json: dict, drift, smoke: dict, data_fingerprint: str,
             windows: Windows, run_id: str | None = None, cost: dict | None = None) -> ModelVersion:
    """Publish a version: every artifact, then the manifest that makes it visible."""
    from cloudhop.training import loss_curve_png

    files = {
        "model.onnx": trained.onnx,
        "preprocess.json": json.dumps(trained.preprocess, sort_keys=True).encode(),
        "checkpoint.pt": trained.checkpoint,
        "smoke.json": json.dumps(smoke).encode(),
        "loss.png": loss_curve_png(trained.history),
        "validation.json": json.dumps(validation_json, default=str).encode(),
    }
    if drift.html:
        files["drift.html"] = drift.html
    from cloudhop.drift.monitor import reference_bytes  # the monitor's drift reference: a seeded training sample

    train = windows.train.sample(spec.drift.sample_size, spec.model.seed, columns=spec.features)
    files["reference.parquet"] = reference_bytes(train, spec.categorical, spec.numeric,
                                                 spec.drift.sample_size, spec.model.seed)
    parent = registry.champion()
    manifest = Manifest(
        parent_version=parent.version if parent else None,
        dataset=DatasetInfo(uri=spec.dataset.uri, fingerprint=data_fingerprint, windows=windows.sizes(),
                            unlabelled_dropped=windows.unlabelled_dropped),
        spec_hash=spec.spec_hash(),
        spec=spec.manifest_copy(),
        code_revision=code_revision(),
        task=spec.target.task,
        target=spec.target.column,
        features=Features(categorical=spec.categorical, numeric=spec.numeric),
        metrics=Metrics(candidate=evaluation.candidate, champion=evaluation.champion,
                        champion_version=evaluation.champion_version, baseline=evaluation.baseline,
                        metric=evaluation.metric, promote=evaluation.promote, reason=evaluation.reason),
        validation=ValidationSummary.model_validate(validation_summary),
        drift=DriftSummary.model_validate(drift.summary()),
        training=TrainingInfo.model_validate({**trained.info, "history": trained.history}),
        trained_where=trained.info.get("where"),
        run_id=run_id,
        python=platform.python_version(),
    )
    if cost is not None:  # set only when known: a manifest holds just the fields its writer set
        manifest.cost = CostInfo.model_validate(cost)
    return registry.publish(files, manifest)
