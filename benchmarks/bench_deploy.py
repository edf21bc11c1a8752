"""How long a version takes to reach N serving targets, and what a swap costs the clients.

    python benchmarks/bench_deploy.py [--sizes 1 4 8] [--repeats 3] [--clients 4]

N local targets = N real inference server processes on loopback (`LocalTarget`). Each
round ships the other version (v1 <-> v2: publish + verify, /admin/load, /version check,
smoke test against the offline predictions, registry aliases), measured two ways in the
same run:

  - baseline: one target after another (`deploy_to_target` in a loop), what the old flow did;
  - cloudhop: `deploy_all` (every target at once, then the policy and the registry record).

During every round, and then for `--swap-seconds` of back-to-back deploys, `--clients` threads
send /predict requests (one row, keep-alive) to the targets in turn, bounded by `--rate`
requests/s in all; any non-200 answer or connection error counts as a failed request. The
target is zero.
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cloudhop.registry import Registry  # noqa: E402
from cloudhop.store import Store  # noqa: E402
from cloudhop.targets.deploy import deploy_to_target  # noqa: E402
from cloudhop.providers.local.target import LocalTarget  # noqa: E402
from cloudhop.targets.multi import deploy_all, load_smoke  # noqa: E402
from cloudhop.testing import CATEGORICAL, NUMERIC, make_frame, publish_version, records  # noqa: E402
from cloudhop.training.preprocess import Preprocessor  # noqa: E402
from ops.net import free_port  # noqa: E402


class Load:
    """Steady, bounded /predict traffic over keep-alive connections; counts failures."""

    def __init__(self, ports: list[int], row: dict, clients: int, rate: float):
        self.ports, self.clients, self.interval = ports, clients, clients / rate
        self.body = json.dumps({"rows": [row]}).encode()
        self.ok = self.failed = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def _run(self, i: int) -> None:
        conns = {p: http.client.HTTPConnection("127.0.0.1", p, timeout=10) for p in self.ports}
        k = i
        while not self._stop.is_set():
            t0 = time.perf_counter()
            port = self.ports[k % len(self.ports)]
            k += 1
            try:
                c = conns[port]
                c.request("POST", "/predict", self.body, {"Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                good = r.status == 200
                why = f"HTTP {r.status}"
            except (OSError, http.client.HTTPException) as e:
                good, why = False, f"{type(e).__name__}: {e}"
                conns[port].close()
                conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            with self._lock:
                if good:
                    self.ok += 1
                else:
                    self.failed += 1
                    if len(self.errors) < 5:
                        self.errors.append(why)
            self._stop.wait(max(0.0, self.interval - (time.perf_counter() - t0)))

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


def sequential(registry: Registry, targets: list[LocalTarget], version: str) -> None:
    smoke = load_smoke(registry, version)
    for t in targets:
        o = deploy_to_target(registry, t, version, smoke)
        if not o.ok:
            raise RuntimeError(o.summary())


def concurrent(registry: Registry, targets: list[LocalTarget], version: str) -> None:
    rep = deploy_all(registry, targets, version)
    if not rep.ok:
        raise RuntimeError(rep.summary())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--rate", type=float, default=200.0, help="requests/s in all, across the targets")
    p.add_argument("--swap-seconds", type=float, default=5.0,
                   help="after the timed rounds, keep swapping versions under load this long")
    a = p.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    registry = Registry(Store(str(root / "store")), "bench")
    df = make_frame(300, seed=0)
    pre = Preprocessor.fit(df, CATEGORICAL, NUMERIC)
    smoke_df = make_frame(16, seed=3)
    for seed in (1, 2):
        publish_version(registry, pre, seed, smoke_df)
    row = records(smoke_df)[0]

    targets: list[LocalTarget] = []
    rows = []
    try:
        for n in sorted(a.sizes):
            while len(targets) < n:  # start the extra servers in parallel, on v1
                new = [LocalTarget(f"local-{len(targets) + i}", registry.store.uri, "bench", port=free_port(),
                                   state_dir=root / "serving", server_args=["--no-prediction-log"])
                       for i in range(n - len(targets))]
                threads = [threading.Thread(target=t.ensure_running, args=("1",)) for t in new]
                for th in threads:
                    th.start()
                for th in threads:
                    th.join()
                targets += new
            group = targets[:n]
            concurrent(registry, group, "1")  # every target on v1 and recorded
            times = {"baseline": [], "cloudhop": []}
            version = "1"
            swaps = 0
            with Load([t.port for t in group], row, a.clients, a.rate) as load:
                for _ in range(a.repeats):
                    for how, fn in (("baseline", sequential), ("cloudhop", concurrent)):
                        version = "2" if version == "1" else "1"
                        t0 = time.perf_counter()
                        fn(registry, group, version)
                        times[how].append(time.perf_counter() - t0)
                        swaps += n
                end = time.perf_counter() + a.swap_seconds
                while time.perf_counter() < end:
                    version = "2" if version == "1" else "1"
                    concurrent(registry, group, version)
                    swaps += n
            base, ours = statistics.median(times["baseline"]), statistics.median(times["cloudhop"])
            rows.append((n, base, ours, swaps, load.ok + load.failed, load.failed, load.errors))
            print(f"  N={n}: baseline {times['baseline']}, cloudhop {times['cloudhop']}", file=sys.stderr)
    finally:
        for t in targets:
            t.stop()

    print(f"\nRoll a version out to N local targets (median of {a.repeats}; each round swaps v1<->v2, "
          f"smoke-tested), under {a.rate:g} req/s of /predict load from {a.clients} clients\n")
    print(f"{'N':>3} | {'baseline: sequential (s)':>24} | {'cloudhop: deploy_all (s)':>24} | {'speed-up':>8} | "
          f"{'swaps':>6} | {'requests':>8} | {'failed':>6}")
    print("-" * 101)
    for n, base, ours, swaps, total, failed, errors in rows:
        print(f"{n:>3} | {base:>24.3f} | {ours:>24.3f} | {base / ours:>7.2f}x | {swaps:>6} | {total:>8} | {failed:>6}")
        for e in errors:
            print(f"      failure: {e}")
    print("\nswaps: model swaps done while the load ran (timed rounds, then --swap-seconds of back-to-back "
          "deploys); failed: non-200 answers or connection errors (target 0); total failed",
          sum(r[5] for r in rows))
    return 1 if any(r[5] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
