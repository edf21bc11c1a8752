"""Monitor benchmark: drift detection to a new version serving, and the monitor on 1M logged rows.

    python benchmarks/bench_monitor.py [--rows 1000000] [--epochs 1] [--skip-loop] [--skip-unsampled]
    (--rows 0 skips the monitor part)

Starts its own Prefect server (temporary home, free loopback port).

1. The monitor on `--rows` logged rows (September-like traffic drawn from the flights data,
   written as prediction-log parts), against a champion whose reference sample is 50,000 rows of
   January..May. Beside it, in the same run: reading the log alone, and Evidently on the
   unsampled window (the spec's 50,000-row sample vs every row).
2. The loop (`scripts/loop` on the full flights data): from the monitor's
   `cloudhop.drift.detected` to the new version answering on the endpoint, through the
   automation, the worker and the retrain flow. Beside it: the same retrain (same spec, same
   window) called in-process with no event, no worker and no deploy.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from cloudhop.drift import monitor as mon  # noqa: E402
from cloudhop.registry import Manifest, Registry  # noqa: E402
from cloudhop.registry.manifest import Features  # noqa: E402
from cloudhop.spec import load_spec  # noqa: E402
from cloudhop.store import Store  # noqa: E402
from ops.localserver import LocalServer, ServerError  # noqa: E402
from ops.net import free_port  # noqa: E402
from ops.procs import kill_pidfile  # noqa: E402


def timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


# -- 1. the monitor on many logged rows ------------------------------------------------------
def build_monitor_store(root: Path, rows: int) -> tuple[str, Registry]:
    """A champion (features, spec, reference sample) and `rows` logged rows of September-like traffic."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cloudhop.data import load_dataset

    root.mkdir(parents=True, exist_ok=True)
    spec = load_spec(ROOT / "specs/flights.yaml")
    store_uri = str(root / "store")
    spec_path = root / "spec.yaml"
    import yaml
    raw = yaml.safe_load((ROOT / "specs/flights.yaml").read_text())
    raw["store"] = store_uri
    spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    df = load_dataset(spec)
    t = df[spec.split.time_column]
    reg = Registry(Store(store_uri), spec.name)
    ref = mon.reference_bytes(df[t < "2013-06-01"], spec.categorical, spec.numeric, spec.drift.sample_size, 0)
    mv = reg.publish({mon.REFERENCE_FILE: ref}, Manifest(features=Features(categorical=spec.categorical,
                                                                           numeric=spec.numeric),
                                                         spec=spec.model_dump(mode="json")))
    reg.set_alias("champion", mv.version)
    sep = df[(t >= "2013-09-01") & (t < "2013-10-01")]
    rng = np.random.default_rng(0)
    now = datetime.now(timezone.utc)
    part = 100_000
    for i in range(0, rows, part):
        n = min(part, rows - i)
        s = sep.iloc[rng.integers(0, len(sep), n)]
        served = pd.Series(now - pd.to_timedelta(rng.uniform(60, 1800, n), unit="s")).sort_values().dt.floor("us")
        cols = {"served_at": pa.array(served, pa.timestamp("us", tz="UTC")),
                "model": pa.array([spec.name] * n), "version": pa.array([mv.version] * n),
                "target": pa.array(["local"] * n), "prediction": pa.array(rng.uniform(0, 1, n))}
        for c in spec.categorical:
            cols[c] = pa.array(s[c].astype(str).to_numpy(), pa.string())
        for c in spec.numeric:
            cols[c] = pa.array(s[c].to_numpy(dtype="float64"), pa.float64(), from_pandas=True)
        sink = io.BytesIO()
        pq.write_table(pa.table(cols), sink, compression="zstd")
        reg.store.write_bytes(f"predictions/{spec.name}/date={now:%Y-%m-%d}/part-{i // part:04d}.parquet",
                              sink.getvalue())
    return str(spec_path), reg


def monitor_library(reg: Registry, start: datetime, end: datetime, sample_size: int, html: bool = True):
    """What the monitor flow does, without Prefect: read, sample, normalize, Evidently."""
    from cloudhop.drift import drift_report

    champion = reg.champion()
    cat, num = champion.manifest.features.categorical, champion.manifest.features.numeric
    served = mon.read_served(reg.store, reg.name, start, end, champion.version)
    ref, _ = mon.load_reference(reg, champion, sample_size, 0)
    cur = mon.normalize(mon.sample_rows(served, sample_size, 0), cat, num, "log")
    return drift_report(mon.normalize(ref, cat, num, "reference"), cur, numeric=num, categorical=cat,
                        threshold=0.3, sample_size=sample_size, seed=0, html=html), len(served)


def bench_monitor(root: Path, rows: int, unsampled: bool) -> list[tuple]:
    from cloudhop.predlog import read_prediction_log

    print(f"building a store with {rows:,} logged rows ...", flush=True)
    spec_path, reg = build_monitor_store(root, rows)
    end = datetime.now(timezone.utc) + timedelta(minutes=1)
    start = end - timedelta(hours=2)
    import evidently.presets  # noqa: F401  (the import, seconds, is not what is measured)
    from cloudhop.drift import drift_report
    drift_report(pd.DataFrame({"x": [1.0, 2.0]}), pd.DataFrame({"x": [1.0, 2.0]}), numeric=["x"], categorical=[],
                 html=False)

    log, t_read = timed(read_prediction_log, reg.store, reg.name, start, end)
    assert len(log) == rows, len(log)
    del log
    (d, n), t_lib = timed(monitor_library, reg, start, end, 50_000)
    assert n == rows and d.dataset_drift, d.summary()
    from flows.monitor import ServedWindow, monitor
    res, t_flow = timed(monitor, spec=spec_path, window=ServedWindow(start=start, end=end), cooldown_minutes=0)
    assert res["status"] == "drift" and res["rows"] == rows, res["summary"]
    out = [(f"read the log alone ({rows:,} rows)", t_read, None),
           ("monitor, library path (read + 50k sample + Evidently + HTML)", t_lib, t_read),
           ("monitor flow (Prefect tasks, artifacts, event)", t_flow, t_read)]
    if unsampled:
        print("Evidently on the unsampled window ...", flush=True)
        (_, _), t_full = timed(monitor_library, reg, start, end, rows, False)
        out.append((f"Evidently on all {rows:,} rows (no HTML), for comparison", t_full, t_read))
    return out


# -- 2. the loop ------------------------------------------------------------------------------
def bench_loop(root: Path, api: str, epochs: int) -> list[tuple]:
    home = root / "loop"
    port = free_port()
    env = dict(os.environ, PREFECT_API_URL=api, CLOUDHOP_LOOP_HOME=str(home))
    report = root / "loop.json"
    print(f"running scripts/loop (epochs {epochs}) ...", flush=True)
    try:
        r = subprocess.run(["bash", str(ROOT / "scripts/loop"), "--epochs", str(epochs), "--port", str(port),
                            "--pause-schedules", "--json", str(report)], cwd=ROOT, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        print(r.stdout[-6000:])
        if r.returncode:
            raise SystemExit(f"scripts/loop failed ({r.returncode})")
        loop = json.loads(report.read_text())
        if not loop.get("drift_to_serving_s"):
            raise SystemExit("the loop's retrain was not promoted: no time to serving to report")
        # Baseline: the same retrain, in this process, no event, no worker, no deploy. A fresh store,
        # so it trains from scratch (the loop's store holds the finished run's checkpoint).
        os.environ["PREFECT_API_URL"] = api
        from flows.retrain import Window, retrain
        baseline = yaml.safe_load((home / "spec.yaml").read_text())  # a run's overrides never change the store
        baseline["store"] = str(root / "baseline-store")
        (root / "baseline-spec.yaml").write_text(yaml.safe_dump(baseline, sort_keys=False))
        _, t_direct = timed(retrain, spec=str(root / "baseline-spec.yaml"),
                            window=Window(**loop["windows"]["retrain"]), deploy=False,
                            reason="bench: in-process baseline")
    finally:
        kill_pidfile(home / "worker.pid", b"worker")
        from cloudhop.providers.local.target import LocalTarget
        spec = load_spec(home / "spec.yaml") if (home / "spec.yaml").exists() else None
        if spec is not None:
            LocalTarget("local", spec.store, spec.name, port=port, state_dir=home / "serving").stop()
    st = loop.get("states", {})
    rows = [("drift detected -> new version serving (event, automation, worker, retrain, deploy)",
             loop["drift_to_serving_s"], t_direct),
            ("  of which: drift detected -> retrain run scheduled", st.get("SCHEDULED"), None),
            ("  of which: drift detected -> retrain run running on the worker", st.get("RUNNING"), None),
            ("the same retrain in-process (no event, no worker, no deploy)", t_direct, None)]
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--skip-loop", action="store_true")
    ap.add_argument("--skip-unsampled", action="store_true")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    server = LocalServer(free_port(), root / "prefect", root / "prefect")  # its scheduler on, as in ./scripts/loop
    try:
        api = server.start(timeout=120)
    except ServerError as e:
        raise SystemExit(str(e)) from None
    os.environ["PREFECT_API_URL"] = api
    results = []
    try:
        if not a.skip_loop:
            results += bench_loop(root, api, a.epochs)
        if a.rows:
            results += bench_monitor(root / "monitor", a.rows, not a.skip_unsampled)
    finally:
        server.stop()
    print()
    print(f"{'figure':86} {'seconds':>8} {'baseline':>9} {'ratio':>6}")
    for name, s, base in results:
        sec = "-" if s is None else f"{s:.1f}"
        b = "" if base is None else f"{base:.1f}"
        ratio = "" if base is None or s is None else f"{s / base:.1f}x"
        print(f"{name:86} {sec:>8} {b:>9} {ratio:>6}")
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; baselines measured in this run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
