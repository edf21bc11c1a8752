"""Real `prefect worker start --type process` processes, started and killed by the loop, tests and benchmarks."""
from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from ops.localserver import prefect_env
from ops.procs import BIN, ROOT, stop

__all__ = ["start_worker", "Workers"]


def start_worker(pool: str, log: Path, env: dict[str, str], *, cwd: Path = ROOT,
                 name: str | None = None) -> subprocess.Popen:
    """A process worker polling `pool`, its output appended to `log`, leading its own process group."""
    cmd = [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process"]
    if name:
        cmd += ["--name", name]
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


class Workers:
    """One process worker per cloud pool, each of which can be killed as a cloud going down."""

    def __init__(self, api: str, logdir: Path, pools: dict[str, str]):
        self.api, self.logdir, self.pools = api, Path(logdir), pools
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, cloud: str) -> None:
        if cloud in self.procs and self.procs[cloud].poll() is None:
            return
        env = prefect_env(self.api)
        env.update(PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="5")
        self.procs[cloud] = start_worker(self.pools[cloud], self.logdir / f"worker-{cloud}.log", env,
                                         name=f"worker-{cloud}")

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
