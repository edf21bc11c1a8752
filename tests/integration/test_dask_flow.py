"""Flows on Dask against a real Prefect server:
- retrain with the dask engine: partitioned Parquet validated and summarised for drift on a
  LocalCluster of worker processes, the training window streamed to the trainer, the model
  registered and served; the same validation figures, windows and drift verdict as pandas;
- validate-large: partitions fanned out as Prefect tasks on a DaskTaskRunner's LocalCluster,
  recorded in the run's own Prefect server."""
from __future__ import annotations

import copy
import json

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from cloudhop.data import FrameTable, flights_table, load_dataset, split
from cloudhop.drift import drift_report
from cloudhop.registry import Registry
from cloudhop.spec import load_spec
from cloudhop.store import Store
from cloudhop.providers.local.target import LocalTarget
from cloudhop.training import onnx_predict
from cloudhop.training.evaluate import metrics
from cloudhop.training.preprocess import Preprocessor
from cloudhop.validation import validate
from ops.net import free_port

pytestmark = pytest.mark.integration


def test_retrain_on_the_dask_engine_matches_pandas_and_serves(prefect_api_url, tmp_path):
    from flows.retrain import retrain

    flights = flights_table().iloc[::12].reset_index(drop=True)  # ~27k rows over the whole year
    data = tmp_path / "flights"
    data.mkdir()
    for month, part in flights.groupby(flights["time_hour"].dt.month):  # one file per month
        pq.write_table(pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False),
                       data / f"month-{month:02d}.parquet", row_group_size=1000)
    port = free_port()
    spec = copy.deepcopy(yaml.safe_load(open("specs/flights.yaml")))
    spec["dataset"] = {"uri": str(data), "engine": "dask"}
    spec["store"] = str(tmp_path / "store")
    spec["model"].update(max_epochs=2, checkpoint_every=20, hidden=[32, 16])
    # A network of two epochs on a 1/12 slice scores within a thousandth of the linear baseline either way; this test is
    # about the dask engine, not the model's quality: the baseline gate is off (tests/integration/test_gates.py tests it).
    spec["evaluation"]["require_beat_baseline"] = False
    spec["targets"] = [{"name": "local", "kind": "local",
                        "options": {"port": port, "state_dir": str(tmp_path / "serving")}}]
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    target = LocalTarget("local", spec["store"], spec["name"], port=port, state_dir=tmp_path / "serving")
    try:
        state = retrain(spec=str(spec_path), reason="test", return_state=True)
        assert state.is_completed(), state
        out = state.result()
        assert out["version"] == "1" and out["promoted"] and out["deployed"]["local"]["version"] == "1"

        # the same figures, windows and drift verdict as the pandas engine on the same files
        s = load_spec(spec_path, {"dataset.engine": "pandas"})
        df = load_dataset(s)
        want = validate(df, s)
        w = split(FrameTable(df, time_column=s.split.time_column), s)
        train, hold = w.train.to_pandas(), w.holdout.to_pandas()
        registry = Registry(Store(spec["store"]), spec["name"])
        mv = registry.get("1")
        saved = Store(spec["store"]).read_json(f"runs/{spec['name']}/{state.state_details.flow_run_id}/validation.json")
        assert [{k: v for k, v in r.items() if k != "partitions"} for r in saved["results"]] == \
            want.to_dict()["results"]
        assert mv.manifest.dataset.windows == w.sizes()
        d = drift_report(train, hold, numeric=s.numeric, categorical=s.categorical,
                         threshold=s.drift.threshold, sample_size=s.drift.sample_size, seed=s.model.seed, html=False)
        assert out["drift"]["drifted_columns"] == d.summary()["drifted_columns"]
        assert out["drift"]["share"] == pytest.approx(d.share)
        assert out["training"]["steps"] == 2 * -(-len(train) // spec["model"]["batch_size"])

        # evaluation scored every holdout row: recompute the candidate's AUC from the registered model
        pre = Preprocessor.from_dict(json.loads(registry.read_file(mv, "preprocess.json")))
        onnx = registry.read_file(mv, "model.onnx")
        y = hold["late"].astype("int64").to_numpy()
        assert out["metrics"]["candidate"]["roc_auc"] == pytest.approx(
            metrics("binary", y, onnx_predict(onnx, pre, hold))["roc_auc"], abs=1e-9)

        rows = hold[s.features].head(50)
        r = httpx.post(f"http://127.0.0.1:{port}/predict",
                       json={"rows": json.loads(rows.to_json(orient="records"))}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["version"] == "1"
        got = np.asarray(r.json()["predictions"], dtype=np.float64)
        assert np.allclose(got, onnx_predict(onnx, pre, rows), atol=1e-5)
    finally:
        target.stop()


def _bad_origin_dataset(tmp_path, columns: dict):
    """flights in 3 files of 2,000 rows; 10 unknown origins in the third."""
    data = tmp_path / "data"
    data.mkdir()
    df = flights_table().head(6000)[list(columns)].copy()
    df.loc[4100:4109, "origin"] = "XXX"
    for i in range(3):
        pq.write_table(pa.Table.from_pandas(df.iloc[i * 2000:(i + 1) * 2000], preserve_index=False),
                       data / f"part-{i}.parquet")
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({
        "name": "flights-flow", "dataset": {"uri": str(data), "engine": "dask"}, "columns": columns,
        "target": {"column": "late", "task": "binary"}, "store": str(tmp_path / "store"),
        "split": {"time_column": "time_hour", "validation_start": "2013-01-04", "holdout_start": "2013-01-06"}}))
    return data, spec_path


def test_partitions_fan_out_as_prefect_tasks_on_dask_workers(prefect_api_url, tmp_path, flights_columns):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId, TaskRunFilter

    from flows.validate_large import validate_large

    data, spec_path = _bad_origin_dataset(tmp_path, flights_columns)
    spec = load_spec(spec_path)

    state = validate_large(spec=str(spec_path), workers=2, fail_on_invalid=False, return_state=True)
    assert state.is_completed(), state
    out = state.result()
    want = validate(load_dataset(spec), spec)
    assert out["partitions"] == 3 and out["rows"] == 6000
    assert out["failed_expectations"] == want.summary()["failed_expectations"] == [
        "expect_column_values_to_be_in_set(origin)"]
    run_id = state.state_details.flow_run_id
    saved = Store(spec.store).read_json(f"runs/{spec.name}/{run_id}/validation.json")
    assert [{k: v for k, v in r.items() if k != "partitions"} for r in saved["results"]] == want.to_dict()["results"]
    origin = next(r for r in saved["results"] if r["column"] == "origin" and not r["success"])
    assert [(p["file"], p["unexpected_count"]) for p in origin["partitions"]] == [(str(data / "part-2.parquet"), 10)]

    with get_client(sync_client=True) as client:  # the workers reported to this server, not their own
        (child,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])))
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [child.id]}),
                                     task_run_filter=TaskRunFilter())
    checks = [r for r in runs if r.name.startswith("check-partition")]
    assert len(checks) == 3 and all(r.state.is_completed() for r in checks)


def test_an_existing_scheduler_from_the_environment_does_the_work(prefect_api_url, tmp_path, monkeypatch,
                                                                  flights_columns):
    """CLOUDHOP_DASK_ADDRESS names a running cluster (its workers configured with the API URL,
    as a user's own cluster must be): the flow's partition tasks run there, and no cluster of its own starts."""
    from distributed import Client, LocalCluster, get_task_stream

    from cloudhop.data import ADDRESS_ENV
    from flows.validate_large import validate_large

    _, spec_path = _bad_origin_dataset(tmp_path, flights_columns)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      env={"PREFECT_API_URL": prefect_api_url}) as cluster, Client(cluster) as client:
        monkeypatch.setenv(ADDRESS_ENV, cluster.scheduler_address)
        with get_task_stream(client) as ts:
            state = validate_large(spec=str(spec_path), fail_on_invalid=False, return_state=True)
        assert state.is_completed(), state
        assert state.result()["failed_expectations"] == ["expect_column_values_to_be_in_set(origin)"]
        ran = [t for t in ts.data if "check" in str(t["key"])]
        assert len(ran) == 3, [t["key"] for t in ts.data]
        assert {t["worker"] for t in ran} <= set(client.scheduler_info()["workers"])


@pytest.fixture(autouse=True)
def deliver_logs_and_events_while_the_server_is_up():
    """Whatever this flow left queued would otherwise be retried at exit, against a stopped server."""
    yield
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)
    EventsWorker.drain_all(timeout=30)
