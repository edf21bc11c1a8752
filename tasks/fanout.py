"""Validation fanned out as Prefect task runs on prefect_dask's DaskTaskRunner: one
`check_partition_task` per part (`.map(...)`), combined by `combine_validation_task`
(flows/validate_large.py). Flows on the default task runner use tasks/pipeline.py's
`validate_task` with an executor instead.
"""
from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from cloudhop.spec import PipelineSpec
from tasks.pipeline import report_validation

_task = dict(cache_policy=NO_CACHE, persist_result=False)


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
