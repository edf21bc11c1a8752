"""The simulated clouds over the scenario's year: outages, capacity shortages, prices, preemptions
and the retrains' triggers, all drawn once from the scenario's seed, so that every policy meets
the same world (common random numbers: a difference between policies is the policies' doing).

Time is hours since the scenario's start (00:00 UTC of `start`).
"""
from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone

from cloudhop.clouds.catalog import Catalog
from cloudhop.simulate.scenario import Episodes, Scenario

__all__ = ["World", "Timeline", "Trigger"]

HOURS_PER_YEAR = 8760.0


class Timeline:
    """Disjoint [start, end) intervals in hours, sorted."""

    def __init__(self, intervals: list[tuple[float, float]]):
        merged: list[tuple[float, float]] = []
        for s, e in sorted(intervals):
            if merged and s <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], e))
            else:
                merged.append((s, e))
        self.intervals = merged
        self._starts = [s for s, _ in merged]

    def active(self, t: float) -> bool:
        i = bisect.bisect_right(self._starts, t) - 1
        return i >= 0 and t < self.intervals[i][1]

    def next_start(self, t: float) -> float:
        """The first interval start after `t` (inf when none)."""
        i = bisect.bisect_right(self._starts, t)
        return self._starts[i] if i < len(self._starts) else math.inf

    @property
    def hours(self) -> float:
        return sum(e - s for s, e in self.intervals)


def _episodes(rng: random.Random, ep: Episodes, horizon: float) -> Timeline:
    out, t = [], 0.0
    rate = ep.per_year / HOURS_PER_YEAR
    while rate > 0:
        t += rng.expovariate(rate)
        if t >= horizon:
            break
        out.append((t, t + rng.expovariate(1.0 / ep.mean_hours)))
    return Timeline(out)


@dataclass(frozen=True)
class Trigger:
    index: int
    at: float  # hours
    kind: str  # nightly | drift


class World:
    def __init__(self, scenario: Scenario, catalog: Catalog):
        self.scenario, self.catalog = scenario, catalog
        self.start = datetime.combine(scenario.start, time(0), tzinfo=timezone.utc)
        self.horizon = scenario.days * 24.0
        rng = random.Random(f"{scenario.seed}:world")
        self.outages, self.shortages = {}, {}
        for name, c in scenario.clouds.items():
            self.outages[name] = _episodes(rng, c.outages, self.horizon)
            self.shortages[(name, True)] = (Timeline([(0.0, math.inf)]) if not c.spot_usable
                                            else _episodes(rng, c.spot_shortages, self.horizon))
            self.shortages[(name, False)] = _episodes(rng, c.on_demand_shortages, self.horizon)
        self.triggers = self._triggers(rng)
        self._catalogs: dict[int, Catalog] = {}

    def _triggers(self, rng: random.Random) -> list[Trigger]:
        w = self.scenario.workload
        times = [(d * 24.0 + w.nightly_hour_utc, "nightly") for d in range(self.scenario.days)]
        rate, t = w.drift_retrains_per_week / 168.0, 0.0
        while rate > 0:
            t += rng.expovariate(rate)
            if t >= self.horizon:
                break
            times.append((t, "drift"))
        return [Trigger(i, at, kind) for i, (at, kind) in enumerate(sorted(times))]

    def when(self, t: float) -> datetime:
        return self.start + timedelta(hours=t)

    def month(self, t: float) -> int:
        d = self.when(t)
        return (d.year - self.start.year) * 12 + d.month - self.start.month

    def catalog_at(self, t: float) -> Catalog:
        """The catalog with this month's prices (the scenario's monthly multipliers, cycled)."""
        m = self.month(t)
        if m not in self._catalogs:
            clouds = dict(self.catalog.clouds)
            for name, c in self.scenario.clouds.items():
                od, sp = c.on_demand_price[m % len(c.on_demand_price)], c.spot_price[m % len(c.spot_price)]
                cloud = self.catalog.clouds[name]
                offers = [o.model_copy(update={"on_demand": o.on_demand * od,
                                               "spot": None if o.spot is None else min(o.spot * sp, o.on_demand * od)})
                          for o in cloud.offers]
                clouds[name] = cloud.model_copy(update={"offers": offers})
            self._catalogs[m] = self.catalog.model_copy(update={"clouds": clouds})
        return self._catalogs[m]

    def down(self, cloud: str, t: float) -> bool:
        return self.outages[cloud].active(t)

    def short(self, cloud: str, spot: bool, t: float) -> bool:
        return self.shortages[(cloud, spot)].active(t)

    def next_outage(self, cloud: str, t: float) -> float:
        return self.outages[cloud].next_start(t)

    def preempted_after(self, cloud: str, trigger: int, start: int) -> float:
        """Hours until spot start number `start` of retrain `trigger` on `cloud` is taken back (inf: never).

        Seeded by (cloud, retrain, start), so two policies starting the same spot run meet the same fate."""
        c = self.scenario.clouds[cloud]
        if c.interruption is None:
            return math.inf
        rate = c.interruption.per_hour
        return random.Random(f"{self.scenario.seed}:{cloud}:{trigger}:{start}").expovariate(rate) if rate else math.inf
