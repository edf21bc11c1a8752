"""The inference server as a real process over HTTP, on real ONNX model versions in a tmp store."""
from __future__ import annotations

import json
import re
import secrets
import signal
import threading
import time

import httpx
import numpy as np
import pytest

from cloudhop.registry import Registry
from cloudhop.predlog import read_prediction_log
from cloudhop.store import Store
from cloudhop.targets import TargetError, deploy_to_target
from cloudhop.providers.local.target import LocalTarget
from cloudhop.training.preprocess import Preprocessor
from cloudhop.testing import CATEGORICAL, NUMERIC, make_frame, ort_predict, publish_version, records
from ops.net import free_port
from ops.serving import ServerProcess

pytestmark = pytest.mark.integration
MODEL = "tiny"
ADMIN_TOKEN = secrets.token_urlsafe(24)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
NULLS = {c: None for c in CATEGORICAL + NUMERIC}  # a row with every feature missing


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store with v1, v2 (good, different weights) and v3 (model.onnx tampered after publishing)."""
    root = tmp_path_factory.mktemp("serving")
    store = Store(str(root / "store"))
    reg = Registry(store, MODEL)
    df = make_frame(300, seed=0)
    pre = Preprocessor.fit(df, CATEGORICAL, NUMERIC)
    smoke_df = make_frame(20, seed=1)
    for seed in (1, 2, 3):
        publish_version(reg, pre, seed, smoke_df)
    v3 = reg.get("3")
    good = store.read_bytes(v3.key("model.onnx"))
    store.write_bytes(v3.key("model.onnx"), reg.read_file(reg.get("1"), "model.onnx"))  # a valid model, wrong bytes
    assert good != store.read_bytes(v3.key("model.onnx"))
    reg.set_alias("champion", "1")
    onnx = {v: reg.read_file(reg.get(v), "model.onnx") for v in ("1", "2")}
    return {"root": root, "store": store, "reg": reg, "pre": pre, "onnx": onnx, "df": make_frame(64, seed=2)}


@pytest.fixture(scope="module")
def server(world):
    token_file = world["root"] / "admin-token"
    token_file.write_text(ADMIN_TOKEN)
    s = ServerProcess(world["store"].uri, MODEL, "champion", world["root"] / "server.log",
                      "--log-flush-rows", "40", "--log-flush-seconds", "0.3", "--target-name", "edge-1",
                      "--admin-token-file", str(token_file))
    s.wait_healthy()
    yield s
    s.stop()


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as c:
        yield c


def _load(http, version) -> httpx.Response:
    return http.post("/admin/load", json={"version": version}, headers=ADMIN)


def test_predictions_equal_onnxruntime_in_process(world, http):
    df = world["df"]
    r = http.post("/predict", json={"rows": records(df)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == MODEL and body["version"] == "1"
    assert len(body["row_ids"]) == len(df) == len(set(body["row_ids"]))
    want = ort_predict(world["onnx"]["1"], world["pre"], df)
    np.testing.assert_allclose(body["predictions"], want, rtol=0, atol=1e-6)
    # v2 has other weights: the comparison above can tell versions apart
    assert np.abs(ort_predict(world["onnx"]["2"], world["pre"], df) - want).max() > 1e-3


def test_null_values_are_treated_as_missing_and_unusable_ones_are_refused(world, http):
    unseen = {"carrier": "never-seen", "origin": None, "distance": None, "temp": None, "hour": None}
    r = http.post("/predict", json={"rows": [NULLS, unseen]})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == 2 and preds[0] == preds[1]  # an unseen category is the missing id, as in training
    all_missing = make_frame(1).iloc[:0].reindex([0])  # one row, every value missing
    want = ort_predict(world["onnx"][r.json()["version"]], world["pre"], all_missing)
    np.testing.assert_allclose(preds[0], want[0], atol=1e-6)
    # what was once read as "missing" is now refused, naming the row and the field
    for row, field in [({}, "carrier"), ({**NULLS, "carrier": {"x": 1}}, "carrier"), ({**NULLS, "distance": "far"},
                       "distance"), ({**NULLS, "unknown_feature": 1}, "unknown_feature")]:
        r = http.post("/predict", json={"rows": [NULLS, row]})
        assert r.status_code == 422 and (r.json()["row"], r.json()["field"]) == (1, field), r.text


def test_health_version_and_metrics(world, http):
    assert http.get("/health").json() == {"status": "ok", "model": MODEL, "version": "1"}
    v = http.get("/version").json()
    assert v["version"] == "1" and v["model"] == MODEL and v["loaded_at"].endswith("+00:00")
    assert v["sha256"] == world["reg"].get("1").manifest.files["model.onnx"].sha256
    for _ in range(3):
        http.post("/predict", json={"rows": [NULLS, NULLS]})
    http.post("/predict", json={"rows": "nope"})
    text = http.get("/metrics").text
    def value(line_start):
        return float(next(l for l in text.splitlines() if l.startswith(line_start)).rsplit(" ", 1)[1])
    assert value('cloudhop_requests_total{endpoint="/predict",status="200"}') >= 3
    assert value('cloudhop_requests_total{endpoint="/predict",status="422"}') >= 1
    assert value("cloudhop_prediction_rows_total") >= 6
    assert value('cloudhop_errors_total{kind="bad_request"}') >= 1
    assert value('cloudhop_request_seconds_count{endpoint="/predict"}') >= 4
    assert f'cloudhop_model_info{{model="{MODEL}",sha256="{v["sha256"]}",version="1"}} 1.0' in text


@pytest.mark.parametrize("content, status, message", [
    (b"{not json", 400, "not valid JSON"),
    (b'"rows"', 422, "must be a JSON object"),
    (b'{"rows": []}', 422, "is empty"),
    (b'{"rows": [{"a": 1}, 7]}', 422, "rows[1] must be a JSON object"),
    (json.dumps({"rows": [{}] * 10_001}).encode(), 422, "too many rows: 10001"),
])
def test_bad_requests_get_a_4xx_with_a_message(http, content, status, message):
    r = http.post("/predict", content=content, headers={"content-type": "application/json"})
    assert r.status_code == status
    assert message in r.json()["error"]


def test_wrong_method_and_unknown_path(http):
    assert http.get("/predict").status_code == 405
    assert http.get("/nope").status_code == 404


def test_tampered_version_refuses_to_start(world, tmp_path):
    s = ServerProcess(world["store"].uri, MODEL, "3", tmp_path / "bad.log", "--no-prediction-log")
    try:
        rc = s.proc.wait(60)
    finally:
        s.stop()
    assert rc != 0
    assert "sha256 mismatch" in s.log() and "model.onnx" in s.log() and "cannot start" in s.log()


def test_admin_load_of_a_broken_or_missing_version_keeps_the_old_one(http):
    before = http.get("/version").json()["version"]
    r = _load(http, "3")
    assert r.status_code == 409 and "sha256 mismatch" in r.json()["error"] and r.json()["version"] == before
    r = _load(http, "99")
    assert r.status_code == 404 and "no version 99" in r.json()["error"]
    assert _load(http, {"x": 1}).status_code == 422
    assert http.get("/version").json()["version"] == before
    assert http.post("/predict", json={"rows": [NULLS]}).json()["version"] == before


def test_swap_under_concurrent_load_fails_no_request(world, server):
    rows = records(world["df"].head(8))
    expected = {v: ort_predict(world["onnx"][v], world["pre"], world["df"].head(8)) for v in ("1", "2")}
    stop = threading.Event()
    results, errors = [], []

    def hammer():
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as c:
            while not stop.is_set():
                try:
                    r = c.post("/predict", json={"rows": rows})
                    results.append((r.status_code, r.json()))
                except Exception as e:  # a dropped connection is a failure too
                    errors.append(repr(e))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    swaps = []
    with httpx.Client(base_url=server.url, timeout=60, trust_env=False) as admin:
        for v in ["2", "1"] * 3:
            time.sleep(0.15)
            r = _load(admin, v)
            swaps.append((r.status_code, r.json()))
        time.sleep(0.15)
    stop.set()
    for t in threads:
        t.join()

    assert [s for s, _ in swaps] == [200] * 6 and swaps[0][1]["version"] == "2"
    assert errors == [] and len(results) >= 40
    assert all(status == 200 for status, _ in results), [b for s, b in results if s != 200][:3]
    seen = {b["version"] for _, b in results}
    assert seen == {"1", "2"}
    for _, body in results:  # each response is wholly one version's session + preprocessor
        np.testing.assert_allclose(body["predictions"], expected[body["version"]], atol=1e-6)
    metrics = httpx.get(server.url + "/metrics", trust_env=False).text
    assert any(l.startswith("cloudhop_model_swaps_total") and float(l.split()[-1]) >= 6 for l in metrics.splitlines())


def test_served_rows_land_in_the_prediction_log(world, http):
    rows = [{"carrier": "ZZ-log", "origin": "JFK", "distance": 1000 + i, "temp": None, "hour": 7} for i in range(5)]
    r = http.post("/predict", json={"rows": rows, "ids": [f"id-{i}" for i in range(5)]}).json()
    assert r["row_ids"] == [f"anon:id-{i}" for i in range(5)]  # namespaced: this caller has no token
    deadline = time.monotonic() + 20
    while True:
        df = read_prediction_log(world["store"], MODEL)
        mine = df[df["carrier"] == "ZZ-log"] if "carrier" in df else df.iloc[:0]
        if len(mine) == 5 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(mine) == 5, "rows did not reach the log"
    mine = mine.sort_values("distance")
    assert mine["distance"].tolist() == [1000.0 + i for i in range(5)]
    np.testing.assert_allclose(mine["prediction"], r["predictions"], atol=1e-7)
    assert set(mine["version"]) == {r["version"]} and set(mine["target"]) == {"edge-1"}
    assert mine["row_id"].tolist() == r["row_ids"]
    assert mine["temp"].isna().all() and set(mine["origin"]) == {"JFK"}
    keys = world["store"].list(f"predictions/{MODEL}")
    assert keys and all(re.search(r"/date=\d{4}-\d\d-\d\d/part-\d{6}-[0-9a-f]{8}\.parquet$", k)
                        for k in keys)


def test_sigterm_flushes_the_log_and_admin_token_is_enforced(world, tmp_path):
    token = "t0ken-for-test"
    s = ServerProcess(world["store"].uri, MODEL, "2", tmp_path / "s2.log", "--log-flush-rows", "100000",
                      "--log-flush-seconds", "3600", "--target-name", "sigterm-check",
                      env={"CLOUDHOP_ADMIN_TOKEN": token})
    try:
        s.wait_healthy()
        with httpx.Client(base_url=s.url, timeout=30, trust_env=False) as c:
            assert c.post("/admin/load", json={"version": "1"}).status_code == 401
            assert c.post("/admin/load", json={"version": "1"},
                          headers={"Authorization": "Bearer wrong"}).status_code == 401
            ok = c.post("/admin/load", json={"version": "1"}, headers={"Authorization": f"Bearer {token}"})
            assert ok.status_code == 200 and ok.json() == {"previous": "2", "version": "1"}
            r = c.post("/predict", json={"rows": [{**NULLS, "carrier": "ZZ-term"}] * 3})
            assert r.status_code == 200
        time.sleep(0.3)
        df = read_prediction_log(world["store"], MODEL)
        assert "sigterm-check" not in set(df.get("target", []))  # still buffered
    finally:
        rc = s.stop(signal.SIGTERM)
    assert rc == 0, s.log()
    df = read_prediction_log(world["store"], MODEL)
    assert (df["target"] == "sigterm-check").sum() == 3


def test_deploy_to_local_target_smoke_rollback_and_noop(world, tmp_path):
    reg = world["reg"]
    smoke = json.loads(reg.read_file(reg.get("1"), "smoke.json"))
    target = LocalTarget("dev", world["store"].uri, MODEL, port=free_port(), state_dir=tmp_path / "state",
                         server_args=["--no-prediction-log"])
    try:
        assert target.live_version() is None and target.health()["status"] == "down"
        first = deploy_to_target(reg, target, "1", smoke, run_id="run-a")
        assert first.ok and first.changed and first.previous is None, first
        assert target.pid_path.exists() and target.log_path.exists()
        # the server's own admin token: private to this user, in no command line, environment or log
        token = target.token_path.read_text()
        assert len(token) >= 32 and target.token_path.stat().st_mode & 0o777 == 0o600
        pid = target.pid_path.read_text().strip()
        for seen in (f"/proc/{pid}/cmdline", f"/proc/{pid}/environ", target.log_path):
            assert token.encode() not in open(seen, "rb").read(), seen
        assert httpx.post(f"{target.url}/admin/load", json={"version": "1"}, trust_env=False).status_code == 401
        assert reg.alias("live-dev")["version"] == "1" and reg.alias("live-dev")["run_id"] == "run-a"

        # v2 with v1's smoke predictions: the smoke test fails, v1 comes back, the alias stays
        bad = deploy_to_target(reg, target, "2", smoke, run_id="run-b")
        assert not bad.ok and bad.rolled_back and bad.previous == "1"
        assert not bad.smoke.ok and bad.smoke.max_abs_diff > 1e-4 and "smoke test failed" in bad.error
        assert target.live_version() == "1" and reg.alias("live-dev")["version"] == "1"

        # the tampered version never gets loaded
        broken = deploy_to_target(reg, target, "3", None)
        assert not broken.ok and "sha256 mismatch" in broken.error and target.live_version() == "1"

        again = deploy_to_target(reg, target, "1", smoke)
        assert again.ok and not again.changed

        good2 = json.loads(reg.read_file(reg.get("2"), "smoke.json"))
        second = deploy_to_target(reg, target, "2", good2)
        assert second.ok and second.changed and second.previous == "1" and target.live_version() == "2"
        assert reg.alias("live-dev") == {**reg.alias("live-dev"), "version": "2", "previous": "1"}
    finally:
        assert target.stop()
        target.close()
    assert target.live_version() is None and not target.pid_path.exists() and not target.token_path.exists()


def test_local_target_reports_a_server_that_dies_at_start(world, tmp_path):
    target = LocalTarget("dies", world["store"].uri, MODEL, port=free_port(), state_dir=tmp_path)
    try:
        with pytest.raises(TargetError) as e:
            target.ensure_running("3")
    finally:
        target.stop()
        target.close()
    assert "exited with code 2" in str(e.value) and "sha256 mismatch" in str(e.value)
