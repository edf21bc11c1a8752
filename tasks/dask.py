"""Thin Prefect tasks around cloudhop's partitioned (Dask) data steps: logging, artifacts, retries.

Two ways to use them:
- in a flow on the default task runner, `validate_dask_task`, `split_dask_task` and
  `drift_dask_task` fan the partitions out on the scheduler at `address` (retrain starts one
  cluster and hands its address to all three), else on the spec's or CLOUDHOP_DASK_ADDRESS's
  scheduler, else they read the partitions one after another in the task's own process;
- in a flow on prefect_dask's DaskTaskRunner, `check_partition_task.map(...)` makes each
  partition a Prefect task run on the cluster, and `combine_validation_task` combines them
  (flows/validate_large.py).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from cloudhop import pipeline
from cloudhop.data.dask import (VALIDATION_PRELOAD, PartitionedDataset, PartitionedWindows, choose_engine,
                                dask_address, dask_client, open_partitioned, split_partitioned)
from cloudhop.spec import PipelineSpec
from tasks.pipeline import report_validation

_task = dict(cache_policy=NO_CACHE, persist_result=False)


def prefect_api_url() -> str | None:
    """The API this run talks to, to hand to Dask workers (else each starts its own temporary server)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value() or os.environ.get("PREFECT_API_URL")
    if not url:
        with get_client(sync_client=True) as client:  # an ephemeral run: its temporary server
            url = str(client.api_url)
    return url.rstrip("/") or None


def worker_env() -> dict[str, str]:
    url = prefect_api_url()
    return {"PREFECT_API_URL": url} if url else {}


@contextmanager
def dask_cluster(spec: PipelineSpec, n_workers: int | None = None) -> Iterator[str]:
    """The address of the scheduler a flow's Dask tasks share: the spec's (or CLOUDHOP_DASK_ADDRESS's),
    else a LocalCluster started here, with this run's PREFECT_API_URL and the GX import in
    each worker, closed on exit. Not a task: a flow holds it open around its Dask tasks."""
    addr = dask_address(spec)
    if addr:
        yield addr
        return
    with dask_client(spec, n_workers=n_workers, env=worker_env(), preload=VALIDATION_PRELOAD) as client:
        address = client.scheduler_info()["address"]
        get_run_logger().info("started a local Dask cluster at %s (%s workers)", address,
                              len(client.scheduler_info()["workers"]))
        yield address


@contextmanager
def _client(spec: PipelineSpec, address: str | None, **kw: Any) -> Iterator[Any]:
    """A client of the scheduler at `address` or the spec's; None (work in this process) when neither is set."""
    if address or dask_address(spec):
        with dask_client(spec, address=address, **kw) as client:
            yield client
    else:
        yield None


def _where(client: Any) -> str:
    return client.scheduler_info()["address"] if client is not None else "this process"


@task(name="choose-engine", **_task)
def engine_task(spec: PipelineSpec) -> str:
    """pandas or dask for this dataset: the spec's dataset.engine, or by its size for `auto`."""
    engine = choose_engine(spec)
    get_run_logger().info("data engine: %s (dataset.engine is %s)", engine, spec.dataset.engine)
    return engine


@task(name="open-partitioned", **_task)
def open_partitioned_task(spec: PipelineSpec) -> tuple[PartitionedDataset, str]:
    ds = open_partitioned(spec)
    files = len({p.path for p in ds.partitions})
    get_run_logger().info("%s: %s rows in %s files, %s partitions (fingerprint %s)", spec.dataset.uri,
                          ds.rows, files, len(ds.partitions), ds.fingerprint)
    return ds, ds.fingerprint


@task(name="validate-dask", **_task)
def validate_dask_task(ds: PartitionedDataset, spec: PipelineSpec, address: str | None = None):
    """The validation gate for a partitioned dataset, on the Dask cluster at `address` (see the module docstring)."""
    from cloudhop.validation.partitioned import validate_partitioned

    with _client(spec, address) as client:
        get_run_logger().info("validating %s partitions on %s", len(ds.partitions), _where(client))
        result = validate_partitioned(ds.partitions, spec, spec.expectations, client=client)
    report_validation(spec, result)
    return result


@task(name="split-dask", **_task)
def split_dask_task(ds: PartitionedDataset, spec: PipelineSpec, address: str | None = None) -> PartitionedWindows:
    with _client(spec, address) as client:
        w = split_partitioned(ds, spec, client=client)
    get_run_logger().info("windows: %s", w.sizes())
    return w


@task(name="drift-dask", **_task)
def drift_dask_task(spec: PipelineSpec, windows: PartitionedWindows, address: str | None = None):
    """Training vs holdout window: the seeded samples drawn on the cluster, then Evidently here."""
    with _client(spec, address) as client:
        d = pipeline.drift_summary(spec, windows, client=client)
    get_run_logger().info("drift share %.3f (%s of %s columns; %s-row samples): %s", d.share,
                          len(d.drifted_columns), d.n_columns, spec.drift.sample_size, d.drifted_columns)
    return d


# -- fan-out on prefect_dask's DaskTaskRunner ------------------------------------------
@task(name="check-partition", retries=2, retry_delay_seconds=1, **_task)
def check_partition_task(partition: Any, expectations: list, needs: dict[str, list[str]]) -> dict[str, Any]:
    """One partition's contribution (cloudhop.validation.partitioned.check_partition)."""
    from cloudhop.validation.partitioned import check_partition

    return check_partition(partition, expectations, **needs)


@task(name="combine-validation", **_task)
def combine_validation_task(spec: PipelineSpec, summaries: list[dict[str, Any]], expectations: list,
                            raise_on_failure: bool = True):
    from cloudhop.validation.partitioned import combine

    result = combine(summaries, expectations)
    report_validation(spec, result, raise_on_failure)
    return result


@task(name="suite", **_task)
def suite_task(spec: PipelineSpec) -> tuple[list, dict[str, list[str]]]:
    """The spec's suite (plus its user suite), refused early if it cannot be combined across partitions."""
    from cloudhop.validation.partitioned import partition_needs, suite_for

    expectations = suite_for(spec)
    return expectations, partition_needs(expectations)
