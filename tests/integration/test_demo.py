"""The demo leaves a working control plane: pools, deployments with active schedules, a worker that
runs a `retrain` asked for through the deployment, and a link to it. Run twice, it reuses its
worker and updates the deployments in place; `--stop` stops the worker and the model server.

The demo runs in this process (`ops.demo.main`, what ./scripts/demo execs) against the session's
Prefect server, from a folder of its own (its .cloudhop/ state lands there), on a small spec.
"""
from __future__ import annotations

import copy

import httpx
import pytest
import yaml

from cloudhop.providers.local.target import pid_alive
from ops import demo
from ops.net import free_port
from ops.procs import ROOT, pidfile_process

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory):
    from cloudhop.data import flights_table

    root = tmp_path_factory.mktemp("demo")
    flights_table().iloc[::40].reset_index(drop=True).to_parquet(root / "flights.parquet")
    spec = copy.deepcopy(yaml.safe_load((ROOT / "specs" / "flights.yaml").read_text()))
    spec.update(name="demo-flights", dataset={"uri": str(root / "flights.parquet")}, store=str(root / "store"),
                targets=[{"name": "local", "kind": "local",
                          "options": {"port": free_port(), "state_dir": str(root / "serving")}}])
    spec["model"].update(hidden=[16], checkpoint_every=50)
    spec["drift"]["sample_size"] = 2000
    # one epoch on a 1/40 slice ties the linear baseline; this test is about the control plane and the
    # served model, not the model's quality: the baseline gate is off (test_gates.py tests it)
    spec["evaluation"]["require_beat_baseline"] = False
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture()
def in_folder(tmp_path, monkeypatch, prefect_api_url, spec_path):
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    demo.stop_all(demo.STATE, str(spec_path))  # a failed test leaves no worker nor model server behind


def _deployments_and_automations():
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as c:
        return (sorted((d.name, [s.active for s in d.schedules]) for d in c.read_deployments()),
                sorted(a.name for a in c.read_automations()))


def retrain_id() -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as c:
        return str(c.read_deployment_by_name("retrain/retrain").id)


def test_the_demo_leaves_a_control_plane_and_runs_again_in_place(in_folder, spec_path, capsys, prefect_api_url):
    from prefect.deployments import run_deployment

    assert demo.main(["--spec", str(spec_path), "--max-epochs", "1"]) == 0
    out = capsys.readouterr().out
    worker = pidfile_process(in_folder / ".cloudhop" / "worker.pid", b"worker")
    assert worker is not None, out
    deployments, automations = _deployments_and_automations()
    schedules = dict(deployments)
    assert schedules["retrain"] == [True] and schedules["monitor"] == [True]  # active, as prefect.yaml says
    assert "retrain-on-drift" in automations, automations  # the drift trigger of prefect.yaml
    link = demo.deployment_link(prefect_api_url)
    assert f"retrain deployment: {link}" in out and link.endswith(f"/deployments/deployment/{retrain_id()}")

    # The deployment runs on the demo's worker (the only one on the `local` pool in this module).
    run = run_deployment("retrain/retrain", timeout=240, parameters={
        "spec": str(spec_path), "max_epochs": 1, "deploy": False, "reason": "test: from the deployment"})
    assert run.state.is_completed(), f"{run.state.type}: {run.state.message}"

    assert demo.main(["--spec", str(spec_path), "--max-epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert f"pid {worker} (already running)" in out
    assert _deployments_and_automations() == (deployments, automations)  # updated in place, nothing doubled

    served = yaml.safe_load(spec_path.read_text())["targets"][0]["options"]["port"]
    assert httpx.get(f"http://127.0.0.1:{served}/health", timeout=10).status_code == 200
    assert demo.main(["--stop", "--spec", str(spec_path)]) == 0
    out = capsys.readouterr().out
    assert "the worker" in out and "model server local" in out, out
    assert not pid_alive(worker)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{served}/health", timeout=5)
