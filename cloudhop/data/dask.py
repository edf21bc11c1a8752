"""Datasets past one machine's memory: partitioned Parquet read piece by piece, on a Dask
cluster or in this process, and the choice between pandas and Dask.

    ds = open_partitioned(spec)                 # reads only Parquet footers
    with dask_client(spec) as client:           # LocalCluster, or spec/env scheduler address
        result = validate_partitioned(ds.partitions, spec, client=client)   # cloudhop.validation.partitioned
    ds.to_dask()                                # a dask.dataframe, one partition per Partition

A `Partition` is a run of row groups in one file. Read on its own it gives the same rows,
columns and dtypes as that slice of `load_dataset(spec)` (pandas reading the whole
dataset): files are read in sorted path order (as pyarrow does), the first file's pandas
metadata applies to all, integer and boolean columns that hold nulls anywhere in the
dataset widen to float64 and object in every partition, and the time column is parsed as
in `coerce_types`. Names starting with `_` or `.` are skipped (`_SUCCESS`, `_metadata`).

Cluster choice (`dask_client`, `task_runner_options`): the scheduler address in
`dataset.dask_address`, else the CLOUDHOP_DASK_ADDRESS environment variable, else a
`distributed.LocalCluster` of worker processes on 127.0.0.1.
"""
from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any, Callable, ClassVar, Iterator, Literal, Sequence, TypeVar

import numpy as np
import pandas as pd

from cloudhop.data import BUILTIN_PREFIX, DataError, Windows, coerce_types
from cloudhop.spec import PipelineSpec

__all__ = ["Partition", "PartitionedDataset", "PartitionedWindows", "open_partitioned", "open_dataset",
           "split_partitioned", "choose_engine", "estimate_memory_bytes", "dask_address", "dask_client",
           "task_runner_options", "map_partitions", "sample_rows", "ADDRESS_ENV", "PANDAS_MAX_BYTES_ENV",
           "VALIDATION_PRELOAD"]

ADDRESS_ENV = "CLOUDHOP_DASK_ADDRESS"
PANDAS_MAX_BYTES_ENV = "CLOUDHOP_PANDAS_MAX_BYTES"
# What a worker that validates should import before it takes work (the GX import takes seconds).
VALIDATION_PRELOAD = ("cloudhop.validation._gx",)
# Uncompressed bytes of row groups grouped into one partition (Dask's usual block size).
PARTITION_BYTES = 128 * 2**20

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Partition:
    """Row groups `row_groups` of one Parquet file; rows `first_row`.. of the whole dataset."""
    path: str
    row_groups: tuple[int, ...]
    first_row: int
    rows: int
    storage_options: tuple[tuple[str, Any], ...] = ()
    pandas_metadata: bytes | None = field(default=None, repr=False)
    widen: tuple[str, ...] = ()                       # int -> float64, bool -> object (nulls elsewhere)
    time_column: str | None = None
    window: tuple[pd.Timestamp | None, pd.Timestamp | None] | None = None   # [start, end) on time_column
    counted: int | None = None  # rows in the window, once counted (split_partitioned counts them)

    @property
    def label(self) -> str:
        """Where the rows come from, for people: file and row range."""
        last = self.first_row + self.rows - 1
        return f"{self.path} rows {self.first_row}-{last}"

    def describe(self) -> dict[str, Any]:
        return {"file": self.path, "row_groups": [self.row_groups[0], self.row_groups[-1]] if self.row_groups else [],
                "first_row": self.first_row, "rows": self.rows}

    def read(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The partition as pandas (only `columns` when given), windowed if a window is set."""
        import fsspec
        import pyarrow.parquet as pq

        want = None if columns is None else list(dict.fromkeys(columns))
        if want is not None and self.window is not None and self.time_column not in want:
            want.append(self.time_column)
        fs, path = fsspec.core.url_to_fs(self.path, **dict(self.storage_options))
        try:
            with fs.open(path, "rb") as f:
                table = pq.ParquetFile(f).read_row_groups(list(self.row_groups), columns=want,
                                                          use_pandas_metadata=True)
        except Exception as e:
            raise DataError(f"cannot read {self.label}: {type(e).__name__}: {e}") from None
        meta = dict(table.schema.metadata or {})
        meta.pop(b"pandas", None)
        if self.pandas_metadata:
            meta[b"pandas"] = self.pandas_metadata
        df = table.replace_schema_metadata(meta or None).to_pandas().reset_index(drop=True)
        for c in self.widen:
            if c in df.columns:
                k = df[c].dtype
                if pd.api.types.is_integer_dtype(k) and not pd.api.types.is_extension_array_dtype(k):
                    df[c] = df[c].astype("float64")
                elif k == np.dtype(bool):
                    df[c] = df[c].astype(object)
        if self.time_column:
            df = coerce_types(df, _time_only_spec(self.time_column))
        if self.window is not None:
            t = df[self.time_column]
            start, end = self.window
            keep = np.ones(len(df), dtype=bool)
            if start is not None:
                keep &= (t >= start).to_numpy()
            if end is not None:
                keep &= (t < end).to_numpy()
            df = df[keep].reset_index(drop=True)
        return df if columns is None else df[list(dict.fromkeys(columns))]

    def count(self) -> int:
        """Rows in the partition (in its window, when set: reads only the time column, unless counted)."""
        if self.window is None:
            return self.rows
        if self.counted is not None:
            return self.counted
        return len(self.read([self.time_column]))


def _time_only_spec(time_column: str) -> Any:
    """What coerce_types reads from a spec (the time column), so partitions parse it the same way."""
    return SimpleNamespace(split=SimpleNamespace(time_column=time_column))


@dataclass
class PartitionedDataset:
    uri: str
    partitions: list[Partition]
    columns: list[str]
    fingerprint: str = ""  # from the files' Parquet footers (sizes, row counts, column statistics)
    in_memory: ClassVar[bool] = False  # the table shape training takes (cloudhop.training.batches.Table)

    @property
    def parts(self) -> list[Partition]:
        """The partitions, under the table shape's name for them."""
        return self.partitions

    def count(self) -> int:
        """Rows in the dataset (in its window, when set)."""
        return sum(p.count() for p in self.partitions)

    @property
    def rows(self) -> int:
        """Rows before any window."""
        return sum(p.rows for p in self.partitions)

    def window(self, start: Any = None, end: Any = None) -> "PartitionedDataset":
        """Rows with start <= time < end (either bound may be None); needs a time column."""
        tc = self.partitions[0].time_column if self.partitions else None
        if not tc:
            raise DataError(f"dataset {self.uri}: a window needs the spec's time column")
        w = (None if start is None else pd.Timestamp(start), None if end is None else pd.Timestamp(end))
        return replace(self, partitions=[replace(p, window=w, counted=None) for p in self.partitions])

    def to_dask(self, columns: Sequence[str] | None = None):
        """A dask.dataframe with one partition per Partition (nothing is read until computed)."""
        import dask
        import dask.dataframe as dd

        with dask.config.set({"dataframe.convert-string": False}):  # keep pandas' dtypes
            return dd.from_map(_read, self.partitions, columns=None if columns is None else list(columns),
                               enforce_metadata=False)

    def frames(self, columns: Sequence[str] | None = None, *, order: Sequence[int] | None = None
               ) -> Iterator[pd.DataFrame]:
        """The partitions as pandas frames, one at a time in this process (`order`: their indices)."""
        for i in (range(len(self.partitions)) if order is None else order):
            yield self.partitions[i].read(columns)

    def head(self, n: int, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The first `n` rows, reading only the partitions they are in."""
        frames, got = [], 0
        for df in self.frames(columns):
            frames.append(df.head(n - got))
            got += len(frames[-1])
            if got >= n:
                break
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(columns or self.columns))

    def sample(self, n: int, seed: int = 0, columns: Sequence[str] | None = None, client: Any = None) -> pd.DataFrame:
        """`n` rows drawn without replacement (all when fewer), in row order: the rows
        drift_report's seeded sampling picks from the same table (see sample_rows)."""
        parts = self.partitions
        counts = map_partitions(Partition.count, parts, client)
        return sample_rows(parts, counts, n, np.random.default_rng(seed), columns, client)

    def to_pandas(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Everything in one frame (only for data that fits)."""
        frames = list(self.frames(columns))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=self.columns)


def _read(part: Partition, columns: list[str] | None = None) -> pd.DataFrame:
    return part.read(columns)


def sample_rows(parts: Sequence[Any], counts: Sequence[int], n: int, rng: np.random.Generator,
                columns: Sequence[str] | None = None, client: Any = None) -> pd.DataFrame:
    """`n` rows of the concatenated partitions (each with `read(columns)`; `counts`: their rows),
    drawn as `np.sort(rng.choice(total, n, replace=False))` would draw them from the whole table,
    all rows when there are no more than `n`. Each partition returns only its sampled rows."""
    total = int(sum(counts))
    pos = np.sort(rng.choice(total, size=n, replace=False)) if total > n else None
    jobs, start = [], 0
    for part, k in zip(parts, counts):
        take = None
        if pos is not None:
            lo, hi = np.searchsorted(pos, [start, start + k])
            take = pos[lo:hi] - start
        if k and (take is None or len(take)):
            jobs.append((part, take))
        start += k
    if not jobs:
        return parts[0].read(columns).head(0) if parts else pd.DataFrame(columns=list(columns or []))
    frames = map_partitions(_take, jobs, client, columns=None if columns is None else list(columns))
    return pd.concat(frames, ignore_index=True)


def _take(job: tuple[Any, np.ndarray | None], columns: list[str] | None) -> pd.DataFrame:
    part, take = job
    df = part.read(columns)
    return df if take is None else df.iloc[take].reset_index(drop=True)


# -- opening -----------------------------------------------------------------------
def _files(uri: str, storage_options: dict[str, Any]) -> tuple[Any, list[str]]:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(uri, **storage_options)
        if any(ch in path for ch in "*?["):
            paths = sorted(fs.glob(path))
            base = path.split("*")[0].rsplit("/", 1)[0]
        elif fs.isdir(path):
            paths, base = sorted(fs.find(path)), path.rstrip("/")
        elif fs.exists(path):
            return fs, [path]
        else:
            raise DataError(f"dataset {uri} does not exist")
    except DataError:
        raise
    except Exception as e:  # unreachable store, bad credentials
        raise DataError(f"cannot open dataset {uri}: {e}") from None
    keep = [p for p in paths if not any(part.startswith(("_", ".")) for part in p[len(base):].split("/") if part)]
    if not keep:
        raise DataError(f"dataset {uri} holds no data files")
    return fs, keep


def open_dataset(uri: str, storage_options: dict[str, Any] | None = None, *, time_column: str | None = None,
                 limit: int | None = None, partition_bytes: int = PARTITION_BYTES) -> PartitionedDataset:
    """List a Parquet dataset's partitions from its files' footers (no data is read)."""
    if uri.startswith(BUILTIN_PREFIX):
        raise DataError(f"dataset {uri} is built in and held in memory: use the pandas engine")
    low = uri.lower().rstrip("/")
    if low.endswith((".csv", ".csv.gz", ".tsv")):
        raise DataError(f"dataset {uri}: the dask engine reads Parquet; write the data as Parquet "
                        f"(or use the pandas engine for CSV)")
    so = dict(storage_options or {})
    fs, paths = _files(uri, so)
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    parts: list[Partition] = []
    pandas_meta: bytes | None = None
    columns: list[str] = []
    nulls: dict[str, int] = {}
    kinds: dict[str, str] = {}
    first = 0
    digest = hashlib.sha256()
    for i, p in enumerate(paths):
        md = _footer(fs, p, uri)
        schema = md.schema.to_arrow_schema()
        digest.update(_footer_key(p[len(paths[0]) - len(paths[0].rsplit("/", 1)[-1]):], md))
        if i == 0:
            pandas_meta = (schema.metadata or {}).get(b"pandas")
            columns = [n for n in schema.names if not n.startswith("__index_level_")]
        for name in schema.names:
            t = schema.field(name).type
            kinds.setdefault(name, "int" if str(t).startswith(("int", "uint")) else "bool" if str(t) == "bool" else "")
        for rg in range(md.num_row_groups):
            g = md.row_group(rg)
            for j in range(g.num_columns):
                col = g.column(j)
                name = col.path_in_schema
                stats = col.statistics
                n = stats.null_count if stats is not None and stats.has_null_count else 0
                nulls[name] = nulls.get(name, 0) + (n or 0)
        url = p if "://" in p or protocol in ("file", "local") else f"{protocol}://{p}"
        for group in _group_row_groups(md, partition_bytes):
            rows = sum(md.row_group(g).num_rows for g in group)
            parts.append(Partition(url, tuple(group), first, rows, tuple(sorted(so.items())), pandas_meta,
                                   time_column=time_column))
            first += rows
    widen = tuple(sorted(c for c, k in kinds.items() if k and nulls.get(c, 0) > 0))
    parts = [replace(p, widen=widen) for p in parts]
    if limit is not None:
        parts = _head(parts, limit)
    return PartitionedDataset(uri, parts, columns, digest.hexdigest()[:16])


def _footer(fs: Any, path: str, uri: str) -> Any:
    """A Parquet file's metadata; DataError naming the file when it is empty or not Parquet."""
    import pyarrow.parquet as pq

    where = uri if uri.rstrip("/").endswith(path.rstrip("/")) else f"{uri}: {path}"  # the dataset is this file
    try:
        if fs.size(path) == 0:
            raise DataError(f"dataset {where} is an empty file")
        with fs.open(path, "rb") as f:
            return pq.ParquetFile(f).metadata
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"dataset {where} cannot be read as parquet: {type(e).__name__}: {e}") from None


def _footer_key(name: str, md: Any) -> bytes:
    """What identifies a file's content without reading it: name, schema, row groups' sizes and statistics."""
    items: list[Any] = [name, str(md.schema), md.num_rows]
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        items.append((rg.num_rows, rg.total_byte_size))
        for j in range(rg.num_columns):
            c = rg.column(j)
            st = c.statistics
            items.append((c.total_compressed_size, str(st.min) if st is not None and st.has_min_max else None,
                          str(st.max) if st is not None and st.has_min_max else None,
                          st.null_count if st is not None and st.has_null_count else None))
    return repr(items).encode()


def _group_row_groups(md: Any, target: int) -> list[list[int]]:
    groups: list[list[int]] = []
    size = 0
    for g in range(md.num_row_groups):
        b = md.row_group(g).total_byte_size
        if groups and groups[-1] and size + b <= target:
            groups[-1].append(g)
            size += b
        else:
            groups.append([g])
            size = b
    return groups


def _head(parts: list[Partition], limit: int) -> list[Partition]:
    """Whole partitions up to `limit` rows (a partition is never split: a limit is for quick runs)."""
    out, n = [], 0
    for p in parts:
        if n >= limit:
            break
        out.append(p)
        n += p.rows
    return out


def open_partitioned(spec: PipelineSpec, partition_bytes: int = PARTITION_BYTES) -> PartitionedDataset:
    d = spec.dataset
    if d.format == "csv":
        raise DataError(f"dataset {d.uri}: the dask engine reads Parquet (format is csv)")
    return open_dataset(d.uri, d.storage_options, time_column=spec.split.time_column, limit=d.limit,
                        partition_bytes=partition_bytes)


# -- windows -------------------------------------------------------------------------
@dataclass
class PartitionedWindows:
    train: PartitionedDataset
    validation: PartitionedDataset
    holdout: PartitionedDataset

    @property
    def counts(self) -> dict[str, int]:
        return {k: sum(p.count() for p in ds.partitions)
                for k, ds in (("train", self.train), ("validation", self.validation), ("holdout", self.holdout))}

    def sizes(self) -> dict[str, int]:
        return self.counts

    def to_windows(self, max_rows: int | None = None, seed: int = 0, client: Any = None) -> Windows:
        """pandas Windows for the steps that need frames (evaluation, smoke set): each window whole,
        or a seeded sample of `max_rows` rows (in row order) when it has more."""
        def frame(ds: PartitionedDataset, n: int) -> pd.DataFrame:
            return ds.to_pandas() if max_rows is None or n <= max_rows else ds.sample(max_rows, seed, client=client)

        n = self.counts
        return Windows(frame(self.train, n["train"]), frame(self.validation, n["validation"]),
                       frame(self.holdout, n["holdout"]))


def split_partitioned(ds: PartitionedDataset, spec: PipelineSpec, client: Any = None) -> PartitionedWindows:
    """The spec's time windows as windowed datasets, each partition's rows in its window counted
    once here (reading only the time column) for every later step."""
    s = spec.split
    v, h = pd.Timestamp(s.validation_start), pd.Timestamp(s.holdout_start)
    start = pd.Timestamp(s.train_start) if s.train_start else None
    end = pd.Timestamp(s.holdout_end) if s.holdout_end else None
    w = [ds.window(start, v), ds.window(v, h), ds.window(h, end)]
    counts = iter(map_partitions(Partition.count, [p for x in w for p in x.partitions], client))
    out = PartitionedWindows(*(replace(x, partitions=[replace(p, counted=next(counts)) for p in x.partitions])
                               for x in w))
    empty = [k for k, n in out.counts.items() if n == 0]
    if empty:
        raise DataError(f"time windows {', '.join(empty)} are empty in {ds.uri}: "
                        f"split is validation_start={v}, holdout_start={h}")
    return out


# -- engine choice -----------------------------------------------------------------
def estimate_memory_bytes(uri: str, storage_options: dict[str, Any] | None = None) -> int:
    """Roughly what the data takes in memory: Parquet's uncompressed row-group sizes (file size for CSV)."""
    so = dict(storage_options or {})
    low = uri.lower().rstrip("/")
    fs, paths = _files(uri, so)
    if low.endswith((".csv", ".csv.gz", ".tsv")):
        return sum(fs.size(p) for p in paths) * (4 if low.endswith(".gz") else 1)
    total = 0
    for p in paths:
        md = _footer(fs, p, uri)
        total += sum(md.row_group(g).total_byte_size for g in range(md.num_row_groups))
    return total


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
    return "dask" if estimate_memory_bytes(d.uri, d.storage_options) > limit else "pandas"


# -- clusters ----------------------------------------------------------------------
def dask_address(spec: PipelineSpec | None = None) -> str | None:
    """The scheduler to use: the spec's dataset.dask_address, else CLOUDHOP_DASK_ADDRESS, else None (local)."""
    if spec is not None and spec.dataset.dask_address:
        return spec.dataset.dask_address
    return os.environ.get(ADDRESS_ENV) or None


def _local_cluster_kwargs(n_workers: int | None, memory_limit: str | int | None,
                          env: dict[str, str] | None, preload: Sequence[str] = ()) -> dict[str, Any]:
    kw: dict[str, Any] = {"n_workers": n_workers or min(os.cpu_count() or 1, 4), "threads_per_worker": 1,
                          "processes": True, "host": "127.0.0.1", "dashboard_address": None}
    if memory_limit is not None:
        kw["memory_limit"] = memory_limit
    if env:
        kw["env"] = dict(env)
    if preload:
        kw["preload"] = list(preload)
    return kw


@contextmanager
def dask_client(spec: PipelineSpec | None = None, *, address: str | None = None, n_workers: int | None = None,
                memory_limit: str | int | None = None, env: dict[str, str] | None = None,
                preload: Sequence[str] = ()) -> Iterator[Any]:
    """A distributed.Client: to `address`, the spec's or CLOUDHOP_DASK_ADDRESS's scheduler, or to a
    LocalCluster of `n_workers` single-threaded worker processes (`memory_limit` each; `env`
    set in each worker, e.g. PREFECT_API_URL; modules in `preload` imported by each worker,
    restarted ones included, before it takes work, e.g. VALIDATION_PRELOAD). A local cluster
    is closed on exit."""
    from distributed import Client, LocalCluster

    addr = address or dask_address(spec)
    if addr:
        try:
            client = Client(addr, timeout="20s")
        except (OSError, TimeoutError) as e:
            raise DataError(f"cannot reach the Dask scheduler at {addr}: {e}") from None
        with client:
            yield client
        return
    import dask

    # A killed worker's nanny starts a new one; one that imports GX first can take longer to come
    # back than the 15 s after which the cluster gives up on it (and closes its nanny).
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "120s"}), \
            LocalCluster(**_local_cluster_kwargs(n_workers, memory_limit, env, preload)) as cluster, \
            Client(cluster) as client:
        yield client


def task_runner_options(spec: PipelineSpec | None = None, *, n_workers: int | None = None,
                        memory_limit: str | int | None = None, env: dict[str, str] | None = None,
                        preload: Sequence[str] = ()) -> dict[str, Any]:
    """Keyword arguments for prefect_dask.DaskTaskRunner: the scheduler address when one is set,
    else a temporary LocalCluster. Pass env={"PREFECT_API_URL": ...}: without it each worker
    process starts its own temporary Prefect server (workers of an existing cluster need
    PREFECT_API_URL in their own environment)."""
    addr = dask_address(spec)
    if addr:
        return {"address": addr}
    return {"cluster_class": "distributed.LocalCluster",
            "cluster_kwargs": _local_cluster_kwargs(n_workers, memory_limit, env, preload)}


def map_partitions(fn: Callable[..., R], items: Sequence[T], client: Any = None, **kwargs: Any) -> list[R]:
    """fn(item, **kwargs) for each item, in order: on the client's cluster (a task per item;
    tasks of a lost worker are rerun elsewhere), or one after another in this process."""
    if client is None:
        return [fn(it, **kwargs) for it in items]
    from dask import delayed

    tasks = [delayed(fn, pure=False)(it, **kwargs) for it in items]  # fresh keys: files may have changed
    return client.gather(client.compute(tasks))
