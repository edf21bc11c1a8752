"""The placement simulator: a year of scheduled retrains against simulated clouds, per policy.

Only time and the clouds are simulated. Each retrain is a SimPy process that, at its trigger time,
does what the retrain flow does (tasks/failover.py): ranks the clouds with the real placement
(`plan_capacity` over `rank_clouds`, with the breaker fed the simulated infrastructure failures
through the real `failure_from_run`), then runs the real `run_with_failover` with the real
`spot_launcher`. Only the launch is simulated: given the cloud, the candidate and the simulated
clock, it says whether the run started (outage, capacity shortage), was preempted (spot), crashed
(an outage began) or completed, and what it cost (the candidate's $/hour x paid hours + its
egress). A retrain that failed on every cloud runs again `resubmit_after_minutes` later; one not
done a day after its deadline is abandoned (lateness: never).

Within one failover chain the attempts run back to back on the retrain's own clock (the flow
places once, then walks the order); SimPy keeps the retrains, their resubmissions and the
shared breaker history in time order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import simpy

from cloudhop.clouds.catalog import Catalog, load_catalog
from cloudhop.clouds.failover import AllCloudsFailed, AttemptOutcome, FailoverPolicy, run_with_failover
from cloudhop.clouds.failures import NOT_STARTED, TRAIN_TAG, cloud_tag, failure_from_run
from cloudhop.clouds.placement import BreakerPolicy, Candidate, Failure, TrainingRequest
from cloudhop.clouds.spot import CapacityPlan, plan_capacity, spot_launcher
from cloudhop.simulate.scenario import Scenario
from cloudhop.simulate.world import Trigger, World

__all__ = ["Policy", "RetrainResult", "PolicyResult", "default_policies", "simulate", "run_policy"]

ABANDON_AFTER_H = 24.0  # past the deadline: the next scheduled retrain supersedes it


@dataclass(frozen=True)
class Policy:
    name: str
    spot: str  # the spot policy: spot | on-demand | auto
    clouds: tuple[str, ...]
    on_preemption: str | None = None  # the failover's after a spot loss; None: the scenario's


def default_policies(scenario: Scenario) -> list[Policy]:
    """Each cloud alone on-demand, each cloud alone on spot (where it has spot), and cloudhop: every
    cloud, placement with failover, the `auto` spot policy, as the scenario's failover says; then
    cloudhop again with the other `on_preemption`, to show what that choice is worth."""
    names = list(scenario.clouds)
    other = "same-cloud" if scenario.failover.on_preemption == "next-cloud" else "next-cloud"
    return ([Policy(f"{c} on-demand", "on-demand", (c,)) for c in names]
            + [Policy(f"{c} spot", "spot", (c,)) for c in names if scenario.clouds[c].interruption is not None]
            + [Policy("cloudhop", "auto", tuple(names)),
               Policy(f"cloudhop ({other})", "auto", tuple(names), other)])


@dataclass
class RetrainResult:
    trigger: Trigger
    deadline: float
    finished: float | None = None  # hours; None: abandoned
    cost: float = 0.0
    attempts: int = 0
    preemptions: int = 0
    lost_hours: float = 0.0  # paid GPU hours preempted attempts did not keep
    on_demand_fallbacks: int = 0  # on-demand attempts after a spot loss (preempted or not started) in this retrain

    @property
    def lateness(self) -> float:
        return math.inf if self.finished is None else max(0.0, self.finished - self.deadline)


@dataclass
class PolicyResult:
    policy: Policy
    retrains: list[RetrainResult] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        n = len(self.retrains)
        total = sum(r.cost for r in self.retrains)
        late = np.array([r.lateness for r in self.retrains])
        p99 = float(np.percentile(late, 99, method="higher")) if n else 0.0
        return {"policy": self.policy.name, "retrains": n, "total $": round(total, 2),
                "$ per retrain": round(total / n, 2) if n else None,
                "on time %": round(100.0 * sum(r.lateness == 0 for r in self.retrains) / n, 3) if n else None,
                "p99 lateness h": round(p99, 2) if math.isfinite(p99) else math.inf,
                "abandoned": sum(r.finished is None for r in self.retrains),
                "preemptions": sum(r.preemptions for r in self.retrains),
                "lost to preemption GPU-h": round(sum(r.lost_hours for r in self.retrains), 2),
                "on-demand fallbacks": sum(r.on_demand_fallbacks for r in self.retrains),
                "attempts": sum(r.attempts for r in self.retrains)}


@dataclass
class _Progress:
    """One retrain's state across its attempts and resubmissions."""
    work: float  # training hours still to do (checkpoints carry the rest)
    spot_starts: dict[str, int] = field(default_factory=dict)  # per cloud: numbers the preemption draws
    spot_lost: set[str] = field(default_factory=set)  # clouds where spot was lost


class _PolicyRun:
    def __init__(self, world: World, policy: Policy):
        s = world.scenario
        self.world, self.policy, self.w = world, policy, s.workload
        self.f = s.failover if policy.on_preemption is None else s.failover.model_copy(
            update={"on_preemption": policy.on_preemption})
        self.failover = FailoverPolicy.from_spec(self.f)
        self.breaker = BreakerPolicy.from_spec(s.breaker)
        self.failures: list[Failure] = []
        self.env = simpy.Environment()
        self.result = PolicyResult(policy)

    def run(self) -> PolicyResult:
        self.env.process(self._arrivals())
        self.env.run()
        self.result.retrains.sort(key=lambda r: r.trigger.index)
        return self.result

    def _arrivals(self):
        for trig in self.world.triggers:
            yield self.env.timeout(trig.at - self.env.now)
            self.env.process(self._retrain(trig))

    def _request(self) -> TrainingRequest:
        w = self.w
        return TrainingRequest(gpu_type=w.gpu_type, gpu_count=w.gpu_count, dataset_bytes=w.dataset_bytes,
                               dataset_location=w.dataset_location, estimated_hours=w.train_hours,
                               clouds=list(self.policy.clouds))

    def _retrain(self, trig: Trigger):
        r = RetrainResult(trig, trig.at + self.w.deadline_hours)
        self.result.retrains.append(r)
        state = _Progress(self.w.train_hours)
        while True:
            clock = [self.env.now]
            since = self.world.when(clock[0]) - timedelta(minutes=self.breaker.window_minutes)
            self.failures = [f for f in self.failures if f.at > since]  # as the flow asks the server: the window only
            plan = plan_capacity(self.world.catalog_at(clock[0]), self._request(), self.failures,
                                 self.world.when(clock[0]), self.breaker, self.policy.spot,
                                 on_preemption=self.f.on_preemption)
            try:
                run_with_failover(plan.order, spot_launcher(plan, self._launcher(plan, r, state, clock)),
                                  self.failover, sleep=lambda s: clock.__setitem__(0, clock[0] + s / 3600.0),
                                  now=lambda: self.world.when(clock[0]))
            except AllCloudsFailed:
                clock[0] += self.w.resubmit_after_minutes / 60.0
                yield self.env.timeout(max(0.0, clock[0] - self.env.now))
                if clock[0] > r.deadline + ABANDON_AFTER_H:
                    return
                continue
            yield self.env.timeout(max(0.0, clock[0] - self.env.now))
            r.finished = clock[0]
            return

    def _fail(self, cloud: str, at: float, state_type: str, message: str) -> None:
        failure = failure_from_run([TRAIN_TAG, cloud_tag(cloud)], state_type, message, self.world.when(at))
        if failure is not None:
            self.failures.append(failure)

    def _launcher(self, plan: CapacityPlan, r: RetrainResult, state: _Progress, clock: list[float]):
        world, w, f = self.world, self.w, self.f

        def launch(cloud: str, number: int, cand: Candidate) -> AttemptOutcome:
            t = clock[0]
            spot = plan.spot is not None and any(c is cand for c in plan.spot.candidates)
            r.attempts += 1
            if not spot and state.spot_lost:
                r.on_demand_fallbacks += 1
            if world.down(cloud, t):
                clock[0] += f.start_timeout_s / 3600.0
                self._fail(cloud, clock[0], "CANCELLED", f"{NOT_STARTED}: no worker picked the run up")
                return AttemptOutcome("not_started", f"{cloud} is down")
            if world.short(cloud, spot, t):
                clock[0] += (f.start_timeout_s + f.startup_timeout_s) / 3600.0
                self._fail(cloud, clock[0], "CANCELLED", f"{NOT_STARTED}: not running after the startup timeout")
                if spot:
                    state.spot_lost.add(cloud)
                return AttemptOutcome("not_started", f"no {'spot' if spot else 'on-demand'} capacity on {cloud}")
            startup = w.startup_minutes / 60.0
            needed = startup + state.work
            preempt = math.inf
            if spot:
                state.spot_starts[cloud] = state.spot_starts.get(cloud, 0) + 1
                preempt = world.preempted_after(cloud, r.trigger.index, state.spot_starts[cloud])
            crash = world.next_outage(cloud, t) - t
            ran = min(needed, preempt, crash)
            r.cost += (cand.price_per_hour or 0.0) * ran + (cand.egress_cost or 0.0)
            trained = max(0.0, ran - startup)
            checkpointed = math.floor(trained / (w.checkpoint_minutes / 60.0)) * w.checkpoint_minutes / 60.0
            clock[0] += ran
            if ran == needed:
                state.work = 0.0
                return AttemptOutcome("completed")
            if ran == preempt:
                kept = trained if w.checkpoint_on_sigterm else checkpointed
                state.work -= kept
                state.spot_lost.add(cloud)
                r.preemptions += 1
                r.lost_hours += ran - kept
                return AttemptOutcome("preempted", f"spot capacity on {cloud} taken back")
            state.work -= checkpointed
            clock[0] += f.heartbeat_timeout_s / 3600.0
            self._fail(cloud, clock[0], "CRASHED", "no heartbeat")
            return AttemptOutcome("crashed", f"{cloud} went down during the run")

        return launch


def run_policy(world: World, policy: Policy) -> PolicyResult:
    return _PolicyRun(world, policy).run()


def simulate(scenario: Scenario, *, catalog: Catalog | None = None,
             policies: list[Policy] | None = None) -> list[PolicyResult]:
    """Every policy over the same simulated year."""
    catalog = catalog or load_catalog(scenario.catalog)
    missing = sorted(set(scenario.clouds) - set(catalog.clouds))
    if missing:
        raise ValueError(f"scenario {scenario.name!r}: clouds {missing} are not in the catalog {scenario.catalog}")
    world = World(scenario, catalog)
    return [run_policy(world, p) for p in (policies or default_policies(scenario))]
