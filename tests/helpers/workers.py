"""Real `prefect worker` processes, one per cloud pool, that tests and benchmarks start and kill."""
from __future__ import annotations

import signal
import subprocess

import psutil

from tests.helpers.services import BIN, ROOT, prefect_env, stop


class Workers:
    """One real `prefect worker start --type process` per cloud pool."""

    def __init__(self, api: str, logdir, pools: dict[str, str]):
        self.api, self.logdir, self.pools, self.procs = api, logdir, pools, {}

    def start(self, cloud: str) -> None:
        if cloud in self.procs and self.procs[cloud].poll() is None:
            return
        env = prefect_env(self.api)
        env.update(PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="5")
        log = open(self.logdir / f"worker-{cloud}.log", "ab")
        self.procs[cloud] = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", self.pools[cloud], "--type", "process",
             "--name", f"worker-{cloud}"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def kill(self, cloud: str) -> None:
        """The cloud goes down: SIGKILL the worker and everything it runs."""
        proc = self.procs.pop(cloud)
        parent = psutil.Process(proc.pid)
        tree = parent.children(recursive=True) + [parent]
        for p in tree:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        proc.wait(10)

    def stop_all(self) -> None:
        for cloud in list(self.procs):
            stop(self.procs.pop(cloud))
