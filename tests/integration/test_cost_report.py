"""`cloudhop cost` on a real store (a local folder, and S3 on moto's server) holding several
versions of two models, a failed retrain with no version, and a version from before costs."""
from __future__ import annotations

import uuid
from datetime import date

import boto3
import pandas as pd
import pytest
import yaml

from cloudhop.cli import main
from cloudhop.costs import CostRecordError, attempt_rows, totals, write_cost
from cloudhop.registry import Registry
from cloudhop.registry.manifest import CostInfo, Manifest
from cloudhop.store import Store
from ops.procs import ROOT

pytestmark = pytest.mark.integration

CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def priced(cloud, number, outcome, price, start, seconds, egress=0.0):
    from datetime import datetime, timedelta

    t0 = datetime.fromisoformat(start)
    return {"cloud": cloud, "number": number, "outcome": outcome, "offer": f"{cloud}-box", "gpu": "A100",
            "gpu_count": 1, "spot": False, "price_per_hour": price,
            "started_at": t0.isoformat() if seconds else None,
            "ended_at": (t0 + timedelta(seconds=seconds)).isoformat(), "billed_seconds": float(seconds),
            "egress_bytes": int(egress / 0.09 * 1e9), "egress_cost": egress,
            "compute_cost": price * seconds / 3600, "cost": price * seconds / 3600 + egress}


def run_cost(model, run_key, *attempts):
    total = sum(a["cost"] for a in attempts)
    wasted = sum(a["cost"] for a in attempts if a["outcome"] != "completed")
    return {"model": model, "run_key": run_key, "currency": "USD", "total": total, "wasted": wasted,
            "attempts": list(attempts)}


R1 = run_cost("flights", "r1", priced("gcp", 1, "crashed", 3.6, "2026-11-03T10:00:00+00:00", 600),
              priced("aws", 1, "completed", 1.8, "2026-11-03T10:11:00+00:00", 3600, egress=0.9))
R2 = run_cost("flights", "r2", priced("gcp", 1, "not_started", 3.6, "2026-11-20T10:00:00+00:00", 0),
              priced("aws", 1, "crashed", 1.8, "2026-11-20T10:02:00+00:00", 1200))
R3 = run_cost("flights", "r3", priced("coreweave", 1, "completed", 2.7, "2026-12-01T08:00:00+00:00", 1800))
R4 = run_cost("churn", "r4", priced("aws", 1, "completed", 1.8, "2026-12-01T09:00:00+00:00", 7200))


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return Store(str(tmp_path / "store"))
    moto_url = request.getfixturevalue("moto_url")
    bucket = f"cost-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1", **CREDS).create_bucket(Bucket=bucket)
    request.getfixturevalue("monkeypatch").setenv("AWS_ACCESS_KEY_ID", "testing")
    request.getfixturevalue("monkeypatch").setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return Store(f"s3://{bucket}/root", {"client_kwargs": {"endpoint_url": moto_url, "region_name": "us-east-1"}})


@pytest.fixture
def filled(store):
    flights, churn = Registry(store, "flights"), Registry(store, "churn")
    files = {"model.onnx": b"x"}
    flights.publish(files, Manifest(run_id="r0"))  # v1: registered before costs were recorded
    flights.publish(files, Manifest(run_id="r1", cost=CostInfo.model_validate(R1)))  # v2, and a record
    write_cost(store, R1)
    write_cost(store, R2)  # every cloud failed: a record, no version
    flights.publish(files, Manifest(run_id="r3", cost=CostInfo.model_validate(R3)))  # v3: no record (a copied registry)
    churn.publish(files, Manifest(run_id="r4", cost=CostInfo.model_validate(R4)))
    write_cost(store, R4)
    return store


def test_rows_join_records_and_manifests_once_each(filled):
    rows = attempt_rows(filled)
    assert len(rows) == 6  # r1: 2, r2: 2, r3: 1, r4: 1; v1 has no cost
    assert list(rows["run_key"]) == ["r1", "r1", "r2", "r2", "r3", "r4"]
    versions = rows.groupby("run_key")["version"].first().to_dict()
    assert versions["r1"] == "2" and versions["r3"] == "3" and versions["r4"] == "1" and pd.isna(versions["r2"])
    for _, a in rows.iterrows():
        assert a["cost"] == pytest.approx(a["price_per_hour"] * a["billed_seconds"] / 3600 + a["egress_cost"])
    assert rows["cost"].sum() == pytest.approx(R1["total"] + R2["total"] + R3["total"] + R4["total"])


def test_totals_by_cloud_model_and_month(filled):
    rows = attempt_rows(filled)
    by_cloud = totals(rows, "cloud").set_index("cloud")
    assert by_cloud.loc["gcp", "cost $"] == pytest.approx(0.6) and by_cloud.loc["gcp", "wasted $"] == pytest.approx(0.6)
    assert by_cloud.loc["aws", "cost $"] == pytest.approx(1.8 + 0.9 + 0.6 + 3.6)
    assert by_cloud.loc["aws", "wasted $"] == pytest.approx(0.6) and by_cloud.loc["aws", "egress $"] == 0.9
    assert by_cloud.loc["aws", "failed"] == 1 and by_cloud.loc["aws", "retrains"] == 3
    assert by_cloud.loc["total", "cost $"] == pytest.approx(rows["cost"].sum())
    assert by_cloud.loc["total", "wasted $"] == pytest.approx(1.2)
    by_model = totals(rows, "model").set_index("model")
    assert by_model.loc["churn", "cost $"] == pytest.approx(3.6) and by_model.loc["flights", "retrains"] == 3
    by_month = totals(rows, "month").set_index("month")
    assert by_month.loc["2026-11", "cost $"] == pytest.approx(R1["total"] + R2["total"])
    assert by_month.loc["2026-12", "cost $"] == pytest.approx(R3["total"] + R4["total"])
    only = attempt_rows(filled, ["flights"], since=date(2026, 11, 20))
    assert list(only["run_key"]) == ["r2", "r2", "r3"]
    with pytest.raises(ValueError, match="cannot group costs by 'region'"):
        totals(rows, "region")


def test_cli_prints_totals_and_writes_csv_parquet_and_chart(filled, tmp_path, capsys):
    spec = yaml.safe_load(open(ROOT / "specs/flights.yaml"))
    spec["store"] = filled.uri
    spec["store_options"] = filled.storage_options
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    csv, parquet, png = tmp_path / "c.csv", tmp_path / "c.parquet", tmp_path / "c.png"
    assert main(["cost", "--spec", str(path), "--by", "cloud", "--csv", str(csv), "--parquet", str(parquet),
                 "--chart", str(png)]) == 0
    out = capsys.readouterr().out
    assert "4 retrains, 6 training attempts (3 did not complete)" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.strip()}
    assert set(lines) >= {"cloud", "aws", "coreweave", "gcp", "total"}
    assert float(lines["total"][-2]) == pytest.approx(R1["total"] + R2["total"] + R3["total"] + R4["total"])
    assert float(lines["total"][-1]) == pytest.approx(1.2)  # wasted
    assert len(pd.read_csv(csv)) == 6 and len(pd.read_parquet(parquet)) == 6
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["cost", "--spec", str(path), "--model", "churn", "--since", "2026-12-01", "--by", "month"]) == 0
    assert "1 retrains, 1 training attempts (0 did not complete) for churn since 2026-12-01" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["cost", "--spec", str(path), "--since", "yesterday"])
    assert e.value.code == 2 and "'yesterday' is not a date (YYYY-MM-DD)" in capsys.readouterr().err


def test_a_broken_record_is_named_and_nothing_is_lost(filled, capsys):
    filled.write_bytes("costs/flights/bad.json", b'{"total": "a lot"}')
    with pytest.raises(CostRecordError, match="costs/flights/bad.json is not a valid cost record"):
        attempt_rows(filled)
    assert len(attempt_rows(filled, ["churn"])) == 1  # other models still report
    assert filled.exists("costs/flights/r1.json")  # nothing removed


def test_throughput_records_feed_the_speed_model(store):
    from datetime import datetime, timezone

    from cloudhop.clouds import SpeedModel, parse_catalog
    from cloudhop.costs import read_throughput, write_throughput
    from cloudhop.clouds.speed import Throughput

    for i, sps in enumerate((900.0, 1000.0, 1200.0)):
        write_throughput(store, f"run-{i}", Throughput("aws", "p4", "A100", sps,
                                                       datetime(2026, 12, 1, i, tzinfo=timezone.utc), "flights"))
    history = read_throughput(store, "flights", newest=2)
    assert [t.samples_per_s for t in history] == [1000.0, 1200.0]  # the newest two, oldest first
    offer = parse_catalog({"clouds": {"aws": {
        "region": "r", "prices_as_of": "2025-06-01", "work_pools": [{"name": "aws-gpu", "type": "process"}],
        "offers": [{"gpu": "A100", "count": 1, "instance": "p4", "on_demand": 3.0}],
        "object_store": {"uri": "s3://b", "egress_per_gb": 0.09}}}}).cloud("aws").offers[0]
    assert SpeedModel(history).samples_per_s("aws", offer).samples_per_s == 1100.0
    assert read_throughput(store, "churn") == []
    store.write_json("throughput/flights/broken.json", {"cloud": "aws"})
    with pytest.raises(CostRecordError, match="throughput/flights/broken.json is not a valid throughput record"):
        read_throughput(store, "flights")
    with pytest.raises(CostRecordError, match="cannot name a store key"):
        read_throughput(store, "../etc")
