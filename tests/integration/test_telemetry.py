"""OpenTelemetry, end to end: what a real OTLP/HTTP receiver on loopback gets, decoded with opentelemetry-proto.

The inference server (a real process) sends a span per /predict and its request metrics; a
retrain (a real flow run on the session's Prefect server) sends a span per stage under the
flow run's span. Without the endpoint variable nothing of OpenTelemetry is even imported.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import yaml

from cloudhop.data import flights_table
from cloudhop.registry import Registry
from cloudhop.store import Store
from cloudhop.testing import CATEGORICAL, NUMERIC, make_frame, publish_version, records
from cloudhop.training.preprocess import Preprocessor
from ops.localserver import prefect_env
from ops.procs import ROOT
from ops.serving import ServerProcess

pytestmark = pytest.mark.integration


class Receiver:
    """An OTLP/HTTP receiver on 127.0.0.1: keeps every request body by path, answers 200."""

    def __init__(self):
        got: list[tuple[str, bytes]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                got.append((self.path, self.rfile.read(int(self.headers.get("content-length", 0)))))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.got = got
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def env(self) -> dict[str, str]:
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.url, "OTEL_METRIC_EXPORT_INTERVAL": "500",
                "OTEL_BSP_SCHEDULE_DELAY": "200", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}

    def spans(self) -> list:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        out = []
        for path, body in self.got:
            if path == "/v1/traces":
                req = ExportTraceServiceRequest.FromString(body)
                out += [(rs.resource, s) for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
        return out

    def metrics(self) -> list:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

        return [m for path, body in self.got if path == "/v1/metrics"
                for rm in ExportMetricsServiceRequest.FromString(body).resource_metrics
                for sm in rm.scope_metrics for m in sm.metrics]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def attrs(kvs) -> dict:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in kvs}


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def model_store(tmp_path_factory) -> str:
    store = str(tmp_path_factory.mktemp("otel") / "store")
    pre = Preprocessor.fit(make_frame(200, seed=1), CATEGORICAL, NUMERIC)
    publish_version(Registry(Store(store), "otel"), pre, 0, make_frame(8, seed=7))
    return store


def test_each_predict_is_a_span_and_counted_in_the_metrics(receiver, model_store, tmp_path):
    server = ServerProcess(model_store, "otel", "1", tmp_path / "server.log", "--no-prediction-log",
                           "--target-name", "edge-1", env=receiver.env()).wait_healthy()
    rows = records(make_frame(3, seed=2))
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    try:
        with httpx.Client(base_url=server.url, trust_env=False) as c:
            for _ in range(4):
                assert c.post("/predict", json={"rows": rows}).status_code == 200
            traced = c.post("/predict", json={"rows": rows}, headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
            assert traced.status_code == 200
            assert c.post("/predict", json={"rows": [{"carrier": "AA"}]}).status_code == 422
            assert c.get("/health").status_code == 200  # not a /predict: no span
    finally:
        assert server.stop() == 0, server.log()  # a clean exit sends what is still buffered

    spans = [(res, s) for res, s in receiver.spans() if s.name == "POST /predict"]
    assert len(spans) == 6 and len(receiver.spans()) == 6, [s.name for _, s in receiver.spans()]
    res, _ = spans[0]
    assert attrs(res.attributes)["service.name"] == "cloudhop-serving"
    a = [attrs(s.attributes) for _, s in spans]
    assert all(x["cloudhop.model"] == "otel" and x["cloudhop.model.version"] == "1" and x["cloudhop.target"] == "edge-1"
               for x in a)
    assert sorted(x["http.response.status_code"] for x in a) == [200] * 5 + [422]
    assert {x["cloudhop.request_id"] for x in a} >= {traced.headers["x-request-id"]}
    (child,) = [s for _, s in spans if s.trace_id.hex() == trace_id]  # the caller's trace goes on
    assert child.parent_span_id.hex() == parent_id and child.kind == child.SPAN_KIND_SERVER

    metrics = receiver.metrics()
    (requests,) = [m for m in metrics if m.name == "cloudhop.serving.requests"][-1:]  # cumulative: the last says all
    by_status = {attrs(p.attributes)["http.response.status_code"]: p.as_int for p in requests.sum.data_points}
    assert by_status == {200: 5, 422: 1}
    (duration,) = [m for m in metrics if m.name == "cloudhop.serving.request.duration"][-1:]
    assert sum(p.count for p in duration.histogram.data_points) == 6 and duration.unit == "s"


def test_without_the_endpoint_nothing_of_opentelemetry_is_imported(model_store):
    code = ("import sys, json\n"
            "from cloudhop.registry import Registry\nfrom cloudhop.store import Store\n"
            "from cloudhop.serving import create_app, load_model\n"
            f"reg = Registry(Store({model_store!r}), 'otel')\n"
            "app = create_app(reg, load_model(reg, '1'))\n"
            "from starlette.testclient import TestClient\n"
            "r = TestClient(app).post('/predict', json={'rows': " + json.dumps(records(make_frame(2, seed=3))) + "})\n"
            "assert r.status_code == 200, r.text\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('opentelemetry'))))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_a_retrain_sends_a_span_per_stage_under_its_flow_run(receiver, prefect_api_url, tmp_path):
    data = tmp_path / "flights.parquet"
    flights_table().iloc[::40].reset_index(drop=True).to_parquet(data)  # ~8k rows over the year
    spec = copy.deepcopy(yaml.safe_load((ROOT / "specs" / "flights.yaml").read_text()))
    spec.update(name="otel-flights", dataset={"uri": str(data)}, store=str(tmp_path / "store"), targets=[])
    spec["model"].update(max_epochs=1, hidden=[16])
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    env = {**prefect_env(prefect_api_url, home=tmp_path / "home"), **receiver.env(),
           "OTEL_SERVICE_NAME": "retrain-under-test"}
    run = subprocess.run([sys.executable, "-m", "flows.retrain", "--spec", str(path), "--no-deploy"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=540)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]

    spans = [s for _, s in receiver.spans()]
    flows = [s for s in spans if attrs(s.attributes).get("prefect.run.type") == "flow"]
    assert len(flows) == 1, [s.name for s in spans]
    (flow,) = flows
    stages = {attrs(s.attributes)["prefect.run.name"].rsplit("-", 1)[0]: s for s in spans
              if attrs(s.attributes).get("prefect.run.type") == "task"}
    want = ["load-spec", "open-table", "validate", "split-windows", "train", "evaluate", "register"]
    assert set(want) <= set(stages), sorted(stages)
    assert {s.trace_id for s in spans} == {flow.trace_id}  # one trace: the run
    assert all(stages[name].parent_span_id == flow.span_id for name in want)  # each stage under the run
    assert all(stages[name].end_time_unix_nano > stages[name].start_time_unix_nano > 0 for name in want)
    assert {attrs(r.attributes)["service.name"] for r, _ in receiver.spans()} == {"retrain-under-test"}
