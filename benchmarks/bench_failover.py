"""Failover latency and work lost, on the local setup (a process pool and worker per cloud).

    .venv/bin/python benchmarks/bench_failover.py

Three runs of `retrain` with compute.mode=pools over two clouds (coreweave first, gcp second):
  healthy  both workers up: time from the training run's submission to it running (baseline)
  no-worker the first cloud has no worker: time from the first submission to training running on the second;
           what failover adds = this - healthy (bar: at most start timeout + 5 s)
  killed   the first cloud's worker and run are SIGKILLed mid-training: time from the kill to
           training running on the second cloud, and steps redone (bar: one checkpoint interval)
"Running" = the training run's first heartbeat in the store.
"""
from __future__ import annotations

import contextvars
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import yaml  # noqa: E402

from ops.deploy import deploy_project  # noqa: E402
from ops.localserver import prefect_env, temporary_server  # noqa: E402
from ops.workers import Workers, process_catalog  # noqa: E402

START_TIMEOUT, HEARTBEAT_TIMEOUT, CHECKPOINT_EVERY = 15.0, 8.0, 20


def write_spec(tmp: Path, data: Path, name: str) -> str:
    spec = yaml.safe_load(open(ROOT / "specs/flights.yaml"))
    spec["dataset"] = {"uri": str(data)}
    spec["store"] = str(tmp / f"store-{name}")
    spec["model"].update(hidden=[1024, 1024], batch_size=256, max_epochs=4, patience=4,
                         checkpoint_every=CHECKPOINT_EVERY)
    spec["compute"] = {"mode": "pools", "catalog": str(process_catalog(tmp / "clouds.yaml")),
                       "clouds": ["coreweave", "gcp"], "gpu_type": "A100",
                       "failover": {"retries": 0, "start_timeout_s": START_TIMEOUT, "startup_timeout_s": 300,
                                    "heartbeat_timeout_s": HEARTBEAT_TIMEOUT},
                       "breaker": {"failures": 100, "window_minutes": 1}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def first_beat(store_dir: Path, cloud: str, since: float, timeout: float = 600) -> float:
    """Wall time of the first heartbeat file written by `cloud`'s training run."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for p in store_dir.glob(f"runs/*/*/training/heartbeat-{cloud}-*.json"):
            if p.stat().st_mtime >= since:
                return p.stat().st_mtime
        time.sleep(0.05)
    raise TimeoutError(f"no heartbeat from {cloud}")


def submitted_at(summary: dict, index: int = 0) -> float:
    """When retrain created the training run of attempt `index` (the Prefect API's timestamp)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as c:
        return c.read_flow_run(summary["attempts"][index]["run_id"]).created.timestamp()


def run_retrain(path: str) -> tuple[threading.Thread, dict]:
    from flows.retrain import retrain

    out: dict = {}

    def go():
        try:
            out["summary"] = retrain(spec=path, deploy=False, reason="benchmark")
        except BaseException as e:  # noqa: BLE001
            out["error"] = e

    t = threading.Thread(target=contextvars.copy_context().run, args=(go,))
    t.start()
    return t, out


def time_to_running(tmp: Path, data: Path, name: str, cloud: str) -> float:
    """One retrain to the end: seconds from its first training submission to `cloud`'s first heartbeat."""
    path = write_spec(tmp, data, name)
    t0 = time.time()
    th, out = run_retrain(path)
    beat = first_beat(tmp / f"store-{name}", cloud, t0)
    th.join()
    assert "error" not in out, out.get("error")
    return beat - submitted_at(out["summary"])


def main() -> int:
    from cloudhop.data import flights_table

    with tempfile.TemporaryDirectory() as d, temporary_server(Path(d)) as api:
        os.environ["PREFECT_API_URL"] = api
        tmp = Path(d)
        deploy_project(prefect_env(api), names=["train-coreweave-gpu", "train-gcp-gpu"])
        data = tmp / "flights.parquet"
        flights_table().iloc[::12].reset_index(drop=True).to_parquet(data)
        w = Workers(api, tmp, {"coreweave": "coreweave-gpu", "gcp": "gcp-gpu"})
        rows = []
        try:
            # healthy: both up
            w.start("coreweave"), w.start("gcp")
            time.sleep(5)
            healthy = time_to_running(tmp, data, "healthy", "coreweave")
            # no worker on the first cloud: from the first (unanswered) submission
            w.kill("coreweave")
            noworker = time_to_running(tmp, data, "noworker", "gcp")

            # killed mid-training
            w.start("coreweave")
            time.sleep(5)
            path = write_spec(tmp, data, "killed")
            store = tmp / "store-killed"
            th, out = run_retrain(path)
            while len(list(store.glob("checkpoints/**/step-*.pt"))) < 2:
                time.sleep(0.05)
            hb = next(store.glob("runs/*/*/training/heartbeat-coreweave-1.json"))
            t_kill = time.time()
            w.kill("coreweave")
            newest = max(int(p.stem.split("-")[1]) for p in store.glob("checkpoints/**/step-*.pt"))
            import json
            step_at_kill = json.loads(hb.read_text()).get("step")
            resumed_at = first_beat(store, "gcp", t_kill) - t_kill
            th.join()
            assert "error" not in out, out.get("error")
            info = out["summary"]["training"]
        finally:
            w.stop_all()

    rows.append(("time to training running, healthy first cloud (s)", f"{healthy:.1f}", "baseline", ""))
    rows.append(("time to training running, first cloud has no worker (s)", f"{noworker:.1f}",
                 f"{healthy:.1f}", f"{noworker / healthy:.2f}x"))
    added = noworker - healthy
    rows.append(("  failover adds (s)", f"{added:.1f}", f"bar {START_TIMEOUT + 5:.0f}",
                 "met" if added <= START_TIMEOUT + 5 else "MISSED"))
    rows.append(("kill -> training running on next cloud (s)", f"{resumed_at:.1f}",
                 f"heartbeat timeout {HEARTBEAT_TIMEOUT:.0f}", ""))
    added_kill = resumed_at - healthy
    rows.append(("  failover adds, beyond a normal start (s)", f"{added_kill:.1f}",
                 f"bar {HEARTBEAT_TIMEOUT + 5:.0f} (heartbeat timeout + 5)",
                 "met" if added_kill <= HEARTBEAT_TIMEOUT + 5 else "MISSED"))
    rows.append(("newest checkpoint in the store at the kill (step)", str(newest), "", ""))
    # The killed run's step at the kill is not observable (its heartbeat lags by up to one
    # heartbeat interval). What is: the newest checkpoint in the store at the kill, and that the
    # next one (newest + checkpoint_every) was not in it, so the kill came at that step at the latest.
    resumed = info["resumed_from_step"] or 0
    rows.append(("last heartbeat before the kill said step", str(step_at_kill), "(lags by up to 2 s)", ""))
    rows.append(("resumed from step", str(resumed), f"newest checkpoint {newest}",
                 "none lost" if resumed == newest else "MISSED"))
    most = newest + CHECKPOINT_EVERY - resumed  # at step newest + every it would be writing that checkpoint
    rows.append(("steps redone (work lost), at most", str(most), f"bar {CHECKPOINT_EVERY}",
                 "met" if most <= CHECKPOINT_EVERY and resumed == newest else "MISSED"))
    rows.append(("steps on second cloud / total steps", f"{info['steps_run']} / {info['steps']}",
                 f"restart from zero: {info['steps']}", f"{info['steps_run'] / info['steps']:.2f}x"))
    print(f"\nfailover on the local setup ({os.cpu_count()} CPUs), start timeout {START_TIMEOUT:.0f}s, "
          f"heartbeat timeout {HEARTBEAT_TIMEOUT:.0f}s, checkpoint every {CHECKPOINT_EVERY} steps")
    width = max(len(r[0]) for r in rows)
    print(f"{'figure':{width}}  {'value':>10}  {'baseline':>26}  ratio")
    for name, v, b, r in rows:
        print(f"{name:{width}}  {v:>10}  {b:>26}  {r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
