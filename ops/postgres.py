"""A throwaway PostgreSQL for a production-shaped Prefect server, on a free loopback port.

    with temporary_postgres(workdir) as url:              # postgresql+asyncpg://prefect:...@127.0.0.1:P/prefect
        with temporary_server(workdir, database_url=url) as api:
            ...

The cluster lives in a private temporary folder (removed afterwards); the server listens on
127.0.0.1 only and asks for a password (a fresh random one per cluster, which only the
returned URL holds). PostgreSQL refuses to run as root: as root, initdb and the server run as
the `postgres` user (else `nobody`). The binaries come from $CLOUDHOP_PG_BIN, else Debian's
/usr/lib/postgresql/<major>/bin, else PATH.
"""
from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ops.net import free_port
from ops.procs import stop

__all__ = ["PostgresError", "pg_bin", "temporary_postgres"]


class PostgresError(RuntimeError):
    """PostgreSQL could not be found or did not start; the message says why and where its log is."""


def pg_bin() -> Path | None:
    """The folder holding initdb and postgres (None: no PostgreSQL on this machine)."""
    for folder in [os.environ.get("CLOUDHOP_PG_BIN", ""), *sorted(glob.glob("/usr/lib/postgresql/*/bin"))[::-1]]:
        if folder and (Path(folder) / "initdb").exists():
            return Path(folder)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _run_as() -> tuple[list[str], pwd.struct_passwd | None]:
    """The command prefix that drops root for PostgreSQL (none when not root), and that user."""
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"], user
    raise PostgresError("running as root, and neither a postgres nor a nobody user exists to run PostgreSQL as")


@contextmanager
def temporary_postgres(workdir: Path, *, timeout: float = 60) -> Iterator[str]:
    """A fresh cluster with a database `prefect` owned by user `prefect`, for as long as the block runs;
    yields its SQLAlchemy URL for asyncpg. The server's log goes to `workdir`/postgres.log."""
    bin_dir = pg_bin()
    if bin_dir is None:
        raise PostgresError("no PostgreSQL found: install it (Debian: postgresql) or set CLOUDHOP_PG_BIN")
    prefix, user = _run_as()
    home = Path(tempfile.mkdtemp(prefix="cloudhop-pg-"))  # /tmp: reachable by the user PostgreSQL runs as
    log = Path(workdir) / "postgres.log"
    password = secrets.token_urlsafe(24)
    proc = None
    try:
        pwfile = home / "pw"
        pwfile.write_text(password)
        pwfile.chmod(0o600)
        if user is not None:
            for p in (home, pwfile):
                os.chown(p, user.pw_uid, user.pw_gid)
        init = subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(home / "data"), "-U", "prefect",
                               f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"],
                              cwd=home, capture_output=True, text=True)
        pwfile.unlink()
        if init.returncode != 0:
            raise PostgresError(f"initdb failed ({init.returncode}):\n{init.stdout[-2000:]}{init.stderr[-2000:]}")
        port = free_port()
        with open(log, "wb") as out:
            proc = subprocess.Popen([*prefix, str(bin_dir / "postgres"), "-D", str(home / "data"), "-p", str(port),
                                     "-k", str(home), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                                    cwd=home, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        env = dict(os.environ, PGPASSWORD=password)
        deadline = time.monotonic() + timeout
        while True:  # createdb answers once the server accepts connections
            made = subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "prefect",
                                   "prefect"], env=env, capture_output=True, text=True)
            if made.returncode == 0:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise PostgresError(f"PostgreSQL did not start ({made.stderr.strip()}); see {log}:\n"
                                    f"{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.3)
        yield f"postgresql+asyncpg://prefect:{password}@127.0.0.1:{port}/prefect"
    finally:
        if proc is not None:
            stop(proc)
        shutil.rmtree(home, ignore_errors=True)
