"""Real `prefect worker start` processes (process or docker workers), started and killed by the loop, tests and benchmarks."""
from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import yaml

from ops.localserver import prefect_env
from ops.procs import BIN, ROOT, stop

__all__ = ["start_worker", "Workers", "process_catalog"]

CATALOG = ROOT / "deployments" / "clouds.yaml"


def process_catalog(dest: Path) -> Path:
    """The project's cloud catalog with every pool a `process` pool, written to `dest`: what
    `flows.pools apply --local` registers, stated so that a spec in compute.mode pools may keep
    its store in a local folder (the spec refuses a folder store with pools that run elsewhere)."""
    data = yaml.safe_load(CATALOG.read_text())
    for cloud in data["clouds"].values():
        for pool in cloud["work_pools"]:
            pool.update(type="process", defaults={})
    dest.write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


def start_worker(pool: str, log: Path, env: dict[str, str], *, cwd: Path = ROOT,
                 name: str | None = None, pool_type: str = "process") -> subprocess.Popen:
    """A worker of `pool_type` polling `pool`, its output appended to `log`, leading its own process group."""
    cmd = [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", pool_type]
    if name:
        cmd += ["--name", name]
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


class Workers:
    """One worker per cloud pool, each of which can be killed as a cloud going down."""

    def __init__(self, api: str, logdir: Path, pools: dict[str, str], *, pool_type: str = "process",
                 env: dict[str, str] | None = None):
        self.api, self.logdir, self.pools, self.pool_type = api, Path(logdir), pools, pool_type
        self.env = dict(env or {})  # e.g. DOCKER_HOST for docker workers
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, cloud: str) -> None:
        if cloud in self.procs and self.procs[cloud].poll() is None:
            return
        env = prefect_env(self.api)
        env.update(PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="5", **self.env)
        self.procs[cloud] = start_worker(self.pools[cloud], self.logdir / f"worker-{cloud}.log", env,
                                         name=f"worker-{cloud}", pool_type=self.pool_type)

    def kill(self, cloud: str) -> None:
        """The cloud goes down: SIGKILL the worker and everything it runs."""
        import psutil  # a test dependency; the loop never kills a worker this way

        proc = self.procs.pop(cloud)
        parent = psutil.Process(proc.pid)
        for p in parent.children(recursive=True) + [parent]:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        proc.wait(10)

    def stop_all(self) -> None:
        for cloud in list(self.procs):
            stop(self.procs.pop(cloud))
