"""The container engine on this machine: podman, from the command line and over its Docker API.

Podman needs two settings here, both in one `containers.conf` that every podman process of
this repository reads (through CONTAINERS_CONF): the runc runtime (crun refuses hybrid
cgroups) and no default ulimits (the defaults are refused: "setrlimit: Operation not
permitted"). Prefect's docker worker and docker-py talk to `podman system service`, which
serves the Docker API on a unix socket:

    eval "$(python -m ops.engine start [--state-dir DIR])"   # exports DOCKER_HOST=unix://...
    python -m ops.engine stop  [--state-dir DIR]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from ops.procs import ROOT, kill_pidfile, stop

__all__ = ["EngineError", "installed", "engine_env", "podman", "api_socket", "start_api", "main"]

STATE_DIR = ROOT / ".cloudhop"
CONTAINERS_CONF = """\
# Written by ops.engine for every podman process of cloudhop (CONTAINERS_CONF).
[containers]
default_ulimits = []

[engine]
runtime = "runc"
"""


class EngineError(RuntimeError):
    """A podman command failed; the message holds the command and the end of its output."""


def installed() -> bool:
    """Whether podman is on PATH (scripts/setup installs it as root with apt)."""
    return shutil.which("podman") is not None


def engine_env(state_dir: Path = STATE_DIR) -> dict[str, str]:
    """This process's environment with CONTAINERS_CONF pointing at cloudhop's containers.conf."""
    conf = Path(state_dir) / "containers.conf"
    if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def podman(*args: str, timeout: float | None = None, stdin: bytes | None = None,
           check: bool = True) -> subprocess.CompletedProcess:
    """Run `podman ARGS` with cloudhop's containers.conf; its output captured as text."""
    proc = subprocess.run(["podman", *args], env=engine_env(), input=stdin, capture_output=True, timeout=timeout)
    out = subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(errors="replace"),
                                      proc.stderr.decode(errors="replace"))
    if check and proc.returncode != 0:
        raise EngineError(f"`podman {' '.join(args[:3])} ...` exited with {proc.returncode}:\n"
                          f"{(out.stderr or out.stdout)[-3000:]}")
    return out


def _ping(sock: Path) -> bool:
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), timeout=2) as c:
            return c.get("http://podman/_ping").status_code == 200
    except httpx.HTTPError:
        return False


def start_api(sock: Path, log: Path, timeout: float = 30) -> subprocess.Popen:
    """`podman system service` on unix socket `sock` (no idle exit), once it answers /_ping."""
    sock.parent.mkdir(parents=True, exist_ok=True)
    sock.unlink(missing_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"], env=engine_env(),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not _ping(sock):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise EngineError(f"podman's API service on {sock} did not come up; see {log}:\n"
                              f"{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)
    return proc


@contextmanager
def api_socket(workdir: Path) -> Iterator[str]:
    """Podman's Docker API for the block: yields the DOCKER_HOST URL (unix://...)."""
    sock = Path(workdir) / "podman.sock"
    proc = start_api(sock, Path(workdir) / "podman-service.log")
    try:
        yield f"unix://{sock}"
    finally:
        stop(proc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ops.engine", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["start", "stop"])
    ap.add_argument("--state-dir", type=Path, default=STATE_DIR)
    a = ap.parse_args(argv)
    pidfile, sock = a.state_dir / "podman-service.pid", a.state_dir / "podman.sock"
    if a.command == "stop":
        stopped = kill_pidfile(pidfile, b"podman")
        print("stopped podman's API service" if stopped else "podman's API service was not running")
        return 0
    if not installed():
        print("error: podman is not installed: run scripts/setup as root (apt-get install -y podman runc)",
              file=sys.stderr)
        return 2
    if not (pidfile.exists() and _ping(sock)):
        proc = start_api(sock, a.state_dir / "podman-service.log")
        pidfile.write_text(str(proc.pid))
    print(f"export DOCKER_HOST=unix://{sock}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
