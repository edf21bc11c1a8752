"""The local target: the inference server as a detached process on this machine.

Its state files (pid, log, admin token) in the state folder are named by model and target
(`<model>.<target>.pid`, ...), so several models served on one machine under the same target
name start, stop and swap independently.

Each server it starts gets a fresh admin token (unless one is given), kept beside its pid file
in the state folder with 0600 permissions and handed to the server by file name, so it is in no
command line, environment or log. Whoever drives the server later (another deploy run, the
loop) reads it from there.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cloudhop.registry import Registry
from cloudhop.store import Store
from cloudhop.targets.base import SmokeResult, TargetError
from cloudhop.targets.cloud import Endpoint, copy_version

__all__ = ["LocalTarget", "from_spec", "pid_alive"]


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs: not gone, and not a zombie (one that exited and waits for its
    parent: reaped here when it is our child, else read from /proc)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:  # not our child
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_server(pid: int) -> bool:
    """Whether pid runs cloudhop.serving (guards against a reused pid); True where /proc is absent."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc/self").exists():
        return True
    try:
        return b"cloudhop.serving" in cmdline.read_bytes()
    except OSError:
        return False


def _file_safe(name: str) -> str:
    """A target name as part of a file name: characters other than letters, digits, - and _ become _."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def _write_private(path: Path, text: str) -> None:
    """Write `text` readable by this user only (0600), replacing the file in one rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class LocalTarget:
    """Serves a model from `store_uri` with `python -m cloudhop.serving` on host:port."""

    kind = "local"

    def __init__(self, name: str, store_uri: str, model: str, host: str = "127.0.0.1", port: int = 8765,
                 state_dir: str | os.PathLike = ".cloudhop/serving", store_options: dict[str, Any] | None = None,
                 admin_token: str | None = None, start_timeout: float = 60.0, server_args: list[str] | None = None):
        self.name, self.model, self.host, self.port = name, model, host, int(port)
        self.store_uri = store_uri if "://" in store_uri else os.path.abspath(store_uri)
        self.store_options = dict(store_options or {})
        self.state_dir = Path(state_dir)
        self._given_token = admin_token if admin_token is not None else os.environ.get("CLOUDHOP_ADMIN_TOKEN")
        self.start_timeout = start_timeout
        self.server_args = list(server_args or [])
        self.url = f"http://{host}:{self.port}"
        stem = f"{model}.{_file_safe(name)}"  # a model name has no dot (cloudhop.spec.NAME_PATTERN)
        self.log_path = self.state_dir / f"{stem}.log"
        self.pid_path = self.state_dir / f"{stem}.pid"
        self.token_path = self.state_dir / f"{stem}.admin-token"
        self._endpoint: Endpoint | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def admin_token(self) -> str | None:
        """The running server's admin token: the one given, else the one kept in the state folder."""
        if self._given_token:
            return self._given_token
        try:
            return self.token_path.read_text().strip() or None
        except FileNotFoundError:
            return None

    @property
    def endpoint(self) -> Endpoint:
        if self._endpoint is None:
            self._endpoint = Endpoint(self.url, self.admin_token)
        return self._endpoint

    def _new_server_token(self) -> None:
        """Keep the admin token of the server about to start (a new one unless given) in the state folder."""
        _write_private(self.token_path, self._given_token or secrets.token_urlsafe(32))
        self.close()  # the next request goes out with this token

    def __repr__(self) -> str:
        return f"LocalTarget({self.name!r}, {self.url})"

    # -- status --------------------------------------------------------------
    def health(self) -> dict:
        return self.endpoint.health()

    def live_version(self) -> str | None:
        return self.endpoint.version()

    def prediction_log_store(self) -> Store:
        """Where the server logs predictions: the --log-store of its server_args, else the store it serves from."""
        args, uri = self.server_args, None
        for i, a in enumerate(args):
            if a == "--log-store" and i + 1 < len(args):
                uri = args[i + 1]
            elif a.startswith("--log-store="):
                uri = a.split("=", 1)[1]
        return Store(uri or self.store_uri, self.store_options)

    def is_running(self) -> bool:
        return self.health().get("status") == "ok"

    # -- lifecycle -------------------------------------------------------------
    def publish(self, registry: Registry, version: str) -> None:
        """Verify every checksum; when the target reads another store, copy the version there and re-verify."""
        version = registry.resolve(version)
        problems = registry.verify(version)
        if problems:
            raise TargetError(f"target {self.name}: {registry.name} v{version} fails verification: "
                              + "; ".join(problems))
        target_store = Store(self.store_uri, self.store_options)
        if target_store.uri == registry.store.uri:
            return
        try:
            copy_version(registry, target_store, version)
        except TargetError as e:
            raise TargetError(f"target {self.name}: {e}") from None

    def ensure_running(self, version: str) -> None:
        """Start the server at `version` unless a healthy one already answers on the port."""
        h = self.health()
        if h.get("status") == "ok":
            if h.get("model") != self.model:
                raise TargetError(f"target {self.name}: {self.url} already serves model {h.get('model')!r}, "
                                  f"not {self.model!r}; pick another port")
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._new_server_token()
        cmd = [sys.executable, "-m", "cloudhop.serving", "--store", self.store_uri, "--model", self.model,
               "--version", str(version), "--host", self.host, "--port", str(self.port),
               "--target-name", self.name, "--admin-token-file", str(self.token_path), *self.server_args]
        env = dict(os.environ)
        env.pop("CLOUDHOP_ADMIN_TOKEN", None)  # the server reads its token from the file only
        if self.store_options:
            env["CLOUDHOP_STORE_OPTIONS"] = json.dumps(self.store_options)
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting v{version} on {self.url}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env=env, start_new_session=True)
        self.pid_path.write_text(str(self._proc.pid))
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            rc = self._proc.poll()
            if rc is not None:
                self.pid_path.unlink(missing_ok=True)
                raise TargetError(f"target {self.name}: the server exited with code {rc} before it was healthy. "
                                  f"Log {self.log_path}:\n{_log_tail(self.log_path)}")
            if self.health().get("status") == "ok":
                return
            time.sleep(0.1)
        self.stop()
        raise TargetError(f"target {self.name}: the server was not healthy on {self.url} within "
                          f"{self.start_timeout:.0f}s. Log {self.log_path}:\n{_log_tail(self.log_path)}")

    def roll_out(self, version: str) -> None:
        """Load `version` into the running server (start it there if none runs), then confirm /version."""
        if not self.is_running():
            self.ensure_running(version)
            want = str(version)
        else:
            want = self.endpoint.load(version, where=f"target {self.name}")
        live = self.live_version()
        if live != want or (str(version).isdigit() and live != str(version)):
            raise TargetError(f"target {self.name}: asked for v{version} but {self.url} serves v{live}")

    def roll_back(self, version: str) -> None:
        self.roll_out(version)

    def smoke_test(self, rows: list[dict], expected: list[float], atol: float = 1e-4) -> SmokeResult:
        n = len(rows)
        if len(expected) != n:
            return SmokeResult(False, float("inf"), n, f"smoke set has {n} rows but {len(expected)} predictions")
        return self.endpoint.smoke_test(rows, expected, atol)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the server this target started (by its pid file). Returns whether one was running."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return False
        running = pid_alive(pid) and _is_server(pid)
        if running:
            os.kill(pid, signal.SIGTERM)  # graceful: the server flushes its prediction log
            deadline = time.monotonic() + timeout
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self._proc is not None and self._proc.pid == pid:
            self._proc.wait(timeout=timeout)
            self._proc = None
        self.pid_path.unlink(missing_ok=True)
        self.token_path.unlink(missing_ok=True)
        return running

    def close(self) -> None:
        """Close the HTTP connection pool (the server keeps running; see stop)."""
        if self._endpoint is not None:
            self._endpoint.close()
            self._endpoint = None


_OPTIONS = {"port", "host", "state_dir", "start_timeout", "server_args"}


def from_spec(spec_target: Any, spec: Any, secrets: dict[str, Any] | None = None) -> LocalTarget:
    """A LocalTarget from a ServingTargetSpec (options: port, host, state_dir, start_timeout, server_args).

    `secrets` is accepted like every provider's target factory takes it, and unused: the local
    server reads the pipeline's own store, with the spec's store options and the credentials the
    tasks layer resolved from `store_credentials` (handed to the server process in its environment)."""
    unknown = set(spec_target.options) - _OPTIONS
    if unknown:
        raise TargetError(f"targets.{spec_target.name}.options: unknown option(s) {sorted(unknown)} for a local "
                          f"target; known: {sorted(_OPTIONS)}")
    return LocalTarget(spec_target.name, spec.store, spec.name, store_options=spec.store_fs_options,
                       **spec_target.options)
