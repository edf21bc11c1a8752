"""Stopping the processes ops starts: each leads its own process group, stopped by its id."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cloudhop.providers.local.target import pid_alive

__all__ = ["ROOT", "BIN", "stop", "kill_pidfile"]

ROOT = Path(__file__).resolve().parents[1]
"""The repository: the working directory of deploys and workers."""
BIN = Path(sys.executable).parent
"""The virtualenv's bin folder (`prefect`, `moto_server`, ...)."""


def stop(proc: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM a child's process group; SIGKILL it if it is still there after `grace` seconds."""
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


def _signal(pid: int, sig: int) -> None:
    for kill in (os.killpg, os.kill):  # the group when it leads one, else the process
        try:
            kill(pid, sig)
            return
        except (ProcessLookupError, PermissionError):
            continue


def kill_pidfile(path: Path, marker: bytes, grace: float = 10) -> bool:
    """Stop the process whose id `path` holds, if its command line contains `marker`; remove the file.

    A pid file outlives its process, and the id may belong to someone else by now: without the
    marker in /proc/<pid>/cmdline nothing is signalled. Returns whether a process was stopped.
    """
    try:
        pid = int(path.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if Path("/proc/self").exists() else marker
    except (FileNotFoundError, ValueError, OSError):
        path.unlink(missing_ok=True)
        return False
    path.unlink(missing_ok=True)
    if marker not in cmdline:
        return False
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        _signal(pid, signal.SIGKILL)
    return True
