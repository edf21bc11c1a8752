"""Fixtures shared by the integration tests (the session's services are in tests/conftest.py)."""
from __future__ import annotations

import pytest

from ops.deploy import deploy_project
from ops.localserver import prefect_env


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
