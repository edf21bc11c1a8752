"""Shared fixtures. Services start once per session, only when a test asks for them."""
from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

import pytest

from ops import services
from ops.localserver import temporary_server, use_api


@pytest.fixture(scope="session")
def prefect_api_url(tmp_path_factory):
    """A real `prefect server start` for the whole session, its scheduler off (tests decide what runs);
    this process talks to it."""
    workdir = tmp_path_factory.mktemp("prefect")
    with temporary_server(workdir) as api, use_api(api):
        yield api


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory):
    with services.moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture(scope="session")
def gcs_url(tmp_path_factory):
    with services.gcs_emulator(tmp_path_factory.mktemp("gcs")) as url:
        yield url


@pytest.fixture(scope="session")
def fake_gcs_url(tmp_path_factory):
    """A GCS emulator that enforces generation preconditions (fake-gcs-server)."""
    with services.fake_gcs_server(tmp_path_factory.mktemp("fake-gcs")) as url:
        yield url


@pytest.fixture(scope="session")
def azurite_url(tmp_path_factory):
    with services.azurite(tmp_path_factory.mktemp("azurite")) as url:
        yield url
