"""A large synthetic dataset as partitioned Parquet, and its pipeline spec.

    python benchmarks/gen_large.py OUT_DIR [--rows 20000000] [--files 20]

20 columns: a time column over 2024 (rows in time order), 12 floats (four nullable, with
about 1% nulls and a few values outside their range, which `mostly: 0.99` allows), 4 ints,
2 string categories (20 and 300 values) and a binary target. Some rows are bad on purpose,
so validation has figures to compare: in file 7, 500 rows of f5 are -1 (f5 must be >= 0) and
100 rows of c0 are "??" (not a known category). f0's mean shifts in the last two months
(drift to find). Files `part-000.parquet`..., row groups of 250,000 rows; the same seed gives
the same bytes.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP = 250_000
C0 = [f"k{i:02d}" for i in range(20)]
C1 = [f"v{i:03d}" for i in range(300)]
START = np.datetime64("2024-01-01T00:00:00", "s")
SPAN_S = 366 * 24 * 3600
BAD_FILE = 7


def spec_dict(uri: str, engine: str = "auto") -> dict[str, Any]:
    cols: dict[str, Any] = {"ts": {"type": "datetime", "nullable": False, "role": "time"}}
    for i in range(4):
        cols[f"f{i}"] = {"type": "float", "min": -10, "max": 10, "mostly": 0.99}
    for i in range(4, 12):
        cols[f"f{i}"] = {"type": "float", "nullable": False, "min": 0, "max": 1000}
    cols.update({"i0": {"type": "int", "nullable": False, "min": 0, "max": 23},
                 "i1": {"type": "int", "nullable": False, "min": 1, "max": 12},
                 "i2": {"type": "int", "nullable": False, "min": 0, "max": 9999},
                 "i3": {"type": "int", "nullable": False, "min": 0, "max": 6},
                 "c0": {"type": "category", "nullable": False, "categories": C0},
                 "c1": {"type": "category", "nullable": False},
                 "y": {"type": "int", "nullable": False, "categories": [0, 1], "role": "target"}})
    return {"name": "large", "dataset": {"uri": uri, "engine": engine}, "columns": cols,
            "target": {"column": "y", "task": "binary"},
            "split": {"time_column": "ts", "validation_start": "2024-09-01", "holdout_start": "2024-11-01"},
            "drift": {"sample_size": 50_000}}


def _strings(rng: np.random.Generator, values: list[str], n: int) -> pa.Array:
    idx = pa.array(rng.integers(0, len(values), n, dtype=np.int32))
    return pa.DictionaryArray.from_arrays(idx, pa.array(values)).cast(pa.string())


def make_file(i: int, first: int, n: int, total: int, seed: int) -> pa.Table:
    rng = np.random.default_rng([seed, i])
    pos = np.arange(first, first + n, dtype=np.int64)
    ts = START + (pos * SPAN_S // total).astype("timedelta64[s]")
    late = ts >= np.datetime64("2024-11-01", "s")
    cols: dict[str, Any] = {"ts": pa.array(ts.astype("datetime64[us]"))}
    for j in range(4):
        v = rng.normal(1.5 * late if j == 0 else 0.0, 2.0, n)
        v[rng.random(n) < 0.01] = np.nan
        cols[f"f{j}"] = pa.array(v, from_pandas=True)  # NaN -> null
    for j in range(4, 12):
        v = rng.uniform(0, 1000, n)
        if i == BAD_FILE and j == 5:
            v[1000:1500] = -1.0
        cols[f"f{j}"] = pa.array(v)
    hours = ((ts - ts.astype("datetime64[D]")).astype(np.int64) // 3600)
    cols["i0"] = pa.array(hours.astype(np.int64))
    cols["i1"] = pa.array(ts.astype("datetime64[M]").astype(np.int64) % 12 + 1)
    cols["i2"] = pa.array(rng.integers(0, 10_000, n))
    cols["i3"] = pa.array(rng.integers(0, 7, n))
    c0 = _strings(rng, C0, n)
    if i == BAD_FILE:
        c0 = pa.concat_arrays([c0[:2000], pa.array(["??"] * 100), c0[2100:]])
    cols["c0"] = c0
    cols["c1"] = _strings(rng, C1, n)
    logit = 0.002 * cols["f4"].to_numpy() - 1.0 + 0.3 * (cols["i3"].to_numpy() > 3)
    cols["y"] = pa.array((rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64))
    return pa.table(cols)


def generate(out: str | Path, rows: int = 20_000_000, files: int = 20, seed: int = 0) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    per = -(-rows // files)
    first = 0
    for i in range(files):
        n = min(per, rows - first)
        if n <= 0:
            break
        path = out / f"part-{i:03d}.parquet"
        tmp = out / f".part-{i:03d}.parquet.tmp"  # skipped by readers until renamed
        pq.write_table(make_file(i, first, n, rows, seed), tmp, row_group_size=ROW_GROUP)
        tmp.rename(path)
        first += n
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--rows", type=int, default=20_000_000)
    p.add_argument("--files", type=int, default=20)
    a = p.parse_args(argv)
    t = time.perf_counter()
    generate(a.out, a.rows, a.files)
    size = sum(f.stat().st_size for f in Path(a.out).glob("*.parquet"))
    print(f"wrote {a.rows:,} rows x 20 columns in {a.files} files ({size / 2**20:.0f} MiB) to {a.out} "
          f"in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
