"""The inference server as a local process (`python -m cloudhop.serving` on a free port), and
steady traffic to servers (what a canary is judged on)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from ops.net import free_port, wait_http

__all__ = ["ServerProcess", "Traffic"]


class ServerProcess:
    """`python -m cloudhop.serving` on a free port, stopped by its pid; its output goes to `log_path`."""

    def __init__(self, store_uri: str, model: str, version: str, log_path: Path, *args: str,
                 env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        cmd = [sys.executable, "-m", "cloudhop.serving", "--store", store_uri, "--model", model,
               "--version", version, "--port", str(self.port), *args]
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 60.0) -> "ServerProcess":
        """Wait for /health; a server that exits or stays down is stopped and its log raised."""
        try:
            wait_http(self.url + "/health", timeout, self.proc, self.log_path)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send `sig` (SIGKILL after `timeout` s); returns the exit code."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class Traffic:
    """Steady /predict traffic, round robin over `urls`, from a thread while the `with` block runs:
    `rows` copies of `row` a request, `rate` requests a second. A refused connection is skipped
    (a server may be down on purpose)."""

    def __init__(self, urls: list[str], row: dict, *, rows: int = 1, rate: float = 80.0):
        self.urls, self.body, self.interval = urls, {"rows": [row] * rows}, 1.0 / rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10, trust_env=False) as c:
            i = 0
            while not self._stop.is_set():
                try:
                    c.post(self.urls[i % len(self.urls)] + "/predict", json=self.body)
                except httpx.TransportError:
                    pass
                i += 1
                self._stop.wait(self.interval)

    def __enter__(self) -> "Traffic":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
