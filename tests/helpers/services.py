"""Real local services for tests: each one a subprocess on a free loopback port, stopped by pid."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"process for {url} exited with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{url} not up after {timeout}s\n{tail}")


def stop(proc: subprocess.Popen, grace: float = 10) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def prefect_env(api_url: str | None = None, home: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", PREFECT_LOGGING_LEVEL="INFO",
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    if home is not None:
        env["PREFECT_HOME"] = str(home)
    if api_url is not None:
        env["PREFECT_API_URL"] = api_url
    return env


@contextmanager
def prefect_server(workdir: Path):
    """`prefect server start` on a free port with its own SQLite database. Yields the API URL.

    Its scheduler service is off: runs start only when a test (or an event trigger) asks, never
    because a deployment's cron or interval came due while a test was watching the runs."""
    port = free_port()
    home = workdir / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    log = workdir / "prefect-server.log"
    env = prefect_env(home=home)
    env.pop("PREFECT_API_URL", None)
    env["PREFECT_SERVER_API_HOST"] = "127.0.0.1"
    env["PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED"] = "false"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=workdir)
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_http(f"{api}/health", 300, proc, log)
        yield api
    finally:
        stop(proc)


@contextmanager
def moto_server(workdir: Path):
    port = free_port()
    log = workdir / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/moto-api/", 30, proc, log)
        yield url
    finally:
        stop(proc)


@contextmanager
def gcs_emulator(workdir: Path):
    port = free_port()
    log = workdir / "gcs.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BIN / "gcp-storage-emulator"), "start", "--host", "127.0.0.1", "--port", str(port),
                                 "--in-memory"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url, 30, proc, log)
        yield url
    finally:
        stop(proc)


def azurite_bin() -> str | None:
    local = ROOT / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return str(local)
    return shutil.which("azurite-blob")


@contextmanager
def azurite(workdir: Path):
    exe = azurite_bin()
    if exe is None:
        raise RuntimeError("azurite is not installed: run `npm install` in the repository (scripts/setup does)")
    port = free_port()
    log = workdir / "azurite.log"
    data = workdir / "azurite-data"
    data.mkdir(exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen([exe, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(data),
                                 "--silent", "--skipApiVersionCheck", "--loose"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/devstoreaccount1"
    try:
        wait_http(url + "?comp=list", 30, proc, log)
        yield url
    finally:
        stop(proc)
