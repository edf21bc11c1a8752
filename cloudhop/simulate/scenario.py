"""A simulator scenario: the workload, the clouds' behaviour over a year, and where each figure
comes from. Loaded from YAML (scenarios/*.yaml) and validated; a problem names the file and field.

Prices are not here: they are the cloud catalog's (deployments/clouds.yaml), scaled month by
month by the scenario's price traces. Failover and breaker settings are the pipeline spec's own
sections (cloudhop.spec.FailoverSpec, BreakerSpec), so the simulator runs what a spec would.
"""
from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cloudhop.spec import BreakerSpec, FailoverSpec, format_errors

__all__ = ["Scenario", "CloudScenario", "Workload", "Episodes", "Interruption", "Source", "ScenarioError",
           "INTERRUPTION_BANDS", "load_scenario", "parse_scenario"]

# The public interruption-frequency bands (AWS Spot Advisor; Azure shows the same bands as
# eviction rates) -> the rate used for each. The open-ended top band has no upper bound: 30% is
# our assumption, stated in every scenario that uses it.
INTERRUPTION_BANDS = {"<5%": 0.025, "5-10%": 0.075, "10-15%": 0.125, "15-20%": 0.175, ">20%": 0.30}
_PERIOD_HOURS = {"day": 24.0, "month": 730.0}


class ScenarioError(ValueError):
    """A scenario that cannot be used: the message names the file, the field and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Source(_Strict):
    what: str = Field(min_length=1, description="the figure(s) this source backs")
    url: str = Field(min_length=1)
    note: str = ""


class Interruption(_Strict):
    """How often spot capacity is taken back: a public band or a rate, per month or per day."""
    band: Literal["<5%", "5-10%", "10-15%", "15-20%", ">20%"] | None = None
    rate: float | None = Field(default=None, ge=0, lt=1)
    per: Literal["month", "day"] = "month"

    @model_validator(mode="after")
    def _one(self) -> "Interruption":
        if (self.band is None) == (self.rate is None):
            raise ValueError("give exactly one of band or rate")
        return self

    @property
    def per_hour(self) -> float:
        """The hazard: an instance's chance of interruption over `per` is band/rate."""
        p = INTERRUPTION_BANDS[self.band] if self.band is not None else float(self.rate or 0.0)
        return -math.log(1.0 - p) / _PERIOD_HOURS[self.per]


class Episodes(_Strict):
    """Episodes arriving at random (Poisson) `per_year`, each lasting `mean_hours` on average (exponential)."""
    per_year: float = Field(default=0.0, ge=0)
    mean_hours: float = Field(default=1.0, gt=0)


class CloudScenario(_Strict):
    interruption: Interruption | None = Field(default=None, description="spot interruptions (none: no spot)")
    spot_usable: bool = Field(default=True, description="false: spot never starts (no capacity, no quota)")
    on_demand_price: list[float] = Field(default_factory=lambda: [1.0], min_length=1,
                                         description="monthly multipliers of the catalog's on-demand price")
    spot_price: list[float] = Field(default_factory=lambda: [1.0], min_length=1,
                                    description="monthly multipliers of the catalog's spot price")
    outages: Episodes = Field(default_factory=Episodes, description="the whole cloud down: runs don't start or die")
    spot_shortages: Episodes = Field(default_factory=Episodes, description="no spot capacity: spot runs don't start")
    on_demand_shortages: Episodes = Field(default_factory=Episodes,
                                          description="no on-demand capacity: on-demand runs don't start")


class Workload(_Strict):
    gpu_type: str = "A100"
    gpu_count: int = Field(default=1, ge=1)
    train_hours: float = Field(gt=0, description="training work of one retrain, in hours on the GPU asked for")
    startup_minutes: float = Field(default=10.0, ge=0, description="paid start-up per attempt (pull, load data)")
    checkpoint_minutes: float = Field(default=10.0, gt=0, description="periodic checkpoint interval")
    checkpoint_on_sigterm: bool = Field(default=True, description="a preemption loses no training (SIGTERM checkpoint)")
    dataset_bytes: int = Field(default=0, ge=0)
    dataset_location: str = Field(default="builtin://", description="a cloud name or URI (for egress)")
    nightly_hour_utc: float = Field(default=1.0, ge=0, lt=24)
    deadline_hours: float = Field(gt=0, description="a retrain is on time when it finishes this long after its trigger")
    drift_retrains_per_week: float = Field(default=0.0, ge=0)
    resubmit_after_minutes: float = Field(default=30.0, gt=0, description="a retrain that failed everywhere runs again")


class Scenario(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    sources: list[Source] = Field(min_length=1, description="where the figures come from")
    seed: int = 1
    start: date = date(2025, 1, 1)
    days: int = Field(default=365, ge=1, le=3660)
    catalog: str = Field(default="deployments/clouds.yaml", description="prices and offers")
    workload: Workload
    failover: FailoverSpec = Field(default_factory=FailoverSpec)
    breaker: BreakerSpec = Field(default_factory=BreakerSpec)
    clouds: dict[str, CloudScenario] = Field(min_length=1, description="the clouds simulated (catalog names)")


def parse_scenario(data: Any, source: str = "<dict>") -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(f"invalid scenario {source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        raise ScenarioError(format_errors(e, source, what="scenario")) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file. One with `base: other.yaml` (relative to it) is that scenario with
    this file's fields laid over it: mappings merge key by key, anything else replaces."""
    p = Path(path)
    return parse_scenario(_read(p, set()), str(p))


def _read(p: Path, seen: set[Path]) -> Any:
    if not p.exists():
        raise ScenarioError(f"scenario {p} does not exist")
    if p.resolve() in seen:
        raise ScenarioError(f"scenario {p}: its `base` chain comes back to itself")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ScenarioError(f"scenario {p} is not valid YAML: {e}") from None
    if isinstance(data, dict) and "base" in data:
        base = _read(p.parent / str(data.pop("base")), seen | {p.resolve()})
        data = _merge(base, data)
    return data


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in over.items()}}
    return over
