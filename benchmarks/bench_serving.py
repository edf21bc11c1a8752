"""Serving benchmark: the HTTP server against ONNX Runtime called in-process, same model, same rows;
and what checking every row against the model's features costs (an A/B of two servers).

Requests go in both forms the server reads: {"rows": [...]} and {"columns": {...}}. The bars
printed at the end: one-row /predict at least 0.8x the same server's /health rate, p99 at most
5 ms with 3 clients, and 256-row requests at 100k rows/s or more.

    python benchmarks/bench_serving.py [--clients 3] [--requests 2000] [--seconds 15] [--ab-rounds 3]

Where a one-row request's time goes: the server's own time per request in its app (from its
/metrics histogram) for /health and /predict, beside the model path in-process (parse, check,
transform, ONNX Runtime) back to back and with 0.2 ms asleep before each call, as a server
idles between one client's requests: on a small VM that idle gap alone makes the same code
slower (cold caches).

The A/B runs the same loads (1-row and 256-row requests) against two servers of this build,
one started with --benchmark-unchecked-rows (a flag that exists for this comparison only), in
alternating rounds; it prints the median throughput of each side and their ratio (the bar:
with the check, at least 0.85 of the throughput without).

Model: random-init flights-shaped network (specs/flights.yaml features, embedding 8,
hidden [128, 64]) exported to ONNX, published to a temporary store. Load: loopback
only, a bounded count and time per scenario, keep-alive connections (http.client).
Client and server share this machine's cores, so HTTP figures include client cost.
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cloudhop.registry import Manifest, Registry  # noqa: E402
from cloudhop.serving.model import load_model  # noqa: E402
from cloudhop.serving.request import parse_predict  # noqa: E402
from cloudhop.serving.rows import RowSchema  # noqa: E402
from cloudhop.store import Store  # noqa: E402
from cloudhop.training.preprocess import Preprocessor  # noqa: E402
from ops.net import free_port  # noqa: E402

MODEL = "flights-bench"
EXPORTER = ["local copy of the net"]


def export_flights_net(cardinalities: list[int], n_numeric: int, hidden: list[int], emb: int, seed: int) -> bytes:
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.ModuleList(torch.nn.Embedding(c, emb) for c in cardinalities)
            layers, width = [], emb * len(cardinalities) + n_numeric
            for h in hidden:
                layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
                width = h
            self.mlp = torch.nn.Sequential(*layers, torch.nn.Linear(width, 1))

        def forward(self, cat, num):
            x = torch.cat([e(cat[:, i]) for i, e in enumerate(self.emb)] + [num], dim=1)
            return torch.sigmoid(self.mlp(x)).squeeze(1)

    torch.manual_seed(seed)
    buf = io.BytesIO()
    ex = (torch.zeros(2, len(cardinalities), dtype=torch.long), torch.zeros(2, n_numeric))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Net().eval(), ex, buf, input_names=["cat", "num"], output_names=["prediction"],
                          dynamic_axes={"cat": {0: "n"}, "num": {0: "n"}, "prediction": {0: "n"}},
                          opset_version=17, dynamo=False)
    return buf.getvalue()


def project_onnx(pre: Preprocessor, spec, seed: int) -> bytes | None:
    """The project's own network and exporter, random-init; None where they are not available."""
    try:
        import torch

        from cloudhop.training.model import TabularNet
        from cloudhop.training.onnx_export import export_onnx
    except ImportError:
        return None
    torch.manual_seed(seed)
    net = TabularNet(pre.cardinalities, len(pre.numeric), spec.model.hidden, spec.model.embedding_dim,
                     spec.model.dropout, spec.target.task)
    return export_onnx(net, pre)


def build_store(root: str) -> tuple[Registry, list[dict]]:
    from cloudhop.data import flights_table
    from cloudhop.spec import load_spec

    spec = load_spec(ROOT / "specs" / "flights.yaml")
    df = flights_table()
    pre = Preprocessor.fit(df, spec.categorical, spec.numeric)
    rows = json.loads(df[spec.features].sample(256, random_state=0).to_json(orient="records"))
    reg = Registry(Store(root), MODEL)
    onnx_bytes = project_onnx(pre, spec, seed=0)
    if onnx_bytes:
        EXPORTER[0] = "cloudhop.training TabularNet + export_onnx"
    onnx_bytes = onnx_bytes or export_flights_net(
        pre.cardinalities, len(pre.numeric), spec.model.hidden, spec.model.embedding_dim, seed=0)
    for _ in range(2):  # two versions (same weights) to swap between
        reg.publish({"model.onnx": onnx_bytes, "preprocess.json": json.dumps(pre.to_dict()).encode()}, Manifest())
    reg.set_alias("champion", "1")
    return reg, rows


HEALTH = "HTTP GET /health (round-trip floor)"
WHOLE = "parse+check+transform+ORT, in-process"
IDLE_S = 0.0002
PREDICT = "HTTP /predict rows"
PREDICT_COLUMNS = "HTTP /predict columns"


def row_body(rows: list[dict]) -> bytes:
    return json.dumps({"rows": rows}).encode()


def column_body(rows: list[dict], pre: Preprocessor) -> bytes:
    return json.dumps({"columns": {c: [r.get(c) for r in rows] for c in (*pre.categorical, *pre.numeric)}}).encode()


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def time_calls(fn, n: int, seconds: float, idle: float = 0.0) -> tuple[list[float], float]:
    """Latencies of `n` calls (or `seconds` worth); with `idle`, that long asleep before each call
    (not timed), as a server waits between requests; the rate is then from the timed part alone."""
    lat, t0 = [], time.perf_counter()
    for _ in range(n):
        if idle:
            time.sleep(idle)
        t = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t)
        if t - t0 > seconds:
            break
    return lat, (sum(lat) if idle else time.perf_counter() - t0)


def app_seconds(port: int) -> dict[str, tuple[float, float]]:
    """Per endpoint, the server's own time in its app (seconds summed, requests): its /metrics histogram."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    from prometheus_client.parser import text_string_to_metric_families

    family = next(f for f in text_string_to_metric_families(text) if f.name == "cloudhop_request_seconds")
    got = {(s.name, s.labels["endpoint"]): s.value for s in family.samples}
    return {ep: (got[(name, ep)], got[("cloudhop_request_seconds_count", ep)])
            for name, ep in got if name == "cloudhop_request_seconds_sum"}


class Load:
    """`clients` threads, each with one keep-alive connection, POSTing bodies until count or time runs out."""

    def __init__(self, port: int, bodies: list[bytes], clients: int, total: int, seconds: float,
                 path: str = "/predict") -> None:
        self.port, self.bodies, self.clients, self.total, self.seconds = port, bodies, clients, total, seconds
        self.path = path
        self.lat: list[float] = []
        self.failed = 0
        self.errors: list[str] = []
        self.versions: set[str] = set()
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._sent = 0

    def _take(self) -> int | None:
        with self._lock:
            if self._sent >= self.total or self.stop.is_set():
                return None
            self._sent += 1
            return self._sent

    def _client(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        lat, failed, versions = [], 0, set()
        deadline = time.perf_counter() + self.seconds
        while (i := self._take()) is not None and time.perf_counter() < deadline:
            body = self.bodies[i % len(self.bodies)]
            t = time.perf_counter()
            try:
                if body:
                    conn.request("POST", self.path, body, {"Content-Type": "application/json"})
                else:
                    conn.request("GET", self.path)
                r = conn.getresponse()
                data = r.read()
                if r.status == 200:
                    versions.add(json.loads(data).get("version"))
                else:
                    failed += 1
                    self.errors.append(f"HTTP {r.status}: {data[:200]!r}")
            except (OSError, http.client.HTTPException) as e:
                failed += 1
                self.errors.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            lat.append(time.perf_counter() - t)
        conn.close()
        with self._lock:
            self.lat += lat
            self.failed += failed
            self.versions |= versions

    def run(self, during=None) -> float:
        threads = [threading.Thread(target=self._client) for _ in range(self.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        if during is not None:
            during()
            self.stop.set()
        for t in threads:
            t.join()
        return time.perf_counter() - t0


def post(port: int, path: str, obj: dict, token: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", path, json.dumps(obj).encode(),
                 {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    r = conn.getresponse()
    out = r.status, json.loads(r.read())
    conn.close()
    return out


def start_server(store: str, log_path: Path, token_file: Path, extra: list[str]) -> tuple[subprocess.Popen, int]:
    """`python -m cloudhop.serving` on a free port; returns once /health answers (raises with its log if not)."""
    port = free_port()
    cmd = [sys.executable, "-m", "cloudhop.serving", "--store", store, "--model", MODEL, "--port", str(port),
           "--admin-token-file", str(token_file), *extra]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
    deadline = time.monotonic() + 60
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return proc, port
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc)
            raise RuntimeError(f"server did not start:\n{log_path.read_text()}")
        time.sleep(0.1)


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def validation_ab(ports: dict[str, int], loads: list[tuple[int, list[bytes], int]], clients: list[int],
                  rounds: int, seconds: float) -> list[tuple[int, int, dict[str, list[float]], dict[str, list[float]]]]:
    """Alternating rounds of the same load on the checked ("on") and unchecked ("off") servers:
    per (rows, clients), each side's requests/s and p50 latency (ms) of every round."""
    out = []
    for n_rows, bodies, total in loads:
        for c in clients:
            rate: dict[str, list[float]] = {"on": [], "off": []}
            p50: dict[str, list[float]] = {"on": [], "off": []}
            for r in range(rounds):
                for side in (("on", "off") if r % 2 == 0 else ("off", "on")):
                    load = Load(ports[side], bodies, c, total, seconds)
                    wall = load.run()
                    if load.failed:
                        raise RuntimeError(f"validation A/B, {side}: {load.failed} failed: {load.errors[:3]}")
                    rate[side].append(len(load.lat) / wall)
                    p50[side].append(pct(load.lat, 50) * 1e3)
            out.append((n_rows, c, rate, p50))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--requests", type=int, default=2000, help="requests per 1-row scenario (256-row: a fifth)")
    ap.add_argument("--seconds", type=float, default=15.0, help="time cap per scenario")
    ap.add_argument("--swaps", type=int, default=10)
    ap.add_argument("--server-args", default="", help="extra server flags, e.g. '--threads 2'")
    ap.add_argument("--ab-rounds", type=int, default=3, help="alternating rounds per side of the validation A/B")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="cloudhop-bench-")
    t = time.perf_counter()
    reg, rows = build_store(tmp)
    print(f"model: flights layout ({EXPORTER[0]}), 2 versions published in {time.perf_counter() - t:.1f}s "
          f"(onnx {len(reg.read_file(reg.get('1'), 'model.onnx')) / 1024:.0f} KiB); cores: {os.cpu_count()}")

    # -- in-process baselines ---------------------------------------------------------
    m = load_model(reg, "1")
    results = []  # (scenario, clients, n, lat list, wall, failed)
    pre = m.preprocessor
    schema = RowSchema.for_model(pre.categorical, pre.numeric, None)
    for n_rows, total in ((1, args.requests), (256, max(50, args.requests // 5))):
        batch = rows[:n_rows]
        as_rows, as_columns = row_body(batch), column_body(batch, pre)
        columns = schema.read(parse_predict(as_rows, n_rows))
        cat, num = pre.transform_columns(columns, n_rows)
        feeds = {"cat": cat, "num": num}
        lat, wall = time_calls(lambda: m.session.run(["prediction"], feeds), total, args.seconds)
        results.append(("ORT run, in-process", 1, n_rows, lat, wall, 0))
        lat, wall = time_calls(lambda: m.predict_columns(columns, n_rows), total, args.seconds)
        results.append(("transform + ORT, in-process", 1, n_rows, lat, wall, 0))
        for form, body in (("rows", as_rows), ("columns", as_columns)):
            lat, wall = time_calls(lambda: schema.read(parse_predict(body, n_rows)), total, args.seconds)
            results.append((f"parse + check {form}, in-process", 1, n_rows, lat, wall, 0))
        if n_rows == 1:  # the server's whole model path for one row, back to back and with idle gaps
            def whole(body=as_rows):
                request = parse_predict(body, n_rows)
                return m.predict_columns(schema.read(request), request.n)
            lat, wall = time_calls(whole, total, args.seconds)
            results.append((WHOLE, 1, n_rows, lat, wall, 0))
            lat, wall = time_calls(whole, total, args.seconds, idle=IDLE_S)
            results.append((f"{WHOLE}, {IDLE_S * 1e3:.1f} ms idle between", 1, n_rows, lat, wall, 0))

    # -- the servers: checked (every scenario) and unchecked (the validation A/B) ---------------
    token = secrets.token_urlsafe(24)
    token_file = Path(tmp) / "admin-token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    extra = args.server_args.split()
    procs = []
    try:
        proc, port = start_server(tmp, Path(tmp) / "server.log", token_file, extra)
        procs.append(proc)
        off_proc, off_port = start_server(tmp, Path(tmp) / "server-unchecked.log", token_file,
                                          [*extra, "--benchmark-unchecked-rows"])
        procs.append(off_proc)

        one_row = [row_body([r]) for r in rows]
        many = [row_body(rows)]
        many_columns = [column_body(rows, pre)]
        Load(port, one_row, 2, 200, 5).run()  # warm-up
        Load(off_port, one_row, 2, 200, 5).run()
        in_app: dict[str, float] = {}  # endpoint -> the server's own seconds per request, 1 client, 1 row

        def measured(load: Load, endpoint: str | None) -> float:
            before = app_seconds(port) if endpoint else {}
            wall = load.run()
            if endpoint:
                (s0, n0), (s1, n1) = before.get(endpoint, (0.0, 0.0)), app_seconds(port)[endpoint]
                in_app[endpoint] = (s1 - s0) / max(1.0, n1 - n0)
            return wall

        for clients in (1, args.clients):
            load = Load(port, [b""], clients, args.requests, args.seconds, path="/health")
            wall = measured(load, "/health" if clients == 1 else None)
            results.append((HEALTH, clients, 1, load.lat, wall, load.failed))
        for name, n_rows, bodies, total in ((PREDICT, 1, one_row, args.requests),
                                            (PREDICT, 256, many, max(50, args.requests // 5)),
                                            (PREDICT_COLUMNS, 256, many_columns, max(50, args.requests // 5))):
            for clients in (1, args.clients):
                load = Load(port, bodies, clients, total, args.seconds)
                wall = measured(load, "/predict" if (name, n_rows, clients) == (PREDICT, 1, 1) else None)
                results.append((name, clients, n_rows, load.lat, wall, load.failed))

        # -- swap under load --------------------------------------------------------------
        mixed = one_row[:64] + [json.dumps({"rows": rows[:32]}).encode()] * 8
        load = Load(port, mixed, args.clients, 10**9, 120)
        swap_ms: list[float] = []
        swap_errors: list[str] = []

        def swaps() -> None:
            time.sleep(0.3)
            for i in range(args.swaps):
                t = time.perf_counter()
                status, body = post(port, "/admin/load", {"version": "2" if i % 2 == 0 else "1"}, token)
                swap_ms.append((time.perf_counter() - t) * 1e3)
                if status != 200:
                    swap_errors.append(str(body))
                time.sleep(0.2)
            time.sleep(0.3)

        wall = load.run(during=swaps)

        # -- validation on vs off: the same loads, alternating rounds ---------------------------
        ab = validation_ab({"on": port, "off": off_port},
                           [(1, one_row, args.requests), (256, many, max(50, args.requests // 5))],
                           sorted({1, args.clients}), args.ab_rounds, args.seconds)
    finally:
        for p in procs:
            stop_server(p)
        shutil.rmtree(tmp, ignore_errors=True)

    # -- report ------------------------------------------------------------------------------
    base = {n: next(r for r in results if r[2] == n and r[0].startswith("ORT")) for n in (1, 256)}
    print()
    print(f"{'scenario':<60}{'rows':>5}{'clients':>8}{'n':>7}{'p50 ms':>9}{'p99 ms':>9}{'per s':>9}"
          f"{'rows/s':>10}{'failed':>7}{'p50 x ORT':>11}{'rate / ORT':>11}")
    for name, clients, n_rows, lat, wall, failed in results:
        p50, p99, rate = pct(lat, 50) * 1e3, pct(lat, 99) * 1e3, len(lat) / wall
        b = base[n_rows]
        b50, brate = pct(b[3], 50) * 1e3, len(b[3]) / b[4]
        print(f"{name:<60}{n_rows:>5}{clients:>8}{len(lat):>7}{p50:>9.3f}{p99:>9.3f}{rate:>9.0f}"
              f"{rate * n_rows:>10.0f}{failed:>7}{p50 / b50:>11.1f}{rate / brate:>11.3f}")
    def rate_of(name: str, clients: int, n_rows: int) -> tuple[float, float]:
        _, _, _, lat, wall, _ = next(r for r in results if r[:3] == (name, clients, n_rows))
        return len(lat) / wall, pct(lat, 99) * 1e3

    print()
    print("bars (this run):")
    health, _ = rate_of(HEALTH, 1, 1)
    for c in sorted({1, args.clients}):
        one, p99 = rate_of(PREDICT, c, 1)
        floor, _ = rate_of(HEALTH, c, 1)
        print(f"  1-row /predict, {c} client(s): {one:.0f} req/s = {one / floor:.2f}x /health's {floor:.0f} "
              f"(bar 0.8x); p99 {p99:.2f} ms (bar with {args.clients} clients: 5 ms)")
    for name in (PREDICT, PREDICT_COLUMNS):
        best = max(rate_of(name, c, 256)[0] for c in sorted({1, args.clients})) * 256
        print(f"  256-row {name}: {best:,.0f} rows/s at best (bar 100,000)")
    hot = pct(next(r for r in results if r[0] == WHOLE)[3], 50) * 1e6
    cold = pct(next(r for r in results if r[0].startswith(f"{WHOLE}, "))[3], 50) * 1e6
    print(f"  where the 1-row gap is, 1 client: the server's own time per request (its /metrics) is "
          f"{in_app['/health'] * 1e6:.0f} us for /health and {in_app['/predict'] * 1e6:.0f} us for /predict; "
          f"the model path in-process takes {hot:.0f} us back to back and {cold:.0f} us with "
          f"{IDLE_S * 1e3:.1f} ms idle before each call (p50)")

    print()
    print(f"swap under load: {len(swap_ms)} swaps (admin load p50 {statistics.median(swap_ms):.0f} ms, "
          f"{len(swap_errors)} failed) while {args.clients} clients sent {len(load.lat)} requests "
          f"in {wall:.1f}s: {load.failed} failed, versions seen {sorted(load.versions)}, "
          f"p99 {pct(load.lat, 99) * 1e3:.2f} ms")
    for e in (load.errors + swap_errors)[:5]:
        print("  error:", e)

    print()
    print(f"row check on vs off (median of {args.ab_rounds} alternating rounds; bar: on/off >= 0.85)")
    print(f"{'rows':>5}{'clients':>8}{'on req/s':>10}{'off req/s':>11}{'on/off':>8}{'on rows/s':>11}"
          f"{'off rows/s':>12}{'on p50 ms':>11}{'off p50 ms':>12}  within bar")
    worst = 1.0
    for n_rows, c, rate, p50 in ab:
        on, off = statistics.median(rate["on"]), statistics.median(rate["off"])
        worst = min(worst, on / off)
        print(f"{n_rows:>5}{c:>8}{on:>10.0f}{off:>11.0f}{on / off:>8.3f}{on * n_rows:>11.0f}{off * n_rows:>12.0f}"
              f"{statistics.median(p50['on']):>11.3f}{statistics.median(p50['off']):>12.3f}  "
              f"{'yes' if on / off >= 0.85 else 'NO'}")
    return 0 if load.failed == 0 and not swap_errors and worst >= 0.85 else 1


if __name__ == "__main__":
    sys.exit(main())
