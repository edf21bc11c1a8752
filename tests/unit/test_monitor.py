"""The monitor's logic without Prefect: windows, the reference sample, the log, labels, the verdict, the event."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from cloudhop.data import fingerprint
from cloudhop.drift import drift_report
from cloudhop.drift import monitor as mon
from cloudhop.registry import Manifest, Registry
from cloudhop.serving.log import PredictionLog
from cloudhop.spec import parse_spec
from cloudhop.store import Store

UTC = timezone.utc
CAT, NUM = ["c"], ["x", "h"]


def spec_dict(uri: str) -> dict:
    return {"name": "toy", "dataset": {"uri": uri},
            "columns": {"t": {"type": "datetime", "role": "time"}, "x": {"type": "float"}, "h": {"type": "int"},
                        "c": {"type": "category"}, "y": {"type": "int", "role": "target"}},
            "target": {"column": "y", "task": "binary"},
            "split": {"time_column": "t", "train_start": "2024-01-15", "validation_start": "2024-03-01",
                      "holdout_start": "2024-04-01"},
            "drift": {"threshold": 0.3, "sample_size": 500}}


def dataset(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"t": pd.date_range("2024-01-01", periods=n, freq="h"), "x": rng.normal(size=n),
                         "h": rng.integers(0, 24, n), "c": rng.choice([1, 2, 3], n), "y": rng.integers(0, 2, n)})


def publish(reg: Registry, manifest: dict, files: dict | None = None):
    mv = reg.publish(files or {"model.onnx": b"x"},
                     Manifest.model_validate({"features": {"categorical": CAT, "numeric": NUM}, **manifest}))
    reg.set_alias("champion", mv.version)
    return mv


# -- windows, resources, frames ---------------------------------------------------
def test_served_window_defaults_and_errors():
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert mon.served_window(now=now, minutes=30) == (now - timedelta(minutes=30), now)
    lo, hi = mon.served_window("2026-05-01T10:00", "2026-05-01 11:00")  # naive means UTC
    assert (lo, hi) == (datetime(2026, 5, 1, 10, tzinfo=UTC), datetime(2026, 5, 1, 11, tzinfo=UTC))
    lo, _ = mon.served_window("2026-05-01T12:00+02:00", now=now)
    assert lo == datetime(2026, 5, 1, 10, tzinfo=UTC)
    with pytest.raises(mon.MonitorError, match="is not before its end"):
        mon.served_window("2026-05-01T12:00", "2026-05-01T11:00")
    with pytest.raises(mon.MonitorError, match="minutes must be > 0"):
        mon.served_window(now=now, minutes=0)


def test_model_resource():
    r = mon.model_resource("flights-delay", "3")
    assert r == {"prefect.resource.id": "cloudhop.model.flights-delay", "prefect.resource.name": "flights-delay",
                 "cloudhop.model.name": "flights-delay", "cloudhop.model.version": "3"}


def test_normalize_gives_the_log_form_and_names_missing_columns():
    df = pd.DataFrame({"c": [1, 2.0, None], "x": ["1.5", 2, None], "h": [1, 2, 3], "extra": 1})
    out = mon.normalize(df, CAT, NUM, "reference")
    assert list(out.columns) == ["c", "x", "h"]
    assert out["c"].tolist() == ["1", "2", None]
    assert out["x"].dtype == "float64" and out["x"].tolist()[:2] == [1.5, 2.0] and np.isnan(out["x"][2])
    with pytest.raises(mon.MonitorError, match=r"prediction log lacks feature column\(s\) \['h'\]"):
        mon.normalize(df.drop(columns=["h"]), CAT, NUM, "prediction log")


def test_sample_rows_is_seeded_and_keeps_order():
    df = dataset(1000)
    a, b, c = mon.sample_rows(df, 100, 1), mon.sample_rows(df, 100, 1), mon.sample_rows(df, 100, 2)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 100 and not a.index.equals(c.index) and a.index.is_monotonic_increasing
    assert mon.sample_rows(df, 5000, 1) is df


# -- the reference sample ------------------------------------------------------------
def test_reference_from_the_versions_own_file(tmp_path):
    reg = Registry(Store(str(tmp_path / "store")), "toy")
    train = dataset(800)
    blob = mon.reference_bytes(train, CAT, NUM, 300, 0)
    mv = publish(reg, {}, {"model.onnx": b"x", mon.REFERENCE_FILE: blob})
    ref, source = mon.load_reference(reg, mv, 200, 0)
    assert len(ref) == 200 and source.endswith("models/toy/1/reference.parquet")
    assert ref["c"].map(type).eq(str).all() and ref["h"].dtype == "float64"


def test_reference_rebuilt_from_the_manifest_spec_then_cached(tmp_path):
    data = tmp_path / "data.parquet"
    df = dataset()
    df.to_parquet(data)
    reg = Registry(Store(str(tmp_path / "store")), "toy")
    spec = parse_spec(spec_dict(str(data)))
    mv = publish(reg, {"spec": spec.model_dump(mode="json"), "dataset": {"fingerprint": fingerprint(df)}})
    ref, source = mon.load_reference(reg, mv, 500, 7)
    assert source.startswith(f"rebuilt from {data}; cached at") and "changed" not in source
    assert len(ref) == 500
    # only training-window rows: t in [train_start, validation_start)
    train = df[(df["t"] >= "2024-01-15") & (df["t"] < "2024-03-01")]
    assert set(ref["x"]) <= set(train["x"]) and len(train) > 500
    data.unlink()  # the cache answers now
    again, source2 = mon.load_reference(reg, mv, 500, 7)
    pd.testing.assert_frame_equal(ref, again)
    assert "monitor/toy/reference/v1-n500-s7.parquet" in source2


def test_reference_rebuild_notes_a_changed_dataset_and_needs_a_spec(tmp_path):
    data = tmp_path / "data.parquet"
    dataset().to_parquet(data)
    reg = Registry(Store(str(tmp_path / "store")), "toy")
    spec = parse_spec(spec_dict(str(data)))
    mv = publish(reg, {"spec": spec.model_dump(mode="json"), "dataset": {"fingerprint": "0" * 16}})
    _, source = mon.load_reference(reg, mv, 100, 0)
    assert "dataset changed since training" in source
    mv2 = publish(reg, {})
    with pytest.raises(mon.MonitorError, match="manifest has no spec"):
        mon.load_reference(reg, mv2, 100, 0)


# -- the prediction log and labels -----------------------------------------------------
def log_rows(store: Store, version: str, rows: pd.DataFrame, at: datetime, target: str = "local") -> None:
    log = PredictionLog(store, "toy", target, flush_rows=10**9, flush_seconds=60)
    recs = json.loads(rows.to_json(orient="records"))
    log.add_rows(version, CAT, NUM, recs, [0.5] * len(recs), served_at=at)
    log.flush()


def test_read_served_filters_window_and_version(tmp_path):
    store = Store(str(tmp_path / "store"))
    t = datetime(2026, 5, 1, 12, tzinfo=UTC)
    df = dataset(30)
    log_rows(store, "1", df.iloc[:10], t - timedelta(hours=2))
    log_rows(store, "1", df.iloc[10:20], t)
    log_rows(store, "2", df.iloc[20:], t + timedelta(minutes=1))
    got = mon.read_served(store, "toy", t - timedelta(minutes=5), t + timedelta(minutes=5), version="1")
    assert len(got) == 10 and set(got["version"]) == {"1"}
    np.testing.assert_allclose(got["x"], df["x"].iloc[10:20])
    assert len(mon.read_served(store, "toy", t - timedelta(hours=3), t + timedelta(hours=1))) == 30
    assert mon.read_served(store, "nothing", t, t + timedelta(hours=1)).empty


def test_each_target_is_read_from_its_own_store_and_a_shared_store_is_split(tmp_path):
    here, there = Store(str(tmp_path / "here")), Store(str(tmp_path / "there"))
    t = datetime(2026, 5, 1, 12, tzinfo=UTC)
    df = dataset(40)
    log_rows(here, "1", df.iloc[:10], t, target="a")
    log_rows(here, "1", df.iloc[10:15], t, target="b")       # b shares a's store
    log_rows(here, "1", df.iloc[15:18], t, target="retired")  # a target no longer in the spec
    log_rows(there, "1", df.iloc[18:30], t, target="c")
    log_rows(there, "2", df.iloc[30:], t, target="c")         # another version
    got = mon.read_served_by_target([("a", here), ("b", Store(str(tmp_path / "here"))), ("c", there)], "toy",
                                    t - timedelta(minutes=1), t + timedelta(minutes=1), version="1")
    assert list(got) == ["a", "b", "c"] and [len(d) for d in got.values()] == [10, 5, 12]
    assert set(got["b"]["target"]) == {"b"} and set(got["c"]["version"]) == {"1"}
    np.testing.assert_allclose(got["c"]["x"], df["x"].iloc[18:30])
    empty = mon.read_served_by_target([("a", here)], "toy", t + timedelta(hours=1), t + timedelta(hours=2))
    assert len(empty["a"]) == 0


def test_scopes_judge_each_target_then_all_together():
    a, b = dataset(3), dataset(4)
    (only,) = mon.scopes({"a": a})  # one target: its rows are all the rows
    assert only[0] == "a" and only[1] is a
    each = mon.scopes({"a": a, "b": b})
    assert [name for name, _ in each] == ["a", "b", None] and len(each[2][1]) == 7
    assert mon.scopes({}) == []


def test_labels_join_on_row_id_newest_wins(tmp_path):
    store = Store(str(tmp_path / "store"))
    served = pd.DataFrame({"row_id": ["a", "b", "c"], "prediction": [0.9, 0.2, 0.6]})
    t = datetime(2026, 5, 1, 12, tzinfo=UTC)
    mon.write_labels(store, "toy", ["a", "b"], [1, 1], at=t)
    mon.write_labels(store, "toy", ["b", "zzz"], [0, 1], at=t + timedelta(days=1))
    labels = mon.read_labels(store, "toy", since=t)
    assert len(labels) == 4
    joined = mon.join_labels(served, labels)
    assert dict(zip(joined["row_id"], joined["label"])) == {"a": 1, "b": 0}
    assert len(mon.read_labels(store, "toy", since=t + timedelta(days=1))) == 2
    assert mon.join_labels(served.drop(columns=["row_id"]), labels).empty
    with pytest.raises(mon.MonitorError, match="2 row ids but 1 labels"):
        mon.write_labels(store, "toy", ["a", "b"], [1])


def test_performance_drift_where_labels_arrived():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    good = pd.DataFrame({"label": y, "prediction": np.clip(y * 0.6 + rng.uniform(0, 0.4, 400), 0, 1)})
    noise = pd.DataFrame({"label": y, "prediction": rng.uniform(0, 1, 400)})
    ok = mon.performance("binary", "roc_auc", good, reference=0.95, max_drop=0.05)
    assert ok.value > 0.95 and not ok.drifted and ok.rows == 400
    bad = mon.performance("binary", "roc_auc", noise, reference=0.95, max_drop=0.05)
    assert bad.drifted and bad.drop > 0.3
    rmse = mon.performance("regression", "rmse", pd.DataFrame({"label": [1.0] * 60, "prediction": [3.0] * 60}),
                           reference=0.5, max_drop=1.0)
    assert rmse.value == pytest.approx(2.0) and rmse.drop == pytest.approx(1.5) and rmse.drifted
    assert mon.performance("binary", "roc_auc", good.head(10), reference=0.9, max_drop=0.05) is None


# -- the verdict and the event ---------------------------------------------------------
def test_cooldown_after_the_champion_changed(tmp_path):
    reg = Registry(Store(str(tmp_path / "store")), "toy")
    assert mon.cooldown_until(reg, 30) is None  # no champion yet
    publish(reg, {})
    until = mon.cooldown_until(reg, 30)
    changed = datetime.fromisoformat(reg.alias("champion")["updated_at"])
    assert until == changed + timedelta(minutes=30)
    assert mon.cooldown_until(reg, 0) is None


class _D:  # what decide() reads of a DriftResult
    def __init__(self, drift: bool):
        self.dataset_drift = drift


def test_decide():
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    later, earlier = now + timedelta(minutes=5), now - timedelta(minutes=5)
    perf_bad = mon.Performance("roc_auc", 0.6, 0.8, 0.2, 0.05, 100, True)
    assert mon.decide(100, 200, _D(True), None, now, None) == "too-few-rows"
    assert mon.decide(500, 200, _D(True), None, now, None) == "drift"
    assert mon.decide(500, 200, _D(False), perf_bad, now, None) == "drift"
    assert mon.decide(500, 200, _D(False), None, now, None) == "ok"
    assert mon.decide(500, 200, _D(True), None, now, later) == "cooldown"
    assert mon.decide(500, 200, _D(True), None, now, earlier) == "drift"


def shifted(n: int, seed: int, shift: float) -> pd.DataFrame:
    df = dataset(n, seed)
    return df.assign(x=df["x"] + shift, h=(df["h"] + shift * 4).clip(0, 23))


def test_event_for_real_drift_and_for_none():
    ref = mon.normalize(dataset(2000, 1), CAT, NUM, "reference")
    start, end = datetime(2026, 5, 1, 11, tzinfo=UTC), datetime(2026, 5, 1, 12, tzinfo=UTC)
    window = {"train_start": "2024-01-01", "validation_start": "2024-06-01", "holdout_start": None,
              "holdout_end": None}
    for cur, want in [(shifted(1500, 2, 3.0), mon.EVENT_DETECTED), (dataset(1500, 2), mon.EVENT_CHECKED)]:
        d = drift_report(ref, mon.normalize(cur, CAT, NUM, "log"), numeric=NUM, categorical=CAT, threshold=0.3,
                         sample_size=1000, seed=0, html=False)
        status = mon.decide(len(cur), 200, d, None, end, None)
        r = mon.MonitorResult("toy", "4", start, end, len(cur), status, 0.3, drift=d,
                              retrain_window=window)
        name, resource, payload = r.event()
        assert name == want
        assert resource["prefect.resource.id"] == "cloudhop.model.toy" and resource["cloudhop.model.version"] == "4"
        assert payload["window"] == {"start": "2026-05-01T11:00:00+00:00", "end": "2026-05-01T12:00:00+00:00"}
        assert payload["sample_size"] == 1000 and payload["current_rows"] == 1000 and payload["seed"] == 0
        assert "spec" not in payload and payload["retrain_window"] == window  # an event names a model, no path
        json.dumps(payload)  # an event payload must be JSON
        if want == mon.EVENT_DETECTED:
            assert set(payload["drifted_columns"]) == {"x", "h"} and payload["share"] == pytest.approx(2 / 3, abs=1e-3)
            assert "DRIFT detected" in r.summary()
            r.report_only = True  # the same verdict from a report-only run asks for nothing
            assert r.event()[0] == mon.EVENT_CHECKED and r.event()[2]["status"] == "drift"
        else:
            assert payload["drifted_columns"] == [] and payload["status"] == "ok"


def test_cooldown_and_too_few_rows_emit_checked():
    t = datetime(2026, 5, 1, 12, tzinfo=UTC)
    r = mon.MonitorResult("toy", "2", t - timedelta(hours=1), t, 500, "cooldown", 0.3, drift=_D(True),
                          cooldown_until=t + timedelta(minutes=10))
    r.drift.share, r.drift.drifted_columns, r.drift.n_columns = 0.5, ["x"], 2
    r.drift.sample_size = r.drift.seed = r.drift.current_rows = r.drift.reference_rows = 1
    name, _, payload = r.event()
    assert name == mon.EVENT_CHECKED and payload["cooldown_until"] == "2026-05-01T12:10:00+00:00"
    assert "cooldown" in r.summary()
    few = mon.MonitorResult("toy", "2", t - timedelta(hours=1), t, 3, "too-few-rows", 0.3)
    name, _, payload = few.event()
    assert name == mon.EVENT_CHECKED and payload["share"] is None and payload["drifted_columns"] == []


def test_events_name_their_target():
    t = datetime(2026, 5, 1, 12, tzinfo=UTC)
    one = mon.MonitorResult("toy", "2", t - timedelta(hours=1), t, 500, "drift", 0.3, target="aws-east",
                            targets=["local", "aws-east"])
    name, resource, payload = one.event()
    assert name == mon.EVENT_DETECTED and resource["cloudhop.target.name"] == "aws-east"
    assert resource["prefect.resource.id"] == "cloudhop.model.toy"  # what the retrain trigger matches
    assert payload["target"] == "aws-east" and payload["targets"] == ["aws-east"]
    assert one.related() == [{"prefect.resource.id": "cloudhop.target.aws-east", "prefect.resource.role": "target",
                              "prefect.resource.name": "aws-east"}]
    assert "target aws-east: DRIFT detected" in one.summary()
    both = mon.MonitorResult("toy", "2", t - timedelta(hours=1), t, 900, "ok", 0.3, targets=["local", "aws-east"])
    name, resource, payload = both.event()
    assert name == mon.EVENT_CHECKED and "cloudhop.target.name" not in resource
    assert payload["target"] is None and payload["targets"] == ["local", "aws-east"]
    assert [r["prefect.resource.id"] for r in both.related()] == ["cloudhop.target.local", "cloudhop.target.aws-east"]
    assert "all targets (local, aws-east): no drift" in both.summary()
