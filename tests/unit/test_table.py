"""The Table seam: a frame in memory (FrameTable) and partitioned Parquet (ParquetTable) of the
same rows give the same sample, windows, counts, validation figures and drift, whatever the
part layout; the one sampler is today's seeded draw over the rows in order."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cloudhop.drift import monitor as mon
from cloudhop.data import (DataError, FrameTable, LocalExecutor, ParquetTable, Table, fingerprint, load_dataset,
                           open_dataset, open_parquet, open_table, sample_table, split)
from cloudhop.drift import drift_report, drift_tables
from cloudhop.spec import parse_spec
from cloudhop.validation import validate_table

ROWS = 1000
SPEC = {
    "name": "tables",
    "target": {"column": "y", "task": "binary"},
    "split": {"time_column": "t", "validation_start": "2024-01-20", "holdout_start": "2024-02-05"},
    "columns": {"t": {"type": "datetime", "nullable": False, "role": "time"},
                "y": {"type": "int", "nullable": False, "categories": [0, 1], "role": "target"},
                "x": {"type": "float", "min": -3, "max": 3, "mostly": 0.99},  # 1% may be out of range
                "s": {"type": "category", "nullable": False, "categories": ["a", "b", "c"]},
                "k": {"type": "int", "min": 0, "max": 4}},
}
# files (rows in each) and row group size: one file; files of unequal sizes; a row group per partition
LAYOUTS = {"one file": ([ROWS], None, None), "uneven files": ([100, 350, 1, 549], 120, None),
           "row groups": ([400, 600], 50, 1)}


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=ROWS, freq="h"), "k": rng.integers(0, 5, ROWS),
                       "x": rng.normal(0, 1, ROWS), "s": rng.choice(["a", "b", "c"], ROWS),
                       "y": rng.integers(0, 2, ROWS)})
    df.loc[40:59, "x"] = 9.0   # out of range (2%, over the 1% allowed), in the training window
    df.loc[700, "s"] = "zz"    # not in the set, in the holdout window
    return df


def spec_for(uri: str):
    return parse_spec({**SPEC, "dataset": {"uri": uri}})


@pytest.fixture(scope="module")
def whole() -> pd.DataFrame:
    return _frame()


@pytest.fixture(scope="module", params=list(LAYOUTS))
def tables(request, tmp_path_factory, whole) -> tuple[FrameTable, ParquetTable, object]:
    """The same rows as a FrameTable and as a ParquetTable of the layout."""
    sizes, row_group, partition_bytes = LAYOUTS[request.param]
    d = tmp_path_factory.mktemp("layout")
    start = 0
    for i, n in enumerate(sizes):
        pq.write_table(pa.Table.from_pandas(whole.iloc[start:start + n], preserve_index=False),
                       d / f"part-{i:02d}.parquet", row_group_size=row_group)
        start += n
    spec = spec_for(str(d))
    parquet = open_parquet(spec, **({"partition_bytes": partition_bytes} if partition_bytes else {}))
    frame = FrameTable(load_dataset(spec), uri=str(d), time_column="t")
    return frame, parquet, spec


def test_both_are_tables(tables):
    frame, parquet, _ = tables
    assert isinstance(frame, Table) and isinstance(parquet, Table)
    assert frame.in_memory and not parquet.in_memory and len(frame.parts) == 1
    assert frame.count() == parquet.count() == ROWS and frame.columns == parquet.columns
    assert sum(p.count() for p in parquet.parts) == ROWS
    pd.testing.assert_frame_equal(frame.to_pandas(), parquet.to_pandas())
    pd.testing.assert_frame_equal(frame.head(77, ["x", "s"]), parquet.head(77, ["x", "s"]))
    got = list(parquet.frames(["k"], order=list(reversed(range(len(parquet.parts))))))
    assert sum(len(f) for f in got) == ROWS and all(list(f.columns) == ["k"] for f in got)


@pytest.mark.parametrize("n", [1, 37, 999, 1000, 5000])
@pytest.mark.parametrize("seed", [0, 11])
def test_one_sampler_draws_the_same_rows_from_both(tables, whole, n, seed):
    frame, parquet, _ = tables
    a, b = frame.sample(n, seed), parquet.sample(n, seed, executor=LocalExecutor())
    pd.testing.assert_frame_equal(a, b)
    # today's draw: np.sort(rng.choice(total, n, replace=False)) over the rows in order; all when n >= rows
    want = whole if n >= ROWS else whole.iloc[np.sort(np.random.default_rng(seed).choice(ROWS, n, replace=False))]
    pd.testing.assert_frame_equal(a, load_dataset(spec_for(frame.uri)).iloc[want.index].reset_index(drop=True))
    pd.testing.assert_frame_equal(frame.sample(n, seed, columns=["s", "x"]), parquet.sample(n, seed, ["s", "x"]))


def test_a_generator_goes_on_from_one_table_to_the_next(tables):
    frame, parquet, _ = tables
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    for bounds in ((None, "2024-01-20"), ("2024-02-05", None)):
        a, b = sample_table(frame.window(*bounds), 100, r1), sample_table(parquet.window(*bounds), 100, r2)
        pd.testing.assert_frame_equal(a, b)
    assert len(a) == 100 and r1.random() == r2.random()


def test_windows_counts_and_validation_figures_are_the_same(tables):
    frame, parquet, spec = tables
    wf, wp = split(frame, spec), split(parquet, spec, LocalExecutor())
    assert wf.sizes() == wp.sizes() == {"train": 456, "validation": 384, "holdout": 160}
    assert all(p.counted is not None for p in wp.train.parts)  # counted once, in split
    for name in ("train", "validation", "holdout"):
        pd.testing.assert_frame_equal(getattr(wf, name).to_pandas(), getattr(wp, name).to_pandas())
    a, b = validate_table(frame, spec), validate_table(parquet, spec, executor=LocalExecutor())
    assert not a.success and a.statistics == b.statistics and a.row_count == b.row_count == ROWS
    assert [{k: v for k, v in r.items() if k != "partitions"} for r in b.results] == a.results
    assert sorted(f.column for f in a.failures) == ["s", "x"]


def test_drift_is_the_same_from_both(tables):
    frame, parquet, spec = tables
    wf, wp = split(frame, spec), split(parquet, spec)
    kw = dict(numeric=["x", "k"], categorical=["s"], threshold=0.3, seed=3, html=False)
    for n in (100, 10_000):  # sampled; taken whole
        want = drift_report(wf.train.to_pandas(), wf.holdout.to_pandas(), sample_size=n, **kw).summary()
        assert drift_tables(wf.train, wf.holdout, sample_size=n, **kw).summary() == want
        assert drift_tables(wp.train, wp.holdout, sample_size=n, **kw).summary() == want


def test_monitor_samples_the_rows_of_the_one_sampler(whole):
    got = mon.sample_rows(whole, 100, 4)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), FrameTable(whole).sample(100, 4))


def test_open_table_chooses_the_engine_once(tables):
    frame, parquet, _ = tables
    d = frame.uri
    t = open_table(parse_spec({**SPEC, "dataset": {"uri": d, "engine": "pandas"}}))
    assert isinstance(t, FrameTable) and t.fingerprint == fingerprint(t.to_pandas()) == frame.fingerprint
    p = open_table(parse_spec({**SPEC, "dataset": {"uri": d, "engine": "dask"}}))
    assert isinstance(p, ParquetTable) and p.fingerprint == open_dataset(d, time_column="t").fingerprint


def test_bad_use_is_a_clear_error(whole):
    with pytest.raises(DataError, match="a window needs the spec's time column"):
        FrameTable(whole).window("2024-01-02")
    with pytest.raises(DataError, match="holds a pandas DataFrame, got list"):
        FrameTable([1, 2])
    with pytest.raises(DataError, match="a sample needs at least 1 row, got 0"):
        FrameTable(whole).sample(0, 1)
    with pytest.raises(IndexError, match="one part"):
        list(FrameTable(whole).frames(order=[1]))


def _write_uneven(d, df: pd.DataFrame, sizes=(100, 350, 1, 549)) -> str:
    start = 0
    for i, n in enumerate(sizes):
        pq.write_table(pa.Table.from_pandas(df.iloc[start:start + n], preserve_index=False),
                       d / f"part-{i:02d}.parquet", row_group_size=120)
        start += n
    return str(d)


def test_unlabelled_rows_are_dropped_from_every_window_and_counted(tmp_path, whole):
    df = whole.assign(y=whole["y"].astype("Int64"))
    df.loc[[3, 500, 501, 999], "y"] = pd.NA  # one in train, two in validation, one in the holdout
    uri = _write_uneven(tmp_path, df)
    nullable = {**SPEC, "dataset": {"uri": uri},
                "columns": {**SPEC["columns"], "y": {**SPEC["columns"]["y"], "nullable": True}}}
    spec = parse_spec(nullable)
    frame = FrameTable(load_dataset(spec), uri=uri, time_column="t")
    wf, wp = split(frame, spec), split(open_parquet(spec), spec, LocalExecutor())
    assert wf.unlabelled_dropped == wp.unlabelled_dropped == 4
    assert wf.sizes() == wp.sizes() == {"train": 455, "validation": 382, "holdout": 159}
    for name in ("train", "validation", "holdout"):
        got = getattr(wp, name).to_pandas()
        pd.testing.assert_frame_equal(getattr(wf, name).to_pandas(), got)
        assert got["y"].notna().all()
    # a sample of the labelled rows reads only labelled rows, the same from both engines
    pd.testing.assert_frame_equal(wf.train.sample(50, 1, ["x", "y"]), wp.train.sample(50, 1, ["x", "y"]))

    # target.missing: fail keeps every row (the data gate refuses them: see test_validation)
    kept = split(frame, parse_spec({**nullable, "target": {**SPEC["target"], "missing": "fail"}}))
    assert kept.unlabelled_dropped == 0 and sum(kept.sizes().values()) == ROWS

    # a window left without labelled rows is a clear error
    no_labels = df.assign(y=df["y"].where(df["t"] < pd.Timestamp("2024-02-05"), pd.NA))
    with pytest.raises(DataError, match=r"time windows holdout are empty of labelled rows \(163 rows without 'y' dropped\)"):
        split(FrameTable(no_labels, uri=uri, time_column="t"), spec)


def test_a_limit_is_a_seeded_sample_over_the_whole_range(tables, whole):
    frame, _, spec = tables
    want = sample_table(FrameTable(whole), 90, 0)
    for engine in ("pandas", "dask"):
        limited = parse_spec({**SPEC, "dataset": {"uri": frame.uri, "engine": engine, "limit": 90}})
        t = open_table(limited)
        assert isinstance(t, FrameTable) and t.count() == 90
        pd.testing.assert_frame_equal(t.to_pandas(), want)
        sizes = split(t, limited).sizes()  # every window keeps rows; the first 90 rows would all be training
        assert all(sizes.values()) and sum(sizes.values()) == 90, sizes
    all_rows = open_table(parse_spec({**SPEC, "dataset": {"uri": frame.uri, "engine": "dask", "limit": ROWS}}))
    assert isinstance(all_rows, ParquetTable)  # a limit at or above the size keeps the table as it is
