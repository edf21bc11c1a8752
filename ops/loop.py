"""The closed loop on this machine, with nobody calling retrain: serve a model trained on
January..May flights, replay traffic at it, and watch a drift event start `retrain` on a
worker and a new version take over the endpoint. It says what happened at each step.

    ./scripts/loop [--epochs N] [--rows N] [--rate R] [--stop] [--json PATH]
    python -m ops.loop ...     (the same, without the install step)

Uses the Prefect server of ./scripts/demo (starts one on port 4200 unless PREFECT_API_URL
is set), the `local` work pool and a `process` worker, and a store of its own under
.cloudhop/loop ($CLOUDHOP_LOOP_HOME; wiped at each run). The model is served on
http://127.0.0.1:8766.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ops import demo, localserver
from ops.deploy import DeployError, deploy_project
from ops.procs import ROOT, kill_pidfile
from ops.workers import start_worker

__all__ = ["CHAMPION_WINDOW", "RETRAIN_WINDOW", "main"]

CHAMPION_WINDOW = {"train_start": "2013-01-01", "validation_start": "2013-06-01", "holdout_start": "2013-06-16",
                   "holdout_end": "2013-07-01"}
RETRAIN_WINDOW = {"train_start": "2013-01-01", "validation_start": "2013-09-01", "holdout_start": "2013-09-16",
                  "holdout_end": "2013-10-01"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="scripts/loop")
    ap.add_argument("--epochs", type=int, default=1, help="training epochs of each model (default 1)")
    ap.add_argument("--rows", type=int, default=2000, help="rows replayed per phase (default 2000)")
    ap.add_argument("--rate", type=float, default=1000.0, help="replay rate, rows/s (default 1000)")
    ap.add_argument("--port", type=int, default=int(os.environ.get("CLOUDHOP_LOOP_PORT", 8766)), help="model server port")
    ap.add_argument("--pause-schedules", action="store_true", help="pause every deployment schedule after deploying")
    ap.add_argument("--stop", action="store_true", help="stop the worker, the model server and a Prefect server started here")
    ap.add_argument("--json", help="write the timings and outcomes here")
    return ap.parse_args(argv)


class Loop:
    """One walk through the loop: its store, spec, worker and model server live under `home`."""

    def __init__(self, args: argparse.Namespace, home: Path, api: str):
        import yaml

        from cloudhop.registry import Registry
        from cloudhop.store import Store

        self.args, self.home, self.api = args, home, api
        self.ui = api[:-4] if api.endswith("/api") else api
        self.url = f"http://127.0.0.1:{args.port}"
        self.out: dict[str, Any] = {"windows": {"champion": CHAMPION_WINDOW, "retrain": RETRAIN_WINDOW}}
        self.t0 = time.monotonic()
        spec = yaml.safe_load((ROOT / "specs" / "flights.yaml").read_text())
        spec["store"] = str(home / "store")
        spec["model"]["max_epochs"] = args.epochs
        spec["evaluation"]["promote_margin"] = 0.0
        spec["targets"] = [{"name": "local", "kind": "local", "options": {
            "port": args.port, "state_dir": str(home / "serving"), "server_args": ["--log-flush-seconds", "1"]}}]
        self.spec = spec
        self.spec_path = home / "spec.yaml"
        self.reg = Registry(Store(spec["store"]), spec["name"])
        self.pipeline = None  # the spec as loaded, once written
        self.data = None
        self.retrain_id = None
        self.worker_pid = None

    def say(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {msg}", flush=True)

    def target(self):
        from cloudhop.providers.local.target import LocalTarget

        return LocalTarget("local", self.spec["store"], self.spec["name"], port=self.args.port,
                           state_dir=self.home / "serving")

    def clean_slate(self) -> None:
        """The previous loop's worker and model server stop; its store goes; the spec is written anew."""
        import yaml

        from cloudhop.spec import load_spec

        kill_pidfile(self.home / "worker.pid", b"worker")
        if kill_pidfile(demo.STATE / "worker.pid", b"worker"):
            self.say("stopped the demo's worker: the loop's own worker polls the `local` pool and finds a drifted "
                     "model's spec in the loop's folder (./scripts/demo starts the demo's again)")
        self.target().stop()
        shutil.rmtree(self.home / "store", ignore_errors=True)
        self.spec_path.write_text(yaml.safe_dump(self.spec, sort_keys=False))
        self.pipeline = load_spec(self.spec_path)

    def deploy_and_start_worker(self, worker_log_level: str) -> None:
        """Pools and deployments on the server, then a process worker on the `local` pool."""
        from prefect.client.orchestration import get_client

        env = localserver.prefect_env(self.api)
        env["PREFECT_LOGGING_LEVEL"] = "WARNING"
        failed = None
        try:
            output = deploy_project(env)
        except DeployError as e:
            output, failed = e.output, e
        with open(self.home / "deploy.log", "a") as log:
            log.write(output)
        if failed:
            raise SystemExit(f"{failed}; see {self.home / 'deploy.log'}")
        self.say("work pools applied; `prefect deploy --all` registered retrain (nightly cron + drift trigger), "
                 "deploy, monitor")
        with get_client(sync_client=True) as c:
            self.retrain_id = c.read_deployment_by_name("retrain/retrain").id
            if self.args.pause_schedules:
                for d in c.read_deployments():
                    for s in d.schedules:
                        c.update_deployment_schedule(d.id, s.id, active=False)
        # A drift event names the model: its runs find the spec by name in this loop's home.
        env.update(PREFECT_WORKER_QUERY_SECONDS="2", PREFECT_LOGGING_LEVEL=worker_log_level,
                   CLOUDHOP_SPECS=str(self.home))
        worker = start_worker("local", self.home / "worker.log", env)
        self.worker_pid = worker.pid
        (self.home / "worker.pid").write_text(str(worker.pid))
        self.say(f"a process worker polls the `local` pool (pid {worker.pid}, log {self.home / 'worker.log'})")

    def retrain_runs(self) -> list:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import DeploymentFilter

        with get_client(sync_client=True) as c:
            runs = c.read_flow_runs(deployment_filter=DeploymentFilter(id={"any_": [self.retrain_id]}))
        return [r for r in runs if r.parameters.get("spec") == str(self.spec_path)
                or (r.parameters.get("spec") is None and r.parameters.get("model") == self.spec["name"])]

    def metric_line(self, v: str) -> str:
        m = self.reg.get(v).manifest.metrics
        ch = m.champion or {}
        return (f"holdout roc_auc {m.candidate['roc_auc']:.4f}"
                + (f" vs champion's {ch['roc_auc']:.4f}" if ch else "") + f"; {m.reason}")

    def send(self, start: str, end: str, rows: int, seed: int) -> datetime:
        """Replay the window's rows at the endpoint; returns when, once they are all in the prediction log."""
        from cloudhop.data import load_dataset
        from cloudhop.drift.monitor import read_served
        from cloudhop.replay import replay, window_rows

        spec = self.pipeline
        self.data = load_dataset(spec) if self.data is None else self.data
        t0 = datetime.now(timezone.utc)
        stats = replay(window_rows(spec, start, end, rows, seed, data=self.data), self.url, self.args.rate, 100)
        deadline = time.monotonic() + 60
        while len(read_served(self.reg.store, spec.name, t0, datetime.now(timezone.utc))) < stats.rows:
            if time.monotonic() > deadline:
                raise SystemExit("replayed rows did not reach the prediction log within 60 s")
            time.sleep(0.3)
        self.say(f"   replayed {start} .. {end}: {stats.summary()}")
        return t0

    def check(self, start: datetime, **kw) -> dict:
        from flows.monitor import ServedWindow, monitor

        r = monitor(spec=str(self.spec_path), window=ServedWindow(start=start), retrain_window=RETRAIN_WINDOW, **kw)
        self.say(f"   monitor: {r['summary']}")
        self.say(f"   event: {r['event']}; report: {r.get('report')}")
        return r

    def first_champion(self) -> str:
        from prefect.deployments import run_deployment

        a = self.args
        self.say(f"1. retrain on January..May flights (validated on early June), {a.epochs} epochs, on the worker ...")
        t = time.monotonic()
        fr = run_deployment("retrain/retrain", timeout=1800, parameters={
            "spec": str(self.spec_path), "window": CHAMPION_WINDOW, "reason": "loop: first champion"})
        if not fr.state.is_completed():
            raise SystemExit(f"the first retrain ended {fr.state.type}: see {self.ui}/runs/flow-run/{fr.id} "
                             f"and {self.home / 'worker.log'}")
        v1 = self.reg.alias("champion")["version"]
        self.out["first_retrain_s"] = round(time.monotonic() - t, 1)
        self.say(f"   v{v1} is champion and served on {self.url} ({self.metric_line(v1)})")
        return v1

    def no_drift(self) -> None:
        self.say("2. replay January..May traffic (what v1 was trained on) and run the monitor")
        r = self.check(self.send("2013-01-01", "2013-06-01", self.args.rows, 1), cooldown_minutes=0)
        time.sleep(5)
        n = len(self.retrain_runs())
        self.say(f"   => no drift, no retrain: {n - 1} retrain runs besides the first")
        self.out["no_drift"] = {"status": r["status"], "share": r["share"], "event": r["event"], "retrains": n - 1}

    def drift(self, v1: str) -> None:
        import httpx

        self.say("3. replay September traffic (later in the year: other weather, other mix) and run the monitor")
        r = self.check(self.send("2013-09-01", "2013-10-01", self.args.rows, 2), cooldown_minutes=0)
        t_detect = time.monotonic()
        self.out["drift"] = {"status": r["status"], "share": r["share"], "drifted_columns": r["drifted_columns"],
                             "event": r["event"]}
        if r["status"] != "drift":
            raise SystemExit("no drift was detected; nothing more to show")
        self.say("   the automation `retrain-on-drift` reacts to cloudhop.drift.detected ...")
        seen, run, live = set(), None, None
        deadline = time.monotonic() + 1800
        while True:
            runs = [x for x in self.retrain_runs() if x.parameters.get("reason", "").startswith("drift event")]
            if runs:
                run = runs[0]
                st = run.state.type.value if run.state else "?"
                if st not in seen:
                    seen.add(st)
                    self.out.setdefault("states", {})[st] = round(time.monotonic() - t_detect, 1)
                    self.say(f"   retrain run {run.name} ({self.ui}/runs/flow-run/{run.id}): {st}")
                if run.state and run.state.is_final() and not run.state.is_completed():
                    raise SystemExit(f"the drift retrain ended {st}; see {self.home / 'worker.log'}")
            try:
                live = httpx.get(f"{self.url}/version", timeout=5).json()["version"]
            except httpx.HTTPError:
                live = None
            if live and live != v1:
                break
            if run and run.state and run.state.is_completed():
                last = self.reg.versions()[-1]
                self.say(f"   the retrain finished but v{last} was not promoted: {self.metric_line(last)}")
                self.out["drift_to_serving_s"] = None
                break
            if time.monotonic() > deadline:
                raise SystemExit("no new version within 30 minutes")
            time.sleep(0.5)
        if live and live != v1:
            self.out["drift_to_serving_s"] = round(time.monotonic() - t_detect, 1)
            self.say(f"   => v{live} serves on {self.url}, {self.out['drift_to_serving_s']} s after drift was detected "
                     f"({self.metric_line(live)})")
            self.say(f"      retrain parameters from the event: window={run.parameters['window']}, "
                     f"model={run.parameters['model']}")

    def cooldown(self) -> None:
        self.say("4. the same September traffic again, now served by the new champion, within its cooldown")
        r = self.check(self.send("2013-09-01", "2013-10-01", max(self.args.rows // 2, 300), 3))
        time.sleep(3)
        self.out["cooldown"] = {"status": r["status"], "event": r["event"], "retrains": len(self.retrain_runs()) - 2}
        self.say(f"   => {r['status']}: {r['event']}; retrains started: {self.out['cooldown']['retrains']}")

    def summary(self, v1: str) -> None:
        out, spec = self.out, self.spec
        print()
        print(f"What happened: v{v1} (trained on Jan..May) served January..May traffic: no drift, no retrain. "
              f"September traffic drifted (share {out['drift']['share']:.2f}: {', '.join(out['drift']['drifted_columns'])}); "
              f"the monitor emitted cloudhop.drift.detected, the trigger started `retrain` on the worker with the event's "
              f"window, and v{self.reg.alias('champion')['version']} took over {self.url}"
              + (f" {out['drift_to_serving_s']} s later." if out.get("drift_to_serving_s") else "."))
        print(f"Prefect UI: {self.ui} (flow runs: retrain, monitor; automations: retrain-on-drift; events: cloudhop.drift.*)")
        print(f"Versions: .venv/bin/cloudhop versions {self.spec_path}")
        if self.args.json:
            Path(self.args.json).write_text(json.dumps(out, indent=2))
        if self.args.stop:
            kill_pidfile(self.home / "worker.pid", b"worker")
            self.target().stop()
            kill_pidfile(self.home / "prefect-server.pid", b"server")
            print("stopped the worker, the model server and any Prefect server started here")
        else:
            pid = self.worker_pid
            print(f"Still running: the worker (pid {pid}), the model server on {self.url}. Stop them with --stop next "
                  f"time, or: kill {pid}; .venv/bin/python -c \"from cloudhop.providers.local.target import LocalTarget as L; "
                  f"L('local', '{spec['store']}', '{spec['name']}', port={self.args.port}, "
                  f"state_dir='{self.home / 'serving'}').stop()\"")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    worker_log_level = os.environ.get("PREFECT_LOGGING_LEVEL", "INFO")
    # this narrative on the console; the runs' logs are in the UI (set before Prefect is imported)
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    state = Path(os.environ.get("CLOUDHOP_LOOP_HOME") or ".cloudhop/loop")
    state.mkdir(parents=True, exist_ok=True)
    api = localserver.ensure_api(state)
    print(f"==> Prefect API: {api}", flush=True)
    loop = Loop(args, state.resolve(), api)
    loop.clean_slate()
    loop.deploy_and_start_worker(worker_log_level)
    v1 = loop.first_champion()
    loop.no_drift()
    loop.drift(v1)
    loop.cooldown()
    loop.summary(v1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
