"""Canary judgement from the servers' own Prometheus /metrics.

A canary gives the new version a share of the traffic, then compares its /predict error
rate and latency with the old version's over the same window:

    before = {name: scrape(url) for ...}      # counters are cumulative: take two scrapes
    ... traffic flows ...
    verdict = judge(delta(after_canary, before_canary), delta(after_base, before_base), thresholds)

`deploy_all(..., canary="<target>")` and the deploy flow use it region by region: the new
version goes to one target first (its share of traffic is that target's share), and
reaches the others only when the verdict is to promote.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

__all__ = ["PredictStats", "CanaryThresholds", "Verdict", "parse_metrics", "scrape", "delta", "combine", "judge"]

ENDPOINT = "/predict"


@dataclass
class PredictStats:
    """/predict traffic of one server: requests, server errors (5xx), latency histogram."""
    requests: float = 0.0
    errors: float = 0.0
    seconds_sum: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def mean_latency(self) -> float:
        return self.seconds_sum / self.requests if self.requests else 0.0

    def quantile(self, q: float) -> float:
        """Latency quantile from the histogram (linear inside a bucket, as Prometheus does)."""
        if not self.buckets:
            return 0.0
        les = sorted(self.buckets)
        total = self.buckets[les[-1]]
        if total <= 0:
            return 0.0
        rank, prev_le, prev_n = q * total, 0.0, 0.0
        for le in les:
            n = self.buckets[le]
            if n >= rank:
                if math.isinf(le):
                    return prev_le
                return prev_le + (le - prev_le) * ((rank - prev_n) / (n - prev_n) if n > prev_n else 1.0)
            prev_le, prev_n = le, n
        return les[-1]

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "error_rate": round(self.error_rate, 5),
                "p95_seconds": round(self.quantile(0.95), 5), "mean_seconds": round(self.mean_latency, 5)}


def _labels(s: str) -> dict[str, str]:
    out = {}
    for part in s.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip().strip('"')
    return out


def parse_metrics(text: str) -> PredictStats:
    """The /predict numbers out of a cloudhop server's Prometheus exposition text."""
    st = PredictStats()
    for line in text.splitlines():
        if not line or line.startswith("#") or "{" not in line:
            continue
        name, rest = line.split("{", 1)
        labels_s, value_s = rest.rsplit("}", 1)
        labels = _labels(labels_s)
        if labels.get("endpoint") != ENDPOINT:
            continue
        value = float(value_s.split()[0])
        if name == "cloudhop_requests_total":
            st.requests += value
            if labels.get("status", "").startswith("5"):
                st.errors += value
        elif name == "cloudhop_request_seconds_bucket":
            st.buckets[float(labels["le"])] = value
        elif name == "cloudhop_request_seconds_sum":
            st.seconds_sum = value
    return st


def scrape(url: str, timeout: float = 5.0) -> PredictStats | None:
    """Scrape <url>/metrics; None when the server does not answer."""
    try:
        r = httpx.get(url.rstrip("/") + "/metrics", timeout=timeout, trust_env=False)
    except httpx.TransportError:
        return None
    return parse_metrics(r.text) if r.status_code == 200 else None


def delta(after: PredictStats, before: PredictStats | None) -> PredictStats:
    """What happened between two scrapes of one server (a restart in between resets to `after`)."""
    if before is None or after.requests < before.requests:
        return after
    return PredictStats(after.requests - before.requests, after.errors - before.errors,
                        after.seconds_sum - before.seconds_sum,
                        {le: n - before.buckets.get(le, 0.0) for le, n in after.buckets.items()})


def combine(stats: list[PredictStats]) -> PredictStats:
    """Several servers of the same version as one."""
    out = PredictStats()
    for s in stats:
        out.requests += s.requests
        out.errors += s.errors
        out.seconds_sum += s.seconds_sum
        for le, n in s.buckets.items():
            out.buckets[le] = out.buckets.get(le, 0.0) + n
    return out


@dataclass
class CanaryThresholds:
    min_requests: int = 20  # fewer canary requests than this: no verdict -> roll back
    max_error_rate_increase: float = 0.01  # canary error rate may exceed the baseline's by this much
    max_p95_ratio: float = 2.0  # canary p95 latency / baseline p95 latency
    min_p95_slack_seconds: float = 0.005  # ignore p95 differences below this (bucket noise)


@dataclass
class Verdict:
    promote: bool
    reason: str
    canary: dict[str, Any]
    baseline: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(canary: PredictStats, baseline: PredictStats, t: CanaryThresholds | None = None) -> Verdict:
    """Promote when the canary saw enough traffic, errs no more and is not much slower than the baseline."""
    t = t or CanaryThresholds()

    def verdict(ok: bool, reason: str) -> Verdict:
        return Verdict(ok, reason, canary.to_dict(), baseline.to_dict())

    if canary.requests < t.min_requests:
        return verdict(False, f"too little canary traffic: {canary.requests:.0f} requests < {t.min_requests}")
    if canary.error_rate > baseline.error_rate + t.max_error_rate_increase:
        return verdict(False, f"canary error rate {canary.error_rate:.2%} > baseline {baseline.error_rate:.2%} "
                              f"+ {t.max_error_rate_increase:.2%}")
    c95, b95 = canary.quantile(0.95), baseline.quantile(0.95)
    if baseline.requests and c95 > max(b95 * t.max_p95_ratio, b95 + t.min_p95_slack_seconds):
        return verdict(False, f"canary p95 latency {c95 * 1000:.1f} ms > {t.max_p95_ratio:g} x baseline "
                              f"{b95 * 1000:.1f} ms")
    return verdict(True, f"canary ok: error rate {canary.error_rate:.2%} (baseline {baseline.error_rate:.2%}), "
                         f"p95 {c95 * 1000:.1f} ms (baseline {b95 * 1000:.1f} ms)")
