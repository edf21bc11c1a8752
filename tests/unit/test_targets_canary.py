"""Canary verdicts from real Prometheus exposition text of the server's metrics."""
from __future__ import annotations

import pytest

from cloudhop.serving.metrics import ServerMetrics
from cloudhop.targets.canary import CanaryThresholds, PredictStats, combine, delta, judge, parse_metrics


def traffic(m: ServerMetrics, n: int, seconds: float, status: int = 200) -> None:
    for _ in range(n):
        m.observe("/predict", status, seconds)


def stats(ok: int, errors: int, seconds: float) -> PredictStats:
    m = ServerMetrics()
    traffic(m, ok, seconds)
    traffic(m, errors, seconds, 500)
    traffic(m, 5, 0.001, 422)  # client errors are not the version's fault
    m.observe("/health", 200, 0.0001)
    return parse_metrics(m.render().decode())


def test_parse_reads_predict_requests_errors_and_latency():
    s = stats(90, 10, 0.02)
    assert s.requests == 105 and s.errors == 10
    assert 0.01 <= s.quantile(0.5) <= 0.025 and s.mean_latency == pytest.approx((100 * 0.02 + 5 * 0.001) / 105)


def test_delta_between_two_scrapes_and_restart():
    m = ServerMetrics()
    traffic(m, 10, 0.002)
    before = parse_metrics(m.render().decode())
    traffic(m, 30, 0.2)
    d = delta(parse_metrics(m.render().decode()), before)
    assert d.requests == 30 and d.quantile(0.5) > 0.1
    restarted = stats(2, 0, 0.002)
    assert delta(restarted, before).requests == restarted.requests


def test_judge_promotes_a_healthy_canary():
    assert judge(stats(100, 0, 0.003), stats(400, 0, 0.003)).promote


def test_judge_rejects_errors_latency_and_too_little_traffic():
    base = stats(400, 0, 0.003)
    v = judge(stats(90, 10, 0.003), base)
    assert not v.promote and "error rate" in v.reason
    v = judge(stats(100, 0, 0.2), base)
    assert not v.promote and "p95" in v.reason
    v = judge(stats(3, 0, 0.003), base, CanaryThresholds(min_requests=20))
    assert not v.promote and "too little" in v.reason


def test_combine_adds_servers_up():
    c = combine([stats(10, 1, 0.01), stats(20, 0, 0.01)])
    assert c.requests == 41 and c.errors == 1
