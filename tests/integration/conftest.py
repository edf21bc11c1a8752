"""Fixtures shared by the integration tests (the session's services are in tests/conftest.py)."""
from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ops import engine, images
from ops.deploy import deploy_project
from ops.localserver import prefect_env, temporary_server, use_api
from ops.postgres import temporary_postgres


def _deploy(api: str) -> dict:
    """Apply the local pools and every deployment of prefect.yaml to `api` (this process points at it);
    what the server then holds."""
    from prefect.client.orchestration import get_client

    deploy_project(prefect_env(api))
    with get_client(sync_client=True) as c:
        deployments = {d.name: d for d in c.read_deployments()}
        automations = {a.name: a for a in c.read_automations()}
    return {"deployments": deployments, "automations": automations}


NO_ENGINE = ("podman is not installed here: scripts/setup installs it as root (apt-get install -y podman runc "
             "debootstrap); without root, install those")


@pytest.fixture(scope="session")
def deployed(prefect_api_url) -> dict:
    """The local pools and every deployment of prefect.yaml, once per session; what the server then holds.

    The session server's scheduler is off, so the schedules stay as deployed and still no
    scheduled run appears: tests decide what runs.
    """
    return _deploy(prefect_api_url)


@pytest.fixture(scope="session")
def postgres_plane(tmp_path_factory) -> dict:
    """A second Prefect server, its database in a real PostgreSQL (a throwaway cluster, ops.postgres),
    scheduler off, every deployment applied: the production shape of the control plane. This
    process points at it only inside `control_plane`."""
    workdir = tmp_path_factory.mktemp("prefect-postgres")
    with temporary_postgres(workdir) as db, temporary_server(workdir, database_url=db) as api:
        with use_api(api):
            plane = _deploy(api)
        yield {"api": api, "database": "postgresql", "log": workdir / "prefect-server.log", **plane}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def control_plane(request) -> dict:
    """The Prefect server a module's tests run against, each in turn: the session's (SQLite, as on a
    laptop), then one on PostgreSQL (as in production). This process points at it meanwhile."""
    if request.param == "sqlite":
        yield {"api": request.getfixturevalue("prefect_api_url"), "database": "sqlite",
               **request.getfixturevalue("deployed")}
        return
    plane = request.getfixturevalue("postgres_plane")
    with use_api(plane["api"]):
        yield plane


@pytest.fixture(scope="session")
def flights_columns() -> dict:
    """A few of the flights columns as spec entries: fewer expectations, a quicker test."""
    return {
        "time_hour": {"type": "datetime", "nullable": False, "role": "time"},
        "month": {"type": "int", "nullable": False, "min": 1, "max": 12},
        "carrier": {"type": "category", "nullable": False},
        "origin": {"type": "category", "nullable": False, "categories": ["EWR", "JFK", "LGA"]},
        "distance": {"type": "float", "nullable": False, "min": 0, "max": 6000},
        "temp": {"type": "float", "min": -40, "max": 130, "mostly": 0.99},
        "late": {"type": "int", "nullable": False, "categories": [0, 1], "role": "target"},
    }


# -- the closed loop (tests/integration/test_loop.py), on each control plane ---------------------
class LoopWorld:
    """A served champion of a flights slice, a worker on the `local` pool, and what the loop tests ask of them."""

    REPLAY_ROWS = 600

    def __init__(self, root: Path, spec_path: Path, url: str, plane: dict, worker_log: Path):
        from cloudhop.spec import load_spec

        self.root, self.spec_path, self.url, self.plane, self.worker_log = root, str(spec_path), url, plane, worker_log
        self.spec = load_spec(spec_path)
        self.deployments = plane["deployments"]
        self.retrain_id = self.deployments["retrain"].id
        self.since = datetime.now(timezone.utc)  # runs of the retrain deployment other modules made are not ours

    def registry(self):
        from cloudhop.registry import Registry
        from cloudhop.store import Store

        return Registry(Store(self.spec.store), self.spec.name)

    def served_version(self) -> str:
        import httpx

        return httpx.get(f"{self.url}/version", timeout=10).json()["version"]

    def replay(self, start: str, end: str, seed: int = 0, labels: bool = False) -> datetime:
        """Send REPLAY_ROWS rows of the window; returns when it started, once every row is in the log.

        With `labels`, their true labels then land in the store, keyed by the row ids the server logged.
        """
        from cloudhop.drift import monitor as mon
        from cloudhop.replay import replay, window_rows

        s = self.spec
        t0 = datetime.now(timezone.utc)
        rows = window_rows(s, start, end, max_rows=self.REPLAY_ROWS, seed=seed, with_target=True)
        stats = replay(rows[s.features], self.url, rate=5000, batch=100)
        assert stats.rows == self.REPLAY_ROWS and stats.errors == 0
        store = self.registry().store
        if labels:
            mon.write_labels(store, s.name, stats.row_ids, rows[s.target.column].tolist())
        deadline = time.monotonic() + 30
        while len(mon.read_served(store, s.name, t0, datetime.now(timezone.utc))) < self.REPLAY_ROWS:
            assert time.monotonic() < deadline, "replayed rows did not reach the prediction log"
            time.sleep(0.2)
        return t0

    def retrain_runs(self, model: str | None = None) -> list:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import DeploymentFilter

        with get_client(sync_client=True) as c:
            runs = c.read_flow_runs(deployment_filter=DeploymentFilter(id={"any_": [self.retrain_id]}))
        return [r for r in runs if r.created is not None and r.created >= self.since
                and (model is None or r.parameters.get("model") == model)]

    @staticmethod
    def events(name: str, resource_id: str) -> list[dict]:
        """Events of one name and resource the server has stored (proves the automation saw them)."""
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as c:
            r = c.request("POST", "/events/filter", json={"filter": {
                "event": {"name": [name]}, "resource": {"id": [resource_id]},
                "occurred": {"since": "2000-01-01T00:00:00Z"}}, "limit": 50})
        return r.json()["events"]

    def wait_for_event(self, name: str, resource_id: str, event_id: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(e["id"] == event_id for e in self.events(name, resource_id)):
            assert time.monotonic() < deadline, f"event {name} {event_id} never reached the server"
            time.sleep(0.5)

    def monitor(self, start: datetime, **kw) -> dict:
        from flows.monitor import ServedWindow, monitor

        kw.setdefault("cooldown_minutes", 0.0)
        out = monitor(spec=self.spec_path, window=ServedWindow(start=start), **kw)
        if out["event_id"]:
            self.wait_for_event(out["event"], f"cloudhop.model.{self.spec.name}", out["event_id"])
        return out

    def worker_tail(self) -> str:
        return self.worker_log.read_text()[-3000:]


@pytest.fixture(scope="module")
def loop(tmp_path_factory, control_plane):
    """A spec on a flights slice, a worker on the `local` pool, and the first champion served,
    on each control plane in turn."""
    import yaml

    from cloudhop.data import flights_table
    from cloudhop.providers.local.target import LocalTarget
    from ops.loop import CHAMPION_WINDOW
    from ops.net import free_port
    from ops.procs import ROOT, stop
    from ops.workers import start_worker

    root = tmp_path_factory.mktemp(f"loop-{control_plane['database']}")
    data = root / "flights.parquet"
    flights_table().iloc[::12].reset_index(drop=True).to_parquet(data)  # ~27k rows over the whole year
    port = free_port()
    spec = copy.deepcopy(yaml.safe_load((ROOT / "specs" / "flights.yaml").read_text()))
    spec["dataset"] = {"uri": str(data)}
    spec["store"] = str(root / "store")
    spec["model"].update(max_epochs=2, checkpoint_every=50, hidden=[32, 16])
    spec["evaluation"]["promote_margin"] = 0.0
    # A network of two epochs on a few months of a 1/12 slice scores within a thousandth of the linear
    # baseline either way; the loop tests are about the drift loop, not the model's quality: the
    # baseline gate is off (tests/integration/test_gates.py tests it).
    spec["evaluation"]["require_beat_baseline"] = False
    spec["drift"]["sample_size"] = 5000
    spec["targets"] = [{"name": "local", "kind": "local",
                        "options": {"port": port, "state_dir": str(root / "serving"),
                                    "server_args": ["--log-flush-seconds", "0.5"]}}]
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))

    env = prefect_env(control_plane["api"], home=root / "worker-home")
    env["PREFECT_WORKER_QUERY_SECONDS"] = "1"
    env["CLOUDHOP_SPECS"] = str(root)  # where a drift event's model name is looked up
    log = root / "worker.log"
    worker = start_worker("local", log, env, cwd=root)
    target = LocalTarget("local", spec["store"], spec["name"], port=port, state_dir=root / "serving")
    try:
        from flows.retrain import Window, retrain

        first = retrain(spec=str(path), window=Window(**CHAMPION_WINDOW), reason="test: first champion")
        assert first["promoted"] and first["version"] == "1", first
        yield LoopWorld(root, path, f"http://127.0.0.1:{port}", control_plane, log)
    finally:
        stop(worker)
        target.stop()


@pytest.fixture(scope="session")
def serve_image() -> dict:
    """The serve image, built once a session by `ops.images` (reused when unchanged: seconds); its report."""
    if not engine.installed():
        pytest.skip(NO_ENGINE)
    return images.build_all(only=[images.SERVE])["serve"]


@pytest.fixture(scope="session")
def built_images(serve_image) -> dict:
    """Both images, built once a session (the first build on a fresh machine takes minutes)."""
    return {"serve": serve_image, **images.build_all(only=[images.TRAIN])}


@pytest.fixture(scope="session")
def docker_host(tmp_path_factory) -> Iterator[str]:
    """Podman's Docker API on a socket of the session's own: the DOCKER_HOST URL."""
    if not engine.installed():
        pytest.skip(NO_ENGINE)
    with engine.api_socket(tmp_path_factory.mktemp("podman")) as url:
        yield url
