"""Multi-target deploys against real emulators and real inference servers.

Four regions, each a real `python -m cloudhop.serving` process whose --store is that cloud's
emulator: AWS (moto S3 + moto ECS), GCP (gcp-storage-emulator; Cloud Run via gitops), Azure
(Azurite; Container Apps via gitops), CoreWeave (moto S3 as its S3-compatible store; Kubernetes
via gitops). A region that is "down" has its server process killed (port closed).

Where podman is installed, a fifth target, `box`, is a `container` target: the real serve image,
started by the target itself through podman's Docker API, serving from a bucket of its own on
moto. Every policy, canary and rollback test then counts it among the others (its start-up
failures are tested in test_containers.py).
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

import httpx
import pytest
import yaml

from cloudhop.registry import Registry
from cloudhop.spec import load_spec
from cloudhop.store import Store
from cloudhop.targets import multi
from cloudhop.testing import CATEGORICAL, NUMERIC, make_frame, publish_version
from cloudhop.training.preprocess import Preprocessor
from ops import engine
from ops.localserver import prefect_env
from ops.net import free_port
from ops.procs import ROOT
from ops.serving import Traffic

pytestmark = pytest.mark.integration

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # gcsfs vs the GCS emulator
MODEL = "flights"
# Azurite's published development account (not a secret: the same for every Azurite install)
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
S3_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
ADMIN_TOKEN = secrets.token_urlsafe(24)  # every region's /admin token; the flow reads it from a Secret block
BOX = "box"  # the container target (the serve image on podman), where podman is installed


class Server:
    """What a test reads of one target's inference server, over HTTP."""

    def __init__(self, name: str, port: int):
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"

    def version(self) -> str | None:
        try:
            r = httpx.get(self.url + "/version", timeout=2)
        except httpx.TransportError:
            return None
        return r.json()["version"] if r.status_code == 200 else None

    def swaps(self) -> float:
        text = httpx.get(self.url + "/metrics", timeout=2).text
        return sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith("cloudhop_model_swaps_total"))


class Region(Server):
    """One region's inference server: a real process on a fixed port, killable and restartable."""

    def __init__(self, name: str, store_uri: str, store_options: dict, root: Path):
        super().__init__(name, free_port())
        self.store_uri, self.store_options = store_uri, store_options
        self.log = root / f"server-{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, version: str) -> None:
        env = {**os.environ, "CLOUDHOP_STORE_OPTIONS": json.dumps(self.store_options),
               "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false", "CLOUDHOP_ADMIN_TOKEN": ADMIN_TOKEN}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cloudhop.serving", "--store", self.store_uri, "--model", MODEL,
                 "--version", version, "--port", str(self.port), "--target-name", self.name,
                 "--no-prediction-log"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} server exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} server not healthy:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
def world(request, tmp_path_factory, moto_url, gcs_url, azurite_url):
    import boto3
    from azure.storage.blob import BlobServiceClient
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    root = tmp_path_factory.mktemp("deploy")
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1", **S3_KEYS)
    for b in ("cloudhop-aws", "cloudhop-cw", "cloudhop-box"):
        s3.create_bucket(Bucket=b)
    boto3.client("ecs", endpoint_url=moto_url, region_name="us-east-1", **S3_KEYS).create_cluster(
        clusterName="cloudhop")
    os.environ["STORAGE_EMULATOR_HOST"] = gcs_url
    storage.Client(project="test", credentials=AnonymousCredentials()).create_bucket("cloudhop-gcp")
    conn = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={azurite_url};")
    BlobServiceClient.from_connection_string(conn).create_container("cloudhop-azure")

    s3_opts = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": moto_url,
                                                                         "region_name": "us-east-1"}}
    regions = {
        "aws-use1": Region("aws-use1", "s3://cloudhop-aws/root", s3_opts, root),
        "gcp-usc1": Region("gcp-usc1", "gs://cloudhop-gcp/root",
                           {"endpoint_url": gcs_url, "token": "anon", "project": "test"}, root),
        "azure-weu": Region("azure-weu", "az://cloudhop-azure/root",
                            {"connection_string": conn, "use_listings_cache": False}, root),
        "cw-lga1": Region("cw-lga1", "s3://cloudhop-cw/root", s3_opts, root),
    }
    manifests = root / "manifests"
    admin = {"admin_token_secret": "cloudhop-admin-token"}
    targets = [
        {"name": "aws-use1", "kind": "aws", "options": {
            "store": "s3://cloudhop-aws/root", "endpoint": regions["aws-use1"].url, "cluster": "cloudhop",
            "region": "us-east-1", "credentials": "moto", **admin}},
        {"name": "gcp-usc1", "kind": "gcp", "options": {
            "store": "gs://cloudhop-gcp/root", "endpoint": regions["gcp-usc1"].url, "project": "test",
            "endpoint_url": gcs_url, "control": "gitops", "manifests": str(manifests), **admin}},
        {"name": "azure-weu", "kind": "azure", "options": {
            "store": "az://cloudhop-azure/root", "endpoint": regions["azure-weu"].url, "control": "gitops",
            "manifests": str(manifests), "credentials": "azurite", **admin}},
        {"name": "cw-lga1", "kind": "coreweave", "options": {
            "store": "s3://cloudhop-cw/root", "endpoint_url": moto_url, "endpoint": regions["cw-lga1"].url,
            "workload": "kserve", "control": "gitops", "manifests": str(manifests), "credentials": "moto",
            **admin}},
    ]
    # the plain secrets the tasks layer would resolve from the blocks named above
    plain = {"aws-use1": {**S3_KEYS, "endpoint_url": moto_url}, "cw-lga1": dict(S3_KEYS),
             "azure-weu": {"connection_string": conn}, "gcp-usc1": {}}
    plain = {n: {**p, "admin_token": ADMIN_TOKEN} for n, p in plain.items()}
    servers: dict[str, Server] = dict(regions)
    if engine.installed():
        from cloudhop.providers.container.target import env_from_block

        request.getfixturevalue("serve_image")
        box = Server(BOX, free_port())
        targets.append({"name": BOX, "kind": "container", "options": {
            "store": "s3://cloudhop-box/root", "port": box.port, "credentials": "moto",
            "store_options": {"client_kwargs": {"endpoint_url": moto_url, "region_name": "us-east-1"}},
            "docker_host": request.getfixturevalue("docker_host"), "state_dir": str(root / "box"),
            "server_args": ["--no-prediction-log"], "start_timeout": 120}})
        plain[BOX] = env_from_block(S3_KEYS)  # its own admin token, made when it starts its container
        servers[BOX] = box
    spec_data = yaml.safe_load(open(ROOT / "specs/flights.yaml"))
    spec_data.update(name=MODEL, store=str(root / "store"), targets=targets)
    spec_path = root / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec_data, sort_keys=False))
    spec = load_spec(spec_path)

    registry = Registry(Store(spec.store), MODEL)
    df = make_frame(200, seed=1)
    pre = Preprocessor.fit(df, CATEGORICAL, NUMERIC)
    smoke_df = make_frame(12, seed=7)
    for seed in (1, 2, 3):
        publish_version(registry, pre, seed, smoke_df)

    def build():
        return [multi.build(t, spec, plain[t.name]) for t in spec.targets]

    targets_v1 = build()
    for t in targets_v1:
        t.publish(registry, "1")
    for r in regions.values():
        r.start("1")
    for r in regions.values():
        r.wait()
    first = multi.deploy_all(registry, targets_v1, "1")
    assert first.ok, first.summary()
    w = {"root": root, "regions": regions, "servers": servers, "spec": spec, "spec_path": spec_path,
         "registry": registry, "build": build, "moto": moto_url, "conn": conn, "manifests": manifests}
    yield w
    for r in regions.values():
        r.stop()
    for t in build():
        if t.name == BOX:
            t.stop()


def live(w) -> dict[str, str | None]:
    return {n: r.version() for n, r in w["servers"].items()}


def every(w, version: str | None, but: dict[str, str | None] | None = None) -> dict[str, str | None]:
    """{target: version} for every target, but those in `but`."""
    return {**{n: version for n in w["servers"]}, **(but or {})}


def aliases(w) -> dict[str, str]:
    return {n: (w["registry"].alias(f"live-{n}") or {}).get("version") for n in w["servers"]}


def restore(w, region: str) -> None:
    """Bring a killed region back the way its cloud would: new replicas start on the deployment's version."""
    t = next(t for t in w["build"]() if t.name == region)
    desired = t.control.desired_version()
    w["regions"][region].start(desired)
    w["regions"][region].wait()


def settle(w, version: str) -> None:
    report = multi.deploy_all(w["registry"], w["build"](), version)
    assert report.ok, report.summary()
    assert set(live(w).values()) == {version}


# -- publish ---------------------------------------------------------------------------
def test_publish_uploads_verified_copies_that_a_server_can_load(world):
    w = world
    aws = next(t for t in w["build"]() if t.name == "aws-use1")
    aws.publish(w["registry"], "2")
    there = Registry(aws.store, MODEL)
    assert "2" in there.versions() and there.verify("2") == []
    # a corrupted object in the cloud copy is found and replaced on the next publish
    mv = there.get("2")
    aws.store.write_bytes(mv.key("model.onnx"), b"not a model")
    assert there.verify("2") != []
    aws.publish(w["registry"], "2")
    assert there.verify("2") == []


# -- policies ----------------------------------------------------------------------------
def test_all_or_nothing_with_one_region_down_leaves_every_region_on_the_old_version(world):
    w = world
    settle(w, "1")
    w["regions"]["azure-weu"].kill()
    report = multi.deploy_all(w["registry"], w["build"](), "2", policy="all-or-nothing")
    assert not report.ok
    assert report.targets["azure-weu"].status in ("failed", "rollback-failed")
    assert "azure-weu" in report.targets["azure-weu"].error
    for n in w["servers"]:
        if n != "azure-weu":
            assert report.targets[n].status == "rolled-back", report.summary()
    # checked over HTTP, not from the report
    assert live(w) == every(w, "1", {"azure-weu": None})
    assert aliases(w) == every(w, "1")
    # every control plane is back on v1 too: a replica the cloud starts now runs v1
    for t in w["build"]():
        if t.name in w["regions"]:
            assert t.control.desired_version() == "1", t.name
    restore(w, "azure-weu")
    assert w["regions"]["azure-weu"].version() == "1"


def test_best_effort_with_one_region_down_ships_the_others_and_records_who_runs_what(world):
    w = world
    settle(w, "1")
    w["regions"]["gcp-usc1"].kill()
    report = multi.deploy_all(w["registry"], w["build"](), "2", policy="best-effort", retries=1,
                              retry_delay=0.1)
    assert not report.ok and report.failed == ["gcp-usc1"]
    assert report.targets["gcp-usc1"].attempts == 2
    assert live(w) == every(w, "2", {"gcp-usc1": None})
    assert aliases(w) == every(w, "2", {"gcp-usc1": "1"})
    alias = w["registry"].alias("live-aws-use1")
    assert alias["updated_at"] and alias["run_id"] == report.run_id and alias["previous"] == "1"
    ecs = next(t for t in w["build"]() if t.name == "aws-use1").control
    assert ecs.desired_version() == "2"
    restore(w, "gcp-usc1")
    assert w["regions"]["gcp-usc1"].version() == "1"


def test_redeploying_the_live_version_changes_nothing(world):
    w = world
    settle(w, "3")
    before_alias = {n: w["registry"].alias(f"live-{n}") for n in w["servers"]}
    swaps = {n: r.swaps() for n, r in w["servers"].items()}
    report = multi.deploy_all(w["registry"], w["build"](), "3")
    assert report.ok and all(t.status == "unchanged" and not t.changed for t in report.targets.values())
    assert {n: w["registry"].alias(f"live-{n}") for n in w["servers"]} == before_alias
    assert {n: r.swaps() for n, r in w["servers"].items()} == swaps


def test_rendered_deployments_follow_the_version(world):
    w = world
    settle(w, "2")
    cr = json.loads((w["manifests"] / "gcp-usc1.json").read_text())
    env = {e["name"]: e.get("value") for e in cr["template"]["containers"][0]["env"]}
    assert env["CLOUDHOP_VERSION"] == "2" and cr["template"]["revision"].endswith("-v2")
    isvc = json.loads((w["manifests"] / "cw-lga1.json").read_text())
    assert isvc["kind"] == "InferenceService"
    assert "--version" in isvc["spec"]["predictor"]["containers"][0]["command"]


# -- the flow ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def blocks(world, prefect_api_url):
    from prefect.blocks.system import Secret
    from prefect_aws import AwsCredentials
    from prefect_aws.client_parameters import AwsClientParameters
    from prefect_azure import AzureBlobStorageCredentials

    AwsCredentials(**S3_KEYS, region_name="us-east-1",
                   aws_client_parameters=AwsClientParameters(endpoint_url=world["moto"])).save("moto", overwrite=True)
    AzureBlobStorageCredentials(connection_string=world["conn"]).save("azurite", overwrite=True)
    Secret(value=ADMIN_TOKEN).save("cloudhop-admin-token", overwrite=True)
    return prefect_api_url


def test_flow_all_or_nothing_fails_and_restores_then_rolls_forward_and_back(world, blocks):
    from flows.deploy import DeployFailed, deploy

    w = world
    settle(w, "1")
    w["regions"]["cw-lga1"].kill()
    with pytest.raises(DeployFailed, match="cw-lga1"):
        deploy(spec=str(w["spec_path"]), version="2", retries=1, retry_delay_seconds=0.1)
    assert live(w) == every(w, "1", {"cw-lga1": None})
    restore(w, "cw-lga1")
    out = deploy(spec=str(w["spec_path"]), version="2")
    assert {n: (d["version"], d["previous"], d["changed"]) for n, d in out.items()} == \
        {n: ("2", "1", True) for n in w["servers"]}
    assert live(w) == every(w, "2")
    # "roll back to version X" is the same flow with an older version
    out = deploy(spec=str(w["spec_path"]), version="1", policy="best-effort")
    assert live(w) == every(w, "1") and all(d["changed"] for d in out.values())


def test_flow_killed_midway_converges_when_run_again(world, blocks):
    w = world
    settle(w, "1")
    env = prefect_env(blocks)
    env["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    cmd = [sys.executable, "-m", "flows.deploy", "--spec", str(w["spec_path"]), "--version", "3"]
    log = w["root"] / "killed-flow.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "3" not in live(w).values():
            assert proc.poll() is None, f"the flow ended before any target switched:\n{log.read_text()[-3000:]}"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "3" in live(w).values(), log.read_text()[-3000:]
    from flows.deploy import deploy

    out = deploy(spec=str(w["spec_path"]), version="3")  # the same flow again, in this process
    assert live(w) == every(w, "3")
    assert {d["status"] for d in out.values()} <= {"deployed", "unchanged"}
    assert aliases(w) == every(w, "3")


# -- canary ----------------------------------------------------------------------------------
def publish_slow_version(registry: Registry, pre: Preprocessor, smoke_df) -> str:
    """A real, correct but ~100x heavier model: what a careless architecture change ships."""
    return publish_version(registry, pre, 0, smoke_df, hidden=[1536] * 7).version


def test_canary_region_promotes_a_good_version_and_stops_a_slow_one(world):
    from cloudhop.targets.canary import CanaryThresholds

    w = world
    settle(w, "1")
    registry = w["registry"]
    pre = Preprocessor.from_dict(json.loads(registry.read_file(registry.get("1"), "preprocess.json")))
    smoke = json.loads(registry.read_file(registry.get("1"), "smoke.json"))
    slow = publish_slow_version(registry, pre, __import__("pandas").DataFrame(smoke["rows"]))
    urls = [r.url for r in w["servers"].values()]
    gate = CanaryThresholds(min_requests=10, max_p95_ratio=3.0, min_p95_slack_seconds=0.01)
    # 128 rows a request: the slow version's cost grows with the rows (about 30 ms here), the
    # light one's hardly does, so the slow one stands well clear of the gate's 10 ms slack
    # on a quiet machine too (with 32 rows it took 9.9 ms against 1.0 ms, under the slack).
    with Traffic(urls, smoke["rows"][0], rows=128):
        good = multi.deploy_all(registry, w["build"](), "2", canary="aws-use1", canary_seconds=3,
                                canary_thresholds=gate)
        assert good.ok and good.canary["promote"], good.summary() + str(good.canary)
        assert live(w) == every(w, "2")
        bad = multi.deploy_all(registry, w["build"](), slow, canary="gcp-usc1", canary_seconds=3,
                               canary_thresholds=gate)
    assert not bad.ok and not bad.canary["promote"] and "p95" in bad.canary["reason"], bad.canary
    assert live(w) == every(w, "2")  # the canary went back; nobody else moved
    assert bad.targets["gcp-usc1"].error.startswith("canary rejected")
    assert {t.status for n, t in bad.targets.items() if n != "gcp-usc1"} == {"not-deployed"}
    assert aliases(w) == every(w, "2")
