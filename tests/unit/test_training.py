"""cloudhop.training: learning, early stopping, checkpoint/resume, errors, ONNX parity, metrics, baseline."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cloudhop.spec import ModelSpec
from cloudhop.store import Store
from cloudhop.training import (CheckpointStore, TrainConfig, TrainingError, check_parity, export_onnx, load_model,
                               loss_curve_png, onnx_predict, train)
from cloudhop.training.evaluate import fit_baseline, metrics

CAT, NUM = ["shop", "colour"], ["x", "noise"]


def make_frame(n: int, seed: int, task: str = "binary") -> pd.DataFrame:
    """A signal in one categorical and one numeric; `noise` and `colour` carry nothing."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "shop": rng.choice(["north", "south", "east", "west", "hub"], n),
        "colour": rng.choice(["red", "green", "blue"], n),
        "x": rng.normal(2.0, 3.0, n),
        "noise": rng.normal(size=n),
    })
    effect = df["shop"].map({"north": 1.5, "south": -1.5, "east": 0.5, "west": -0.5, "hub": 0.0}).to_numpy()
    z = (df["x"].to_numpy() - 2.0) / 3.0
    if task == "binary":
        logit = 1.8 * z + effect
        df["label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")
    else:
        df["label"] = 1000.0 + 80.0 * z + 40.0 * effect + rng.normal(0, 10.0, n)
    return df


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread, and two OpenMP threads spin badly on a busy 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def frames():
    return make_frame(2400, 1), make_frame(600, 2), make_frame(800, 3)


def cfg(**kw) -> TrainConfig:
    base = dict(hidden=[32, 16], embedding_dim=4, dropout=0.1, batch_size=128, learning_rate=5e-3,
                weight_decay=1e-5, max_epochs=4, patience=2, checkpoint_every=7, seed=3, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def fit(train_df, valid_df, config=None, **kw):
    return train(train_df, valid_df, categorical=CAT, numeric=NUM, target="label", task=kw.pop("task", "binary"),
                 config=config or cfg(), **kw)


@pytest.fixture(scope="module")
def reference(frames):
    """An uninterrupted run: the yardstick for determinism and resume."""
    return fit(frames[0], frames[1])


def predict(model, pre, df) -> np.ndarray:
    cat, num = pre.transform(df)
    with torch.no_grad():
        return model.predict(torch.from_numpy(cat), torch.from_numpy(num)).numpy()


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_weights(a, b, atol=1e-6):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=atol, rtol=0, msg=f"weights differ in {k}")


# -- learning --------------------------------------------------------------------

def test_learns_the_signal_and_not_random_labels(frames, reference):
    train_df, valid_df, hold = frames
    auc = metrics("binary", hold["label"], predict(reference.model, reference.preprocessor, hold))["roc_auc"]

    rng = np.random.default_rng(7)
    shuffled = train_df.assign(label=rng.permutation(train_df["label"].to_numpy()))
    control = fit(shuffled, valid_df.assign(label=rng.permutation(valid_df["label"].to_numpy())))
    control_auc = metrics("binary", hold["label"], predict(control.model, control.preprocessor, hold))["roc_auc"]

    assert auc > 0.78, auc
    assert abs(control_auc - 0.5) < 0.1, control_auc
    assert reference.steps == reference.steps_run == len(reference.history) * 19  # ceil(2400 / 128)
    assert reference.resumed_from_step is None and reference.device == "cpu"
    assert reference.samples_per_s > 0
    assert reference.history[-1]["valid_loss"] < reference.history[0]["valid_loss"]
    assert reference.classes == [0, 1]


def test_same_seed_same_weights_and_other_seed_differs(frames, reference):
    again = fit(frames[0], frames[1])
    assert_same_weights(reference.model, again.model, atol=0)
    other = fit(frames[0], frames[1], cfg(seed=4))
    assert not torch.equal(weights(reference.model)["mlp.0.weight"], weights(other.model)["mlp.0.weight"])


def test_early_stopping_keeps_the_best_weights(frames):
    train_df, valid_df, _ = frames
    rng = np.random.default_rng(0)
    noisy_valid = valid_df.assign(label=rng.integers(0, 2, len(valid_df)))  # nothing to learn: overfits
    c = cfg(max_epochs=10, patience=1, learning_rate=2e-2, dropout=0.0)
    res = fit(train_df, noisy_valid, c)
    losses = [h["valid_loss"] for h in res.history]
    assert len(losses) < c.max_epochs, "validation loss never got worse: early stopping not exercised"
    assert res.best_epoch == int(np.argmin(losses)) + 1
    assert len(losses) == res.best_epoch + c.patience
    assert res.best_valid_loss == pytest.approx(min(losses))
    # the returned model is the best epoch's, not the last one's
    cat, num = res.preprocessor.transform(noisy_valid)
    with torch.no_grad():
        logits = res.model(torch.from_numpy(cat), torch.from_numpy(num))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, torch.tensor(noisy_valid["label"].to_numpy(), dtype=torch.float32))
    assert float(loss) == pytest.approx(res.best_valid_loss, rel=1e-5)


def test_progress_reports(frames):
    events = []
    res = fit(frames[0], frames[1], cfg(max_epochs=2), progress=events.append)
    fractions = [e["fraction"] for e in events]
    assert fractions == sorted(fractions) and 0 < fractions[0] and fractions[-1] == 1.0
    assert events[-1]["event"] == "done" and events[-1]["step"] == res.steps
    assert {e["step"] for e in events if e["event"] == "checkpoint"} == set(range(7, res.steps + 1, 7))
    assert all(set(e) >= {"epoch", "max_epochs", "step", "train_loss", "valid_loss", "fraction"} for e in events)


# -- checkpoint / resume ----------------------------------------------------------

class Interrupted(Exception):
    """Raised by the test's progress callback: the process 'dies' right after a checkpoint."""


def interrupt_after(step: int):
    def progress(event):
        if event["event"] == "checkpoint" and event["step"] >= step:
            raise Interrupted(event["step"])
    return progress


def test_resume_continues_exactly_where_it_stopped(tmp_path, frames, reference):
    ckpts = CheckpointStore(Store(str(tmp_path / "store")), "runs/abc/checkpoints")
    with pytest.raises(Interrupted):
        fit(frames[0], frames[1], checkpoints=ckpts, progress=interrupt_after(28))  # mid epoch 2 (19 steps each)
    assert ckpts.latest()[0] == 28
    assert ckpts.steps() == [21, 28]  # the newest two only

    resumed = fit(frames[0], frames[1], checkpoints=ckpts)
    assert resumed.resumed_from_step == 28
    assert resumed.steps == reference.steps
    assert resumed.steps_run == reference.steps - 28
    assert_same_weights(resumed.model, reference.model)
    assert [h["epoch"] for h in resumed.history] == [h["epoch"] for h in reference.history]
    for got, want in zip(resumed.history, reference.history):
        assert got["step"] == want["step"]
        assert got["train_loss"] == pytest.approx(want["train_loss"], abs=1e-6)
        assert got["valid_loss"] == pytest.approx(want["valid_loss"], abs=1e-6)

    # a finished run is not trained again: the last checkpoint says it is done
    again = fit(frames[0], frames[1], checkpoints=ckpts)
    assert again.steps_run == 0 and again.steps == reference.steps
    assert_same_weights(again.model, reference.model)


def test_sigterm_checkpoints_at_once_and_stops_as_preempted(tmp_path, frames, reference):
    """A real SIGTERM to this process during training (sent at the step-7 checkpoint): the next step
    is checkpointed at once, training stops with Preempted, and a resume ends with the same weights."""
    import os
    import signal

    from cloudhop.training import Preempted

    ckpts = CheckpointStore(Store(str(tmp_path / "store")), "ck")
    before = signal.getsignal(signal.SIGTERM)

    def sigterm_at_7(event):
        if event["event"] == "checkpoint" and event["step"] == 7:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Preempted) as e:
        fit(frames[0], frames[1], checkpoints=ckpts, progress=sigterm_at_7)
    assert e.value.step == 8 and ckpts.steps() == [7, 8]  # step 8 was not a checkpoint step (every 7)
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back
    resumed = fit(frames[0], frames[1], checkpoints=ckpts)
    assert resumed.resumed_from_step == 8 and resumed.steps == reference.steps
    assert_same_weights(resumed.model, reference.model)


def test_corrupt_newest_checkpoint_is_skipped(tmp_path, frames, reference):
    store = Store(str(tmp_path / "store"))
    ckpts = CheckpointStore(store, "ck")
    with pytest.raises(Interrupted):
        fit(frames[0], frames[1], checkpoints=ckpts, progress=interrupt_after(42))
    assert ckpts.steps() == [38, 42]  # 38: the end of epoch 2
    store.write_bytes(ckpts.key(42), store.read_bytes(ckpts.key(42))[:200])  # torn write
    step, data = ckpts.latest()
    assert step == 38 and data == store.read_bytes(ckpts.key(38))

    resumed = fit(frames[0], frames[1], checkpoints=ckpts)
    assert resumed.resumed_from_step == 38
    assert_same_weights(resumed.model, reference.model)

    store.write_bytes(ckpts.key(999), b"not a checkpoint at all")
    assert ckpts.latest()[0] != 999


def test_checkpoint_store_keeps_two_and_handles_empty(tmp_path):
    ckpts = CheckpointStore(Store(str(tmp_path)), "p/q")
    assert ckpts.latest() is None and ckpts.steps() == []
    for step in (5, 10, 15):
        ckpts.save(step, b"x")
    assert ckpts.steps() == [10, 15]
    assert sorted(ckpts.store.list("p/q")) == ["p/q/step-000000010.pt", "p/q/step-000000015.pt"]
    assert ckpts.latest() is None  # none is a readable checkpoint


def test_checkpoint_from_another_config_is_refused(tmp_path, frames):
    ckpts = CheckpointStore(Store(str(tmp_path)), "ck")
    with pytest.raises(Interrupted):
        fit(frames[0], frames[1], checkpoints=ckpts, progress=interrupt_after(7))
    with pytest.raises(TrainingError, match=r"does not match.*hidden"):
        fit(frames[0], frames[1], cfg(hidden=[8]), checkpoints=ckpts)
    with pytest.raises(TrainingError, match=r"does not match.*n_train"):
        fit(frames[0].iloc[:-5], frames[1], checkpoints=ckpts)


def test_final_checkpoint_loads(frames, reference):
    model, pre = load_model(reference.checkpoint)
    hold = frames[2]
    np.testing.assert_array_equal(predict(model, pre, hold), predict(reference.model, reference.preprocessor, hold))
    with pytest.raises(TrainingError, match="cannot read"):
        load_model(b"garbage")


# -- inputs: frames and tables ------------------------------------------------------

class MemoryTable:
    """A one-part table held in memory: the table shape training takes, as cloudhop.data's frame table."""

    in_memory = True

    def __init__(self, df):
        self.df, self.parts = df, [df]

    def count(self):
        return len(self.df)

    def frames(self, columns=None, *, order=None):
        for i in (range(1) if order is None else order):
            yield self.parts[i] if columns is None else self.parts[i][list(columns)]

    def to_pandas(self, columns=None):
        return self.df if columns is None else self.df[list(columns)]


def test_an_in_memory_table_trains_exactly_as_its_frame(frames, reference):
    res = fit(MemoryTable(frames[0]), MemoryTable(frames[1]))
    assert res.steps == reference.steps and res.history[-1]["valid_loss"] == reference.history[-1]["valid_loss"]
    for k, v in reference.model.state_dict().items():
        assert torch.equal(res.model.state_dict()[k], v), k


def test_training_data_must_be_a_frame_or_a_table(frames):
    with pytest.raises(TrainingError, match="training data must be a pandas DataFrame or a table.*got list"):
        fit([1, 2, 3], frames[1])
    with pytest.raises(TrainingError, match="validation data must be a pandas DataFrame or a table.*got dict"):
        fit(frames[0], {"label": [0, 1]})


def test_torch_free_parts_import_without_torch():
    import subprocess
    import sys

    code = ("import sys, cloudhop.training.evaluate, cloudhop.training.labels, cloudhop.training.config; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_holdout_target_values():
    from cloudhop.training.labels import target_values

    assert target_values(pd.Series([0, 1, 1]), "binary").tolist() == [0, 1, 1]
    assert target_values(pd.Series([True, False]), "binary").tolist() == [1, 0]
    assert target_values(pd.Series(["yes", "no", "yes"]), "binary").tolist() == [1, 0, 1]
    assert target_values(pd.Series([2, 10, 2]), "binary").tolist() == [1, 0, 1]  # sorted as text: "10" < "2"
    assert target_values(pd.Series(["late", "late"]), "binary").tolist() == [1, 1]  # one class: it is positive
    out = target_values(pd.Series([1, 2.5]), "regression")
    assert out.dtype == np.float64 and out.tolist() == [1.0, 2.5]


# -- errors ------------------------------------------------------------------------

def test_diverging_loss_is_caught(frames):
    with pytest.raises(TrainingError, match=r"training loss became NaN .*at step \d+"):
        fit(frames[0], frames[1], cfg(learning_rate=1e30, max_epochs=2))


def test_bad_targets_and_data(frames):
    train_df, valid_df, _ = frames
    with pytest.raises(TrainingError, match="only one class"):
        fit(train_df.assign(label=1), valid_df)
    with pytest.raises(TrainingError, match="3 distinct values"):
        fit(train_df.assign(label=np.arange(len(train_df)) % 3), valid_df)
    with pytest.raises(TrainingError, match="training data is empty"):
        fit(train_df.iloc[:0], valid_df)
    with pytest.raises(TrainingError, match="validation data lacks column.*'noise'"):
        fit(train_df, valid_df.drop(columns=["noise"]))
    with pytest.raises(TrainingError, match="2 missing values"):
        fit(train_df.assign(label=train_df["label"].where(train_df.index > 1)), valid_df)
    with pytest.raises(TrainingError, match="missing, infinite or non-numeric"):
        fit(train_df.assign(label=np.where(train_df.index == 3, np.inf, 1.0 * train_df.index)), valid_df,
            task="regression")
    with pytest.raises(TrainingError, match="not one of the training classes"):
        fit(train_df, valid_df.assign(label=valid_df["label"] + 5))
    with pytest.raises(TrainingError, match="batch_size must be >= 1"):
        cfg(batch_size=0)


def test_string_target_maps_sorted_with_later_value_positive(frames):
    train_df, valid_df, hold = frames
    words = {0: "on-time", 1: "late"}  # sorted: ['late', 'on-time'] -> 'on-time' is the positive class
    res = fit(train_df.assign(label=train_df["label"].map(words)), valid_df.assign(label=valid_df["label"].map(words)),
              cfg(max_epochs=2))
    assert res.classes == ["late", "on-time"]
    p = predict(res.model, res.preprocessor, hold)
    assert metrics("binary", hold["label"] == 0, p)["roc_auc"] > 0.75  # high probability = on time


def test_config_from_spec():
    c = TrainConfig.from_spec(ModelSpec(hidden=[7], batch_size=64))
    assert c.hidden == [7] and c.batch_size == 64 and c.checkpoint_every == 200 and c.device == "auto"


# -- ONNX ----------------------------------------------------------------------------

def test_onnx_binary_parity(frames, reference):
    hold = frames[2]
    onnx_bytes = export_onnx(reference.model, reference.preprocessor)
    diff = check_parity(reference.model, onnx_bytes, reference.preprocessor, hold)
    assert diff <= 1e-4
    p = onnx_predict(onnx_bytes, reference.preprocessor, hold)
    assert p.dtype == np.float32 and p.shape == (len(hold),)
    assert 0 <= p.min() and p.max() <= 1
    np.testing.assert_allclose(onnx_predict(onnx_bytes, reference.preprocessor, hold.iloc[:1]), p[:1], atol=1e-6)

    tampered, _ = load_model(reference.checkpoint)
    with torch.no_grad():
        tampered.mlp[-1].bias += 0.5
    with pytest.raises(TrainingError, match="predictions differ"):
        check_parity(tampered, onnx_bytes, reference.preprocessor, hold)


def test_regression_in_real_units_and_onnx_parity():
    train_df, valid_df, hold = (make_frame(2400, s, "regression") for s in (11, 12, 13))
    res = fit(train_df, valid_df, cfg(max_epochs=6, learning_rate=1e-2), task="regression")
    assert res.classes is None
    onnx_bytes = export_onnx(res.model, res.preprocessor)
    check_parity(res.model, onnx_bytes, res.preprocessor, hold)
    p = onnx_predict(onnx_bytes, res.preprocessor, hold)
    m = metrics("regression", hold["label"], p)
    spread = float(hold["label"].std())
    assert abs(float(p.mean()) - float(hold["label"].mean())) < 0.1 * spread  # around 1000, not around 0
    assert m["rmse"] < 0.5 * spread, (m, spread)


# -- metrics, baseline, plot -----------------------------------------------------------

def test_metrics_match_sklearn():
    from sklearn import metrics as skm

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 500)
    p = np.round(np.clip(0.35 * y + rng.random(500) * 0.65, 0.001, 0.999), 2)  # rounding makes ties
    got = metrics("binary", y, p)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, p), rel=1e-9)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p >= 0.5), abs=1e-12)
    assert metrics("binary", y.astype(bool), p) == got
    t, v = rng.normal(size=300), rng.normal(size=300)
    reg = metrics("regression", t, v)
    assert reg["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(t, v)), rel=1e-12)
    assert reg["mae"] == pytest.approx(skm.mean_absolute_error(t, v), rel=1e-12)
    assert np.isnan(metrics("binary", np.ones(4, int), np.full(4, 0.3))["roc_auc"])
    with pytest.raises(TrainingError, match="y_pred has 1 missing"):
        metrics("binary", y[:3], [0.1, np.nan, 0.2])


def test_baseline_beats_chance(frames):
    train_df, _, hold = frames
    base = fit_baseline(train_df, categorical=CAT, numeric=NUM, target="label", task="binary")
    p = base.predict(hold)
    assert p.shape == (len(hold),) and 0 <= p.min() and p.max() <= 1
    assert metrics("binary", hold["label"], p)["roc_auc"] > 0.78

    rtrain, rhold = make_frame(2000, 21, "regression"), make_frame(500, 22, "regression")
    rbase = fit_baseline(rtrain, categorical=CAT, numeric=NUM, target="label", task="regression")
    assert metrics("regression", rhold["label"], rbase.predict(rhold))["rmse"] < 0.5 * rhold["label"].std()


def test_loss_curve_png(reference):
    png = loss_curve_png(reference.history)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_warm_start_from_the_linear_baseline(task):
    """The network starts exactly as the baseline, so its best validation loss is never worse."""
    from cloudhop.training.loop import loss_fn
    from cloudhop.training.preprocess import Preprocessor

    tr, va = make_frame(2400, 11, task), make_frame(600, 12, task)
    pre = Preprocessor.fit(tr, CAT, NUM)
    base = fit_baseline(tr, categorical=CAT, numeric=NUM, target="label", task=task, preprocessor=pre)
    # a learning rate so high the deep part only hurts: the baseline start must win
    r = fit(tr, va, cfg(learning_rate=0.5, max_epochs=2, patience=1), task=task, preprocessor=pre,
            init_linear=base)
    y = va["label"].to_numpy(dtype=np.float32)
    bp = base.predict(va)
    if task == "binary":
        start = float(loss_fn(task, torch.logit(torch.tensor(bp, dtype=torch.float32), eps=1e-7), torch.tensor(y)))
    else:
        m, s = tr["label"].mean(), tr["label"].std()
        start = float(loss_fn(task, torch.tensor((bp - m) / s, dtype=torch.float32), torch.tensor((y - m) / s)))
    assert r.best_valid_loss == pytest.approx(start, rel=1e-3)
    assert r.best_epoch == 0  # no epoch beat the start, so the model is the baseline
    np.testing.assert_allclose(predict(r.model, r.preprocessor, va), bp, rtol=1e-3, atol=1e-3)


def test_promotion_gates():
    from cloudhop.training.evaluate import promotion

    base, worse, better = {"roc_auc": 0.70}, {"roc_auc": 0.65}, {"roc_auc": 0.75}
    # the first model must beat the same-run baseline too
    assert promotion("roc_auc", 0.0, worse, base, None, None) == (
        False, "baseline gate failed: roc_auc 0.6500 vs same-run baseline 0.7000: not better; not promoted")
    assert promotion("roc_auc", 0.0, base, base, None, None)[0] is False  # a tie is not better
    assert promotion("roc_auc", 0.0, {"roc_auc": 0.70005}, base, None, None)[0] is False  # nor float rounding
    ok, reason = promotion("roc_auc", 0.0, better, base, None, None)
    assert ok and reason == "first model; beats the baseline (roc_auc 0.7500 vs 0.7000); promoted"
    assert promotion("roc_auc", 0.0, worse, base, None, None, require_beat_baseline=False) == (
        True, "first model; promoted")
    # then the champion, by more than the margin
    ok, reason = promotion("roc_auc", 0.01, better, base, {"roc_auc": 0.745}, "3")
    assert not ok and reason.startswith("champion gate failed: roc_auc 0.7500 vs champion v3 0.7450: not better")
    ok, reason = promotion("roc_auc", 0.01, better, base, {"roc_auc": 0.70}, "3")
    assert ok and "beats the baseline" in reason and "better by more than 0.01" in reason
    # a champion that cannot score this holdout: the baseline gate still applies
    assert not promotion("roc_auc", 0.0, worse, base, None, "3", "champion v3 cannot score; ")[0]
    assert promotion("roc_auc", 0.0, better, base, None, "3", "champion v3 cannot score; ")[1].startswith(
        "champion v3 cannot score; beats the baseline")
    # lower is better for errors
    assert promotion("rmse", 0.0, {"rmse": 1.0}, {"rmse": 1.2}, None, None)[0]
    assert not promotion("rmse", 0.0, {"rmse": 1.3}, {"rmse": 1.2}, None, None)[0]
