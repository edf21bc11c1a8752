"""The cloud catalog: which clouds exist, their work pools, GPU offers, prices and object stores.

Loaded from YAML (deployments/clouds.yaml) and validated with pydantic; any problem becomes
one CatalogError that names the file, the field path and what is wrong.

Prices are US dollars. An offer's `on_demand` / `spot` price is per hour for the whole offer
(`count` GPUs, one machine or node), as cloud price lists show it. A `divisible` offer is a
shared node whose GPUs are requested one by one (Kubernetes): asking for fewer GPUs than the
node has costs that share of the node price.
"""
from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cloudhop import providers
from cloudhop.spec import format_errors

__all__ = ["Catalog", "Cloud", "WorkPool", "Offer", "ObjectStore", "CatalogError", "load_catalog",
           "parse_catalog", "DEFAULT_IMAGE", "CPU"]

DEFAULT_IMAGE = "ghcr.io/cloudhop/train:latest"
CPU = "cpu"  # the GPU type of an offer without accelerators

_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"


class CatalogError(ValueError):
    """A catalog that cannot be used: the message names the field and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkPool(_Strict):
    name: str = Field(pattern=_NAME, description="Prefect work pool name")
    type: str = Field(description="worker type: one a provider declares (kubernetes, ecs, vertex-ai, ...)")
    defaults: dict[str, Any] = Field(
        default_factory=dict, description="job-variable defaults written into the pool's base job template")

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        known = providers.pool_type_names()
        if value not in known:
            raise ValueError(f"unknown work-pool type {value!r}; the providers declare: {', '.join(known)}")
        return value


class Offer(_Strict):
    gpu: str = Field(min_length=1, description="GPU type (H100, A100, L4, A10G, T4, V100, ...) or 'cpu'")
    count: int = Field(ge=1, description="GPUs in the offer (vCPUs for a cpu offer)")
    on_demand: float = Field(ge=0, description="$/hour for the whole offer")
    spot: float | None = Field(default=None, ge=0, description="$/hour as spot/preemptible; none when not offered")
    instance: str | None = Field(default=None, description="the cloud's machine or node type")
    divisible: bool = Field(default=False, description="GPUs can be requested (and paid) one by one")
    pool: str | None = Field(default=None, description="work pool that runs it (the cloud's first pool when unset)")
    job_variables: dict[str, Any] = Field(default_factory=dict, description="job variables selecting this offer")
    spot_job_variables: dict[str, Any] = Field(default_factory=dict, description="extra job variables for spot")

    @property
    def is_cpu(self) -> bool:
        return self.gpu.lower() == CPU


class ObjectStore(_Strict):
    uri: str = Field(min_length=1, description="s3://, gs://, az:// URI or a local folder")
    endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint (CoreWeave)")
    egress_per_gb: float = Field(ge=0, description="$ per GB (10^9 bytes) read out of this cloud")
    credentials_secret: str | None = Field(
        default=None, description="Kubernetes Secret holding the store's credentials (names only)")


class Cloud(_Strict):
    name: str = Field(pattern=_NAME)
    enabled: bool = True
    region: str = Field(min_length=1)
    prices_as_of: date
    work_pools: list[WorkPool] = Field(min_length=1)
    offers: list[Offer] = Field(min_length=1)
    object_store: ObjectStore

    @model_validator(mode="after")
    def _check(self):
        names = [p.name for p in self.work_pools]
        if len(set(names)) != len(names):
            raise ValueError(f"work_pools: names must be unique, got {names}")
        for i, o in enumerate(self.offers):
            if o.pool is not None and o.pool not in names:
                raise ValueError(f"offers.{i}.pool: {o.pool!r} is not one of this cloud's work_pools {names}")
        return self

    def pool_of(self, offer: Offer) -> WorkPool:
        name = offer.pool or self.work_pools[0].name
        return next(p for p in self.work_pools if p.name == name)


class Catalog(_Strict):
    image: str = Field(default=DEFAULT_IMAGE, description="training image for every cloud pool")
    clouds: dict[str, Cloud] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("clouds"), dict):
            clouds = {}
            for key, value in data["clouds"].items():
                if isinstance(value, dict):
                    if "name" in value and value["name"] != key:
                        raise ValueError(f"clouds.{key}.name: {value['name']!r} differs from its key {key!r}")
                    value = {**value, "name": key}
                clouds[key] = value
            data = {**data, "clouds": clouds}
        return data

    @model_validator(mode="after")
    def _unique_pools(self) -> "Catalog":
        seen: dict[str, str] = {}
        for cloud in self.clouds.values():
            for pool in cloud.work_pools:
                if pool.name in seen:
                    raise ValueError(f"clouds.{cloud.name}.work_pools: pool {pool.name!r} "
                                     f"is already used by cloud {seen[pool.name]!r}")
                seen[pool.name] = cloud.name
        return self

    @property
    def enabled(self) -> list[Cloud]:
        return [c for c in self.clouds.values() if c.enabled]

    def cloud(self, name: str) -> Cloud:
        try:
            return self.clouds[name]
        except KeyError:
            raise CatalogError(f"unknown cloud {name!r}; the catalog has {sorted(self.clouds)}") from None

    def pools(self, enabled_only: bool = True) -> list[tuple[Cloud, WorkPool]]:
        """Every (cloud, pool) pair, in catalog order."""
        clouds = self.enabled if enabled_only else list(self.clouds.values())
        return [(c, p) for c in clouds for p in c.work_pools]


def parse_catalog(data: Any, source: str = "<dict>") -> Catalog:
    if not isinstance(data, dict):
        raise CatalogError(f"invalid cloud catalog {source}: expected a mapping at the top level, "
                           f"got {type(data).__name__}")
    try:
        return Catalog.model_validate(data)
    except ValidationError as e:
        raise CatalogError(format_errors(e, source, what="cloud catalog")) from None


def load_catalog(path: str | Path) -> Catalog:
    """Read and validate a catalog YAML file."""
    p = Path(path)
    if not p.exists():
        raise CatalogError(f"cloud catalog {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise CatalogError(f"cloud catalog {p} is not valid YAML: {e}") from None
    return parse_catalog(data, str(p))
