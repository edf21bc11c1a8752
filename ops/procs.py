"""Stopping the processes ops starts: each leads its own process group, stopped by its id."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cloudhop.providers.local.target import pid_alive

__all__ = ["ROOT", "BIN", "stop", "pidfile_process", "kill_pidfile"]

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


def pidfile_process(path: Path, marker: bytes) -> int | None:
    """The id in pid file `path` when that process runs and its command line contains `marker`, else None.

    A pid file outlives its process, and the id may belong to someone else by now: the marker
    in /proc/<pid>/cmdline tells ours apart.
    """
    try:
        pid = int(path.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if Path("/proc/self").exists() else marker
    except (FileNotFoundError, ValueError, OSError):
        return None
    return pid if marker in cmdline and pid_alive(pid) else None


def kill_pidfile(path: Path, marker: bytes, grace: float = 10) -> bool:
    """Stop the process whose id `path` holds, if its command line contains `marker`; remove the file.
    Returns whether a process was stopped (nothing is signalled unless `pidfile_process` finds it)."""
    pid = pidfile_process(path, marker)
    path.unlink(missing_ok=True)
    if pid is None:
        return False
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        _signal(pid, signal.SIGKILL)
    return True
