"""Validation and drift on a 20M-row dataset: pandas in one process against Dask with 1 and 2 workers.

    python benchmarks/bench_dask.py [--rows 20000000] [--dir DIR] [--memory-limit 2GiB] [--keep]

Data: benchmarks/gen_large.py (20 columns, partitioned Parquet, bad rows in one file),
generated into a temporary folder unless --dir holds it already. Its in-memory size is
printed beside the per-worker memory limit (the data is larger than one worker may hold).

Each engine does the same work with the same spec:
- validation: the spec's suite on the whole dataset (pandas: `load_dataset` + `validate`;
  Dask: `validate_table` on a ParquetTable, partitions of ~128 MiB of row groups);
- drift: training window vs holdout window, 50,000-row seeded sample per side, Evidently
  (pandas: `split` of a FrameTable + `drift_report`; Dask: `split` of the ParquetTable +
  `drift_tables` on a DaskExecutor).
pandas runs in a child process of its own, so its peak memory (RSS, sampled every 20 ms) is
its own; each Dask worker samples its own RSS the same way. A worker restarted by its nanny
(memory over the limit) would show up as a changed process id, and is reported.

Bars checked and printed: validation figures identical between pandas and each Dask run
(every count, percentage, example and verdict), drift summaries identical, each worker's
peak RSS under its memory limit, and validation time: one worker within 1.2x of pandas' time,
two workers at least 1.5x faster than pandas (pandas' time excludes its load; Dask's includes
reading the Parquet).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
warnings.filterwarnings("ignore")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import psutil  # noqa: E402

from gen_large import generate, spec_dict  # noqa: E402

GiB = 2**30


class PeakRSS:
    """Samples this process's resident memory every `every` seconds; `.peak` in bytes."""

    def __init__(self, every: float = 0.02):
        self.every, self.peak, self._stop = every, 0, threading.Event()
        self._proc = psutil.Process()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self.every)

    def start(self) -> "PeakRSS":
        self.peak = self._proc.memory_info().rss
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self._proc.memory_info().rss)


def _start_sampler(dask_worker: Any) -> int:
    dask_worker._cloudhop_peak = PeakRSS().start()
    return os.getpid()


def _read_sampler(dask_worker: Any, reset: bool = False) -> int:
    s = dask_worker._cloudhop_peak
    peak = max(s.peak, psutil.Process().memory_info().rss)
    if reset:
        s.peak = psutil.Process().memory_info().rss
    return peak


def _strip(results: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "partitions"} for r in results]


def run_pandas(uri: str, out: Any) -> None:
    """In a child process: load, validate, split, drift; timings, results and peak RSS to `out`."""
    from cloudhop.data import FrameTable, load_dataset, split
    from cloudhop.drift import drift_report
    from cloudhop.spec import parse_spec
    from cloudhop.validation import validate
    import cloudhop.validation._gx  # noqa: F401  (imports outside the timings)
    import evidently  # noqa: F401

    spec = parse_spec(spec_dict(uri, "pandas"))
    sampler = PeakRSS().start()
    t = time.perf_counter()
    df = load_dataset(spec)
    t_load = time.perf_counter() - t
    mem = int(df.memory_usage(deep=True).sum())
    t = time.perf_counter()
    v = validate(df, spec)
    t_val = time.perf_counter() - t
    t = time.perf_counter()
    w = split(FrameTable(df, time_column=spec.split.time_column), spec)
    d = drift_report(w.train.to_pandas(), w.holdout.to_pandas(), numeric=spec.numeric, categorical=spec.categorical,
                     threshold=spec.drift.threshold, sample_size=spec.drift.sample_size, seed=spec.model.seed,
                     html=False)
    t_drift = time.perf_counter() - t
    out.put({"load": t_load, "validate": t_val, "drift": t_drift, "peak": sampler.stop(), "bytes": mem,
             "results": v.results, "success": v.success, "rows": v.row_count, "drift_summary": d.summary()})


def run_dask(uri: str, workers: int, memory_limit: str) -> dict[str, Any]:
    from cloudhop.data import VALIDATION_PRELOAD, DaskExecutor, dask_client, open_parquet, split
    from cloudhop.drift import drift_tables
    from cloudhop.spec import parse_spec
    from cloudhop.validation import validate_table

    spec = parse_spec(spec_dict(uri, "dask"))
    with dask_client(n_workers=workers, memory_limit=memory_limit, preload=VALIDATION_PRELOAD) as client:
        client.wait_for_workers(workers, timeout=300)
        client.run(__import__, "evidently")  # not timed, like the pandas side's imports
        limit = next(iter(client.scheduler_info()["workers"].values()))["memory_limit"]
        pids = client.run(_start_sampler)
        t = time.perf_counter()
        ex = DaskExecutor(client)
        ds = open_parquet(spec)
        v = validate_table(ds, spec, executor=ex)
        t_val = time.perf_counter() - t
        peak_val = client.run(_read_sampler, reset=True)
        t = time.perf_counter()
        w = split(ds, spec, ex)
        d = drift_tables(w.train, w.holdout, numeric=spec.numeric, categorical=spec.categorical,
                         threshold=spec.drift.threshold, sample_size=spec.drift.sample_size, seed=spec.model.seed,
                         html=False, executor=ex)
        t_drift = time.perf_counter() - t
        peak_drift = client.run(_read_sampler)
        restarted = sorted(set(pids.values()) - set(client.run(os.getpid).values()))
    return {"validate": t_val, "drift": t_drift, "limit": limit, "partitions": len(ds.parts),
            "peak_validate": peak_val, "peak_drift": peak_drift, "restarted": restarted,
            "results": v.results, "success": v.success, "rows": v.row_count, "drift_summary": d.summary()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=20_000_000)
    p.add_argument("--files", type=int, default=20)
    p.add_argument("--dir", help="dataset folder (generated there if empty)")
    p.add_argument("--memory-limit", default="2GiB", help="memory limit of each Dask worker")
    p.add_argument("--workers", default="1,2", help="Dask worker counts to run")
    p.add_argument("--skip-pandas", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep a generated temporary dataset")
    a = p.parse_args(argv)

    tmp = None
    if a.dir:
        data = Path(a.dir)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="cloudhop-large-"))
        data = tmp / "data"
    gen_s = None
    if not any(data.glob("*.parquet")):
        t = time.perf_counter()
        generate(data, a.rows, a.files)
        gen_s = time.perf_counter() - t
    disk = sum(f.stat().st_size for f in data.glob("*.parquet"))
    print(f"dataset: {data} ({disk / GiB:.2f} GiB on disk"
          + (f", generated in {gen_s:.0f} s" if gen_s else "") + f"); machine: {os.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / GiB:.0f} GiB, load average {os.getloadavg()[0]:.1f}", flush=True)
    try:
        runs: dict[str, dict[str, Any]] = {}
        if not a.skip_pandas:
            ctx = mp.get_context("spawn")
            q = ctx.Queue()
            proc = ctx.Process(target=run_pandas, args=(str(data), q))
            proc.start()
            runs["pandas"] = q.get()
            proc.join()
            print(f"pandas done: validate {runs['pandas']['validate']:.1f} s", flush=True)
        for n in [int(x) for x in a.workers.split(",") if x]:
            runs[f"dask {n}w"] = run_dask(str(data), n, a.memory_limit)
            print(f"dask {n} worker(s) done: validate {runs[f'dask {n}w']['validate']:.1f} s", flush=True)
        report(runs, a.memory_limit)
        return 0 if check(runs) else 1
    finally:
        if tmp is not None and not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def report(runs: dict[str, dict[str, Any]], memory_limit: str) -> None:
    base = runs.get("pandas")
    names = list(runs)
    rows = runs[names[0]]["rows"]
    print()
    if base:
        print(f"{rows:,} rows x 20 columns; in memory as one pandas frame: {base['bytes'] / GiB:.2f} GiB; "
              f"memory limit per Dask worker: {memory_limit}")
    print(f"{'stage':24}" + "".join(f"{n:>12}" for n in names) + "".join(f"{'/ pandas':>12}" for n in names[1:] if base))
    stages = [("validate (s)", "validate"), ("drift (s)", "drift")]
    if base:
        stages.insert(0, ("pandas load (s)", "load"))
    for label, key in stages:
        vals = [runs[n].get(key) for n in names]
        line = f"{label:24}" + "".join(f"{v:>12.1f}" if v is not None else f"{'-':>12}" for v in vals)
        if base and key != "load":
            line += "".join(f"{runs[n][key] / base[key]:>12.2f}" for n in names[1:])
        print(line)
    print(f"{'peak RSS (GiB)':24}" + "".join(
        f"{runs[n]['peak'] / GiB:>12.2f}" if n == "pandas" else f"{'':>12}" for n in names))
    for n in names:
        if n == "pandas":
            continue
        r = runs[n]
        for i, (addr, peak) in enumerate(sorted(r["peak_validate"].items())):
            pd_ = r["peak_drift"].get(addr, 0)
            print(f"  {n} worker {i}: peak RSS validate {peak / GiB:.2f} GiB, drift {pd_ / GiB:.2f} GiB; "
                  f"limit {r['limit'] / GiB:.2f} GiB ({max(peak, pd_) / r['limit']:.0%} of it); "
                  f"{r['partitions']} partitions")
        if r["restarted"]:
            print(f"  {n}: worker process(es) {r['restarted']} were replaced during the run")


def _same_drift(a: dict[str, Any], b: dict[str, Any]) -> tuple[bool, float]:
    """Same verdict, columns and tests; scores equal but for the last bits: Evidently sums category
    frequencies in set order, which follows Python's per-process hash seed (pandas runs in a child)."""
    diff = max((abs((a["columns"][c]["score"] or 0) - (b["columns"][c]["score"] or 0)) for c in a["columns"]),
               default=0.0)
    strip = [{k: v for k, v in d.items() if k != "columns"} for d in (a, b)]
    cols = [{c: {k: v for k, v in x.items() if k != "score"} for c, x in d["columns"].items()} for d in (a, b)]
    return strip[0] == strip[1] and cols[0] == cols[1] and diff < 1e-9, diff


def check(runs: dict[str, dict[str, Any]]) -> bool:
    ok = True
    base = runs.get("pandas")
    for n, r in runs.items():
        if n == "pandas":
            continue
        if base:
            same = _strip(r["results"]) == base["results"] and r["success"] == base["success"]
            drift_same, diff = _same_drift(r["drift_summary"], base["drift_summary"])
            print(f"{n}: validation figures identical to pandas: {same}; drift verdict, drifted columns and "
                  f"tests identical: {drift_same} (largest score difference {diff:.1e})")
            ok &= same and drift_same
        peak = max(list(r["peak_validate"].values()) + list(r["peak_drift"].values()))
        under = peak < r["limit"] and not r["restarted"]
        print(f"{n}: every worker's peak RSS under its limit: {under} (max {peak / GiB:.2f} of "
              f"{r['limit'] / GiB:.2f} GiB)")
        ok &= under
    for n, bar, passes in (("dask 1w", "one worker within 1.2x of pandas' time", lambda x: x <= 1.2),
                           ("dask 2w", "two workers at least 1.5x faster than pandas", lambda x: 1 / x >= 1.5)):
        if base and n in runs:
            x = runs[n]["validate"] / base["validate"]
            print(f"validation time, {bar}: {passes(x)} ({runs[n]['validate']:.1f} s against "
                  f"{base['validate']:.1f} s: {x:.2f}x pandas' time, {1 / x:.2f}x as fast)")
            ok &= passes(x)
    v = runs[next(iter(runs))]
    failed = [f"{x['type']}({x['column']}): {x['observed'].get('unexpected_count')}" for x in v["results"]
              if not x["success"]]
    print(f"validation verdict: {'passed' if v['success'] else 'failed'}; failed: {', '.join(failed) or 'none'}")
    return ok


if __name__ == "__main__":
    raise SystemExit(main())
