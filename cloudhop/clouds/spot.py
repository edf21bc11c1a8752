"""Spot or on-demand, per attempt: the spot policy on top of placement and failover.

Pure policy, shared by the retrain flow (tasks/failover.py) and the placement simulator.

  spot        every attempt asks for spot capacity; clouds without a spot price are skipped.
  on-demand   every attempt asks for on-demand capacity (the default).
  auto        a cloud with a spot price is tried on spot first; after it lost spot capacity
              there (preempted, or the spot run did not start within the start timeout) the
              next attempt on that cloud is on-demand. Clouds without a spot price are tried
              on-demand, after the spot ones.

Whether the attempt after a spot loss stays on the same cloud or moves on is the failover
policy's `on_preemption` (cloudhop.clouds.failover). Under `auto` with `next-cloud` the order is
every spot cloud (by spot cost), then every cloud again on-demand (by on-demand cost): moving on
after a spot loss must not lose the on-demand fallback of the clouds that had spot.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Sequence

from cloudhop.clouds.catalog import Catalog
from cloudhop.clouds.failover import AttemptOutcome, spot_lost
from cloudhop.clouds.placement import BreakerPolicy, Candidate, Failure, Placement, TrainingRequest, rank_clouds
from cloudhop.clouds.speed import SpeedModel

__all__ = ["SPOT_POLICIES", "CapacityPlan", "plan_capacity", "spot_launcher"]

SPOT_POLICIES = ("spot", "on-demand", "auto")

SpotLaunch = Callable[[str, int, Candidate], AttemptOutcome]  # (cloud, attempt number, candidate) -> outcome


@dataclass(frozen=True)
class CapacityPlan:
    """The clouds to try, in order, and the candidate (offer, price, job variables) for each
    cloud on spot and on-demand capacity, as the spot policy allows."""
    policy: str
    spot: Placement | None  # None under the on-demand policy
    on_demand: Placement | None  # None under the spot policy
    on_preemption: str = "same-cloud"  # the failover policy's: what follows a spot loss

    @property
    def order(self) -> list[str]:
        """Cloud names to try (for failover): spot-eligible ones by spot cost first, then on-demand ones.
        Under `auto` with `next-cloud` every cloud comes again in the on-demand part (a second pass,
        on-demand: `spot_launcher`); with `same-cloud` a spot cloud's on-demand try follows its spot
        loss at once, so it is not listed twice."""
        spot = self.spot.order if self.spot else []
        on_demand = self.on_demand.order if self.on_demand else []
        if self.policy == "auto" and self.on_preemption == "next-cloud":
            return spot + on_demand
        return spot + [c for c in on_demand if c not in spot]

    def order_text(self) -> str:
        """The order as a person reads it, each cloud with the capacity it is asked for, e.g.
        "gcp (spot), coreweave (on-demand), gcp (on-demand)"; "none eligible" when empty."""
        steps, seen = [], set()
        for cloud in self.order:
            if self.policy == "on-demand":
                capacity = "on-demand"
            elif self.policy == "spot":
                capacity = "spot"
            elif not self.spot_eligible(cloud) or cloud in seen:
                capacity = "on-demand"
            else:
                capacity = "spot" if self.on_preemption == "next-cloud" else "spot, then on-demand"
            seen.add(cloud)
            steps.append(f"{cloud} ({capacity})")
        return ", ".join(steps) or "none eligible"

    def candidate(self, cloud: str, spot: bool) -> Candidate:
        return self.placement(spot).candidate(cloud)

    def placement(self, spot: bool) -> Placement:
        """The ranking an attempt on spot (or on-demand) capacity was placed by (to price it)."""
        placement = self.spot if spot else self.on_demand
        if placement is None:
            raise ValueError(f"the {self.policy} spot policy has no {'spot' if spot else 'on-demand'} placement")
        return placement

    @property
    def notes(self) -> tuple[str, ...]:
        """What placement changed in the request (a capped GPU count), once each."""
        return tuple(dict.fromkeys(n for p in (self.spot, self.on_demand) if p is not None for n in p.notes))

    def spot_eligible(self, cloud: str) -> bool:
        return self.spot is not None and cloud in self.spot.order

    def table(self) -> list[dict[str, Any]]:
        """The placement table(s), each row marked with its capacity."""
        rows = []
        for capacity, placement in (("spot", self.spot), ("on-demand", self.on_demand)):
            if placement is not None:
                rows += [{**row, "capacity": capacity} for row in placement.table()]
        return rows


def plan_capacity(catalog: Catalog, request: TrainingRequest, failures: Sequence[Failure], now: datetime,
                  breaker: BreakerPolicy, policy: str, speeds: SpeedModel | None = None, *,
                  on_preemption: str = "same-cloud") -> CapacityPlan:
    """Rank the clouds (cloudhop.clouds.placement.rank_clouds, with `speeds` for the expected
    hours) for the capacity `policy` allows; `on_preemption` is the failover policy's (it shapes
    the order)."""
    if policy not in SPOT_POLICIES:
        raise ValueError(f"unknown spot policy {policy!r}; expected one of {', '.join(SPOT_POLICIES)}")

    def rank(spot: bool) -> Placement:
        return rank_clouds(catalog, dataclasses.replace(request, spot=spot), failures, now, breaker, speeds)

    return CapacityPlan(policy, rank(True) if policy != "on-demand" else None,
                        rank(False) if policy != "spot" else None, on_preemption)


def spot_launcher(plan: CapacityPlan, launch: SpotLaunch) -> Callable[[str, int], AttemptOutcome]:
    """The `launch(cloud, number)` run_with_failover calls: it picks spot or on-demand for each
    attempt by the plan's policy, calls `launch(cloud, number, candidate)`, and marks the outcome's
    `data["spot"]` (so failover can tell a spot loss from a cloud fault). A cloud the order lists a
    second time (`auto` with `next-cloud`) is on-demand on that pass: failover starts each listed
    cloud at attempt 1."""
    lost: set[str] = set()  # clouds where spot capacity was lost in this run, or whose spot pass is over
    seen: set[str] = set()

    def run(cloud: str, number: int) -> AttemptOutcome:
        if number == 1 and cloud in seen:
            lost.add(cloud)
        seen.add(cloud)
        spot = plan.policy == "spot" or (plan.policy == "auto" and plan.spot_eligible(cloud) and cloud not in lost)
        out = launch(cloud, number, plan.candidate(cloud, spot))
        out.data["spot"] = spot
        if spot and spot_lost(out):
            lost.add(cloud)
        return out

    return run
