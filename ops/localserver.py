"""One local Prefect server: `prefect server start` on 127.0.0.1 with a SQLite database of its own
(or a PostgreSQL one, given its URL: `ops.postgres`).

The demo and the loop start it from the command line (`python -m ops.localserver start`, or
from `ops.loop`) and leave it running for the next command to reuse; the tests and the
benchmarks start one on a free port for a session (`temporary_server`). Either way the same
code starts it, waits for `/api/health`, and stops it by the id in its pid file.

    python -m ops.localserver start [--port P] [--home DIR] [--state-dir DIR]   # prints the API URL
    python -m ops.localserver stop  [--state-dir DIR]

The port defaults to $CLOUDHOP_PREFECT_PORT or 4200, the server's PREFECT_HOME to
$CLOUDHOP_PREFECT_HOME or .cloudhop/prefect, and the pid file and log go to the state folder
(.cloudhop).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from ops.net import free_port, wait_http
from ops.procs import BIN, ROOT, kill_pidfile, stop

__all__ = ["LocalServer", "ServerError", "from_env", "ensure_api", "prefect_env", "temporary_server", "use_api",
           "main"]

DEFAULT_PORT = 4200


class ServerError(RuntimeError):
    """The Prefect server did not come up; the message names its log."""


def prefect_env(api_url: str | None = None, home: Path | None = None) -> dict[str, str]:
    """The environment for a Prefect subprocess of this repository: no analytics, INFO logs,
    the repository importable, and the API (and PREFECT_HOME) given."""
    env = dict(os.environ)
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", PREFECT_LOGGING_LEVEL="INFO",
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    if home is not None:
        env["PREFECT_HOME"] = str(home)
    if api_url is not None:
        env["PREFECT_API_URL"] = api_url
    return env


class LocalServer:
    """`prefect server start` on 127.0.0.1:`port`, its database under `home`, its pid file and log in `state_dir`.

    `scheduler=False` turns the scheduler service off: runs then start only when someone (or an
    event trigger) asks, never because a deployment's cron came due (what tests want).
    `database_url` (postgresql+asyncpg://...) puts its database in PostgreSQL instead of SQLite;
    it reaches the server's environment only, never its command line.
    """

    def __init__(self, port: int, home: Path, state_dir: Path, *, scheduler: bool = True,
                 database_url: str | None = None):
        self.port, self.home, self.state_dir, self.scheduler = port, Path(home), Path(state_dir), scheduler
        self.database_url = database_url
        self.api = f"http://127.0.0.1:{port}/api"
        self.pid_file = self.state_dir / "prefect-server.pid"
        self.log = self.state_dir / "prefect-server.log"
        self._proc: subprocess.Popen | None = None

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, timeout: float = 180, *, announce: bool = False) -> str:
        """Start the server unless one already answers on the port; returns the API URL.

        With `announce`, says on stderr that a server is being started and where its log is.
        """
        if self.healthy():
            return self.api
        self.home.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if announce:
            print(f"==> starting a local Prefect server on port {self.port} (log: {self.log})", file=sys.stderr,
                  flush=True)
        # The host and port as settings too, not only flags: the UI asks the API at the URL built from them.
        env = dict(os.environ, PREFECT_HOME=str(self.home), PREFECT_SERVER_API_HOST="127.0.0.1",
                   PREFECT_SERVER_API_PORT=str(self.port), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
        env.pop("PREFECT_API_URL", None)
        if not self.scheduler:
            env["PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED"] = "false"
        if self.database_url:
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = self.database_url
        with open(self.log, "wb") as out:
            self._proc = subprocess.Popen(
                [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid_file.write_text(str(self._proc.pid))
        try:
            wait_http(f"{self.api}/health", timeout, self._proc, self.log)
        except (RuntimeError, TimeoutError) as e:
            self.stop()
            raise ServerError(f"Prefect server did not start; see {self.log}\n{e}") from None
        return self.api

    def stop(self) -> bool:
        """Stop the server started here, by this object or by an earlier process (through the pid file)."""
        if self._proc is not None:
            stop(self._proc)
            self._proc = None
            self.pid_file.unlink(missing_ok=True)
            return True
        return kill_pidfile(self.pid_file, b"server")


@contextmanager
def temporary_server(workdir: Path, *, scheduler: bool = False, timeout: float = 300,
                     database_url: str | None = None) -> Iterator[str]:
    """A server on a free port for as long as the block runs (home and log under `workdir`, its database
    SQLite there or `database_url`); yields the API URL."""
    server = LocalServer(free_port(), workdir / "prefect-home", workdir, scheduler=scheduler,
                         database_url=database_url)
    api = server.start(timeout)
    try:
        yield api
    finally:
        server.stop()


@contextmanager
def use_api(api: str) -> Iterator[str]:
    """Point this process's Prefect client (settings and PREFECT_API_URL, which subprocesses inherit) at
    `api` for as long as the block runs; the previous server afterwards."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    old = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = api
    try:
        with temporary_settings(updates={PREFECT_API_URL: api}):
            yield api
    finally:
        if old is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = old


def from_env(state_dir: Path | str = ".cloudhop", port: int | None = None,
             home: Path | str | None = None) -> LocalServer:
    """The project's local server: port $CLOUDHOP_PREFECT_PORT (4200), PREFECT_HOME $CLOUDHOP_PREFECT_HOME
    (.cloudhop/prefect); what is given here wins."""
    port = port or int(os.environ.get("CLOUDHOP_PREFECT_PORT") or DEFAULT_PORT)
    home = home or os.environ.get("CLOUDHOP_PREFECT_HOME") or Path(".cloudhop/prefect").resolve()
    return LocalServer(port, Path(home), Path(state_dir))


def ensure_api(state_dir: Path | str = ".cloudhop") -> str:
    """PREFECT_API_URL when set; else the project's local server (`from_env`, started unless one
    answers), exported as PREFECT_API_URL for this process and its children. Exits with the
    first line of the reason when the server cannot start."""
    api = os.environ.get("PREFECT_API_URL")
    if not api:
        try:
            api = from_env(state_dir).start(announce=True)
        except ServerError as e:
            raise SystemExit(str(e).splitlines()[0]) from None
        os.environ["PREFECT_API_URL"] = api
    return api


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ops.localserver", description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["start", "stop"])
    ap.add_argument("--port", type=int, help="default $CLOUDHOP_PREFECT_PORT or 4200")
    ap.add_argument("--home", help="the server's PREFECT_HOME; default $CLOUDHOP_PREFECT_HOME or .cloudhop/prefect")
    ap.add_argument("--state-dir", default=".cloudhop", help="where the pid file and the log go (default .cloudhop)")
    a = ap.parse_args(argv)
    server = from_env(a.state_dir, a.port, a.home)
    if a.action == "stop":
        print("stopped the Prefect server started here" if server.stop() else "no Prefect server started here")
        return 0
    try:
        print(server.start(announce=True))
    except ServerError as e:
        print(str(e).splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
