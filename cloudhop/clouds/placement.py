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
  `trainer_gpus` (what the trainer can use) caps `gpu_count`, and then an offer that is not
  divisible and has more GPUs than that is skipped: its extra GPUs would be paid and sit idle.
- Spot: `spot=True` uses spot prices and skips offers without one.
- Egress: the dataset's bytes x the egress $/GB of the cloud that holds it, when that cloud is
  not the candidate. Clouds charge nothing for data coming in, and a local machine has no
  per-GB fee, so data on the local machine costs 0 to move anywhere (its upload time is not
  priced), and `builtin://` data ships with the code (0 everywhere). Data in no catalog cloud's
  store (an http(s) URL, an S3 bucket when AWS is not in the catalog) is not priced either:
  its fees belong to whoever hosts it. GB = 10^9 bytes.
- Hours: the request's `estimated_hours` (the same on every offer), else per offer:
  `work_samples` / the offer's throughput (cloudhop.clouds.speed: measured on that offer, else
  scaled from other offers' measurements by a GPU speed table), else the bytes-based default
  (`estimate_hours`, taken as an A100's) divided by the GPU's relative speed. Within a cloud the
  offer with the lowest expected compute cost wins, not the lowest $/hour.
- Circuit breaker: a cloud with >= `max_failures` infrastructure failures in the last
  `window_minutes` is open (skipped); it closes when those failures age out of the window.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import median
from typing import Any, Sequence

from cloudhop.clouds.catalog import CPU, Catalog, Cloud, Offer
from cloudhop.clouds.speed import REFERENCE_GPU, Speed, SpeedModel, offer_key, relative_speed
from cloudhop.clouds.templates import gpu_count_variables

__all__ = ["TrainingRequest", "PastRun", "Failure", "BreakerPolicy", "Candidate", "Placement", "PlacementError",
           "estimate_hours", "expected_hours", "rank_clouds", "breaker_open", "locate_data", "DEFAULT_HOURS_PER_GB",
           "MIN_HOURS", "GB"]

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
    work_samples: float | None = None  # training samples to process (rows x epochs), for throughput-based hours
    trainer_gpus: int | None = None  # the most GPUs the trainer uses; caps gpu_count (None: no cap)

    def __post_init__(self):
        if self.gpu_count < 0:
            raise PlacementError(f"gpu_count must be >= 0, got {self.gpu_count}")
        if self.dataset_bytes < 0:
            raise PlacementError(f"dataset_bytes must be >= 0, got {self.dataset_bytes}")
        if self.max_price_per_hour is not None and self.max_price_per_hour <= 0:
            raise PlacementError(f"max_price_per_hour must be > 0, got {self.max_price_per_hour}")
        if self.estimated_hours is not None and self.estimated_hours <= 0:
            raise PlacementError(f"estimated_hours must be > 0, got {self.estimated_hours}")
        if self.work_samples is not None and self.work_samples < 0:
            raise PlacementError(f"work_samples must be >= 0, got {self.work_samples}")
        if self.trainer_gpus is not None and self.trainer_gpus < 1:
            raise PlacementError(f"trainer_gpus must be >= 1, got {self.trainer_gpus}")

    @property
    def gpus(self) -> int:
        """GPUs to ask for: `gpu_count`, capped at what the trainer uses."""
        return self.gpu_count if self.trainer_gpus is None else min(self.gpu_count, self.trainer_gpus)

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
    samples_per_s: float | None = None  # the throughput the hours were computed from, if any
    hours_from: str = ""  # where the hours come from (measured, speed table, given, default rate)
    offer: str | None = None  # the chosen offer's key within its cloud (speed.offer_key)


@dataclass(frozen=True)
class Placement:
    request: TrainingRequest
    candidates: list[Candidate]  # eligible ones first, cheapest first; then the skipped ones
    data_cloud: str | None = None  # where the dataset lives (None: in no catalog cloud)
    notes: tuple[str, ...] = ()  # what placement changed in the request (a capped GPU count)

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
        best = self.best
        for rank, c in enumerate(self.candidates, 1):
            rows.append({
                "rank": rank if c.eligible else None, "cloud": c.cloud, "pool": c.pool,
                "gpu": f"{c.gpu_count}x {c.gpu}" if c.gpu_count else c.gpu, "instance": c.instance,
                "$/hour": money(c.price_per_hour), "hours": round(c.hours, 2),
                "samples/s": None if c.samples_per_s is None else round(c.samples_per_s, 1),
                "compute $": money(c.compute_cost), "egress $": money(c.egress_cost), "total $": money(c.total_cost),
                "eligible": c.eligible, "reason": _why(c, rank, best) if c.eligible else c.reason,
                "hours from": c.hours_from,
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
                breaker: BreakerPolicy = BreakerPolicy(), speeds: SpeedModel | None = None) -> Placement:
    """Price every cloud in the catalog for `request`; eligible ones sorted by total cost.

    `speeds` holds past runs' measured throughput (none: hours from the bytes-based default)."""
    if request.clouds is not None:
        unknown = sorted(set(request.clouds) - set(catalog.clouds))
        if unknown:
            raise PlacementError(f"unknown clouds {unknown}; the catalog has {sorted(catalog.clouds)}")
    data_cloud = locate_data(catalog, request.dataset_location)
    speeds = speeds or SpeedModel()
    candidates = [_price(catalog, cloud, request, data_cloud, speeds, failures, now, breaker)
                  for cloud in catalog.clouds.values()]
    eligible = sorted((c for c in candidates if c.eligible),
                      key=lambda c: (c.total_cost, c.price_per_hour, c.cloud))
    skipped = sorted((c for c in candidates if not c.eligible), key=lambda c: c.cloud)
    notes: tuple[str, ...] = ()
    if request.gpus < request.gpu_count:
        notes = (f"gpu_count {request.gpu_count} capped at {request.gpus}: the trainer uses at most "
                 f"{request.trainer_gpus} GPU(s), more would sit idle",)
    return Placement(request, eligible + skipped, data_cloud, notes)


def expected_hours(request: TrainingRequest, cloud: str, offer: Offer,
                   speeds: SpeedModel) -> tuple[float, Speed | None, str]:
    """Expected training hours of `request` on one offer, the throughput used (if any) and where
    the figure comes from."""
    if request.estimated_hours:
        return request.estimated_hours, None, "given by the request"
    speed = speeds.samples_per_s(cloud, offer)
    if speed is not None and request.work_samples:
        hours = max(MIN_HOURS, request.work_samples / speed.samples_per_s / 3600)
        return hours, speed, f"{request.work_samples:.0f} samples / {speed.samples_per_s:.0f} per s ({speed.source})"
    base = estimate_hours(request.dataset_bytes)
    rel = None if offer.is_cpu else relative_speed(offer.gpu)
    if rel is None:
        return base, None, f"default {DEFAULT_HOURS_PER_GB:g} h/GB (no measured run; no speed figure for {offer.gpu})"
    return (max(MIN_HOURS, base / rel), None,
            f"default {DEFAULT_HOURS_PER_GB:g} h/GB on an {REFERENCE_GPU}, {offer.gpu} at {rel:.2f}x (speed table)")


def _why(c: Candidate, rank: int, best: Candidate | None) -> str:
    """Why an eligible cloud sits where it does in the order."""
    if best is None or c is best:
        return f"picked: lowest expected total (${c.total_cost:.2f} over {c.hours:.2f} h)"
    more = (c.total_cost or 0.0) - (best.total_cost or 0.0)
    return f"fallback #{rank - 1}: ${more:.2f} more than {best.cloud}"


def _price(catalog: Catalog, cloud: Cloud, request: TrainingRequest, data_cloud: str | None, speeds: SpeedModel,
           failures: Sequence[Failure], now: datetime, breaker: BreakerPolicy) -> Candidate:
    offer, price, no_offer = _best_offer(cloud, request, speeds)
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
        hours = request.estimated_hours or estimate_hours(request.dataset_bytes)
        return Candidate(cloud.name, None, None, None, None, None, None, hours, None, egress, None, False, reason)
    hours, speed, hours_from = expected_hours(request, cloud.name, offer, speeds)
    pool = cloud.pool_of(offer)
    count = request.gpus if not offer.is_cpu else 0
    variables = {**offer.job_variables, **(offer.spot_job_variables if request.spot else {}),
                 **(gpu_count_variables(pool.type, count) if count else {})}
    compute = price * hours
    return Candidate(cloud.name, pool.name, pool.type, offer.gpu, count if count else None, offer.instance,
                     price, hours, compute, egress, compute + egress, not reason, reason or "eligible", variables,
                     speed.samples_per_s if speed else None, hours_from, offer_key(offer))


def _best_offer(cloud: Cloud, request: TrainingRequest, speeds: SpeedModel) -> tuple[Offer | None, float, str]:
    """The fitting offer with the lowest expected compute cost (within the $/hour limit when one
    is), and its $/hour; or None and why nothing fits."""
    want = (request.gpu_type or "").lower()
    if request.wants_cpu:
        typed = [o for o in cloud.offers if o.is_cpu]
        what = "CPU"
    else:
        typed = [o for o in cloud.offers if not o.is_cpu and (not want or o.gpu.lower() == want)]
        what = request.gpu_type or "GPU"
    if not typed:
        return None, 0.0, f"no {what} offer"
    gpus = request.gpus
    sized = typed if request.wants_cpu else [o for o in typed if o.count >= gpus]
    if not sized:
        most = max(o.count for o in typed)
        return None, 0.0, f"no {what} offer with {gpus} GPUs (at most {most})"
    if request.trainer_gpus is not None and not request.wants_cpu:
        lean = [o for o in sized if o.divisible or o.count <= gpus]
        if not lean:
            fewest = min(o.count for o in sized)
            return None, 0.0, (f"every {what} offer is a whole machine of {fewest}+ GPUs; the trainer uses {gpus}, "
                               f"the rest would be paid for and sit idle")
        sized = lean
    if request.spot:
        sized = [o for o in sized if o.spot is not None]
        if not sized:
            return None, 0.0, f"no spot price for {what}"
    priced = [(_hourly(o, request), o) for o in sized]
    if request.max_price_per_hour is not None:
        affordable = [po for po in priced if po[0] <= request.max_price_per_hour]
        priced = affordable or [min(priced, key=lambda po: po[0])]  # none: the cheapest, to say it is too dear

    def compute_cost(po: tuple[float, Offer]) -> tuple[float, float, int]:
        return po[0] * expected_hours(request, cloud.name, po[1], speeds)[0], po[0], po[1].count

    price, offer = min(priced, key=compute_cost)
    return offer, price, ""


def _hourly(offer: Offer, request: TrainingRequest) -> float:
    base = offer.spot if request.spot and offer.spot is not None else offer.on_demand
    if offer.divisible and not offer.is_cpu:
        return base * request.gpus / offer.count
    return base


def _scheme(uri: str) -> str:
    if "://" not in uri:
        return "file"
    s = uri.split("://", 1)[0].lower()
    return {"gcs": "gs", "abfs": "az", "abfss": "az"}.get(s, s)


def _under(location: str, root: str) -> bool:
    loc, root = location.split("://", 1)[1].rstrip("/"), root.split("://", 1)[1].rstrip("/")
    return loc == root or loc.startswith(root + "/")
