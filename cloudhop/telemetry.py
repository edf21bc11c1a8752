"""OpenTelemetry export, off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (extra `otel`).

    from cloudhop import telemetry
    telemetry.setup("cloudhop-serving")   # True: traces and metrics now go out over OTLP/HTTP

With the variable unset (or OTEL_SDK_DISABLED=true) `setup` returns False and nothing of
OpenTelemetry is imported: the cost is one environment lookup per process. Set, it installs
the process-wide tracer and meter providers once, exporting in the background over OTLP/HTTP
(protobuf) to the endpoint (`/v1/traces`, `/v1/metrics` appended, as the OpenTelemetry
specification says; the standard OTEL_* variables for headers, timeouts, the metric export
interval and OTEL_SERVICE_NAME apply). Spans still buffered are sent when the process exits.

Who uses it: the inference server (a span and metrics per /predict, `cloudhop.serving.telemetry`)
and the retrain flow, whose every stage is a Prefect task: Prefect opens a span for the flow
run and one per task run on the global tracer provider, so installing it is all that the
pipeline needs.
"""
from __future__ import annotations

import os
from typing import Any

__all__ = ["ENDPOINT_ENV", "enabled", "setup", "tracer", "meter", "flush"]

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
_SIGNAL_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
_NAME = "cloudhop"
_installed: list[Any] = []  # the providers this process installed (empty: none)


def enabled() -> bool:
    """An OTLP endpoint is configured and the SDK is not switched off."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(os.environ.get(v, "").strip() for v in (ENDPOINT_ENV, *_SIGNAL_ENVS))


def setup(service_name: str) -> bool:
    """Install OTLP/HTTP export of traces and metrics for this process (once; later calls keep the
    first service name). False, importing nothing, when no endpoint is configured."""
    if _installed:
        return True
    if not enabled():
        return False
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as e:
        raise RuntimeError(f"{ENDPOINT_ENV} is set but OpenTelemetry's SDK is not installed ({e.name}); "
                           f"install it with: pip install 'cloudhop[otel]'") from None
    # OTEL_RESOURCE_ATTRIBUTES are merged in by `create`; OTEL_SERVICE_NAME wins over the default name
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or service_name,
                                "service.namespace": _NAME})
    traces = TracerProvider(resource=resource)
    traces.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    meters = MeterProvider(resource=resource, metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())])
    trace.set_tracer_provider(traces)
    metrics.set_meter_provider(meters)
    _installed.extend([traces, meters])
    return True


def tracer() -> Any:
    """cloudhop's tracer (call after `setup` returned True)."""
    from opentelemetry import trace

    return trace.get_tracer(_NAME)


def meter() -> Any:
    """cloudhop's meter (call after `setup` returned True)."""
    from opentelemetry import metrics

    return metrics.get_meter(_NAME)


def flush(timeout_millis: int = 10_000) -> None:
    """Send what is buffered now (spans, then a metrics collection); nothing when not set up."""
    for provider in _installed:
        provider.force_flush(timeout_millis)
