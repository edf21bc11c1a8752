"""Datasets as Tables: a frame in memory or partitioned Parquet, behind one protocol.

    table = open_table(spec)                    # the engine is chosen here, once
    with executor_for(table, spec) as ex:       # in this process, or a Dask cluster when partitioned
        windows = split(table, spec, ex)        # Windows of Tables
        sample = windows.train.sample(1000, seed=0, executor=ex)

Modules: `load` (one frame from any fsspec URI or the bundled demo data), `table` (the
protocol, FrameTable, the one sampler, windows), `parquet` (ParquetTable and its
Partitions), `executor` (in-process or Dask per-part work, cluster helpers), `engine`
(choosing the engine, opening a table, the executor for it).
"""
from __future__ import annotations

from cloudhop.data.engine import PANDAS_MAX_BYTES_ENV, choose_engine, executor_for, open_table
from cloudhop.data.executor import (ADDRESS_ENV, VALIDATION_PRELOAD, DaskExecutor, Executor, LocalExecutor,
                                    dask_address, dask_client, task_runner_options)
from cloudhop.data.load import (BUILTIN_PREFIX, DataError, coerce_types, fingerprint, flights_table, load_dataset,
                                read_table)
from cloudhop.data.parquet import ParquetTable, Partition, estimate_memory_bytes, open_dataset, open_parquet
from cloudhop.data.table import FrameTable, Part, Table, Windows, sample_table, split

__all__ = ["Table", "Part", "FrameTable", "ParquetTable", "Partition", "Windows", "split", "sample_table",
           "open_table", "open_parquet", "open_dataset", "choose_engine", "estimate_memory_bytes",
           "executor_for", "Executor", "LocalExecutor", "DaskExecutor", "dask_address", "dask_client",
           "task_runner_options", "ADDRESS_ENV", "PANDAS_MAX_BYTES_ENV", "VALIDATION_PRELOAD",
           "DataError", "BUILTIN_PREFIX", "load_dataset", "read_table", "fingerprint", "flights_table",
           "coerce_types"]
