"""Validation, drift and reading on a real distributed.LocalCluster of worker processes:
the same figures as pandas, bad partitions named, a worker killed mid-run."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cloudhop.data import (VALIDATION_PRELOAD, DaskExecutor, FrameTable, dask_client, flights_table, load_dataset,
                           open_parquet, split)
from cloudhop.drift import drift_report, drift_tables
from cloudhop.spec import parse_spec
from cloudhop.validation import validate
from cloudhop.validation.partitioned import validate_partitioned

pytestmark = pytest.mark.integration

ROWS, FILES = 16_000, 4
BAD_FILE = 2  # rows 8000-11999; its first row group: 8000-9999
EXTRA_SUITE = Path(__file__).resolve().parents[1] / "data" / "flights_extra_suite.json"


def _strip(results):
    return [{k: v for k, v in r.items() if k != "partitions"} for r in results]


@pytest.fixture(scope="module")
def spec(tmp_path_factory, flights_columns):
    """Flights as 4 Parquet files of 2 row groups; file 2 has out-of-range and unknown values."""
    d = tmp_path_factory.mktemp("flights-parts")
    df = flights_table().head(ROWS)[list(flights_columns)].copy()
    bad = BAD_FILE * ROWS // FILES
    df.loc[bad + 100:bad + 125, "distance"] = -5.0          # 26 rows
    df.loc[bad + 300:bad + 310, "origin"] = "XXX"           # 11 rows
    df.loc[bad + 500, "late"] = 2                           # a third target class
    df.loc[bad + 700:bad + 703, "carrier"] = "X9Z"          # 4 rows against the extra suite's regex
    df.loc[3:5, "temp"] = None                              # nulls in a nullable column, file 0
    n = ROWS // FILES
    for i in range(FILES):
        pq.write_table(pa.Table.from_pandas(df.iloc[i * n:(i + 1) * n], preserve_index=False),
                       d / f"part-{i:02d}.parquet", row_group_size=n // 2)
    return parse_spec({
        "name": "flights-parts", "dataset": {"uri": str(d), "engine": "dask"}, "columns": flights_columns,
        "target": {"column": "late", "task": "binary"},
        "split": {"time_column": "time_hour", "validation_start": "2013-01-14", "holdout_start": "2013-01-18"}})


@pytest.fixture(scope="module")
def whole(spec):
    return load_dataset(spec)


@pytest.fixture(scope="module")
def pandas_result(whole, spec):
    return validate(whole, spec)


@pytest.fixture(scope="module")
def client():
    # workers import GX before they take work (restarted ones too): the import takes seconds
    with dask_client(n_workers=2, memory_limit="2GiB", preload=VALIDATION_PRELOAD) as c:
        c.wait_for_workers(2, timeout=120)
        yield c


def _pids(client) -> dict[str, int]:
    return client.run(os.getpid)


@pytest.fixture(scope="module")
def on_cluster(spec, client):
    """One validation of 8 partitions (one per row group) on the cluster, and the workers that ran it."""
    from distributed import get_task_stream

    ds = open_parquet(spec, partition_bytes=1)
    assert len(ds.parts) == 2 * FILES
    with get_task_stream(client) as ts:
        r = validate_partitioned(ds.parts, spec, executor=DaskExecutor(client))
    return r, {t["worker"] for t in ts.data}


def test_same_figures_as_pandas_across_worker_processes(on_cluster, pandas_result, client):
    r, workers = on_cluster
    assert workers == set(_pids(client)) and len(workers) == 2   # both worker processes did work
    assert os.getpid() not in _pids(client).values()
    assert not pandas_result.success
    assert _strip(r.results) == pandas_result.results            # every count, percentage, example
    assert r.row_count == pandas_result.row_count == ROWS
    assert r.statistics == pandas_result.statistics
    assert [f.expectation for f in r.failures] == [f.expectation for f in pandas_result.failures]


def test_user_suite_same_figures_as_pandas_on_the_cluster(spec, whole, client):
    """The extra suite's regex and range checks too, each column checked on its own on the workers."""
    want = validate(whole, spec, EXTRA_SUITE)
    got = validate_partitioned(open_parquet(spec, partition_bytes=1).parts, spec, EXTRA_SUITE,
                               executor=DaskExecutor(client))
    assert _strip(got.results) == want.results and got.statistics == want.statistics
    regex = next(r for r in got.results if r["type"] == "expect_column_values_to_match_regex")
    assert regex["observed"]["unexpected_count"] == 4 and regex["observed"]["partial_unexpected_list"] == ["X9Z"]
    assert [p["first_row"] for p in regex["partitions"]] == [8000]
    short = [r for r in got.results if r["type"] == "expect_column_values_to_be_between" and r["column"] == "distance"]
    assert short[-1]["observed"]["unexpected_count"] == int((whole["distance"] > 2000).sum() + 26) > 26


def test_bad_partition_reported_with_file_and_rows(on_cluster, spec):
    r, _ = on_cluster
    by = {(x["type"], x["column"]): x for x in r.results}
    bad_file = str(Path(spec.dataset.uri) / f"part-{BAD_FILE:02d}.parquet")
    distance = by[("expect_column_values_to_be_between", "distance")]
    assert distance["observed"]["unexpected_count"] == 26
    assert distance["partitions"] == [{"file": bad_file, "row_groups": [0, 0], "first_row": 8000, "rows": 2000,
                                       "unexpected_count": 26}]
    origin = by[("expect_column_values_to_be_in_set", "origin")]["partitions"]
    assert [(p["file"], p["first_row"], p["unexpected_count"]) for p in origin] == [(bad_file, 8000, 11)]
    (msg,) = [f.message for f in r.failures if f.column == "distance"]
    assert msg.endswith(f"(in {bad_file} rows 8000-9999: 26 unexpected)")
    # nulls in a nullable column are no failure, and no partition is blamed for them
    temp = by[("expect_column_proportion_of_non_null_values_to_be_between", "temp")]
    assert temp["success"] and temp["partitions"] == []


def test_worker_killed_mid_validation_gives_the_same_result(spec, pandas_result, client):
    ds = open_parquet(spec, partition_bytes=1)
    before = _pids(client)
    victim_addr, victim_pid = sorted(before.items())[0]
    out: dict = {}

    def run():
        try:
            out["result"] = validate_partitioned(ds.parts, spec, executor=DaskExecutor(client))
        except BaseException as e:  # surfaced below
            out["error"] = e

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until results exist and the victim is working
        done = sum(len(v) for v in client.has_what().values())
        if done >= 2 and client.processing().get(victim_addr):
            break
        time.sleep(0.02)
    else:
        pytest.fail("the cluster never got going")
    assert t.is_alive()
    os.kill(victim_pid, signal.SIGKILL)
    t.join(120)
    assert not t.is_alive()
    assert "error" not in out, out.get("error")
    with pytest.raises(ProcessLookupError):
        os.kill(victim_pid, 0)
    r = out["result"]
    assert _strip(r.results) == pandas_result.results
    assert r.row_count == ROWS
    assert victim_addr not in client.scheduler_info()["workers"]  # the scheduler lost it; the rest did its work


def test_drift_verdict_and_scores_same_as_pandas(spec, whole, client):
    w = split(FrameTable(whole, time_column=spec.split.time_column), spec)
    pw = split(open_parquet(spec, partition_bytes=1), spec, DaskExecutor(client))
    assert pw.sizes() == w.sizes()
    kw = dict(numeric=spec.numeric, categorical=spec.categorical, threshold=spec.drift.threshold, seed=7,
              html=False)
    a = drift_report(w.train.to_pandas(), w.holdout.to_pandas(), sample_size=3_000, **kw)
    b = drift_tables(pw.train, pw.holdout, sample_size=3_000, executor=DaskExecutor(client), **kw)
    assert b.summary() == a.summary()                      # scores, verdict, drifted columns
    assert a.reference_rows == 3_000 < w.sizes()["train"]  # sampled
    assert a.current_rows == w.sizes()["holdout"] < 3_000   # taken whole


def test_dask_dataframe_reads_the_same_table(spec, whole, client):
    ddf = open_parquet(spec).to_dask()
    assert ddf.npartitions == FILES
    got = client.compute(ddf).result()
    pd.testing.assert_frame_equal(got.reset_index(drop=True), whole)
