"""Containers on this machine: image builds and sizes, start-up of training in a container, failover.

    .venv/bin/python benchmarks/bench_containers.py [--cold] [--cold-train] [--epochs N]

  builds   warm: both images unchanged, reused by their source-hash label.
           --cold: the serve image with no layer cache at all (every pip install again); and the
           train image after a test-only edit of pyproject.toml (in a copy of the build context):
           its dependency layer must be reused, its source layers are built cold.
           --cold-train: the whole train image with no layer cache (about ten minutes here).
           Cold builds are tagged :bench and removed after; the :dev images stay as they are.
  start    submission of a training run -> its first heartbeat in the store, on the docker pool
           (a container from the train image) against the process pool (baseline)
  killed   `podman kill` of the training container mid-run, beside the same run uninterrupted on
           the docker pool: time added, kill -> training running on the second docker pool, steps
           redone (bar: one checkpoint interval)
The store is S3 on moto's server for every run; "running" = the run's first heartbeat there.
"""
from __future__ import annotations

import argparse
import contextvars
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")

import yaml  # noqa: E402

from ops import engine, images, services  # noqa: E402
from ops.deploy import deploy_project  # noqa: E402
from ops.localserver import prefect_env, temporary_server  # noqa: E402
from ops.workers import Workers  # noqa: E402

BUCKET, EVERY = "cloudhop-local", 20
HEARTBEAT_TIMEOUT = 30  # the spec's default: a run silent this long has crashed
TEST_ONLY_EDIT = ("test = [\n", 'test = [\n  "pytest-xdist>=3.5",  # benchmark: a test-only dependency\n')
Row = tuple[str, str, str, str]


# -- builds ----------------------------------------------------------------------------------
def dependency_layer(tag: str) -> str | None:
    """The id of the train image's layer that pip-installs the dependencies."""
    out = engine.podman("history", "--no-trunc", "--format", "{{.ID}}\t{{.CreatedBy}}", tag).stdout
    return next((line.split("\t")[0] for line in out.splitlines() if "-r /tmp/requirements/requirements.txt" in line),
                None)


def test_edit_context(dest: Path) -> None:
    """The train image's build context copied to `dest`, with a test-only dependency added to pyproject.toml."""
    for f in images.context_files(images.TRAIN):
        target = dest / f.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(f, target)
        except OSError:
            shutil.copy2(f, target)
    pyproject = dest / "pyproject.toml"
    text = pyproject.read_text()
    assert TEST_ONLY_EDIT[0] in text, "pyproject.toml has no test extra to edit"
    pyproject.unlink()  # a hard link: never write through it into the repository's file
    pyproject.write_text(text.replace(TEST_ONLY_EDIT[0], TEST_ONLY_EDIT[1], 1))


def cold_builds(base: str, full_train: bool) -> list[Row]:
    rows: list[Row] = []
    serve = images.Image("localhost/cloudhop-serve:bench", images.SERVE.dockerfile)
    _, seconds = images.build(serve, base, no_cache=True)
    rows.append(("serve image, cold build: no layer cache (s)", f"{seconds:.0f}", "", ""))
    engine.podman("rmi", serve.tag)
    train = images.Image("localhost/cloudhop-train:bench", images.TRAIN.dockerfile)
    (ROOT / ".build").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / ".build", prefix="bench-context-") as d:
        test_edit_context(Path(d))
        _, seconds = images.build(train, base, context=Path(d))
    layer = dependency_layer(images.TRAIN.tag)
    reused = layer is not None and dependency_layer(train.tag) == layer
    rows.append(("train image after a test-only pyproject edit (s)", f"{seconds:.0f}", "source layers cold",
                 "dependency layer reused" if reused else "dependency layer REBUILT"))
    engine.podman("rmi", train.tag)
    if full_train:
        _, seconds = images.build(train, base, no_cache=True)
        rows.append(("train image, cold build: no layer cache (s)", f"{seconds:.0f}", "", ""))
        engine.podman("rmi", train.tag)
    return rows


# -- training runs -------------------------------------------------------------------------------
def write_spec(tmp: Path, ctx: dict, name: str, clouds: list[str], epochs: int) -> str:
    spec = yaml.safe_load(open(ROOT / "specs/flights.yaml"))
    spec["dataset"] = {"uri": ctx["data"], "storage_options": ctx["options"]}
    spec.update(store=f"s3://{BUCKET}/{name}", store_options=ctx["options"])
    spec["model"].update(hidden=[1024, 1024], batch_size=256, max_epochs=epochs, patience=epochs,
                         checkpoint_every=EVERY)
    spec["compute"] = {"mode": "pools", "catalog": str(ROOT / "deployments/clouds.yaml"), "clouds": clouds,
                       "gpu_count": 0,
                       "failover": {"retries": 0, "start_timeout_s": 30, "startup_timeout_s": 300,
                                    "heartbeat_timeout_s": HEARTBEAT_TIMEOUT},
                       "breaker": {"failures": 100, "window_minutes": 1}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


class Retrain:
    """One `retrain` flow in a thread of this process (it keeps the Prefect settings in force)."""

    def __init__(self, path: str):
        from flows.retrain import retrain

        self.out: dict = {}
        self.started = time.time()

        def go() -> None:
            try:
                self.out["summary"] = retrain(spec=path, deploy=False, reason="benchmark")
            except BaseException as e:  # noqa: BLE001 - reported by result()
                self.out["error"] = e
            self.out["ended"] = time.time()

        self.thread = threading.Thread(target=contextvars.copy_context().run, args=(go,))
        self.thread.start()

    def result(self) -> dict:
        self.thread.join()
        if "error" in self.out:
            raise RuntimeError(f"the retrain failed: {type(self.out['error']).__name__}: {self.out['error']}")
        return self.out["summary"]

    @property
    def seconds(self) -> float:
        return self.out["ended"] - self.started


def keys(store, name: str, pattern: str) -> list[str]:
    """Keys of the run `name` (a fresh listing: fsspec's cache would hide new objects) matching `pattern`."""
    return [k for k in store.list(name) if re.search(pattern, k)]


def first_beat(store, name: str, cloud: str, run: Retrain, timeout: float = 600) -> float:
    """When the first heartbeat of `cloud` in the run `name` appeared (polled every 0.1 s)."""
    deadline = time.time() + timeout
    while time.time() < deadline and run.thread.is_alive():
        if keys(store, name, rf"/training/heartbeat-{cloud}-\d+\.json$"):
            return time.time()
        time.sleep(0.1)
    run.result()  # raises when it failed
    raise TimeoutError(f"no heartbeat from {cloud} in the run {name}")


def submitted_at(summary: dict, index: int = 0) -> float:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as c:
        return c.read_flow_run(summary["attempts"][index]["run_id"]).created.timestamp()


def time_to_running(tmp: Path, ctx: dict, name: str, cloud: str, epochs: int) -> tuple[float, float]:
    """(submission -> first heartbeat, whole retrain) of an uninterrupted run on `cloud`."""
    run = Retrain(write_spec(tmp, ctx, name, [cloud], epochs))
    beat = first_beat(ctx["store"], name, cloud, run)
    return beat - submitted_at(run.result()), run.seconds


def killed_run(tmp: Path, ctx: dict, epochs: int) -> dict:
    """A run on `container` whose container is killed after two checkpoints; it ends on `container-b`."""
    store = ctx["store"]
    run = Retrain(write_spec(tmp, ctx, "killed", ["container", "container-b"], epochs))
    while len(keys(store, "killed", r"/step-\d+\.pt$")) < 2:
        if not run.thread.is_alive():
            run.result()
            raise RuntimeError("the run ended before two checkpoints")
        time.sleep(0.1)
    [box] = [n for n in engine.podman("ps", "--format", "{{.Names}}").stdout.split()
             if re.fullmatch(r"train-container-\d+(-\d+)?", n)]
    t_kill = time.time()
    engine.podman("kill", box)
    newest = max(int(re.search(r"step-(\d+)\.pt$", k)[1]) for k in keys(store, "killed", r"/step-\d+\.pt$"))
    resumed_at = first_beat(store, "killed", "container-b", run) - t_kill
    info = run.result()["training"]
    return {"seconds": run.seconds, "resumed_at": resumed_at, "newest": newest, "info": info}


def runs(epochs: int) -> list[Row]:
    import boto3
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from cloudhop.data import flights_table
    from cloudhop.store import Store

    with tempfile.TemporaryDirectory() as d, temporary_server(Path(d)) as api, \
            services.moto_server(Path(d)) as moto, engine.api_socket(Path(d)) as docker_host, \
            temporary_settings(updates={PREFECT_API_URL: api}):
        from prefect_aws import AwsCredentials

        os.environ["PREFECT_API_URL"] = api  # for the worker and deploy subprocesses
        tmp = Path(d)
        boto3.client("s3", endpoint_url=moto).create_bucket(Bucket=BUCKET)
        options = {"client_kwargs": {"endpoint_url": moto, "region_name": "us-east-1"}}
        store = Store(f"s3://{BUCKET}", options)
        store.write_bytes("data/flights.parquet", flights_table().iloc[::12].reset_index(drop=True).to_parquet())
        ctx = {"data": f"s3://{BUCKET}/data/flights.parquet", "options": options, "store": store}
        AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing").save("cloudhop-store")
        deploy_project(prefect_env(api), names=["train-local", "train-docker", "train-docker-b"])
        procs = Workers(api, tmp, {"local": "local"})
        boxes = Workers(api, tmp, {"container": "docker", "container-b": "docker-b"}, pool_type="docker",
                        env={"DOCKER_HOST": docker_host})
        try:
            procs.start("local")
            boxes.start("container")
            boxes.start("container-b")
            time.sleep(5)
            process, process_total = time_to_running(tmp, ctx, "process", "local", epochs)
            docker, docker_total = time_to_running(tmp, ctx, "docker", "container", epochs)
            k = killed_run(tmp, ctx, epochs)
        finally:
            procs.stop_all()
            boxes.stop_all()
    info, newest = k["info"], k["newest"]
    resumed = info["resumed_from_step"] or 0
    most = newest + EVERY - resumed
    return [
        ("submission -> training running, process pool (s)", f"{process:.1f}", "baseline", ""),
        ("submission -> training running, docker pool (s)", f"{docker:.1f}", f"{process:.1f}",
         f"{docker / process:.2f}x"),
        ("whole retrain, uninterrupted, docker pool (s)", f"{docker_total:.1f}", f"process {process_total:.1f}", ""),
        ("whole retrain, container killed mid-run (s)", f"{k['seconds']:.1f}", f"{docker_total:.1f}",
         f"adds {k['seconds'] - docker_total:.1f}"),
        ("kill -> training running on the second docker pool (s)", f"{k['resumed_at']:.1f}",
         f"normal start {docker:.1f}", ""),
        ("resumed from step", str(resumed), f"newest checkpoint {newest}",
         "none lost" if resumed == newest else "MISSED"),
        ("steps redone, at most: newest checkpoint + interval - resumed", str(most), f"bar {EVERY}",
         "met" if most <= EVERY else "MISSED"),
        ("steps on the second pool / total steps", f"{info['steps_run']} / {info['steps']}", "", ""),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cold", action="store_true", help="cold serve build, train source layers after a "
                                                        "test-only pyproject edit (minutes)")
    ap.add_argument("--cold-train", action="store_true", help="also the whole train image with no cache (~10 min)")
    ap.add_argument("--epochs", type=int, default=4, help="training epochs of each run (default 4)")
    a = ap.parse_args(argv)
    images.build_all()  # both current: built here if a source changed
    warm = images.build_all()
    rows: list[Row] = [(f"{n} image, warm build: unchanged, reused (s)", f"{warm[n]['seconds']:.1f}", "", "")
                       for n in ("serve", "train")]
    if a.cold or a.cold_train:
        rows += cold_builds(warm["serve"]["base"], a.cold_train)
    for n in ("serve", "train"):
        rows.append((f"{n} image size (MB)", f"{warm[n]['bytes'] / 1e6:.0f}", "", ""))
    rows += runs(a.epochs)
    print(f"\ncontainers on this machine ({os.cpu_count()} CPUs), podman {engine.podman('--version').stdout.split()[-1]}, "
          f"checkpoint every {EVERY} steps, {a.epochs} epochs, heartbeat timeout {HEARTBEAT_TIMEOUT}s")
    width = max(len(r[0]) for r in rows)
    print(f"{'figure':{width}}  {'value':>10}  {'baseline':>24}  ratio")
    for name, v, b, r in rows:
        print(f"{name:{width}}  {v:>10}  {b:>24}  {r}")
    print(json.dumps({"images": warm}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
