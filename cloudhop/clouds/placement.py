"""Placement: rank the catalog's clouds for one training run by estimated total cost.

Pure logic. For each cloud it picks the cheapest offer that fits the request and prices the
run as  compute (offer $/hour x estimated hours) + egress (moving the dataset to the cloud).
A cloud is skipped, with its reason kept, when it is disabled, not allowed, has no fitting
offer, costs more per hour than the request allows, or its circuit breaker is open.

Rules, in one place:
- GPU type: matched case-insensitively; `gpu_type=None` means any GPU. CPU offers (type 'cpu':
  the local machine, Azure Container Instances) are used only when `gpu_type='cpu'` or
  `gpu_count=0`.
- Count: an offer fits when it has at least `gpu_count` GPUs. A divisible offer (a shared
  Kubernetes node) costs `on_demand * gpu_count / count`; any other costs its full price.
- Spot: `spot=True` uses spot prices and skips offers without one.
- Egress: the dataset's bytes x the egress $/GB of the cloud that holds it, when that cloud is
  not the candidate. Clouds charge nothing for data coming in, and a local machine has no
  per-GB fee, so data on the local machine costs 0 to move anywhere (its upload time is not
  priced), and `builtin://` data ships with the code (0 everywhere). Data in no catalog cloud's
  store (an http(s) URL, an S3 bucket when AWS is not in the catalog) is not priced either:
  its fees belong to whoever hosts it. GB = 10^9 bytes.
- Hours: the request's `estimated_hours`, else `estimate_hours` with no history (the default
  rate). The estimate is the same on every cloud (GPU speed is not modelled).
- Circuit breaker: a cloud with >= `max_failures` infrastructure failures in the last
  `window_minutes` is open (skipped); it closes when those failures age out of the window.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import median
from typing import Any, Sequence

from cloudhop.clouds.catalog import CPU, Catalog, Cloud, Offer
from cloudhop.clouds.templates import gpu_count_variables

__all__ = ["TrainingRequest", "PastRun", "Failure", "BreakerPolicy", "Candidate", "Placement", "PlacementError",
           "estimate_hours", "rank_clouds", "breaker_open", "locate_data", "DEFAULT_HOURS_PER_GB", "MIN_HOURS", "GB"]

GB = 1e9
DEFAULT_HOURS_PER_GB = 0.5  # with no history: half an hour of training per GB of data
MIN_HOURS = 0.1  # never estimate below 6 minutes (image pull, start-up, export)


class PlacementError(ValueError):
    """A request that cannot be placed as given (not: no cloud is eligible)."""


@dataclass(frozen=True, kw_only=True)
class TrainingRequest:
    gpu_type: str | None = None
    gpu_count: int = 1
    max_price_per_hour: float | None = None
    spot: bool = False
    dataset_bytes: int
    dataset_location: str  # a URI/path, or a cloud name
    estimated_hours: float | None = None
    clouds: Sequence[str] | None = None  # allowed clouds; all when None

    def __post_init__(self):
        if self.gpu_count < 0:
            raise PlacementError(f"gpu_count must be >= 0, got {self.gpu_count}")
        if self.dataset_bytes < 0:
            raise PlacementError(f"dataset_bytes must be >= 0, got {self.dataset_bytes}")
        if self.max_price_per_hour is not None and self.max_price_per_hour <= 0:
            raise PlacementError(f"max_price_per_hour must be > 0, got {self.max_price_per_hour}")
        if self.estimated_hours is not None and self.estimated_hours <= 0:
            raise PlacementError(f"estimated_hours must be > 0, got {self.estimated_hours}")

    @property
    def wants_cpu(self) -> bool:
        return self.gpu_count == 0 or (self.gpu_type or "").lower() == CPU


@dataclass(frozen=True)
class PastRun:
    dataset_bytes: int
    hours: float


@dataclass(frozen=True)
class Failure:
    cloud: str
    at: datetime
    reason: str


@dataclass(frozen=True)
class BreakerPolicy:
    max_failures: int = 3
    window_minutes: float = 30.0

    def __post_init__(self):
        if self.max_failures < 1 or self.window_minutes <= 0:
            raise PlacementError("breaker: max_failures must be >= 1 and window_minutes > 0")

    @classmethod
    def from_spec(cls, b: Any) -> "BreakerPolicy":
        """From a spec section with `failures` and `window_minutes` (cloudhop.spec.BreakerSpec)."""
        return cls(max_failures=b.failures, window_minutes=b.window_minutes)


@dataclass(frozen=True)
class Candidate:
    cloud: str
    pool: str | None
    pool_type: str | None
    gpu: str | None
    gpu_count: int | None
    instance: str | None
    price_per_hour: float | None
    hours: float
    compute_cost: float | None
    egress_cost: float | None
    total_cost: float | None
    eligible: bool
    reason: str
    job_variables: dict[str, Any] = field(default_factory=dict)  # for run_deployment(job_variables=...)


@dataclass(frozen=True)
class Placement:
    request: TrainingRequest
    candidates: list[Candidate]  # eligible ones first, cheapest first; then the skipped ones
    data_cloud: str | None = None  # where the dataset lives (None: in no catalog cloud)

    @property
    def chosen(self) -> list[Candidate]:
        return [c for c in self.candidates if c.eligible]

    @property
    def order(self) -> list[str]:
        """Cloud names to try, in order (for failover)."""
        return [c.cloud for c in self.chosen]

    @property
    def best(self) -> Candidate | None:
        return self.chosen[0] if self.chosen else None

    def candidate(self, cloud: str) -> Candidate:
        return next(c for c in self.candidates if c.cloud == cloud)

    def table(self) -> list[dict[str, Any]]:
        """Rows for a table artifact: one per cloud, in ranking order."""
        def money(x: float | None) -> float | None:
            return None if x is None else round(x, 2)

        rows = []
        for rank, c in enumerate(self.candidates, 1):
            rows.append({
                "rank": rank if c.eligible else None, "cloud": c.cloud, "pool": c.pool,
                "gpu": f"{c.gpu_count}x {c.gpu}" if c.gpu_count else c.gpu, "instance": c.instance,
                "$/hour": money(c.price_per_hour), "hours": round(c.hours, 2),
                "compute $": money(c.compute_cost), "egress $": money(c.egress_cost), "total $": money(c.total_cost),
                "eligible": c.eligible, "reason": c.reason,
            })
        return rows


def estimate_hours(dataset_bytes: int, history: Sequence[PastRun] = (), *,
                   default_hours_per_gb: float = DEFAULT_HOURS_PER_GB, min_hours: float = MIN_HOURS) -> float:
    """Training hours for `dataset_bytes`: the median hours-per-GB of past runs scaled to this
    size (runs with no bytes or hours are ignored), else `default_hours_per_gb`; at least `min_hours`."""
    rates = [r.hours / (r.dataset_bytes / GB) for r in history if r.dataset_bytes > 0 and r.hours > 0]
    rate = median(rates) if rates else default_hours_per_gb
    return max(min_hours, rate * dataset_bytes / GB)


def breaker_open(cloud: str, failures: Sequence[Failure], now: datetime, policy: BreakerPolicy) -> list[Failure]:
    """The failures that hold `cloud`'s circuit open now (empty when it is closed)."""
    since = now - timedelta(minutes=policy.window_minutes)
    recent = sorted((f for f in failures if f.cloud == cloud and since < f.at <= now), key=lambda f: f.at)
    return recent if len(recent) >= policy.max_failures else []


def locate_data(catalog: Catalog, location: str) -> str | None:
    """The cloud holding `location` (a cloud name, URI or path); None when no catalog cloud does
    (builtin:// data, http(s) URLs, a scheme no cloud's store uses).

    A URI under a cloud's object-store URI belongs to that cloud (longest match); otherwise
    its scheme decides (s3:// with no custom endpoint is AWS, a plain path is the local machine).
    """
    if location in catalog.clouds:
        return location
    if location.startswith("builtin://"):
        return None
    scheme = _scheme(location)
    prefix_matches = [c for c in catalog.clouds.values()
                      if _scheme(c.object_store.uri) == scheme and scheme != "file"
                      and _under(location, c.object_store.uri)]
    if prefix_matches:
        return max(prefix_matches, key=lambda c: len(c.object_store.uri)).name
    same = [c for c in catalog.clouds.values() if _scheme(c.object_store.uri) == scheme]
    if len(same) > 1:  # e.g. AWS and CoreWeave both speak s3://: the one with the provider's own endpoint
        plain = [c for c in same if not c.object_store.endpoint_url]
        same = plain if len(plain) == 1 else same
    if len(same) == 1:
        return same[0].name
    if len(same) > 1:
        raise PlacementError(f"cannot tell which cloud holds the dataset at {location!r} "
                             f"({', '.join(c.name for c in same)} all use {scheme}://): "
                             f"give dataset_location as a cloud name")
    return None


def rank_clouds(catalog: Catalog, request: TrainingRequest, failures: Sequence[Failure], now: datetime,
                breaker: BreakerPolicy = BreakerPolicy()) -> Placement:
    """Price every cloud in the catalog for `request`; eligible ones sorted by total cost."""
    if request.clouds is not None:
        unknown = sorted(set(request.clouds) - set(catalog.clouds))
        if unknown:
            raise PlacementError(f"unknown clouds {unknown}; the catalog has {sorted(catalog.clouds)}")
    data_cloud = locate_data(catalog, request.dataset_location)
    hours = request.estimated_hours or estimate_hours(request.dataset_bytes)
    candidates = [_price(catalog, cloud, request, data_cloud, hours, failures, now, breaker)
                  for cloud in catalog.clouds.values()]
    eligible = sorted((c for c in candidates if c.eligible),
                      key=lambda c: (c.total_cost, c.price_per_hour, c.cloud))
    skipped = sorted((c for c in candidates if not c.eligible), key=lambda c: c.cloud)
    return Placement(request, eligible + skipped, data_cloud)


def _price(catalog: Catalog, cloud: Cloud, request: TrainingRequest, data_cloud: str | None, hours: float,
           failures: Sequence[Failure], now: datetime, breaker: BreakerPolicy) -> Candidate:
    offer, price, no_offer = _best_offer(cloud, request)
    egress = 0.0
    if data_cloud is not None and data_cloud != cloud.name:
        egress = request.dataset_bytes / GB * catalog.clouds[data_cloud].object_store.egress_per_gb
    open_failures = breaker_open(cloud.name, failures, now, breaker)
    reason = ""
    if not cloud.enabled:
        reason = "disabled in the catalog"
    elif request.clouds is not None and cloud.name not in request.clouds:
        reason = "not among the request's allowed clouds"
    elif offer is None:
        reason = no_offer
    elif request.max_price_per_hour is not None and price > request.max_price_per_hour:
        reason = (f"cheapest fitting offer {offer.gpu} costs ${price:.2f}/hour, "
                  f"above the ${request.max_price_per_hour:.2f}/hour limit")
    elif open_failures:
        reason = (f"circuit open: {len(open_failures)} infrastructure failures in the last "
                  f"{breaker.window_minutes:g} min (latest: {open_failures[-1].reason})")
    if offer is None:
        return Candidate(cloud.name, None, None, None, None, None, None, hours, None, egress, None, False, reason)
    pool = cloud.pool_of(offer)
    count = request.gpu_count if not offer.is_cpu else 0
    variables = {**offer.job_variables, **(offer.spot_job_variables if request.spot else {}),
                 **(gpu_count_variables(pool.type, count) if count else {})}
    compute = price * hours
    return Candidate(cloud.name, pool.name, pool.type, offer.gpu, count if count else None, offer.instance,
                     price, hours, compute, egress, compute + egress, not reason, reason or "eligible", variables)


def _best_offer(cloud: Cloud, request: TrainingRequest) -> tuple[Offer | None, float, str]:
    """The cheapest fitting offer and its $/hour, or None and why nothing fits."""
    want = (request.gpu_type or "").lower()
    if request.wants_cpu:
        typed = [o for o in cloud.offers if o.is_cpu]
        what = "CPU"
    else:
        typed = [o for o in cloud.offers if not o.is_cpu and (not want or o.gpu.lower() == want)]
        what = request.gpu_type or "GPU"
    if not typed:
        return None, 0.0, f"no {what} offer"
    sized = typed if request.wants_cpu else [o for o in typed if o.count >= request.gpu_count]
    if not sized:
        most = max(o.count for o in typed)
        return None, 0.0, f"no {what} offer with {request.gpu_count} GPUs (at most {most})"
    if request.spot:
        sized = [o for o in sized if o.spot is not None]
        if not sized:
            return None, 0.0, f"no spot price for {what}"
    priced = [(_hourly(o, request), o) for o in sized]
    price, offer = min(priced, key=lambda po: (po[0], po[1].count))
    return offer, price, ""


def _hourly(offer: Offer, request: TrainingRequest) -> float:
    base = offer.spot if request.spot and offer.spot is not None else offer.on_demand
    if offer.divisible and not offer.is_cpu:
        return base * request.gpu_count / offer.count
    return base


def _scheme(uri: str) -> str:
    if "://" not in uri:
        return "file"
    s = uri.split("://", 1)[0].lower()
    return {"gcs": "gs", "abfs": "az", "abfss": "az"}.get(s, s)


def _under(location: str, root: str) -> bool:
    loc, root = location.split("://", 1)[1].rstrip("/"), root.split("://", 1)[1].rstrip("/")
    return loc == root or loc.startswith(root + "/")
