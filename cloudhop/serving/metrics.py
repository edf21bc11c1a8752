"""Prometheus metrics of one server (its own registry, so several apps in one process don't clash)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

__all__ = ["ServerMetrics", "CONTENT_TYPE_LATEST"]

ENDPOINTS = ("/predict", "/health", "/version", "/metrics", "/admin/load")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("cloudhop_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("cloudhop_request_seconds", "Request latency by endpoint", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.rows = Counter("cloudhop_prediction_rows", "Rows predicted", registry=r)
        self.errors = Counter("cloudhop_errors", "Errors by kind", ["kind"], registry=r)
        self.swaps = Counter("cloudhop_model_swaps", "Successful model swaps", registry=r)
        self.model_info = Gauge("cloudhop_model_info", "The model version being served",
                                ["model", "version", "sha256"], registry=r)
        self.log_rows = Counter("cloudhop_prediction_log_rows", "Rows written to the prediction log", registry=r)
        self.log_pending = Gauge("cloudhop_prediction_log_pending_rows", "Rows buffered, not yet written",
                                 registry=r)

    def observe(self, path: str, status: int, seconds: float) -> None:
        endpoint = path if path in ENDPOINTS else "other"
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def serving(self, model: str, version: str, sha256: str) -> None:
        self.model_info.clear()
        self.model_info.labels(model, version, sha256).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
