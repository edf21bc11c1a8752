"""Thin Prefect-client calls for work pools and the clouds' failure history.

The decisions (templates, desired vs current, what counts as a failure) are cloudhop.clouds;
this module only reads and writes the Prefect API.
"""
from __future__ import annotations

import importlib
from datetime import datetime, timezone
from typing import Any

from prefect import task
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterEndTime, FlowRunFilterState,
                                            FlowRunFilterStateType, FlowRunFilterTags, WorkPoolFilter,
                                            WorkPoolFilterName)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort

from cloudhop import providers
from cloudhop.clouds import (Catalog, CurrentPool, DesiredPool, Failure, PoolChange, build_template, failure_from_run,
                             plan_pools, pool_description)
from cloudhop.clouds.failures import TRAIN_TAG

__all__ = ["worker_default_template", "desired_pools", "read_current_pools", "apply_changes", "plan",
           "read_cloud_failures", "fetch_cloud_failures"]


def worker_default_template(pool_type: str) -> dict[str, Any]:
    """The installed worker's default base job template for `pool_type` (the worker class is the
    pool type's, as its provider declares it)."""
    try:
        module, cls = providers.pool_type(pool_type).worker.split(":")
    except providers.ProviderError as e:
        raise ValueError(f"no worker known for pool type {pool_type!r}: {e}") from None
    return getattr(importlib.import_module(module), cls).get_default_base_job_template()


def desired_pools(catalog: Catalog, templates: dict[str, dict[str, Any]] | None = None,
                  local: bool = False) -> list[DesiredPool]:
    """Every enabled cloud's pools. `templates` (pool -> committed JSON) is used as is;
    with `local` each pool whose jobs cannot run on this machine is a process pool of the same name."""
    out = []
    for cloud, pool in catalog.pools():
        if local and not providers.pool_type(pool.type).runs_here:
            ptype = "process"
            template = build_template(catalog, pool.name, worker_default_template("process"), local=True)
        else:
            ptype = pool.type
            template = (templates or {}).get(pool.name)
            if template is None:
                template = build_template(catalog, pool.name, worker_default_template(pool.type))
        description = pool_description(cloud, pool, local=ptype != pool.type)
        out.append(DesiredPool(pool.name, ptype, cloud.name, template, description))
    return out


def read_current_pools(client: SyncPrefectClient, names: list[str]) -> dict[str, CurrentPool]:
    pools = client.read_work_pools(work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=names)))
    return {p.name: CurrentPool(p.name, p.type, p.base_job_template, p.description,
                                p.status.value if p.status else None) for p in pools}


def apply_changes(client: SyncPrefectClient, changes: list[PoolChange]) -> None:
    """Create or update pools; 'unchanged' and 'conflict' are left alone."""
    for ch in changes:
        p = ch.pool
        if ch.action == "create":
            client.create_work_pool(WorkPoolCreate(name=p.name, type=p.type, base_job_template=p.base_job_template,
                                                   description=p.description))
        elif ch.action == "update":
            client.update_work_pool(p.name, WorkPoolUpdate(base_job_template=p.base_job_template,
                                                           description=p.description))


def plan(client: SyncPrefectClient, desired: list[DesiredPool]) -> list[PoolChange]:
    return plan_pools(desired, read_current_pools(client, [d.name for d in desired]))


def fetch_cloud_failures(client: SyncPrefectClient, since: datetime, limit: int = 200) -> list[Failure]:
    """Infrastructure failures of training runs (tag 'cloudhop-train', 'cloud:<name>') since `since`.

    Counted: runs that ended CRASHED, and runs cancelled with the 'not started' message
    (see cloudhop.clouds.failures). The failure time is the final state's timestamp.
    """
    if since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    runs = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[TRAIN_TAG]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CRASHED, StateType.CANCELLED])),
            end_time=FlowRunFilterEndTime(after_=since)),
        sort=FlowRunSort.END_TIME_DESC, limit=limit)
    out = []
    for r in runs:
        if r.state is None or r.state.timestamp < since:
            continue
        f = failure_from_run(r.tags, r.state.type.value, r.state.message, r.state.timestamp, r.name)
        if f is not None:
            out.append(f)
    return sorted(out, key=lambda f: f.at)


@task(name="read-cloud-failures", retries=2, retry_delay_seconds=2, persist_result=False)
def read_cloud_failures(since: datetime) -> list[Failure]:
    """The clouds' infrastructure failures since `since`, from the Prefect API (for the breaker)."""
    with get_client(sync_client=True) as client:
        return fetch_cloud_failures(client, since)
