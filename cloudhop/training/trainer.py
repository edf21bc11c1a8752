"""The training loop: early stopping, checkpoint/resume, CPU and CUDA with the same code.

Speed: the data becomes tensors once (on the training device); each epoch is a seeded
``torch.randperm`` and index slicing, with no DataLoader. The loop syncs with the device only
at checkpoints, progress reports (at most about once a second) and the end of an epoch; that is
also where a NaN/inf loss is caught, with the exact step it first appeared at.

Resume: each epoch's order derives from (seed, epoch), and a checkpoint holds the model,
optimizer, scaler, RNG state, the position inside the epoch and the early-stopping state, so a
restarted run repeats at most one checkpoint interval and ends with the same weights.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import re
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from cloudhop.store import Store
from cloudhop.training.model import TabularNet
from cloudhop.training.preprocess import Preprocessor

__all__ = ["TrainConfig", "TrainResult", "TrainingError", "CheckpointStore", "train", "load_model",
           "encode_binary", "make_optimizer", "loss_fn", "epoch_permutation", "pick_device"]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "cloudhop.training.checkpoint/1"
_PROGRESS_EVERY_S = 1.0
_EVAL_CHUNK = 65_536
# Config fields a checkpoint must agree on to be resumed (device and checkpoint_every do not change the maths).
_RESUME_FIELDS = ("hidden", "embedding_dim", "dropout", "batch_size", "learning_rate", "weight_decay",
                  "max_epochs", "patience", "seed")


class TrainingError(RuntimeError):
    """Training cannot run or went wrong; the message says what and where."""


@dataclass
class TrainConfig:
    hidden: list[int] = field(default_factory=lambda: [128, 64])
    embedding_dim: int = 8
    dropout: float = 0.1
    batch_size: int = 1024
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    max_epochs: int = 8
    patience: int = 2
    checkpoint_every: int = 200
    seed: int = 0
    device: str = "auto"  # 'auto' | 'cpu' | 'cuda'
    cpu_threads: int | None = 1  # torch intra-op threads on CPU; None keeps torch's setting

    def __post_init__(self) -> None:
        self.hidden = [int(h) for h in self.hidden]
        problems = []
        if any(h < 1 for h in self.hidden):
            problems.append(f"hidden sizes must be >= 1, got {self.hidden}")
        for name in ("embedding_dim", "batch_size", "max_epochs", "patience", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if problems:
            raise TrainingError("invalid training config: " + "; ".join(problems))

    @classmethod
    def from_spec(cls, model_spec: Any) -> "TrainConfig":
        """From the spec's ``model`` section (a pydantic ModelSpec or a plain dict)."""
        data = model_spec.model_dump() if hasattr(model_spec, "model_dump") else dict(model_spec)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class TrainResult:
    model: TabularNet  # on the CPU, eval mode, best weights
    preprocessor: Preprocessor
    history: list[dict[str, Any]]  # per epoch: epoch, step, train_loss, valid_loss, seconds
    best_valid_loss: float
    best_epoch: int
    steps: int  # optimizer steps in all, those before a resume included
    steps_run: int  # optimizer steps in this call
    resumed_from_step: int | None
    device: str
    samples_per_s: float  # training samples per second in this call (validation passes excluded)
    checkpoint: bytes  # torch.save of the best weights + config + preprocessor; see load_model
    classes: list[Any] | None = None  # binary: [negative, positive] target values; None for regression


# -- checkpoints ---------------------------------------------------------------

class CheckpointStore:
    """Checkpoints under ``prefix`` in a Store, as ``step-000000123.pt``; the newest two are kept."""

    _NAME = re.compile(r"^step-(\d{9,})\.pt$")

    def __init__(self, store: Store, prefix: str, keep: int = 2):
        self.store = store
        self.prefix = prefix.strip("/")
        self.keep = max(1, keep)

    def key(self, step: int) -> str:
        name = f"step-{step:09d}.pt"
        return f"{self.prefix}/{name}" if self.prefix else name

    def steps(self) -> list[int]:
        """Steps of the checkpoints present, oldest first."""
        found = []
        for key in self.store.list(self.prefix):
            rel = key[len(self.prefix):].lstrip("/") if self.prefix else key
            m = self._NAME.match(rel)
            if m:
                found.append(int(m.group(1)))
        return sorted(found)

    def save(self, step: int, payload: bytes) -> None:
        """Write atomically, then delete all but the newest ``keep``."""
        self.store.write_bytes(self.key(step), payload)
        for old in self.steps()[:-self.keep]:
            self.store.delete(self.key(old))

    def latest(self) -> tuple[int, bytes] | None:
        """The newest readable checkpoint; a corrupt or unreadable one is skipped for an older one."""
        found = self._latest_loaded()
        return (found[0], found[1]) if found else None

    def _latest_loaded(self) -> tuple[int, bytes, dict[str, Any]] | None:
        for step in reversed(self.steps()):
            key = self.key(step)
            try:
                data = self.store.read_bytes(key)
                obj = _load_bytes(data)
            except Exception as e:  # truncated, garbage, vanished between list and read
                log.warning("skipping unreadable checkpoint %s: %s: %s", self.store.url(key), type(e).__name__, e)
                continue
            if obj.get("format") != CHECKPOINT_FORMAT or obj.get("kind") != "resume":
                log.warning("skipping %s: not a cloudhop resume checkpoint", self.store.url(key))
                continue
            return step, data, obj
        return None


def _save_bytes(obj: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _load_bytes(data: bytes) -> dict[str, Any]:
    obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(obj, dict):
        raise ValueError("not a checkpoint dictionary")
    return obj


def _cpu(obj: Any) -> Any:
    """Copy tensors (nested in dicts/lists) to the CPU, for a device-independent checkpoint."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


def load_model(checkpoint: bytes) -> tuple[TabularNet, Preprocessor]:
    """Rebuild (model on the CPU in eval mode, preprocessor) from TrainResult.checkpoint."""
    try:
        obj = _load_bytes(checkpoint)
    except Exception as e:
        raise TrainingError(f"cannot read model checkpoint: {type(e).__name__}: {e}") from None
    if obj.get("format") != CHECKPOINT_FORMAT or "model" not in obj:
        raise TrainingError("not a cloudhop model checkpoint")
    model = TabularNet(**obj["model_args"])
    model.load_state_dict(obj["model"])
    return model.eval(), Preprocessor.from_dict(obj["preprocessor"])


# -- pieces shared with the benchmark's bare loop --------------------------------

def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device 'cuda' was requested but CUDA is not available on this machine")
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def make_optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    kwargs = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, **kwargs)


def loss_fn(task: str, out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """BCE-with-logits (binary) or MSE on the standardised target (regression), in float32."""
    if task == "binary":
        return F.binary_cross_entropy_with_logits(out.float(), y, reduction=reduction)
    return F.mse_loss(out.float(), y, reduction=reduction)


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The row order of one epoch: a function of (seed, epoch) only, so a resume replays it."""
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2 ** 63))
    return torch.randperm(n, generator=g)


def _amp(device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use GradScaler): bf16 where the GPU has it, else fp16 + scaler; none on CPU."""
    if device.type != "cuda":
        return None, False
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, False
    return torch.float16, True


# -- inputs --------------------------------------------------------------------

def encode_binary(values: pd.Series | np.ndarray, classes: list[Any] | None = None,
                  where: str = "target") -> tuple[np.ndarray, list[Any]]:
    """Map a two-valued target to float32 0/1.

    The classes are the two values in sorted order and the second is the positive one:
    1 for 0/1, True for booleans, the later string alphabetically ("yes" over "no").
    """
    s = pd.Series(values)
    missing = int(s.isna().sum())
    if missing:
        raise TrainingError(f"{where} has {missing} missing values; drop or fill them before training")
    if classes is None:
        uniq = pd.unique(s)
        try:
            found = sorted(_plain(v) for v in uniq)
        except TypeError:
            found = sorted((_plain(v) for v in uniq), key=lambda v: (type(v).__name__, str(v)))
        if len(found) < 2:
            raise TrainingError(f"{where} has only one class ({found[0]!r}); a binary model needs both classes")
        if len(found) > 2:
            shown = ", ".join(repr(v) for v in found[:5])
            raise TrainingError(f"{where} has {len(found)} distinct values ({shown}{', ...' if len(found) > 5 else ''});"
                                " a binary target needs exactly two")
        classes = found
    pos = (s == classes[1]).to_numpy(dtype=bool)
    unknown = ~(pos | (s == classes[0]).to_numpy(dtype=bool))
    if unknown.any():
        bad = _plain(s[unknown].iloc[0])
        raise TrainingError(f"{where} has value {bad!r}, which is not one of the training classes {classes!r}")
    return pos.astype(np.float32), list(classes)


def _plain(v: Any) -> Any:
    """numpy scalars -> Python scalars (for sorting, comparing and saving)."""
    return v.item() if isinstance(v, np.generic) else v


def _regression_target(values: pd.Series, where: str) -> np.ndarray:
    y = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    bad = int((~np.isfinite(y)).sum())
    if bad:
        raise TrainingError(f"{where} has {bad} missing, infinite or non-numeric values")
    return y


def _check_frame(df: pd.DataFrame, columns: list[str], what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TrainingError(f"{what} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise TrainingError(f"{what} lacks column(s) {', '.join(map(repr, missing))}")
    if len(df) == 0:
        raise TrainingError(f"{what} is empty (0 rows); nothing to train or validate on")


# -- the loop ------------------------------------------------------------------

@dataclass
class _State:
    epoch: int = 0  # 0-based epoch in progress
    batch: int = 0  # next batch inside that epoch
    step: int = 0
    epoch_losses: list[torch.Tensor] = field(default_factory=list)  # batch losses of this epoch (on device)
    epoch_seconds: float = 0.0
    best_state: dict[str, torch.Tensor] | None = None
    best_valid_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False


def train(train_df: pd.DataFrame, valid_df: pd.DataFrame, *, categorical: list[str], numeric: list[str],
          target: str, task: str, config: TrainConfig, checkpoints: CheckpointStore | None = None,
          progress: Callable[[dict[str, Any]], None] | None = None,
          preprocessor: Preprocessor | None = None, init_linear: "Baseline | None" = None) -> TrainResult:
    """Train a TabularNet with early stopping on valid_df; resume from ``checkpoints`` when it holds one.

    ``init_linear``: a fitted linear baseline (cloudhop.training.evaluate.fit_baseline, on the same
    preprocessor) whose weights start the network's wide part, so training begins at the baseline
    and the deep part learns what it misses; the starting point also counts for early stopping.

    Binary targets map to 0/1 as in encode_binary. Reported losses are BCE (binary) or MSE on the
    standardised target (regression). Runs inside a forked RNG, so the caller's RNG state is untouched.

    ``train_df`` (and ``valid_df``) may also be a cloudhop.data Table: one held in memory is
    trained on as its frame; a partitioned one is streamed a part at a time (cloudhop.training.stream).
    """
    if not isinstance(valid_df, pd.DataFrame) and valid_df.in_memory:
        valid_df = valid_df.to_pandas()
    if not isinstance(train_df, pd.DataFrame) and train_df.in_memory:
        train_df = train_df.to_pandas()
    if not isinstance(train_df, pd.DataFrame):
        from cloudhop.training.stream import train_streamed

        return train_streamed(train_df, valid_df, categorical=categorical, numeric=numeric, target=target,
                              task=task, config=config, checkpoints=checkpoints, progress=progress,
                              preprocessor=preprocessor, init_linear=init_linear)
    categorical, numeric, cols = check_layout(task, categorical, numeric, target)
    _check_frame(train_df, cols, "training data")
    _check_frame(valid_df, cols, "validation data")
    device = pick_device(config.device)

    # targets
    if task == "binary":
        y_train, classes = encode_binary(train_df[target], where=f"target {target!r} in the training data")
        y_valid, _ = encode_binary(valid_df[target], classes, where=f"target {target!r} in the validation data")
        t_mean, t_std = 0.0, 1.0
    else:
        classes = None
        raw_train = _regression_target(train_df[target], f"target {target!r} in the training data")
        raw_valid = _regression_target(valid_df[target], f"target {target!r} in the validation data")
        t_mean = float(raw_train.mean())
        t_std = float(raw_train.std()) if raw_train.std() > 1e-12 else 1.0
        y_train = ((raw_train - t_mean) / t_std).astype(np.float32)
        y_valid = ((raw_valid - t_mean) / t_std).astype(np.float32)

    layout = {"categorical": categorical, "numeric": numeric, "target": target, "task": task,
              "classes": classes, "n_train": len(train_df), "n_valid": len(valid_df),
              "target_sum": float(f"{np.sum(y_train if task == 'binary' else raw_train, dtype=np.float64):.6g}")}

    resume = checkpoints._latest_loaded() if checkpoints is not None else None
    if resume is not None:
        _check_compatible(resume[2], config, layout, preprocessor, checkpoints)
        if preprocessor is None:  # the checkpoint's own: no refit, and exactly the same features
            preprocessor = Preprocessor.from_dict(resume[2]["preprocessor"])
    if preprocessor is None:
        preprocessor = Preprocessor.fit(train_df, categorical, numeric)
    else:
        check_preprocessor(preprocessor, categorical, numeric)

    run = _Run(config, device, task, layout, preprocessor, (t_mean, t_std), checkpoints, progress)
    with _cpu_threads(config.cpu_threads if device.type == "cpu" else None):
        run.set_data(train_df, valid_df, y_train, y_valid)
        return run.run(init_linear, resume, classes)


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
    if preprocessor.categorical != categorical or preprocessor.numeric != numeric:
        raise TrainingError(f"the preprocessor was fitted on features {preprocessor.categorical + preprocessor.numeric}, "
                            f"not {categorical + numeric}")


@contextlib.contextmanager
def _cpu_threads(n: int | None):
    """Small tabular nets train fastest on one CPU thread: more threads mostly spin (measured in
    benchmarks/bench_training.py). Restores the caller's setting afterwards."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_compatible(ckpt: dict[str, Any], config: TrainConfig, layout: dict[str, Any],
                      preprocessor: Preprocessor | None, checkpoints: CheckpointStore) -> None:
    where = checkpoints.store.url(checkpoints.prefix or ".")
    saved_cfg = ckpt.get("config", {})
    now_cfg = asdict(config)
    diff = [f"{k}: checkpoint {saved_cfg.get(k)!r} vs now {now_cfg[k]!r}"
            for k in _RESUME_FIELDS if saved_cfg.get(k) != now_cfg[k]]
    saved_layout = ckpt.get("layout", {})
    diff += [f"{k}: checkpoint {saved_layout.get(k)!r} vs now {v!r}"
             for k, v in layout.items() if saved_layout.get(k) != v]
    if preprocessor is not None and not _same_preprocessor(preprocessor.to_dict(), ckpt["preprocessor"]):
        diff.append("preprocessor: the one given differs from the checkpoint's")
    if diff:
        raise TrainingError(f"checkpoint in {where} does not match this training run and cannot be resumed "
                            f"({'; '.join(diff)}); use a fresh checkpoint prefix")


def _same_preprocessor(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a["categorical"] != b["categorical"] or a["numeric"] != b["numeric"] or a["vocab"] != b["vocab"]:
        return False
    return all(math.isclose(a[k][c], b[k][c], rel_tol=1e-9, abs_tol=1e-12) for k in ("mean", "std") for c in a["numeric"])


class _Run:
    """One call of train(): tensors, model, optimizer, loop state."""

    def __init__(self, config: TrainConfig, device: torch.device, task: str, layout: dict[str, Any],
                 preprocessor: Preprocessor, target_scale: tuple[float, float],
                 checkpoints: CheckpointStore | None, progress: Callable[[dict[str, Any]], None] | None):
        self.config, self.device, self.task, self.layout = config, device, task, layout
        self.preprocessor, self.target_scale = preprocessor, target_scale
        self.checkpoints, self.progress = checkpoints, progress
        self.amp_dtype, use_scaler = _amp(device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
        self.st = _State()
        self.steps_run = 0
        self.wide_frozen = False
        self.samples_run = 0
        self.train_seconds = 0.0
        self._checked = 0  # epoch_losses[:_checked] are known finite
        self._last_report = time.monotonic()

    # -- setup ---------------------------------------------------------------
    def set_data(self, train_df: pd.DataFrame, valid_df: pd.DataFrame, y_train: np.ndarray, y_valid: np.ndarray) -> None:
        def tensors(df: pd.DataFrame, y: np.ndarray) -> tuple[torch.Tensor, ...]:
            cat, num = self.preprocessor.transform(df)
            return tuple(torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in (cat, num, y))

        self.train_t = tensors(train_df, y_train)
        self.valid_t = tensors(valid_df, y_valid)
        self.n = len(train_df)
        self.steps_per_epoch = math.ceil(self.n / self.config.batch_size)
        self.planned_steps = self.steps_per_epoch * self.config.max_epochs

    def build(self) -> None:
        c = self.config
        self.model = TabularNet(self.preprocessor.cardinalities, len(self.preprocessor.numeric), c.hidden,
                                c.embedding_dim, c.dropout, self.task, *self.target_scale).to(self.device)
        self.optimizer = make_optimizer(self.model, c, self.device)

    def start_from_linear(self, baseline: Any) -> None:
        """Copy a linear baseline's weights into the wide part; the result is the first 'best'."""
        if baseline.preprocessor.to_dict() != self.preprocessor.to_dict():
            raise TrainingError("init_linear was fitted with another preprocessor")
        coef, intercept = baseline.linear_weights()
        if self.task == "regression":  # the net works on the standardised target
            t_mean, t_std = self.target_scale
            coef, intercept = coef / t_std, (intercept - t_mean) / t_std
        m = self.model
        n_cat = sum(self.preprocessor.cardinalities)
        with torch.no_grad():
            if self.preprocessor.categorical:
                m.wide_cat.weight[:n_cat, 0] = torch.as_tensor(coef[:n_cat], dtype=m.wide_cat.weight.dtype)
            if m.wide_num is not None:
                m.wide_num.weight[0, :] = torch.as_tensor(coef[n_cat:], dtype=m.wide_num.weight.dtype)
            m.mlp[-1].weight.zero_()  # the deep part starts silent: output == the baseline's
            m.mlp[-1].bias.fill_(float(intercept))
        self.freeze_wide()

    def freeze_wide(self) -> None:
        """The linear part stays as fitted (a convex optimum); the deep part learns the residual."""
        m = self.model
        self.wide_frozen = True
        for p in [m.wide_cat.weight] + ([] if m.wide_num is None else list(m.wide_num.parameters())):
            p.requires_grad_(False)
        st = self.st
        st.best_valid_loss = self.validate()
        st.best_state = {k: v.detach().clone() for k, v in m.state_dict().items()}
        st.best_epoch = 0

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # -- checkpoints -----------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        st = self.st
        return {
            "format": CHECKPOINT_FORMAT, "kind": "resume", "config": asdict(self.config), "layout": self.layout,
            "wide_frozen": self.wide_frozen,
            "preprocessor": self.preprocessor.to_dict(), "model_args": self.model.init_args(),
            "model": _cpu(self.model.state_dict()), "optimizer": _cpu(self.optimizer.state_dict()),
            "scaler": self.scaler.state_dict(), "epoch": st.epoch, "batch": st.batch, "step": st.step,
            "epoch_losses": _cpu(torch.stack(st.epoch_losses)) if st.epoch_losses else torch.zeros(0),
            "epoch_seconds": st.epoch_seconds, "best_state": _cpu(st.best_state),
            "best_valid_loss": st.best_valid_loss, "best_epoch": st.best_epoch, "bad_epochs": st.bad_epochs,
            "history": st.history, "done": st.done, "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        }

    def restore(self, ck: dict[str, Any]) -> None:
        self.model.load_state_dict(ck["model"])
        if ck.get("wide_frozen"):
            self.freeze_wide()
        self.optimizer.load_state_dict(ck["optimizer"])
        if ck["scaler"] and self.scaler.is_enabled():  # fp16 on both sides; else the scale starts afresh
            self.scaler.load_state_dict(ck["scaler"])
        losses = ck["epoch_losses"].to(self.device)
        self.st = _State(epoch=ck["epoch"], batch=ck["batch"], step=ck["step"],
                         epoch_losses=list(losses.unbind(0)) if len(losses) else [],
                         epoch_seconds=ck["epoch_seconds"],
                         best_state=None if ck["best_state"] is None else
                         {k: v.to(self.device) for k, v in ck["best_state"].items()},
                         best_valid_loss=ck["best_valid_loss"], best_epoch=ck["best_epoch"],
                         bad_epochs=ck["bad_epochs"], history=list(ck["history"]), done=ck["done"])
        self._checked = len(self.st.epoch_losses)
        torch.set_rng_state(ck["rng_cpu"])
        if self.device.type == "cuda" and ck.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(ck["rng_cuda"], self.device)

    def save_checkpoint(self) -> None:
        if self.checkpoints is not None:
            self.checkpoints.save(self.st.step, _save_bytes(self.snapshot()))

    # -- reporting -------------------------------------------------------------
    def check_finite(self) -> None:
        """Sync with the device; raise at the first non-finite batch loss since the last check."""
        losses = self.st.epoch_losses
        if self._checked >= len(losses):
            return
        recent = torch.stack(losses[self._checked:])
        bad = ~torch.isfinite(recent)
        if bool(bad.any()):
            first = int(bad.nonzero()[0, 0])
            step = self.st.step - len(losses) + self._checked + first + 1
            raise TrainingError(f"training loss became NaN (or inf) at step {step} (epoch {self.st.epoch + 1}); "
                                f"lower learning_rate (now {self.config.learning_rate}) or check the data for "
                                f"extreme values")
        self._checked = len(losses)

    def report(self, event: str) -> None:
        self._last_report = time.monotonic()
        if self.progress is None:
            return
        st = self.st
        if st.epoch_losses:
            train_loss = float(torch.stack(st.epoch_losses).mean())
        else:
            train_loss = st.history[-1]["train_loss"] if st.history else None
        valid_loss = st.history[-1]["valid_loss"] if st.history else None
        fraction = 1.0 if st.done else min(1.0, st.step / self.planned_steps)
        self.progress({"event": event, "epoch": min(st.epoch + 1, self.config.max_epochs),
                       "max_epochs": self.config.max_epochs, "step": st.step, "train_loss": train_loss,
                       "valid_loss": valid_loss, "fraction": fraction})

    # -- training --------------------------------------------------------------
    def batches(self, epoch: int, first: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """(cat, num, y) of the epoch's batches from batch `first` on, in the epoch's seeded order."""
        cat, num, y = self.train_t
        bs = self.config.batch_size
        perm = epoch_permutation(self.config.seed, epoch, self.n).to(self.device)
        for b in range(first, self.steps_per_epoch):
            idx = perm[b * bs:(b + 1) * bs]
            yield cat[idx], num[idx], y[idx]

    def run(self, init_linear: Any, resume: tuple | None, classes: list | None) -> TrainResult:
        """Build the model, start it from the baseline or the checkpoint, train, and give the result
        (in a forked RNG seeded from the config, so the caller's RNG state is untouched)."""
        cuda_devices = [self.device.index] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices, device_type="cuda"):
            torch.manual_seed(self.config.seed)
            self.build()
            if init_linear is not None and resume is None:
                self.start_from_linear(init_linear)
            if resume is not None:
                self.restore(resume[2])
                log.info("resuming from checkpoint at step %d", resume[0])
            self.loop()
        return self.result(resumed_from_step=resume[0] if resume is not None else None, classes=classes)

    def loop(self) -> None:
        c, st = self.config, self.st
        self._last_report = time.monotonic()
        while not st.done:
            self.model.train()
            t0 = time.perf_counter()
            for cat, num, y in self.batches(st.epoch, st.batch):
                with self._autocast():
                    out = self.model(cat, num)
                loss = loss_fn(self.task, out, y)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                st.epoch_losses.append(loss.detach())
                st.step += 1
                st.batch += 1
                self.steps_run += 1
                self.samples_run += y.shape[0]
                if st.step % c.checkpoint_every == 0:
                    self.check_finite()
                    st.epoch_seconds += time.perf_counter() - t0
                    self.train_seconds += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    self.save_checkpoint()
                    self.report("checkpoint")
                elif time.monotonic() - self._last_report >= _PROGRESS_EVERY_S:
                    self.check_finite()
                    self.report("tick")
            self.check_finite()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            elapsed = time.perf_counter() - t0
            self.train_seconds += elapsed
            self.end_epoch(elapsed)

    def end_epoch(self, train_elapsed: float) -> None:
        c, st = self.config, self.st
        t0 = time.perf_counter()
        valid_loss = self.validate()
        if not math.isfinite(valid_loss):
            raise TrainingError(f"validation loss became NaN (or inf) after epoch {st.epoch + 1} (step {st.step})")
        train_loss = float(torch.stack(st.epoch_losses).mean())
        seconds = st.epoch_seconds + train_elapsed + (time.perf_counter() - t0)
        st.history.append({"epoch": st.epoch + 1, "step": st.step, "train_loss": train_loss,
                           "valid_loss": valid_loss, "seconds": round(seconds, 4)})
        if valid_loss < st.best_valid_loss:
            st.best_valid_loss, st.best_epoch, st.bad_epochs = valid_loss, st.epoch + 1, 0
            st.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            st.bad_epochs += 1
        st.epoch += 1
        st.batch = 0
        st.epoch_losses = []
        st.epoch_seconds = 0.0
        self._checked = 0
        st.done = st.epoch >= c.max_epochs or st.bad_epochs >= c.patience
        self.save_checkpoint()
        self.report("done" if st.done else "epoch")

    @torch.inference_mode()
    def validate(self) -> float:
        self.model.eval()
        cat, num, y = self.valid_t
        total = torch.zeros((), device=self.device)
        for i in range(0, len(y), _EVAL_CHUNK):
            with self._autocast():
                out = self.model(cat[i:i + _EVAL_CHUNK], num[i:i + _EVAL_CHUNK])
            total += loss_fn(self.task, out, y[i:i + _EVAL_CHUNK], reduction="sum")
        return float(total) / len(y)

    # -- result ----------------------------------------------------------------
    def result(self, resumed_from_step: int | None, classes: list[Any] | None) -> TrainResult:
        st = self.st
        model = TabularNet(**self.model.init_args())
        model.load_state_dict(_cpu(st.best_state))
        model.eval()
        final = {"format": CHECKPOINT_FORMAT, "kind": "final", "config": asdict(self.config), "layout": self.layout,
                 "preprocessor": self.preprocessor.to_dict(), "model_args": model.init_args(),
                 "model": _cpu(model.state_dict()), "best_valid_loss": st.best_valid_loss,
                 "best_epoch": st.best_epoch, "steps": st.step, "history": st.history}
        return TrainResult(
            model=model, preprocessor=self.preprocessor, history=list(st.history),
            best_valid_loss=st.best_valid_loss, best_epoch=st.best_epoch, steps=st.step,
            steps_run=self.steps_run, resumed_from_step=resumed_from_step, device=str(self.device),
            samples_per_s=self.samples_run / self.train_seconds if self.train_seconds > 0 else 0.0,
            checkpoint=_save_bytes(final), classes=classes)
