"""Drift between partitioned tables too big for one process: each side is summarised on the
cluster as the very sample `drift_report` would draw, then Evidently runs on the samples.

    result = drift_partitioned(windows.train.partitions, windows.holdout.partitions,
                               numeric=spec.numeric, categorical=spec.categorical,
                               threshold=spec.drift.threshold, sample_size=spec.drift.sample_size,
                               seed=spec.model.seed, client=client)

The summary is a reproducible sample of `sample_size` rows per side (the spec's
drift.sample_size, 50,000 by default): each partition's row count is taken on the cluster
(reading only the time column when the partition is a time window), the row positions are
drawn exactly as `drift_report` draws them (numpy `default_rng(seed)`, reference first, then
current, without replacement, kept in row order; a side with at most `sample_size` rows is
taken whole), and each partition returns only its sampled rows. `drift_report` then runs on
the two samples, so scores, verdict and page equal those of `drift_report` on the whole
tables. Memory: the samples in this process; one partition at a time on each worker.

A partition is any object with `count() -> int` and `read(columns) -> pandas.DataFrame`,
e.g. cloudhop.data.dask.Partition.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np
import pandas as pd

from cloudhop.drift import DriftError, DriftResult, drift_report

__all__ = ["drift_partitioned"]


class PartitionLike(Protocol):
    def count(self) -> int: ...

    def read(self, columns: Sequence[str] | None = None) -> pd.DataFrame: ...


def drift_partitioned(reference: Sequence[PartitionLike], current: Sequence[PartitionLike], *,
                      numeric: list[str], categorical: list[str], threshold: float = 0.3,
                      sample_size: int = 50_000, seed: int = 0, html: bool = True,
                      client: Any = None) -> DriftResult:
    """`drift_report` for partitioned tables (see the module docstring)."""
    from cloudhop.data.dask import map_partitions, sample_rows

    if sample_size < 1:
        raise DriftError(f"sample_size must be at least 1, got {sample_size}")
    columns = list(dict.fromkeys(list(numeric) + list(categorical)))
    reference, current = list(reference), list(current)
    counts = map_partitions(_count, reference + current, client)
    rng = np.random.default_rng(seed)
    samples = []
    for side, parts, n in (("reference", reference, counts[:len(reference)]),
                           ("current", current, counts[len(reference):])):
        if sum(n) == 0:
            raise DriftError(f"{side} data has no rows")
        samples.append(sample_rows(parts, n, sample_size, rng, columns, client))
    return drift_report(samples[0], samples[1], numeric=numeric, categorical=categorical, threshold=threshold,
                        sample_size=sample_size, seed=seed, html=html)


def _count(part: PartitionLike) -> int:
    return part.count()
