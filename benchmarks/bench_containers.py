"""Containers on this machine: image builds, start-up of training in a container, failover.

    .venv/bin/python benchmarks/bench_containers.py [--cold]

  builds    cold (--cold: no layer cache, every pip install again) and warm (unchanged: reused)
            build times of both images, and their sizes
  start     submission of the training run -> its first heartbeat in the store, on the docker
            pool (a container from the train image) against the process pool (baseline)
  killed    `podman kill` of the training container mid-run: kill -> training running on the
            second docker pool, and steps redone (bar: one checkpoint interval)
The store is S3 on moto's server for every run; "running" = the run's first heartbeat there.
"""
from __future__ import annotations

import argparse
import contextvars
import json
import os
import re
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


def write_spec(tmp: Path, ctx: dict, name: str, clouds: list[str]) -> str:
    spec = yaml.safe_load(open(ROOT / "specs/flights.yaml"))
    spec["dataset"] = {"uri": ctx["data"], "storage_options": ctx["options"]}
    spec.update(store=f"s3://{BUCKET}/{name}", store_options=ctx["options"])
    spec["model"].update(hidden=[1024, 1024], batch_size=256, max_epochs=4, patience=4, checkpoint_every=EVERY)
    spec["compute"] = {"mode": "pools", "catalog": str(ROOT / "deployments/clouds.yaml"), "clouds": clouds,
                       "gpu_count": 0,
                       "failover": {"retries": 0, "start_timeout_s": 30, "startup_timeout_s": 300,
                                    "heartbeat_timeout_s": 60},
                       "breaker": {"failures": 100, "window_minutes": 1}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def run_retrain(path: str) -> tuple[threading.Thread, dict]:
    from flows.retrain import retrain

    out: dict = {}

    def go():
        try:
            out["summary"] = retrain(spec=path, deploy=False, reason="benchmark")
        except BaseException as e:  # noqa: BLE001
            out["error"] = e

    t = threading.Thread(target=contextvars.copy_context().run, args=(go,))
    t.start()
    return t, out


def first_beat(store, name: str, cloud: str, retrain: threading.Thread, timeout: float = 600) -> float:
    """When the first heartbeat of `cloud` under the run `name` appeared (polled every 0.1 s);
    raises as soon as the retrain ended without one."""
    deadline = time.time() + timeout
    while time.time() < deadline and retrain.is_alive():
        if store.fs.glob(f"{BUCKET}/{name}/runs/*/*/training/heartbeat-{cloud}-*.json"):
            return time.time()
        time.sleep(0.1)
    raise TimeoutError(f"no heartbeat from {cloud} for {name}")


def submitted_at(summary: dict, index: int = 0) -> float:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as c:
        return c.read_flow_run(summary["attempts"][index]["run_id"]).created.timestamp()


def time_to_running(tmp: Path, ctx: dict, name: str, cloud: str) -> float:
    th, out = run_retrain(write_spec(tmp, ctx, name, [cloud]))
    beat = first_beat(ctx["store"], name, cloud, th)
    th.join()
    assert "error" not in out, out.get("error")
    return beat - submitted_at(out["summary"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cold", action="store_true", help="also build both images without the layer cache (minutes)")
    a = ap.parse_args(argv)
    rows: list[tuple[str, str, str, str]] = []
    if a.cold:
        cold = images.build_all(no_cache=True)
        for n in ("serve", "train"):
            rows.append((f"{n} image, cold build (s)", f"{cold[n]['seconds']:.0f}", "", ""))
    warm = images.build_all()
    for n in ("serve", "train"):
        rows.append((f"{n} image, warm build: unchanged, reused (s)", f"{warm[n]['seconds']:.1f}", "", ""))
    for n in ("serve", "train"):
        rows.append((f"{n} image size (MB)", f"{warm[n]['bytes'] / 1e6:.0f}", "", ""))

    import boto3
    from cloudhop.data import flights_table
    from cloudhop.store import Store
    from prefect_aws import AwsCredentials

    with tempfile.TemporaryDirectory() as d, temporary_server(Path(d)) as api, \
            services.moto_server(Path(d)) as moto, engine.api_socket(Path(d)) as docker_host:
        os.environ["PREFECT_API_URL"] = api
        tmp = Path(d)
        boto3.client("s3", endpoint_url=moto).create_bucket(Bucket=BUCKET)
        options = {"client_kwargs": {"endpoint_url": moto, "region_name": "us-east-1"}}
        store = Store(f"s3://{BUCKET}", options)
        with store.fs.open(f"{BUCKET}/data/flights.parquet", "wb") as f:
            flights_table().iloc[::12].reset_index(drop=True).to_parquet(f)
        ctx = {"data": f"s3://{BUCKET}/data/flights.parquet", "options": options, "store": store}
        AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing").save("cloudhop-store")
        deploy_project(prefect_env(api), names=["train-local", "train-docker", "train-docker-b"])
        procs = Workers(api, tmp, {"local": "local"})
        boxes = Workers(api, tmp, {"container": "docker", "container-b": "docker-b"}, pool_type="docker",
                        env={"DOCKER_HOST": docker_host})
        try:
            procs.start("local"), boxes.start("container"), boxes.start("container-b")
            time.sleep(5)
            process = time_to_running(tmp, ctx, "process", "local")
            docker = time_to_running(tmp, ctx, "docker", "container")

            th, out = run_retrain(write_spec(tmp, ctx, "killed", ["container", "container-b"]))
            while len([k for k in store.fs.glob(f"{BUCKET}/killed/checkpoints/**/step-*.pt")]) < 2:
                time.sleep(0.1)
            names = engine.podman("ps", "--format", "{{.Names}}").stdout.split()
            [box] = [n for n in names if re.fullmatch(r"train-container-\d+(-\d+)?", n)]
            t_kill = time.time()
            engine.podman("kill", box)
            ckpts = store.fs.glob(f"{BUCKET}/killed/checkpoints/**/step-*.pt")
            newest = max(int(p.rsplit("step-", 1)[1].split(".")[0]) for p in ckpts)
            resumed_at = first_beat(store, "killed", "container-b", th) - t_kill
            th.join()
            assert "error" not in out, out.get("error")
            info = out["summary"]["training"]
        finally:
            procs.stop_all()
            boxes.stop_all()

    rows.append(("submission -> training running, process pool (s)", f"{process:.1f}", "baseline", ""))
    rows.append(("submission -> training running, docker pool (s)", f"{docker:.1f}", f"{process:.1f}",
                 f"{docker / process:.2f}x"))
    rows.append(("kill -> training running on the second docker pool (s)", f"{resumed_at:.1f}",
                 f"normal start {docker:.1f}", f"adds {resumed_at - docker:.1f}"))
    resumed = info["resumed_from_step"] or 0
    rows.append(("resumed from step", str(resumed), f"newest checkpoint {newest}",
                 "none lost" if resumed == newest else "MISSED"))
    most = newest + EVERY - resumed
    rows.append(("steps redone (work lost), at most", str(most), f"bar {EVERY}", "met" if most <= EVERY else "MISSED"))
    rows.append(("steps on second pool / total steps", f"{info['steps_run']} / {info['steps']}", "", ""))
    print(f"\ncontainers on this machine ({os.cpu_count()} CPUs), podman {engine.podman('--version').stdout.split()[-1]}, "
          f"checkpoint every {EVERY} steps")
    width = max(len(r[0]) for r in rows)
    print(f"{'figure':{width}}  {'value':>10}  {'baseline':>24}  ratio")
    for name, v, b, r in rows:
        print(f"{name:{width}}  {v:>10}  {b:>24}  {r}")
    print(json.dumps({"images": warm}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
