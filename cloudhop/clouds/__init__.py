"""Clouds: the catalog, work-pool templates, placement by cost, speed and health, failover policy, attempt cost."""
from cloudhop.clouds.catalog import (CPU, DEFAULT_IMAGE, Catalog, CatalogError, Cloud, ObjectStore, Offer, WorkPool,
                                     load_catalog, parse_catalog)
from cloudhop.clouds.placement import (BreakerPolicy, Candidate, Failure, PastRun, Placement, PlacementError,
                                       TrainingRequest, breaker_open, estimate_hours, expected_hours, locate_data,
                                       rank_clouds)
from cloudhop.clouds.speed import SpeedModel, Throughput, offer_key, relative_speed
from cloudhop.clouds.cost import AttemptCost, RetrainCost, attempt_cost, retrain_cost
from cloudhop.clouds.failures import NOT_STARTED, TRAIN_TAG, cloud_tag, failure_from_run
from cloudhop.clouds.pools import CurrentPool, DesiredPool, PoolChange, plan_pools, same_template
from cloudhop.clouds.templates import build_template, pool_description

__all__ = [
    "CPU", "DEFAULT_IMAGE", "Catalog", "CatalogError", "Cloud", "ObjectStore", "Offer", "WorkPool", "load_catalog",
    "parse_catalog",
    "BreakerPolicy", "Candidate", "Failure", "PastRun", "Placement", "PlacementError", "TrainingRequest",
    "breaker_open", "estimate_hours", "expected_hours", "locate_data", "rank_clouds",
    "SpeedModel", "Throughput", "offer_key", "relative_speed",
    "AttemptCost", "RetrainCost", "attempt_cost", "retrain_cost",
    "NOT_STARTED", "TRAIN_TAG", "cloud_tag", "failure_from_run",
    "CurrentPool", "DesiredPool", "PoolChange", "plan_pools", "same_template",
    "build_template", "pool_description",
]
