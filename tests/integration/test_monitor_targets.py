"""The monitor watches every serving target, each in its own store, on a real Prefect server.

Two targets serve one model: `local` from the pipeline's folder store, `aws-east` (an aws target
whose servers read and log to an S3 bucket on moto's server, opened with an AwsCredentials
block). Both servers are the real inference server. `local` gets traffic like the training
data; `aws-east` gets shifted traffic. The monitor must find the drift on `aws-east` alone,
say so in an event naming that target, and still judge `local` and both together.
"""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
import yaml

from cloudhop.drift import monitor as mon
from cloudhop.providers.local.target import LocalTarget
from cloudhop.registry import Manifest, Registry
from cloudhop.registry.manifest import Features
from cloudhop.replay import replay
from cloudhop.store import Store
from cloudhop.testing import CATEGORICAL, NUMERIC, make_frame, publish_version
from cloudhop.training.preprocess import Preprocessor
from ops.net import free_port

pytestmark = pytest.mark.integration

KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # moto takes any key
ROWS = 600


def _spec(root, model: str, ports: dict[str, int]) -> dict:
    """A toy spec: hourly rows from 2024-01-01, trained on January and February; two targets."""
    data = make_frame(3000, seed=1).assign(t=pd.date_range("2024-01-01", periods=3000, freq="h"),
                                           y=np.random.default_rng(1).integers(0, 2, 3000))
    data.to_parquet(root / "data.parquet")
    columns = {"t": {"type": "datetime", "role": "time"}, "carrier": {"type": "category"},
               "origin": {"type": "category"}, "distance": {"type": "float"}, "temp": {"type": "float"},
               "hour": {"type": "int"}, "y": {"type": "int", "role": "target"}}
    return {"name": model, "dataset": {"uri": str(root / "data.parquet")}, "columns": columns,
            "target": {"column": "y", "task": "binary"}, "store": str(root / "store"),
            "split": {"time_column": "t", "validation_start": "2024-03-01", "holdout_start": "2024-04-01"},
            "drift": {"threshold": 0.3, "sample_size": 2000},
            "targets": [
                {"name": "local", "kind": "local", "options": {"port": ports["local"], "state_dir": str(root / "srv")}},
                {"name": "aws-east", "kind": "aws", "options": {
                    "store": "s3://serving-east/cloudhop", "endpoint": f"http://127.0.0.1:{ports['aws-east']}",
                    "cluster": "cloudhop", "region": "us-east-1", "credentials": "moto-east"}}]}


@pytest.fixture(scope="module")
def served(tmp_path_factory, prefect_api_url, deployed, moto_url):
    """Version 1 of a fresh model, champion, served by both targets; the AwsCredentials block saved."""
    import boto3
    from prefect_aws import AwsCredentials
    from prefect_aws.client_parameters import AwsClientParameters

    from cloudhop.spec import parse_spec

    root = tmp_path_factory.mktemp("monitor-targets")
    model = f"watch-{uuid.uuid4().hex[:6]}"
    ports = {"local": free_port(), "aws-east": free_port()}
    raw = _spec(root, model, ports)
    (root / "spec.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    spec = parse_spec(raw)
    boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1", **KEYS).create_bucket(Bucket="serving-east")
    AwsCredentials(**KEYS, region_name="us-east-1",
                   aws_client_parameters=AwsClientParameters(endpoint_url=moto_url)).save("moto-east", overwrite=True)

    registry = Registry(Store(spec.store), model)
    pre = Preprocessor.fit(make_frame(300, seed=1), CATEGORICAL, NUMERIC)
    publish_version(registry, pre, 0, make_frame(12, seed=7), manifest=Manifest(
        features=Features(categorical=CATEGORICAL, numeric=NUMERIC), spec=spec.manifest_copy()))
    registry.set_alias("champion", "1")
    s3 = {**{"key": KEYS["aws_access_key_id"], "secret": KEYS["aws_secret_access_key"]},
          "client_kwargs": {"endpoint_url": moto_url, "region_name": "us-east-1"}}
    flush = ["--log-flush-seconds", "0.5"]
    # The same inference server each cloud runs: aws-east's reads the bucket and logs there.
    servers = [LocalTarget("local", spec.store, model, port=ports["local"], state_dir=root / "srv", server_args=flush),
               LocalTarget("aws-east", "s3://serving-east/cloudhop", model, port=ports["aws-east"],
                           state_dir=root / "srv", store_options=s3, server_args=flush)]
    try:
        for t in servers:
            t.publish(registry, "1")
            t.roll_out("1")
        yield {"spec_path": str(root / "spec.yaml"), "spec": spec, "model": model,
               "urls": {t.name: t.url for t in servers},
               "stores": {"local": Store(spec.store), "aws-east": Store("s3://serving-east/cloudhop", s3)},
               "retrain_id": deployed["deployments"]["retrain"].id}
    finally:
        for t in servers:
            t.stop()


def _events(name: str, model: str, target: str) -> list[dict]:
    """Events the server stored for the model, tagged with the target (label and related resource)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as c:
        r = c.request("POST", "/events/filter", json={"filter": {
            "event": {"name": [name]},
            "resource": {"id": [f"cloudhop.model.{model}"], "labels": {"cloudhop.target.name": [target]}},
            "related": {"id": [f"cloudhop.target.{target}"], "role": ["target"]},
            "occurred": {"since": "2000-01-01T00:00:00Z"}}, "limit": 50})
    r.raise_for_status()
    return r.json()["events"]


def _retrain_runs(served) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter

    with get_client(sync_client=True) as c:
        runs = c.read_flow_runs(deployment_filter=DeploymentFilter(id={"any_": [served["retrain_id"]]}))
    return [r for r in runs if r.parameters.get("model") == served["model"]]


def test_drift_on_the_second_targets_traffic_emits_an_event_naming_it(served):
    from prefect.client.orchestration import get_client

    from flows.monitor import ServedWindow, monitor

    start = datetime.now(timezone.utc) - timedelta(seconds=1)
    like_training = make_frame(ROWS, seed=2)
    shifted = make_frame(ROWS, seed=3).assign(distance=lambda d: d["distance"] + 3000, temp=lambda d: d["temp"] + 40)
    for name, rows in (("local", like_training), ("aws-east", shifted)):
        stats = replay(rows, served["urls"][name], rate=5000, batch=100)
        assert stats.rows == ROWS and stats.errors == 0
    sources = list(served["stores"].items())
    deadline = time.monotonic() + 30
    while any(len(df) < ROWS for df in mon.read_served_by_target(sources, served["model"], start,
                                                                   datetime.now(timezone.utc)).values()):
        assert time.monotonic() < deadline, "replayed rows did not reach both prediction logs"
        time.sleep(0.3)
    assert served["stores"]["local"].list(f"predictions/{served['model']}") != []
    assert served["stores"]["aws-east"].list(f"predictions/{served['model']}") != []  # in the bucket, not the folder

    out = monitor(spec=served["spec_path"], window=ServedWindow(start=start), cooldown_minutes=0.0)

    east, local = out["by_target"]["aws-east"], out["by_target"]["local"]
    assert east["status"] == "drift" and east["event"] == mon.EVENT_DETECTED, east["summary"]
    assert east["target"] == "aws-east" and east["rows"] == ROWS and {"distance", "temp"} <= set(east["drifted_columns"])
    assert local["status"] == "ok" and local["event"] == mon.EVENT_CHECKED, local["summary"]
    assert local["rows"] == ROWS and local["share"] < 0.3
    assert out["target"] is None and out["targets"] == ["local", "aws-east"] and out["rows"] == 2 * ROWS
    assert out["event_id"] not in (east["event_id"], local["event_id"])

    # On the server: the drift event names aws-east (resource label and related target), and no event
    # tagged so says local drifted.
    deadline = time.monotonic() + 30
    while not any(e["id"] == east["event_id"] for e in _events(mon.EVENT_DETECTED, served["model"], "aws-east")):
        assert time.monotonic() < deadline, "the drift event naming aws-east never reached the server"
        time.sleep(0.5)
    (event,) = _events(mon.EVENT_DETECTED, served["model"], "aws-east")
    assert event["payload"]["target"] == "aws-east" and event["payload"]["share"] >= 0.3
    assert event["resource"]["cloudhop.model.version"] == "1"
    assert _events(mon.EVENT_DETECTED, served["model"], "local") == []
    while not any(e["id"] == local["event_id"] for e in _events(mon.EVENT_CHECKED, served["model"], "local")):
        assert time.monotonic() < deadline, "the checked event naming local never reached the server"
        time.sleep(0.5)

    # The retrain trigger (one bucket per model) starts one retrain, however many events said drift.
    # No worker runs it here: it is deleted, so that no later test's worker picks it up.
    deadline = time.monotonic() + 30
    while not _retrain_runs(served):
        assert time.monotonic() < deadline, "the drift event started no retrain"
        time.sleep(0.5)
    time.sleep(3)
    runs = _retrain_runs(served)
    assert len(runs) == 1, [(r.name, r.parameters) for r in runs]
    with get_client(sync_client=True) as c:
        c.delete_flow_run(runs[0].id)
