"""Partitioned Parquet as a Table: runs of row groups read a part at a time, in this process
or on a Dask cluster (cloudhop.data.executor).

    table = open_parquet(spec)                  # reads only Parquet footers
    table.parts                                 # Partitions: runs of row groups of one file
    table.to_dask()                             # a dask.dataframe, one partition per Partition

A `Partition` is a run of row groups in one file. Read on its own it gives the same rows,
columns and dtypes as that slice of `load_dataset(spec)` (pandas reading the whole
dataset): files are read in sorted path order (as pyarrow does), the first file's pandas
metadata applies to all, integer and boolean columns that hold nulls anywhere in the
dataset widen to float64 and object in every partition, and the time column is parsed as
in `coerce_types`. Names starting with `_` or `.` are skipped (`_SUCCESS`, `_metadata`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from cloudhop.data.executor import Executor
from cloudhop.data.load import BUILTIN_PREFIX, DataError, coerce_types
from cloudhop.data.table import sample_table, time_mask
from cloudhop.spec import PipelineSpec

__all__ = ["Partition", "ParquetTable", "open_parquet", "open_dataset", "estimate_memory_bytes", "PARTITION_BYTES"]

# Uncompressed bytes of row groups grouped into one partition (Dask's usual block size).
PARTITION_BYTES = 128 * 2**20


@dataclass(frozen=True)
class Partition:
    """Row groups `row_groups` of one Parquet file; rows `first_row`.. of the whole dataset."""
    path: str
    row_groups: tuple[int, ...]
    first_row: int
    rows: int
    storage_options: tuple[tuple[str, Any], ...] = field(default=(), repr=False)  # may hold credentials
    pandas_metadata: bytes | None = field(default=None, repr=False)
    widen: tuple[str, ...] = ()                       # int -> float64, bool -> object (nulls elsewhere)
    time_column: str | None = None
    window: tuple[pd.Timestamp | None, pd.Timestamp | None] | None = None   # [start, end) on time_column
    labelled: str | None = None  # only rows where this column holds a value (Table.labelled)
    counted: int | None = None  # rows in the window, once counted (cloudhop.data.table.split counts them)

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
        if want is not None and self.window is not None and self.time_column and self.time_column not in want:
            want.append(self.time_column)
        if want is not None and self.labelled and self.labelled not in want:
            want.append(self.labelled)
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
            df = df[time_mask(df[self.time_column], *self.window)].reset_index(drop=True)
        if self.labelled:
            df = df[df[self.labelled].notna().to_numpy()].reset_index(drop=True)
        return df if columns is None else df[list(dict.fromkeys(columns))]

    def count(self) -> int:
        """Rows in the partition (in its window and labelled, when set: reads only the time column and
        the labelled one, unless counted)."""
        windowed = self.window is not None and bool(self.time_column)
        if not windowed and not self.labelled:
            return self.rows
        if self.counted is not None:
            return self.counted
        return len(self.read([c for c in (self.time_column if windowed else None, self.labelled) if c]))


def _time_only_spec(time_column: str) -> Any:
    """What coerce_types reads from a spec (the time column), so partitions parse it the same way."""
    return SimpleNamespace(split=SimpleNamespace(time_column=time_column))


@dataclass
class ParquetTable:
    """A Table of Partitions (see cloudhop.data.table.Table)."""
    uri: str
    parts: list[Partition]
    columns: list[str]
    fingerprint: str = ""  # from the files' Parquet footers (sizes, row counts, column statistics)
    in_memory = False

    @property
    def rows(self) -> int:
        """Rows before any window."""
        return sum(p.rows for p in self.parts)

    def count(self) -> int:
        return sum(p.count() for p in self.parts)

    def window(self, start: Any = None, end: Any = None) -> "ParquetTable":
        """Rows with start <= time < end (either bound may be None); needs a time column."""
        tc = self.parts[0].time_column if self.parts else None
        if not tc:
            raise DataError(f"dataset {self.uri}: a window needs the spec's time column")
        w = (None if start is None else pd.Timestamp(start), None if end is None else pd.Timestamp(end))
        return replace(self, parts=[replace(p, window=w, counted=None) for p in self.parts])

    def labelled(self, column: str) -> "ParquetTable":
        """Rows where `column` holds a value (each partition filters as it reads)."""
        return replace(self, parts=[replace(p, labelled=column, counted=None) for p in self.parts])

    def with_counts(self, counts: Sequence[int]) -> "ParquetTable":
        if len(counts) != len(self.parts):
            raise ValueError(f"{len(counts)} counts for {len(self.parts)} parts of {self.uri}")
        return replace(self, parts=[replace(p, counted=int(n)) for p, n in zip(self.parts, counts)])

    def to_dask(self, columns: Sequence[str] | None = None):
        """A dask.dataframe with one partition per Partition (nothing is read until computed)."""
        import dask
        import dask.dataframe as dd

        with dask.config.set({"dataframe.convert-string": False}):  # keep pandas' dtypes
            return dd.from_map(_read, self.parts, columns=None if columns is None else list(columns),
                               enforce_metadata=False)

    def frames(self, columns: Sequence[str] | None = None, *, order: Sequence[int] | None = None
               ) -> Iterator[pd.DataFrame]:
        """The partitions as pandas frames, one at a time in this process (`order`: their indices)."""
        for i in (range(len(self.parts)) if order is None else order):
            yield self.parts[i].read(columns)

    def head(self, n: int, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The first `n` rows, reading only the partitions they are in."""
        frames, got = [], 0
        for df in self.frames(columns):
            frames.append(df.head(n - got))
            got += len(frames[-1])
            if got >= n:
                break
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(columns or self.columns))

    def sample(self, n: int, seed: int, columns: Sequence[str] | None = None,
               executor: Executor | None = None) -> pd.DataFrame:
        return sample_table(self, n, seed, columns, executor)

    def to_pandas(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Everything in one frame (only for data that fits)."""
        frames = list(self.frames(columns))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=self.columns)


def _read(part: Partition, columns: list[str] | None = None) -> pd.DataFrame:
    return part.read(columns)


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
                 partition_bytes: int = PARTITION_BYTES) -> ParquetTable:
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
    return ParquetTable(uri, parts, columns, digest.hexdigest()[:16])


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
    items: list[Any] = [name, md.schema.to_arrow_schema().to_string(show_schema_metadata=False), md.num_rows]
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


def open_parquet(spec: PipelineSpec, partition_bytes: int = PARTITION_BYTES) -> ParquetTable:
    """The spec's dataset as partitioned Parquet (the dask engine's table)."""
    d = spec.dataset
    if d.format == "csv":
        raise DataError(f"dataset {d.uri}: the dask engine reads Parquet (format is csv)")
    return open_dataset(d.uri, d.fs_options, time_column=spec.split.time_column, partition_bytes=partition_bytes)


# -- size -------------------------------------------------------------------------
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
