"""validate-large: the validation gate for a dataset past one machine's memory.

Each partition (a run of Parquet row groups) is a task on a Dask cluster, through
prefect_dask's DaskTaskRunner: the spec's scheduler (dataset.dask_address or
CLOUDHOP_DASK_ADDRESS), else a temporary LocalCluster of `workers` processes. The
per-partition results are combined exactly: the same figures and verdict as one pandas run.
Workers get this run's PREFECT_API_URL (otherwise each starts its own temporary Prefect
server); workers of an existing cluster need it in their own environment.

Composition only: every step is one task around one cloudhop call.
"""
from __future__ import annotations

from prefect import flow, unmapped
from prefect_dask import DaskTaskRunner

from cloudhop.data import VALIDATION_PRELOAD, task_runner_options
from cloudhop.spec import PipelineSpec
from tasks.fanout import check_partition_task, combine_validation_task, suite_task
from tasks.pipeline import load_spec_task, open_table_task, worker_env


@flow(name="validate-large-partitions")
def check_partitions(spec: PipelineSpec) -> tuple[list, list]:
    """The fan-out: one check-partition task per partition, on the flow's Dask task runner."""
    table, _ = open_table_task(spec, engine="dask")
    expectations, needs = suite_task(spec)
    futures = check_partition_task.map(table.parts, unmapped(expectations), unmapped(needs))
    return [f.result() for f in futures], expectations


@flow(name="validate-large", log_prints=True)
def validate_large(spec: str = "specs/flights.yaml", overrides: dict | None = None, workers: int | None = None,
                   fail_on_invalid: bool = True) -> dict:
    """Validate a partitioned Parquet dataset on Dask.

    Args:
        spec: Path to the pipeline spec (YAML); its dataset is read as partitioned Parquet.
        overrides: Spec fields to override, as dotted keys, e.g. {"dataset.uri": "s3://bucket/data/"}.
        workers: Worker processes of the temporary local cluster (when no scheduler address is set).
        fail_on_invalid: Fail the run when the data fails validation (the result is saved either way).
    """
    s = load_spec_task(spec, overrides)
    runner = DaskTaskRunner(**task_runner_options(s, n_workers=workers, env=worker_env(),
                                                  preload=VALIDATION_PRELOAD))
    summaries, expectations = check_partitions.with_options(task_runner=runner)(s)
    result = combine_validation_task(s, summaries, expectations, fail_on_invalid)
    return {**result.summary(), "partitions": len(summaries)}


if __name__ == "__main__":
    import sys

    print(validate_large(spec=sys.argv[1] if len(sys.argv) > 1 else "specs/flights.yaml"))
