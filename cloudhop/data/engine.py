"""The engine is chosen once, here, when a table opens; and where its per-part work runs.

    table = open_table(spec)                    # FrameTable (pandas) or ParquetTable (dask)
    with executor_for(table, spec) as ex:       # a Dask cluster only for a partitioned table
        windows = split(table, spec, ex)

Engine choice (`choose_engine`): the spec's `dataset.engine`, or for `auto` dask when the
data would take more than CLOUDHOP_PANDAS_MAX_BYTES in memory (default: a quarter of this
machine's memory).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Literal, Sequence

from cloudhop.data.executor import DaskExecutor, Executor, LocalExecutor, dask_address, dask_client
from cloudhop.data.load import BUILTIN_PREFIX, load_dataset
from cloudhop.data.parquet import estimate_memory_bytes, open_parquet
from cloudhop.data.table import FrameTable, Table, sample_table
from cloudhop.spec import PipelineSpec

__all__ = ["open_table", "choose_engine", "executor_for", "PANDAS_MAX_BYTES_ENV"]

PANDAS_MAX_BYTES_ENV = "CLOUDHOP_PANDAS_MAX_BYTES"


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def choose_engine(spec: PipelineSpec, max_pandas_bytes: int | None = None) -> Literal["pandas", "dask"]:
    """The spec's engine, or for `auto`: dask when the data would take more than `max_pandas_bytes`
    in memory (default: CLOUDHOP_PANDAS_MAX_BYTES, else a quarter of this machine's memory:
    pandas and validation need a few times the data's size)."""
    d = spec.dataset
    if d.engine != "auto":
        return d.engine
    if d.uri.startswith(BUILTIN_PREFIX):
        return "pandas"
    limit = max_pandas_bytes or int(os.environ.get(PANDAS_MAX_BYTES_ENV) or _physical_memory() // 4)
    return "dask" if estimate_memory_bytes(d.uri, d.fs_options) > limit else "pandas"


def open_table(spec: PipelineSpec, engine: Literal["pandas", "dask"] | None = None) -> Table:
    """The spec's dataset as a Table: one frame in memory (pandas) or partitioned Parquet (dask),
    by `engine` or else `choose_engine(spec)`.

    With `dataset.limit` N, the table is a seeded sample of N rows of the whole dataset
    (`sample_table`, seeded by model.seed), held in memory whichever engine read it: a quick
    run keeps rows in every time window, where the first N rows would all be the earliest."""
    table: Table
    if (engine or choose_engine(spec)) == "dask":
        table = open_parquet(spec)
    else:
        table = FrameTable(load_dataset(spec), uri=spec.dataset.uri, time_column=spec.split.time_column)
    limit = spec.dataset.limit
    if limit is None or table.count() <= limit:
        return table
    return FrameTable(sample_table(table, limit, spec.model.seed), uri=spec.dataset.uri,
                      time_column=spec.split.time_column)


@contextmanager
def executor_for(table: Table, spec: PipelineSpec | None = None, *, start_cluster: bool = True,
                 n_workers: int | None = None, memory_limit: str | int | None = None,
                 env: dict[str, str] | None = None, preload: Sequence[str] = ()) -> Iterator[Executor]:
    """Where `table`'s per-part work runs while the block is open: in this process for a table in
    memory; for a partitioned one, on the spec's (or CLOUDHOP_DASK_ADDRESS's) scheduler, else on a
    LocalCluster started here (`n_workers`, `memory_limit`, `env`, `preload`: see dask_client),
    else, with `start_cluster` False, in this process."""
    if table.in_memory or not (start_cluster or dask_address(spec)):
        yield LocalExecutor()
        return
    with dask_client(spec, n_workers=n_workers, memory_limit=memory_limit, env=env, preload=preload) as client:
        yield DaskExecutor(client)
