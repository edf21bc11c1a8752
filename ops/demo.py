"""The demo: a working control plane on this machine, and one retrain on the bundled flights data.

    ./scripts/demo [--spec PATH] [retrain flags: --max-epochs N, --limit ROWS, --set K=V ...]
    ./scripts/demo --stop [--spec PATH]
    python -m ops.demo ...     (the same, without the install step)

In order: a local Prefect server (port $CLOUDHOP_PREFECT_PORT, 4200; reused when one answers;
none when PREFECT_API_URL is set), the local work pools, every deployment of prefect.yaml
(schedules active, the drift trigger on) and the alerts (ops.deploy), one `process` worker on
the `local` pool (pid and log in .cloudhop/, reused while it runs), then `retrain` in this
process (flows.retrain's command line). It ends with the link to the `retrain` deployment:
Run > Custom run there starts a run on the worker.

Run again, it reuses the server and the worker and updates the deployments in place. `--stop`
stops the worker, the spec's local model servers and the Prefect server that it started.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ops import localserver
from ops.deploy import DeployError, deploy_project
from ops.procs import ROOT, kill_pidfile, pidfile_process
from ops.workers import start_worker

__all__ = ["STATE", "WORKER_POOL", "ensure_worker", "deployment_link", "stop_all", "main"]

STATE = Path(".cloudhop")
"""Pid files and logs of the server and the worker, relative to the repository."""
WORKER_POOL = "local"  # the pool of `retrain`, `deploy` and `monitor` in prefect.yaml


def say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def ensure_worker(state: Path, api: str) -> tuple[int, bool]:
    """A `process` worker on the `local` pool, its pid and log in `state`; the one already running
    is kept. Returns (pid, started now)."""
    pid_file = state / "worker.pid"
    pid = pidfile_process(pid_file, b"worker")
    if pid is not None:
        return pid, False
    env = localserver.prefect_env(api)
    env["PREFECT_WORKER_QUERY_SECONDS"] = "5"
    proc = start_worker(WORKER_POOL, state / "worker.log", env, cwd=ROOT, name="cloudhop-demo")
    pid_file.write_text(str(proc.pid))
    return proc.pid, True


def deployment_link(api: str, name: str = "retrain/retrain") -> str:
    """The UI page of a deployment (its Run menu has Quick run and Custom run)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name(name)
    ui = api[: -len("/api")] if api.endswith("/api") else api
    return f"{ui}/deployments/deployment/{dep.id}"


def stop_local_targets(spec_path: str) -> list[str]:
    """Stop the model servers of the spec's `local` targets; returns the names of those that ran."""
    from cloudhop.spec import load_spec
    from cloudhop.targets import build_target

    spec = load_spec(spec_path)
    return [t.name for t in spec.targets if t.kind == "local" and build_target(t, spec).stop()]


def stop_all(state: Path, spec_path: str) -> list[str]:
    """What the demo started, stopped: the worker, the spec's local model servers, the Prefect server."""
    stopped = []
    if kill_pidfile(state / "worker.pid", b"worker"):
        stopped.append("the worker")
    stopped += [f"model server {name}" for name in stop_local_targets(spec_path)]
    if localserver.from_env(state).stop():
        stopped.append("the Prefect server")
    return stopped


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/demo", add_help=False)
    ap.add_argument("--stop", action="store_true")
    ap.add_argument("--spec", default="specs/flights.yaml")
    a, rest = ap.parse_known_args(argv)
    state = STATE
    state.mkdir(parents=True, exist_ok=True)
    if a.stop:
        stopped = stop_all(state, a.spec)
        print(f"stopped {', '.join(stopped)}" if stopped else "nothing started by the demo was running")
        return 0
    api = localserver.ensure_api(state)
    say(f"Prefect API: {api}")
    import flows.retrain  # Prefect reads PREFECT_API_URL when imported

    try:
        deploy_project(localserver.prefect_env(api))
    except DeployError as e:
        (state / "deploy.log").write_text(e.output)
        raise SystemExit(f"{e}; see {state / 'deploy.log'}") from None
    say("work pools applied; `prefect deploy --all`: retrain (nightly, and on drift), monitor (every 15 min), "
        "deploy, train-*")
    pid, started = ensure_worker(state, api)
    say(f"a process worker polls the `{WORKER_POOL}` pool: pid {pid}{'' if started else ' (already running)'}, "
        f"log {state / 'worker.log'}")
    link = deployment_link(api)
    say(f"retrain deployment: {link}")
    rc = flows.retrain.main(["--spec", a.spec, *rest])
    print(f"Retrain from the UI: {link} (Run > Custom run; it runs on the worker, pid {pid})")
    print("Stop the worker, the model server and the Prefect server: ./scripts/demo --stop")
    return rc


if __name__ == "__main__":
    sys.exit(main())
