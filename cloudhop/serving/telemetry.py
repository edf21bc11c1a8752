"""OpenTelemetry for the inference server: a span and two metrics per /predict.

`instrument(app, state)` is the server's one hook: without an OTLP endpoint (cloudhop.telemetry)
it returns at once and imports nothing, so a server without it pays nothing per request. With
one, a pure ASGI middleware around the app gives every POST /predict

- a SERVER span `POST /predict`, child of the caller's W3C `traceparent` when sent, with the
  model, the version that answered, the target, the status code and the request id;
- `cloudhop.serving.requests` (a counter) and `cloudhop.serving.request.duration` (a histogram,
  seconds), both by version, target and status code.

Other paths (/health, /metrics, /admin/*) pass through untouched.
"""
from __future__ import annotations

import time
from typing import Any

from cloudhop import telemetry

__all__ = ["instrument", "PREDICT_SPAN"]

PREDICT_SPAN = "POST /predict"


def instrument(app: Any, state: Any) -> bool:
    """Trace and measure every /predict of the Starlette `app` (whose server state is `state`: its
    `served` model and its `target`) when OTLP export is configured; returns whether it does."""
    if not telemetry.setup("cloudhop-serving"):
        return False
    app.add_middleware(_PredictTelemetry, state=state)
    return True


class _PredictTelemetry:
    def __init__(self, app: Any, state: Any):
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind, StatusCode

        self.app, self.state = app, state
        self._extract, self._server, self._error = propagate.extract, SpanKind.SERVER, StatusCode.ERROR
        self.tracer = telemetry.tracer()
        m = telemetry.meter()
        self.requests = m.create_counter("cloudhop.serving.requests", unit="{request}",
                                         description="/predict requests answered")
        self.duration = m.create_histogram("cloudhop.serving.request.duration", unit="s",
                                           description="time to answer a /predict request")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/predict" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        current = self.state.served  # the version that answers, unless a swap lands meanwhile
        version = current.model.version if current is not None else ""
        labels = {"cloudhop.model.version": version, "cloudhop.target": self.state.target}
        parent = self._extract({k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])})
        status = 500
        t0 = time.perf_counter()
        with self.tracer.start_as_current_span(PREDICT_SPAN, context=parent, kind=self._server, attributes={
                "http.request.method": "POST", "http.route": "/predict", "url.path": "/predict",
                "cloudhop.model": current.model.name if current is not None else "", **labels}) as span:

            async def send_status(message):
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    span.set_attribute("http.response.status_code", status)
                    for k, v in message.get("headers", []):
                        if k == b"x-request-id":
                            span.set_attribute("cloudhop.request_id", v.decode("latin-1"))
                await send(message)

            try:
                await self.app(scope, receive, send_status)
            finally:
                if status >= 500:
                    span.set_status(self._error)
                done = {**labels, "http.response.status_code": status}
                self.requests.add(1, done)
                self.duration.record(time.perf_counter() - t0, done)
