"""Fixtures shared by the integration tests (the session's services are in tests/conftest.py)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from ops import engine, images
from ops.deploy import deploy_project
from ops.localserver import prefect_env

NO_ENGINE = ("podman is not installed here: scripts/setup installs it as root (apt-get install -y podman runc "
             "debootstrap); without root, install those")


@pytest.fixture(scope="session")
def deployed(prefect_api_url) -> dict:
    """The local pools and every deployment of prefect.yaml, once per session; what the server then holds.

    The session server's scheduler is off, so the schedules stay as deployed and still no
    scheduled run appears: tests decide what runs.
    """
    from prefect.client.orchestration import get_client

    deploy_project(prefect_env(prefect_api_url))
    with get_client(sync_client=True) as c:
        deployments = {d.name: d for d in c.read_deployments()}
        automations = {a.name: a for a in c.read_automations()}
    return {"deployments": deployments, "automations": automations}


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
