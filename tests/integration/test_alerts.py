"""Alerts end to end: real cloudhop events on the session's Prefect server fire the automations of
deployments/alerts.yaml (applied by `python -m flows.alerts apply`), and the server's actions
service POSTs each message to a webhook receiver on loopback.

Each event comes from the code that emits it in a run: the drift verdict through the monitor's
emit task, a deploy report that did not stick, training that failed on every cloud, and the data
gate of a real `retrain` on bad data (a scheduled run alerts, a manual one does not).
"""
from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest
import yaml

from ops.localserver import prefect_env
from ops.procs import ROOT

pytestmark = pytest.mark.integration

WAIT_S = 60


class Receiver:
    """An HTTP server on 127.0.0.1 that keeps every JSON body POSTed to it."""

    def __init__(self):
        self.bodies: queue.Queue = queue.Queue()
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                data = self.rfile.read(int(self.headers.get("content-length") or 0))
                bodies.put(json.loads(data))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.seen: list[dict] = []
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self) -> list[dict]:
        """Every message so far."""
        while not self.bodies.empty():
            self.seen.append(self.bodies.get())
        return self.seen

    def wait_for(self, text: str, timeout: float = WAIT_S) -> dict:
        """The first message whose subject contains `text` (every message is kept in `seen`)."""
        deadline = time.monotonic() + timeout
        while True:
            hit = next((m for m in self.seen if text in m.get("subject", "")), None)
            if hit:
                return hit
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no alert with {text!r} within {timeout}s; received: {self.seen}")
            try:
                self.seen.append(self.bodies.get(timeout=min(left, 1.0)))
            except queue.Empty:
                pass


def _alerts(api: str, *args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "flows.alerts", *args], cwd=ROOT, env=prefect_env(api),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def receiver(prefect_api_url, deployed):
    rx = Receiver()
    out = _alerts(prefect_api_url, "apply", "--url", rx.url, "--allow-private")
    assert out.count(": created") + out.count(": updated") == 4, out
    yield rx
    _alerts(prefect_api_url, "remove")
    rx.server.shutdown()


def test_a_loopback_webhook_is_refused_unless_allowed(prefect_api_url):
    r = subprocess.run([sys.executable, "-m", "flows.alerts", "apply", "--url", "http://127.0.0.1:9/x?token=s3cret"],
                       cwd=ROOT, env=prefect_env(prefect_api_url), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "127.0.0.1 is a private or loopback address" in r.stderr, r.stderr
    assert "s3cret" not in r.stdout + r.stderr


def test_apply_again_updates_in_place(prefect_api_url, receiver):
    from prefect.client.orchestration import get_client

    out = _alerts(prefect_api_url, "apply", "--url", receiver.url, "--allow-private")
    assert out.count(": updated") == 4, out
    alerts = {a["name"] for a in yaml.safe_load((ROOT / "deployments" / "alerts.yaml").read_text())["alerts"]}
    with get_client(sync_client=True) as c:
        names = [a.name for a in c.read_automations() if a.name in alerts]
    assert sorted(names) == sorted(alerts) and len(alerts) == 4, names  # one each, no copies


def test_drift_detected_alerts(receiver):
    from prefect import flow

    from cloudhop.drift import drift_report
    from cloudhop.drift.monitor import MonitorResult
    from tasks.monitor import emit_task

    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"temp": rng.normal(40, 5, 2000), "origin": rng.choice(["EWR", "JFK"], 2000)})
    cur = pd.DataFrame({"temp": rng.normal(80, 5, 2000), "origin": rng.choice(["EWR", "JFK"], 2000)})
    d = drift_report(ref, cur, numeric=["temp"], categorical=["origin"], threshold=0.3, html=False)
    assert d.dataset_drift
    model = f"alert-drift-{uuid.uuid4().hex[:6]}"
    now = datetime.now(timezone.utc)
    result = MonitorResult(model, "3", now - timedelta(hours=1), now, 2000, "drift", 0.3, drift=d, report="s3://r.html")

    @flow(name="alerts-test-monitor")
    def monitor_once():
        return emit_task(result)

    assert monitor_once()["event"] == "cloudhop.drift.detected"
    msg = receiver.wait_for(f"drift in the traffic of {model} v3")
    assert "temp" in msg["body"] and "s3://r.html" in msg["body"]


def test_deploy_rolled_back_alerts(receiver):
    from cloudhop.targets.multi import DeployReport, TargetReport
    from tasks.deploy import emit_rolled_back

    model = f"alert-deploy-{uuid.uuid4().hex[:6]}"
    report = DeployReport(model, "5", "all-or-nothing", None, targets={
        "aws": TargetReport("aws", "4", "5", "4", False, "rolled-back", "another target failed (all-or-nothing)"),
        "gcp": TargetReport("gcp", "4", "5", "4", False, "rolled-back", "smoke test failed: 3 of 20 differ")})
    assert not report.ok
    emit_rolled_back(report)
    msg = receiver.wait_for(f"deploy of {model} v5 rolled back")
    assert "gcp: rolled-back, serves v4 (was v4) - smoke test failed" in msg["body"], msg


def test_training_failed_on_every_cloud_alerts(receiver):
    from cloudhop.clouds.failover import AllCloudsFailed, Attempt
    from tasks.failover import emit_exhausted

    model = f"alert-train-{uuid.uuid4().hex[:6]}"
    t = datetime.now(timezone.utc)
    attempts = [Attempt("aws", 1, t, t, "not_started", "no worker picked the run up", None),
                Attempt("gcp", 1, t, t, "crashed", "no heartbeat for 60s", "r2")]
    emit_exhausted(model, AllCloudsFailed(attempts))
    msg = receiver.wait_for(f"training of {model} failed on every cloud")
    assert "aws attempt 1: not_started" in msg["body"] and "gcp attempt 1: crashed" in msg["body"], msg


def test_the_data_gate_alerts_on_a_refused_scheduled_run_only(receiver, tmp_path, flights_columns):
    from cloudhop.data import flights_table
    from flows.retrain import retrain

    model = f"alert-gate-{uuid.uuid4().hex[:6]}"
    bad = flights_table().iloc[::200][list(flights_columns)].reset_index(drop=True)
    bad.loc[:9, "month"] = 13
    bad.to_parquet(tmp_path / "bad.parquet")
    spec = yaml.safe_load((ROOT / "specs" / "flights.yaml").read_text())
    spec.update(name=model, dataset={"uri": str(tmp_path / "bad.parquet")}, columns=flights_columns,
                store=str(tmp_path / "store"), targets=[])
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    for reason in ("manual", "schedule"):
        with pytest.raises(Exception, match="failed validation"):
            retrain(spec=str(path), reason=reason)
    msg = receiver.wait_for(f"refused the scheduled retrain of {model}")
    assert "column 'month': 10 of" in msg["body"], msg
    time.sleep(3)  # the manual run's event came first: had it alerted, its message would be here by now
    assert [m for m in receiver.received() if model in m.get("subject", "")] == [msg]
