"""The training loop: early stopping, checkpoint/resume, CPU and CUDA with the same code.

One loop for every batch source (cloudhop.training.batches: in memory or streamed from a table).
It syncs with the device only at checkpoints, progress reports (at most about once a second) and
the end of an epoch; that is also where a NaN/inf loss is caught, with the exact step it first
appeared at.

Resume: each epoch's batch order derives from (seed, epoch), and a checkpoint holds the model,
optimizer, scaler, RNG state, the position inside the epoch and the early-stopping state, so a
restarted run repeats at most one checkpoint interval and ends with the same weights.
"""
from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F

from cloudhop.training.batches import Batch, BatchSource
from cloudhop.training.checkpoint import CHECKPOINT_FORMAT, CheckpointStore, ResumePoint, save_bytes, to_cpu
from cloudhop.training.config import TrainConfig
from cloudhop.training.errors import TrainingError
from cloudhop.training.model import TabularNet
from cloudhop.training.preempt import Preempted, stop_on_sigterm
from cloudhop.training.preprocess import Preprocessor

__all__ = ["TrainResult", "TrainingLoop", "Progress", "pick_device", "make_optimizer", "loss_fn", "amp_settings",
           "cpu_threads"]

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]
_PROGRESS_EVERY_S = 1.0
_EVAL_CHUNK = 65_536


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


# -- pieces shared with the benchmark's bare loop --------------------------------

def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device 'cuda' was requested but CUDA is not available on this machine")
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def make_optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    kwargs: dict[str, Any] = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, **kwargs)


def loss_fn(task: str, out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """BCE-with-logits (binary) or MSE on the standardised target (regression), in float32."""
    if task == "binary":
        return F.binary_cross_entropy_with_logits(out.float(), y, reduction=reduction)
    return F.mse_loss(out.float(), y, reduction=reduction)


def amp_settings(device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use GradScaler): bf16 where the GPU has it, else fp16 + scaler; none on CPU."""
    if device.type != "cuda":
        return None, False
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, False
    return torch.float16, True


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Small tabular nets train fastest on one CPU thread: more threads mostly spin (measured in
    benchmarks/bench_training.py). Restores the caller's setting afterwards."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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


class TrainingLoop:
    """One training run over a batch source: model, optimizer, loop state, checkpoints, progress.

    `layout` (features, target, task, classes, row counts, target sum) goes into every checkpoint,
    so a resume can check it trains on the same data; `valid` is the validation rows as tensors.
    """

    def __init__(self, config: TrainConfig, device: torch.device, task: str, layout: dict[str, Any],
                 source: BatchSource, valid: Batch, checkpoints: CheckpointStore | None = None,
                 progress: Progress | None = None):
        self.config, self.device, self.task, self.layout = config, device, task, layout
        self.source, self.valid_t = source, valid
        self.preprocessor = source.preprocessor
        self.target_scale = (source.coding.mean, source.coding.std)
        self.checkpoints, self.progress = checkpoints, progress
        self.amp_dtype, use_scaler = amp_settings(device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
        self.st = _State()
        self.steps_run = 0
        self.wide_frozen = False
        self.samples_run = 0
        self.train_seconds = 0.0
        self._checked = 0  # epoch_losses[:_checked] are known finite
        self._last_report = time.monotonic()
        self._stop = threading.Event()  # set by SIGTERM while run() trains
        self.planned_steps = math.ceil(source.rows / config.batch_size) * config.max_epochs

    # -- setup ---------------------------------------------------------------
    def _build(self) -> None:
        c = self.config
        self.model = TabularNet(self.preprocessor.cardinalities, len(self.preprocessor.numeric), c.hidden,
                                c.embedding_dim, c.dropout, self.task, *self.target_scale).to(self.device)
        self.optimizer = make_optimizer(self.model, c, self.device)

    def _start_from_linear(self, baseline: Any) -> None:
        """Copy a linear baseline's weights into the wide part; the result is the first 'best'."""
        if baseline.preprocessor.to_dict() != self.preprocessor.to_dict():
            raise TrainingError("init_linear was fitted with another preprocessor")
        coef, intercept = baseline.linear_weights()
        if self.task == "regression":  # the net works on the standardised target
            t_mean, t_std = self.target_scale
            coef, intercept = coef / t_std, (intercept - t_mean) / t_std
        m = self.model
        n_cat = sum(self.preprocessor.cardinalities)
        head = m.mlp[-1]
        assert isinstance(head, torch.nn.Linear)
        with torch.no_grad():
            if self.preprocessor.categorical:
                m.wide_cat.weight[:n_cat, 0] = torch.as_tensor(coef[:n_cat], dtype=m.wide_cat.weight.dtype)
            if m.wide_num is not None:
                m.wide_num.weight[0, :] = torch.as_tensor(coef[n_cat:], dtype=m.wide_num.weight.dtype)
            head.weight.zero_()  # the deep part starts silent: output == the baseline's
            head.bias.fill_(float(intercept))
        self._freeze_wide()

    def _freeze_wide(self) -> None:
        """The linear part stays as fitted (a convex optimum); the deep part learns the residual."""
        m = self.model
        self.wide_frozen = True
        for p in [m.wide_cat.weight] + ([] if m.wide_num is None else list(m.wide_num.parameters())):
            p.requires_grad_(False)
        st = self.st
        st.best_valid_loss = self._validate()
        st.best_state = {k: v.detach().clone() for k, v in m.state_dict().items()}
        st.best_epoch = 0

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # -- checkpoints -----------------------------------------------------------
    def _snapshot(self) -> dict[str, Any]:
        st = self.st
        return {
            "format": CHECKPOINT_FORMAT, "kind": "resume", "config": asdict(self.config), "layout": self.layout,
            "wide_frozen": self.wide_frozen,
            "preprocessor": self.preprocessor.to_dict(), "model_args": self.model.init_args(),
            "model": to_cpu(self.model.state_dict()), "optimizer": to_cpu(self.optimizer.state_dict()),
            "scaler": self.scaler.state_dict(), "epoch": st.epoch, "batch": st.batch, "step": st.step,
            "epoch_losses": to_cpu(torch.stack(st.epoch_losses)) if st.epoch_losses else torch.zeros(0),
            "epoch_seconds": st.epoch_seconds, "best_state": to_cpu(st.best_state),
            "best_valid_loss": st.best_valid_loss, "best_epoch": st.best_epoch, "bad_epochs": st.bad_epochs,
            "history": st.history, "done": st.done, "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        }

    def _restore(self, ck: dict[str, Any]) -> None:
        self.model.load_state_dict(ck["model"])
        if ck.get("wide_frozen"):
            self._freeze_wide()
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

    def _save_checkpoint(self) -> None:
        if self.checkpoints is not None:
            self.checkpoints.save(self.st.step, save_bytes(self._snapshot()))

    # -- reporting -------------------------------------------------------------
    def _check_finite(self) -> None:
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

    def _report(self, event: str) -> None:
        self._last_report = time.monotonic()
        if self.progress is None:
            return
        st = self.st
        train_loss: float | None
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
    def run(self, init_linear: Any = None, resume: ResumePoint | None = None) -> TrainResult:
        """Build the model, start it from the baseline or the checkpoint, train, and give the result
        (on `config.cpu_threads` CPU threads, training in a forked RNG seeded from the config, so the
        caller's thread count and RNG state are untouched)."""
        cuda_devices = [self.device.index] if self.device.type == "cuda" else []
        with cpu_threads(self.config.cpu_threads if self.device.type == "cpu" else None):
            with torch.random.fork_rng(devices=cuda_devices, device_type="cuda"):
                torch.manual_seed(self.config.seed)
                self._build()
                if init_linear is not None and resume is None:
                    self._start_from_linear(init_linear)
                if resume is not None:
                    self._restore(resume.state)
                    log.info("resuming from checkpoint at step %d", resume.step)
                with stop_on_sigterm() as self._stop:
                    self._loop()
            return self._result(resumed_from_step=resume.step if resume is not None else None)

    def _loop(self) -> None:
        c, st = self.config, self.st
        self._last_report = time.monotonic()
        while not st.done:
            self.model.train()
            t0 = time.perf_counter()
            for cat, num, y in self.source.batches(st.epoch, st.batch):
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
                if self._stop.is_set():
                    self._preempted(t0)
                if st.step % c.checkpoint_every == 0:
                    self._check_finite()
                    st.epoch_seconds += time.perf_counter() - t0
                    self.train_seconds += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    self._save_checkpoint()
                    self._report("checkpoint")
                elif time.monotonic() - self._last_report >= _PROGRESS_EVERY_S:
                    self._check_finite()
                    self._report("tick")
            self._check_finite()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            elapsed = time.perf_counter() - t0
            self.train_seconds += elapsed
            self._end_epoch(elapsed)

    def _preempted(self, t0: float) -> None:
        """SIGTERM: checkpoint this step now (the next attempt resumes here) and stop."""
        self._check_finite()
        self.st.epoch_seconds += time.perf_counter() - t0
        self.train_seconds += time.perf_counter() - t0
        self._save_checkpoint()
        self._report("preempted")
        log.warning("SIGTERM: checkpoint saved at step %d, stopping as preempted", self.st.step)
        raise Preempted(self.st.step)

    def _end_epoch(self, train_elapsed: float) -> None:
        c, st = self.config, self.st
        t0 = time.perf_counter()
        valid_loss = self._validate()
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
        self._save_checkpoint()
        self._report("done" if st.done else "epoch")

    @torch.inference_mode()
    def _validate(self) -> float:
        self.model.eval()
        cat, num, y = self.valid_t
        total = torch.zeros((), device=self.device)
        for i in range(0, len(y), _EVAL_CHUNK):
            with self._autocast():
                out = self.model(cat[i:i + _EVAL_CHUNK], num[i:i + _EVAL_CHUNK])
            total += loss_fn(self.task, out, y[i:i + _EVAL_CHUNK], reduction="sum")
        return float(total) / len(y)

    # -- result ----------------------------------------------------------------
    def _result(self, resumed_from_step: int | None) -> TrainResult:
        st = self.st
        model = TabularNet(**self.model.init_args())
        model.load_state_dict(to_cpu(st.best_state))
        model.eval()
        final = {"format": CHECKPOINT_FORMAT, "kind": "final", "config": asdict(self.config), "layout": self.layout,
                 "preprocessor": self.preprocessor.to_dict(), "model_args": model.init_args(),
                 "model": to_cpu(model.state_dict()), "best_valid_loss": st.best_valid_loss,
                 "best_epoch": st.best_epoch, "steps": st.step, "history": st.history}
        return TrainResult(
            model=model, preprocessor=self.preprocessor, history=list(st.history),
            best_valid_loss=st.best_valid_loss, best_epoch=st.best_epoch, steps=st.step,
            steps_run=self.steps_run, resumed_from_step=resumed_from_step, device=str(self.device),
            samples_per_s=self.samples_run / self.train_seconds if self.train_seconds > 0 else 0.0,
            checkpoint=save_bytes(final), classes=self.source.coding.classes)
