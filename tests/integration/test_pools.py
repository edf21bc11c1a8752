"""`python -m flows.pools` and the failure query against a real Prefect server.

Uses the session's `prefect_api_url` server (tests/conftest.py). Pool and cloud names carry a
random suffix so other tests on the same server cannot collide with these.
"""
import json
import shutil
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolUpdate
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Cancelled, Completed, Crashed, Failed

from cloudhop.clouds import BreakerPolicy, TrainingRequest, parse_catalog, rank_clouds
from flows.pools import main
from tasks.pools import read_cloud_failures
from ops.localserver import prefect_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def catalog_copy(tmp_path):
    """The shipped catalog with every pool renamed <pool>-<suffix>, templates copied beside it."""
    suffix = uuid.uuid4().hex[:6]
    data = yaml.safe_load((ROOT / "deployments" / "clouds.yaml").read_text())
    folder = tmp_path / "work-pools"
    folder.mkdir()
    names = {}
    for spec in data["clouds"].values():
        for pool in spec["work_pools"]:
            old, new = pool["name"], f"{pool['name']}-{suffix}"
            pool["name"] = names[old] = new
            for offer in spec["offers"]:
                if offer.get("pool") == old:
                    offer["pool"] = new
            shutil.copy(ROOT / "deployments" / "work-pools" / f"{old}.json", folder / f"{new}.json")
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, names


def cli(*args, api_url):
    return subprocess.run([sys.executable, "-m", "flows.pools", *args], cwd=ROOT, env=prefect_env(api_url),
                          capture_output=True, text=True, timeout=180)


def states(stdout: str, names: dict[str, str]) -> dict[str, str]:
    """pool (original name) -> the state column of the printed table."""
    by_new = {new: old for old, new in names.items()}
    out = {}
    for line in stdout.splitlines():
        cols = line.split()
        if cols and cols[0] in by_new:
            out[by_new[cols[0]]] = cols[3]
    return out


def test_apply_local_creates_process_pools_then_changes_nothing(prefect_api_url, catalog_copy, capsys):
    path, names = catalog_copy
    first = cli("apply", "--local", "--catalog", str(path), api_url=prefect_api_url)
    assert first.returncode == 0, first.stderr
    assert states(first.stdout, names) == {old: "created" for old in names}

    with get_client(sync_client=True) as client:
        for new in names.values():
            pool = client.read_work_pool(new)
            # pools that already run on this machine (the docker pools on podman) keep their type
            assert pool.type == ("docker" if new.startswith("docker") else "process"), (new, pool.type)
            cloud = pool.base_job_template["variables"]["properties"]["env"]["default"]["CLOUDHOP_CLOUD"]
            assert new.startswith(cloud) or (new.startswith("docker") and cloud.startswith("container"))

    assert main(["apply", "--local", "--catalog", str(path)]) == 0
    second = capsys.readouterr().out
    assert states(second, names) == {old: "unchanged" for old in names}
    assert "nothing changed" in second

    # someone edits a pool on the server: apply puts it back, and only it
    with get_client(sync_client=True) as client:
        client.update_work_pool(names["gcp-gpu"], WorkPoolUpdate(description="edited by hand"))
    assert main(["apply", "--local", "--catalog", str(path)]) == 0
    out = capsys.readouterr().out
    assert states(out, names) == {old: "updated" if old == "gcp-gpu" else "unchanged" for old in names}
    assert "nothing changed" not in out

    assert main(["list", "--local", "--catalog", str(path)]) == 0
    listed = capsys.readouterr().out
    assert all(f"{new} " in listed for new in names.values())
    assert listed.count(" in sync ") == len(names)

    # the real pools cannot replace the process stand-ins in place: a clear conflict, exit 1
    assert main(["apply", "--catalog", str(path)]) == 1
    captured = capsys.readouterr()
    got = states(captured.out, names)
    assert got.pop("local") == "unchanged"  # a process pool either way
    assert {got.pop(p) for p in ("docker", "docker-b")} == {"unchanged"}  # docker pools either way
    assert set(got.values()) == {"conflict"}
    assert f"pool {names['aws-gpu']}: exists as type 'process', wanted 'ecs'" in captured.err


def test_apply_creates_real_pool_types_with_committed_templates(prefect_api_url, catalog_copy, capsys):
    path, names = catalog_copy
    assert main(["apply", "--catalog", str(path)]) == 0
    assert set(states(capsys.readouterr().out, names).values()) == {"created"}
    with get_client(sync_client=True) as client:
        pool = client.read_work_pool(names["coreweave-gpu"])
        assert pool.type == "kubernetes"
        committed = json.loads((path.parent / "work-pools" / f"{names['coreweave-gpu']}.json").read_text())
        assert pool.base_job_template == committed
        assert client.read_work_pool(names["aws-gpu"]).type == "ecs"
        assert client.read_work_pool(names["gcp-gpu"]).type == "vertex-ai"
    assert main(["apply", "--catalog", str(path)]) == 0
    assert "nothing changed" in capsys.readouterr().out


def test_missing_api_url_or_template_is_a_clear_error(catalog_copy, capsys):
    path, names = catalog_copy
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert main(["apply", "--catalog", str(path)]) == 2
    assert "PREFECT_API_URL is not set" in capsys.readouterr().err
    (path.parent / "work-pools" / f"{names['aws-gpu']}.json").unlink()
    assert main(["templates", "--check", "--catalog", str(path)]) == 1
    assert f"stale templates in {path.parent / 'work-pools'}: {names['aws-gpu']}" in capsys.readouterr().err
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):  # nothing listens there
        assert main(["apply", "--catalog", str(path)]) == 2
        assert f"no base job template for pool '{names['aws-gpu']}'" in capsys.readouterr().err
        assert main(["list", "--local", "--catalog", str(path)]) == 2
        assert "Prefect API at http://127.0.0.1:9/api: ConnectError" in capsys.readouterr().err


def test_read_cloud_failures_counts_crashes_and_runs_that_never_started(prefect_api_url):
    sfx = uuid.uuid4().hex[:6]
    a, b = f"a{sfx}", f"b{sfx}"
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("train")
        dep = client.create_deployment(flow_id=flow_id, name=f"train-{sfx}")

        def run(tags, state):
            fr = client.create_flow_run_from_deployment(dep, tags=tags)
            client.set_flow_run_state(fr.id, state, force=True)
            return fr

        def train(cloud):
            return ["cloudhop-train", f"cloud:{cloud}"]

        run(train(a), Crashed(message="before the window"))
        since = datetime.now(timezone.utc)
        run(train(a), Crashed(message="pod evicted"))
        run(train(a), Cancelled(message="not started within 60s"))
        run(train(a), Cancelled(message="cancelled by a person"))
        run(train(a), Failed(message="ValueError: loss is NaN"))
        run(train(a), Completed())
        run([f"cloud:{a}"], Crashed(message="not a training run"))
        run(train(b), Crashed(message="node lost"))

    failures = [f for f in read_cloud_failures.fn(since) if f.cloud in (a, b)]
    got = sorted((f.cloud, f.reason.split(": ", 1)[1]) for f in failures)
    assert got == [(a, "crashed: pod evicted"), (a, "not started within 60s"), (b, "crashed: node lost")]
    assert all(f.at >= since for f in failures)

    # and they drive the breaker: two failures in the window open cloud a, not b
    def cloud(name):
        return {"region": "r", "prices_as_of": "2025-06-01",
                "work_pools": [{"name": f"{name}-pool", "type": "process"}],
                "offers": [{"gpu": "L4", "count": 1, "on_demand": 1.0}],
                "object_store": {"uri": f"s3://{name}", "egress_per_gb": 0.0}}
    catalog = parse_catalog({"clouds": {a: cloud(a), b: cloud(b)}})
    placement = rank_clouds(catalog, TrainingRequest(dataset_bytes=0, dataset_location=a), failures,
                            datetime.now(timezone.utc), BreakerPolicy(max_failures=2, window_minutes=10))
    assert placement.order == [b]
    assert placement.candidate(a).reason.startswith("circuit open: 2 infrastructure failures")
