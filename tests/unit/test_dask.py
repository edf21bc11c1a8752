"""Partitioned data (ParquetTable) in this process: reading like pandas, exact validation
combining, the drift sample, engine and cluster choice, streamed training. (On a real cluster:
tests/integration/test_dask.py; the same figures from a FrameTable: tests/unit/test_table.py.)"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cloudhop.data import (ADDRESS_ENV, PANDAS_MAX_BYTES_ENV, DataError, FrameTable, choose_engine, dask_address,
                           load_dataset, open_dataset, open_parquet, split, task_runner_options)
from cloudhop.spec import parse_spec
from cloudhop.validation import Expectation as E
from cloudhop.validation import ValidationError, ValidationResult, run_expectations
from cloudhop.validation.partitioned import validate_partitioned, validate_partitions


def _write(path, df: pd.DataFrame, row_group_size: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=row_group_size)


def _frame(n: int, seed: int, start: str = "2024-01-01") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "t": pd.date_range(start, periods=n, freq="h"),
        "k": rng.integers(0, 5, n),
        "x": rng.normal(0, 1, n),
        "s": rng.choice(["a", "b", "c"], n),
        "y": rng.integers(0, 2, n),
    })


SPEC = {"name": "parts", "columns": {
    "t": {"type": "datetime", "nullable": False, "role": "time"},
    "k": {"type": "int", "min": 0, "max": 4},
    "x": {"type": "float", "min": -3, "max": 3, "mostly": 0.99},
    "s": {"type": "category", "nullable": False, "categories": ["a", "b", "c"]},
    "y": {"type": "int", "nullable": False, "categories": [0, 1], "role": "target"}},
    "target": {"column": "y", "task": "binary"},
    "split": {"time_column": "t", "validation_start": "2024-01-20", "holdout_start": "2024-01-25"}}


def spec_for(uri: str, **dataset) -> object:
    return parse_spec({**SPEC, "dataset": {"uri": uri, **dataset}})


def frame_windows(df: pd.DataFrame, spec):
    """The spec's windows of a frame held in memory (the pandas engine's table)."""
    return split(FrameTable(df, time_column=spec.split.time_column), spec)


@pytest.fixture()
def messy(tmp_path):
    """Files named out of numeric order, marker files, a subfolder, nulls in an int and a bool
    column in one later file only, and a time zone."""
    d = tmp_path / "messy"
    parts = {"p1.parquet": _frame(300, 1), "p10.parquet": _frame(200, 2, "2024-01-14"),
             "p2.parquet": _frame(250, 3, "2024-01-23"), "sub/p0.parquet": _frame(100, 4, "2024-02-05")}
    for name, df in parts.items():
        df["b"] = df["y"] == 1
        df["t"] = df["t"].dt.tz_localize("Europe/Paris")
        if name == "p2.parquet":
            df["k"] = df["k"].astype("Int64")
            df.loc[5:7, "k"] = pd.NA
            df["b"] = df["b"].astype("boolean")
            df.loc[9, "b"] = pd.NA
        _write(d / name, df, row_group_size=100)
    (d / "_SUCCESS").write_bytes(b"")
    (d / ".hidden.parquet").write_bytes(b"not parquet")
    return d


def test_partitions_read_like_pandas_reads_the_whole(messy):
    spec = spec_for(str(messy))
    whole = load_dataset(spec)
    ds = open_parquet(spec)
    assert [p.path.rsplit("/", 2)[-1] for p in ds.parts] == ["p1.parquet", "p10.parquet", "p2.parquet",
                                                                  "p0.parquet"]
    assert ds.rows == len(whole) == 850
    assert [p.first_row for p in ds.parts] == [0, 300, 500, 750]
    assert whole["k"].dtype == "float64" and whole["b"].dtype == object  # nulls in one file widen all
    pd.testing.assert_frame_equal(ds.to_pandas(), whole)
    pd.testing.assert_frame_equal(ds.to_dask().compute(scheduler="sync").reset_index(drop=True), whole)
    by_row_group = open_parquet(spec, partition_bytes=1)
    assert len(by_row_group.parts) == 3 + 2 + 3 + 1
    pd.testing.assert_frame_equal(by_row_group.to_pandas(), whole)
    assert by_row_group.parts[4].label.endswith("p10.parquet rows 400-499")


def test_windows(messy):
    spec = spec_for(str(messy))
    w, pw = frame_windows(load_dataset(spec), spec), split(open_parquet(spec), spec)
    assert pw.sizes() == w.sizes()
    for name in ("train", "validation", "holdout"):
        pd.testing.assert_frame_equal(getattr(pw, name).to_pandas(), getattr(w, name).to_pandas())
    late = parse_spec({**SPEC, "dataset": {"uri": str(messy)},
                       "split": {**SPEC["split"], "validation_start": "2025-01-01", "holdout_start": "2025-02-01"}})
    with pytest.raises(DataError, match="time windows validation, holdout are empty"):
        split(open_parquet(late), late)


def test_what_the_dask_engine_cannot_read(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        open_dataset(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="reads Parquet"):
        open_dataset(str(tmp_path / "t.csv"))
    with pytest.raises(DataError, match="use the pandas engine"):
        open_dataset("builtin://nycflights13/flights")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "junk.parquet").write_bytes(b"garbage")
    (tmp_path / "d" / "ok.parquet").write_bytes(b"")
    with pytest.raises(DataError, match="junk.parquet cannot be read as parquet"):
        open_dataset(str(tmp_path / "d"))
    (tmp_path / "d" / "junk.parquet").unlink()
    with pytest.raises(DataError, match="ok.parquet is an empty file"):
        open_dataset(str(tmp_path / "d"))
    # the size estimate behind engine: auto says the same, before either engine reads anything
    with pytest.raises(DataError, match="ok.parquet is an empty file"):
        choose_engine(spec_for(str(tmp_path / "d")))
    (tmp_path / "t.parquet").write_bytes(b"PAR1 cut short")
    with pytest.raises(DataError, match=r"dataset \S+t.parquet cannot be read as parquet"):
        choose_engine(spec_for(str(tmp_path / "t.parquet")))


def test_engine_choice(messy, monkeypatch):
    monkeypatch.delenv(PANDAS_MAX_BYTES_ENV, raising=False)
    assert choose_engine(spec_for(str(messy), engine="dask")) == "dask"
    assert choose_engine(spec_for(str(messy), engine="pandas")) == "pandas"
    assert choose_engine(spec_for(str(messy))) == "pandas"            # tiny next to this machine's memory
    assert choose_engine(spec_for(str(messy)), max_pandas_bytes=1000) == "dask"
    monkeypatch.setenv(PANDAS_MAX_BYTES_ENV, "1000")
    assert choose_engine(spec_for(str(messy))) == "dask"
    assert choose_engine(spec_for("builtin://nycflights13/flights")) == "pandas"


def test_cluster_choice(monkeypatch):
    monkeypatch.delenv(ADDRESS_ENV, raising=False)
    spec = spec_for("x")
    assert dask_address(spec) is None
    opts = task_runner_options(spec, n_workers=3, memory_limit="1GiB", env={"PREFECT_API_URL": "http://h/api"},
                               preload=["cloudhop.validation._gx"])
    assert opts["cluster_class"] == "distributed.LocalCluster"
    assert opts["cluster_kwargs"] == {"n_workers": 3, "threads_per_worker": 1, "processes": True,
                                      "host": "127.0.0.1", "dashboard_address": None, "memory_limit": "1GiB",
                                      "env": {"PREFECT_API_URL": "http://h/api"},
                                      "preload": ["cloudhop.validation._gx"]}
    monkeypatch.setenv(ADDRESS_ENV, "tcp://127.0.0.1:8786")  # a remote one needs tls:// (tests/security)
    assert dask_address(spec) == "tcp://127.0.0.1:8786"
    assert task_runner_options(spec) == {"address": "tcp://127.0.0.1:8786"}
    assert dask_address(spec_for("x", dask_address="tcp://localhost:8787")) == "tcp://localhost:8787"  # the spec wins


# -- validation ------------------------------------------------------------------------
def _strip(results):
    return [{k: v for k, v in r.items() if k != "partitions"} for r in results]


@pytest.fixture()
def tricky(tmp_path):
    """Three files; the first has more than 20 bad values of one kind, so GX's first 20 examples
    on the whole table hold only that value; later files add others."""
    d = tmp_path / "tricky"
    frames = [_frame(400, 10), _frame(400, 11, "2024-01-17"), _frame(400, 12, "2024-02-03")]
    frames[0].loc[10:34, "x"] = -50.0          # 25 out of range
    frames[1].loc[3, "x"] = 99999.0
    frames[1].loc[7:9, "s"] = "zz"
    frames[2].loc[0:3, "x"] = np.nan
    frames[2].loc[50:60, "s"] = "a-very-long-value"
    for i, df in enumerate(frames):
        _write(d / f"part-{i}.parquet", df, row_group_size=200)
    return d, pd.concat(frames, ignore_index=True)


USER = [
    E("expect_table_row_count_to_equal", {"value": 1200}),
    E("expect_table_column_count_to_equal", {"value": 5}),
    E("expect_table_columns_to_match_set", {"column_set": ["t", "k", "x", "s", "y"]}),
    E("expect_column_to_exist", {"column": "nope"}),
    E("expect_column_values_to_be_between", {"column": "x", "min_value": -3, "max_value": 3, "mostly": 0.95}),
    E("expect_column_values_to_not_be_in_set", {"column": "s", "value_set": ["zz"]}),
    E("expect_column_values_to_match_regex", {"column": "s", "regex": "^[a-c]$"}),
    E("expect_column_value_lengths_to_be_between", {"column": "s", "min_value": 1, "max_value": 2}),
    E("expect_column_values_to_be_null", {"column": "x", "mostly": 0.001}),
    E("expect_column_min_to_be_between", {"column": "x", "min_value": -10}),
    E("expect_column_max_to_be_between", {"column": "t", "max_value": "2024-03-01"}),
    E("expect_column_proportion_of_unique_values_to_be_between", {"column": "k", "max_value": 0.5}),
    E("expect_column_unique_value_count_to_be_between", {"column": "s", "min_value": 1, "max_value": 3}),
    E("expect_column_proportion_of_non_null_values_to_be_between", {"column": "x", "min_value": 0.999}),
]


def test_combined_figures_equal_one_pandas_run(tricky):
    d, whole = tricky
    spec = spec_for(str(d))
    exps = __import__("cloudhop.validation", fromlist=["build_expectations"]).build_expectations(spec) + USER
    ds = open_parquet(spec, partition_bytes=1)
    assert len(ds.parts) == 6
    got = validate_partitions(ds.parts, exps)
    want = ValidationResult.from_results(run_expectations(whole, exps), row_count=len(whole))
    assert _strip(got.results) == want.results
    assert got.success is want.success is False and got.statistics == want.statistics
    by = {(r["type"], r["column"]): r for r in got.results}
    x = by[("expect_column_values_to_be_between", "x")]
    assert x["observed"]["partial_unexpected_list"] == [-50.0]   # the first 20 bad values are all -50
    outside = (whole["x"] < -3) | (whole["x"] > 3)
    assert x["observed"]["unexpected_count"] == outside.sum() >= 26
    assert [(p["first_row"], p["unexpected_count"]) for p in x["partitions"]] == [
        (i * 200, int(outside[i * 200:(i + 1) * 200].sum())) for i in range(6) if outside[i * 200:(i + 1) * 200].any()]
    missing = by[("expect_column_to_exist", "nope")]
    assert not missing["success"] and len(missing["partitions"]) == 6
    # the same through the spec entry point, with a user suite as a dict
    suite = {"expectations": [e.to_dict() for e in USER]}
    r = validate_partitioned(ds.parts, spec, user_suite=suite)
    assert [x["success"] for x in r.results] == [x["success"] for x in want.results]


class Unreadable:
    def read(self):
        raise AssertionError("read before the suite was checked")

    def describe(self):
        return {"file": "f", "first_row": 0, "rows": 1}


def test_refuses_what_cannot_be_combined_before_reading():
    exps = [E("expect_column_mean_to_be_between", {"column": "x", "min_value": 0}),
            E("expect_column_values_to_be_unique", {"column": "k"}),
            E("expect_column_values_to_be_between", {"column": "x", "min_value": 0, "row_condition": 'k=="1"'}),
            E("expect_column_values_to_not_be_null", {"column": "x"})]
    with pytest.raises(ValidationError) as e:
        validate_partitions([Unreadable()], exps)
    msg = str(e.value)
    assert "expect_column_mean_to_be_between(x), expect_column_values_to_be_unique(k), " \
           "expect_column_values_to_be_between(x) with a row_condition cannot be combined exactly" in msg
    assert "use the pandas engine" in msg and "expect_column_values_to_not_be_null(x)" not in msg.split(";")[0]


def test_a_file_with_another_dtype_is_named(tmp_path):
    d = tmp_path / "mixed"
    a, b = _frame(100, 1), _frame(100, 2, "2024-01-10")
    b["k"] = b["k"].astype(str)
    _write(d / "a.parquet", a)
    _write(d / "b.parquet", b)
    r = validate_partitioned(open_parquet(spec_for(str(d))).parts, spec_for(str(d)))
    (f,) = [f for f in r.failures if f.column == "k" and f.expectation == "expect_column_dtype_to_be_kind"]
    assert "mixed across partitions: int64 in 1, str in 1" in f.message
    assert f.message.endswith(f"(in {d / 'b.parquet'} rows 100-199: str)")


# -- drift -----------------------------------------------------------------------------
def test_drift_sample_is_the_one_drift_report_draws(tricky):
    from cloudhop.drift import drift_report, drift_tables

    d, _ = tricky
    spec = spec_for(str(d))
    w = frame_windows(load_dataset(spec), spec)
    pw = split(open_parquet(spec, partition_bytes=1), spec)
    kw = dict(numeric=["x", "k"], categorical=["s"], threshold=0.3, seed=5, html=False)
    for n in (150, 10_000):  # sampled; taken whole
        a = drift_report(w.train.to_pandas(), w.holdout.to_pandas(), sample_size=n, **kw)
        b = drift_tables(pw.train, pw.holdout, sample_size=n, **kw)
        assert b.summary() == a.summary()
        assert drift_tables(w.train, w.holdout, sample_size=n, **kw).summary() == a.summary()
    assert a.reference_rows == w.train.count()


# -- streamed training ----------------------------------------------------------------------
class Counting:
    """A partitioned table (the shape training takes) that records which parts are read."""

    in_memory = False

    def __init__(self, ds):
        self.ds, self.parts, self.reads = ds, ds.parts, []

    def count(self):
        return self.ds.count()

    def frames(self, columns=None, *, order=None):
        for i in order:
            self.reads.append(i)
            yield self.parts[i].read(columns)

    def to_pandas(self, columns=None):
        return pd.concat(list(self.frames(columns, order=range(len(self.parts)))), ignore_index=True)


def test_streamed_training_reads_a_partition_at_a_time_and_resumes_exactly(tmp_path):
    import torch

    from cloudhop.store import Store
    from cloudhop.training import CheckpointStore, TrainConfig, train
    from cloudhop.training.preprocess import Preprocessor
    from cloudhop.training.batches import fit_preprocessor

    rng = np.random.default_rng(0)
    n = 1200
    df = pd.DataFrame({"c": rng.choice(["u", "v", "w"], n), "x": rng.normal(0, 1, n)})
    df["y"] = (rng.random(n) < 1 / (1 + np.exp(-(2 * df["x"] + (df["c"] == "u"))))).astype("int64")
    for i in range(4):
        _write(tmp_path / "t" / f"p{i}.parquet", df.iloc[i * 300:(i + 1) * 300], row_group_size=150)
    valid = df.sample(300, random_state=1)
    ds = open_dataset(str(tmp_path / "t"), partition_bytes=1)
    config = TrainConfig(hidden=[16], embedding_dim=4, batch_size=64, max_epochs=2, patience=5, checkpoint_every=5,
                         seed=1, device="cpu")
    kw = dict(categorical=["c"], numeric=["x"], target="y", task="binary", config=config)

    src = Counting(ds)
    ref = train(src, valid, **kw)
    assert ref.steps == 2 * 19  # ceil(1200 / 64) per epoch, batches across partitions
    assert sorted(src.reads) == sorted(list(range(8)) * 3)  # a first pass, then each partition once an epoch
    assert src.reads[8:16] != list(range(8)) and sorted(src.reads[8:16]) == list(range(8))  # shuffled order
    assert ref.history[-1]["valid_loss"] < ref.history[0]["valid_loss"]
    pre = fit_preprocessor(ds.frames(["c", "x"]), ["c"], ["x"])
    exact = Preprocessor.fit(df, ["c"], ["x"])
    assert pre.vocab == exact.vocab == ref.preprocessor.vocab
    assert pre.mean["x"] == pytest.approx(exact.mean["x"], rel=1e-12)
    assert pre.std["x"] == pytest.approx(exact.std["x"], rel=1e-12)

    for i in range(2):  # validation rows from a partitioned table: the same tensors, so the same run
        _write(tmp_path / "v" / f"p{i}.parquet", valid.iloc[i * 150:(i + 1) * 150], row_group_size=75)
    streamed_valid = train(ds, open_dataset(str(tmp_path / "v"), partition_bytes=1), **kw)
    assert [h["valid_loss"] for h in streamed_valid.history] == [h["valid_loss"] for h in ref.history]
    for k, v in ref.model.state_dict().items():
        assert torch.equal(streamed_valid.model.state_dict()[k], v), k

    class Stop(Exception):
        pass

    def stop_at_15(e):
        if e["event"] == "checkpoint" and e["step"] >= 15:  # inside the first epoch (19 steps), mid partition
            raise Stop

    ckpts = CheckpointStore(Store(str(tmp_path / "store")), "ck")
    with pytest.raises(Stop):
        train(ds, valid, checkpoints=ckpts, progress=stop_at_15, **kw)
    resumed = train(ds, valid, checkpoints=ckpts, **kw)
    assert resumed.resumed_from_step == 15 and resumed.steps == ref.steps
    for k, v in ref.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, atol=1e-6, rtol=0)


def test_head_sample_and_pandas_windows(tricky):
    d, whole = tricky
    spec = spec_for(str(d))
    ds = open_parquet(spec, partition_bytes=1)
    pd.testing.assert_frame_equal(ds.head(450), whole.head(450))
    rng = np.random.default_rng(3)
    want = whole.iloc[np.sort(rng.choice(len(whole), 100, replace=False))].reset_index(drop=True)
    pd.testing.assert_frame_equal(ds.sample(100, seed=3), want)
    pw = split(ds, spec)
    full = frame_windows(whole, spec)
    train, valid, hold = (x.to_pandas() for x in (full.train, full.validation, full.holdout))
    pos = np.sort(np.random.default_rng(1).choice(len(train), 200, replace=False))
    pd.testing.assert_frame_equal(pw.train.sample(200, seed=1), train.iloc[pos].reset_index(drop=True))  # in row order
    assert len(valid) == 120 and len(hold) > 200
    pd.testing.assert_frame_equal(pw.validation.sample(200, seed=1), valid)          # small enough: whole
    pd.testing.assert_frame_equal(pw.holdout.to_pandas(), hold)
