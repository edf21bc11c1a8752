"""What a retrain actually cost: each training attempt priced from its offer and measured time.

Pure logic. An attempt is billed from when its run was seen running (`Attempt.started_at`: the
machine exists and the job runs on it) to when it ended or was given up on (`ended_at`); an
attempt that never started costs nothing. A started attempt read the dataset: when another
catalog cloud holds it, its bytes are moved and priced at that cloud's egress $/GB (0 from the
local machine, as placement prices it). Failed, crashed and preempted attempts are priced the
same way: their cost is the retrain's waste.

    cost = price_per_hour x billed_seconds / 3600 + egress_cost
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Sequence

from cloudhop.clouds.failover import Attempt
from cloudhop.clouds.placement import GB, Placement

__all__ = ["AttemptCost", "RetrainCost", "attempt_cost", "retrain_cost", "CURRENCY"]

CURRENCY = "USD"


@dataclass(frozen=True)
class AttemptCost:
    cloud: str
    number: int
    outcome: str
    run_id: str | None
    pool: str | None
    offer: str | None  # the offer's key in its cloud: machine type, else GPU type x count
    gpu: str | None
    gpu_count: int | None
    spot: bool
    price_per_hour: float
    started_at: datetime | None  # billing starts: the run was seen running
    ended_at: datetime
    billed_seconds: float
    egress_bytes: int
    egress_cost: float
    compute_cost: float
    cost: float

    @property
    def wasted(self) -> bool:
        """Paid for a model that was not trained by this attempt."""
        return self.outcome != "completed"

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("started_at", "ended_at"):  # to the microsecond: billed_seconds can be checked against them
            d[k] = d[k].isoformat() if d[k] else None
        return d


@dataclass(frozen=True)
class RetrainCost:
    """Every attempt of one retrain, priced."""
    model: str
    run_key: str
    attempts: list[AttemptCost] = field(default_factory=list)
    currency: str = CURRENCY

    @property
    def total(self) -> float:
        return sum(a.cost for a in self.attempts)

    @property
    def wasted(self) -> float:
        return sum(a.cost for a in self.attempts if a.wasted)

    def to_dict(self) -> dict[str, Any]:
        """What the manifest, the run record and the cost event carry (cloudhop.registry.manifest.CostInfo)."""
        return {"model": self.model, "run_key": self.run_key, "currency": self.currency,
                "total": self.total, "wasted": self.wasted,
                "attempts": [a.row() for a in self.attempts]}

    def table(self) -> list[dict[str, Any]]:
        """Rows for a table artifact: one per attempt, then the total."""
        rows = [{"attempt": f"{a.cloud} #{a.number}", "outcome": a.outcome, "offer": a.offer,
                 "gpu": f"{a.gpu_count}x {a.gpu}" if a.gpu_count else a.gpu, "spot": a.spot,
                 "$/hour": a.price_per_hour, "seconds": round(a.billed_seconds, 1),
                 "egress GB": round(a.egress_bytes / GB, 3), "egress $": round(a.egress_cost, 4),
                 "cost $": round(a.cost, 4)} for a in self.attempts]
        rows.append({"attempt": "total", "outcome": f"wasted ${self.wasted:.4f}", "offer": None, "gpu": None,
                     "spot": None, "$/hour": None, "seconds": round(sum(a.billed_seconds for a in self.attempts), 1),
                     "egress GB": round(sum(a.egress_bytes for a in self.attempts) / GB, 3),
                     "egress $": round(sum(a.egress_cost for a in self.attempts), 4), "cost $": round(self.total, 4)})
        return rows


def attempt_cost(placement: Placement, attempt: Attempt, *, spot: bool | None = None,
                 price_per_hour: float | None = None) -> AttemptCost:
    """Price one attempt on the offer placement chose for its cloud.

    `spot` and `price_per_hour` override the request's capacity type and the candidate's price,
    for an attempt that ran on other capacity than placed (spot falling back to on-demand)."""
    c = placement.candidate(attempt.cloud)
    price = price_per_hour if price_per_hour is not None else (c.price_per_hour or 0.0)
    billed = max(0.0, (attempt.ended_at - attempt.started_at).total_seconds()) if attempt.started_at else 0.0
    moved = billed > 0 and placement.data_cloud is not None and placement.data_cloud != attempt.cloud
    egress_bytes = placement.request.dataset_bytes if moved else 0
    egress = (c.egress_cost or 0.0) if moved else 0.0
    compute = price * billed / 3600
    return AttemptCost(attempt.cloud, attempt.number, attempt.outcome, attempt.run_id, c.pool, c.offer, c.gpu,
                       c.gpu_count, placement.request.spot if spot is None else spot, price, attempt.started_at,
                       attempt.ended_at, billed, egress_bytes, egress, compute, compute + egress)


def retrain_cost(model: str, run_key: str, placement: Placement, attempts: Sequence[Attempt]) -> RetrainCost:
    return RetrainCost(model, run_key, [attempt_cost(placement, a) for a in attempts])
