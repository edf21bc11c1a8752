"""When OpenTelemetry export is on: only with an OTLP endpoint, never with the SDK switched off."""
from __future__ import annotations

import pytest

from cloudhop import telemetry

ENVS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_SDK_DISABLED")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENVS:
        monkeypatch.delenv(name, raising=False)


def test_off_without_an_endpoint(monkeypatch):
    assert not telemetry.enabled() and telemetry.setup("x") is False
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")
    assert not telemetry.enabled()
    telemetry.flush()  # nothing set up: nothing to send, no error


@pytest.mark.parametrize("name", ENVS[:3])
def test_on_with_any_endpoint_variable(monkeypatch, name):
    monkeypatch.setenv(name, "http://127.0.0.1:4318")
    assert telemetry.enabled()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "TRUE")
    assert not telemetry.enabled()
