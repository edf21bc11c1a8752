"""A flow run whose process dies without a word (SIGKILL) turns Crashed through the automation
`python -m flows.pools apply` registers, fed by the run's heartbeats.

On a Prefect server of its own: the automation's 90 s window (heartbeats every 30 s) would mark
the runs of other tests, which beat every 180 s by default, Crashed on the session's server.
The whole worker is killed with the run (a lost machine): a live process worker would report
its child's exit itself, and the point is what happens when nobody is left to report.
"""
from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from cloudhop.providers.local.target import pid_alive
from ops.localserver import prefect_env, temporary_server
from ops.procs import ROOT
from ops.workers import Workers
from tasks.crashed import CRASHED_AUTOMATION

pytestmark = pytest.mark.integration

HEARTBEAT_S = 30
SLEEPY = '''
import os, pathlib, time
from prefect import flow

@flow
def sleepy(pid_file: str, seconds: int = 900):
    pathlib.Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)
'''


def _events(client, name: str, resource_id: str) -> list[dict]:
    r = client.request("POST", "/events/filter", json={"filter": {
        "event": {"name": [name]}, "resource": {"id": [resource_id]},
        "occurred": {"since": "2000-01-01T00:00:00Z"}}, "limit": 50})
    return r.json()["events"]


def _wait(what: str, timeout: float, check):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s"
        time.sleep(1)


def test_a_sigkilled_flow_run_turns_crashed(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "sleepy.py").write_text(SLEEPY)
    with temporary_server(tmp_path / "server") as api, temporary_settings(updates={PREFECT_API_URL: api}):
        env = {**prefect_env(api), "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S)}
        applied = subprocess.run([sys.executable, "-m", "flows.pools", "apply", "--local"], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=300)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert f"automation {CRASHED_AUTOMATION}: created" in applied.stdout
        with get_client(sync_client=True) as c:
            automation = next(a for a in c.read_automations() if a.name == CRASHED_AUTOMATION)
        assert automation.trigger.within.total_seconds() == 3 * HEARTBEAT_S

        name = f"sleepy-{uuid.uuid4().hex[:6]}"
        flow.from_source(str(tmp_path / "src"), "sleepy.py:sleepy").deploy(
            name, work_pool_name="local", print_next_steps=False)
        workers = Workers(api, tmp_path, {"local": "local"},
                          env={"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S)})
        workers.start("local")
        try:
            pid_file = tmp_path / "flow.pid"
            run = run_deployment(f"sleepy/{name}", parameters={"pid_file": str(pid_file)}, timeout=0)
            resource = f"prefect.flow-run.{run.id}"
            with get_client(sync_client=True) as c:
                _wait("the run started and sent a heartbeat", 120,
                      lambda: pid_file.exists() and _events(c, "prefect.flow-run.heartbeat", resource))
                assert c.read_flow_run(run.id).state.is_running()
                flow_pid = int(pid_file.read_text())
                workers.kill("local")  # SIGKILL: the worker and the flow run's process, as a lost machine
                _wait("the flow run's process is gone", 15, lambda: not pid_alive(flow_pid))
                killed = time.monotonic()
                state = _wait("the run turned Crashed", 3 * HEARTBEAT_S + 90,
                              lambda: (s := c.read_flow_run(run.id).state).is_crashed() and s)
        finally:
            workers.stop_all()
        took = time.monotonic() - killed
        print(f"SIGKILLed run marked Crashed {took:.0f} s after the kill: {state.message}")
        assert "no heartbeat for 90 s" in state.message
