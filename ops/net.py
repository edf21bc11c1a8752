"""Loopback ports and readiness checks for the processes that ops starts."""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx

__all__ = ["free_port", "wait_http"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(log: Path | None) -> str:
    return log.read_text(errors="replace")[-3000:] if log and log.exists() else ""


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Poll `url` until it answers below 500.

    Raises RuntimeError as soon as `proc` exits and TimeoutError after `timeout` seconds; both
    carry the end of `log`, which is where the reason is.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not up after {timeout}s\n{_tail(log)}")
