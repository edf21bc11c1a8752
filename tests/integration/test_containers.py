"""Both images built for real with podman, and training run inside the train image.

The engine is podman (runc, cloudhop's containers.conf), serving the Docker API on a socket
for Prefect's docker workers. Two docker pools, `docker` and `docker-b`, stand for two clouds
(`container`, `container-b` in deployments/clouds.yaml). The store and the dataset live in
S3 on moto's server; the keys reach the container from the AwsCredentials block
`cloudhop-store`, resolved by the worker into the container's environment.

The tests run in file order and share the images (reused when unchanged: the first build of
a fresh machine takes minutes, the next ones seconds).
"""
from __future__ import annotations

import contextvars
import os
import re
import threading
import time

import boto3
import pytest
import yaml

from cloudhop.clouds.failover import TrainingFailed
from cloudhop.data import flights_table
from cloudhop.registry import Registry
from cloudhop.store import Store
from ops import engine, images
from ops.deploy import deploy_project
from ops.localserver import prefect_env
from ops.procs import ROOT
from ops.workers import Workers

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not engine.installed(), reason="podman is not installed here: scripts/setup installs "
                                 "it as root (apt-get install -y podman runc debootstrap); without root, install those")]

BUCKET = "cloudhop-local"
KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
FIRST, SECOND = "container", "container-b"


def test_both_images_build_and_the_serve_image_holds_no_torch_or_prefect(built_images):
    assert set(built_images) == {"serve", "train"}
    probe = ("import importlib.util as u; print(*[m for m in ('torch', 'prefect', 'cloudhop', 'onnxruntime') "
             "if u.find_spec(m)])")
    serve = engine.podman("run", "--rm", "--network", "none", images.SERVE.tag, "python", "-c", probe).stdout
    assert serve.split() == ["cloudhop", "onnxruntime"]
    train = engine.podman("run", "--rm", "--network", "none", images.TRAIN.tag, "python", "-c",
                          "import torch, prefect, cloudhop, flows; print(torch.__version__)").stdout
    assert "+cpu" in train, f"the train image should hold this machine's CPU torch, has {train}"
    assert built_images["serve"]["bytes"] < built_images["train"]["bytes"]


def test_the_ca_bundle_is_in_no_layer(built_images):
    for image in (images.SERVE, images.TRAIN):
        out = engine.podman("run", "--rm", "--network", "none", image.tag, "sh", "-c",
                            "ls /run/secrets 2>/dev/null; ls /tmp").stdout
        assert "ca" not in out.split(), f"{image.tag} kept the build secret: {out}"


def test_unchanged_images_are_reused(built_images):
    t0 = time.monotonic()
    again = images.build_all()
    assert not again["serve"]["built"] and not again["train"]["built"]
    assert time.monotonic() - t0 < 60
    assert again["train"]["bytes"] == built_images["train"]["bytes"]


@pytest.fixture(scope="module")
def s3(moto_url):
    """The bucket with the dataset on moto, the credentials block, and the keys in this process's env."""
    old = {k: os.environ.get(k) for k in KEYS}
    os.environ.update(KEYS)
    boto3.client("s3", endpoint_url=moto_url).create_bucket(Bucket=BUCKET)
    options = {"client_kwargs": {"endpoint_url": moto_url, "region_name": "us-east-1"}}
    data = f"s3://{BUCKET}/data/flights.parquet"
    with Store(f"s3://{BUCKET}", options).fs.open(data, "wb") as f:
        flights_table().iloc[::12].reset_index(drop=True).to_parquet(f)
    yield {"options": options, "data": data}
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def pools(prefect_api_url, built_images, s3, docker_host, tmp_path_factory):
    """Both docker pools deployed, the credentials block saved, a docker worker on each pool."""
    from prefect_aws import AwsCredentials

    root = tmp_path_factory.mktemp("containers")
    AwsCredentials(aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"], aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"],
                   region_name="us-east-1").save("cloudhop-store", overwrite=True)
    deploy_project(prefect_env(prefect_api_url), names=["train-docker", "train-docker-b"], timeout=300)
    workers = Workers(prefect_api_url, root, {FIRST: "docker", SECOND: "docker-b"}, pool_type="docker",
                      env={"DOCKER_HOST": docker_host})
    yield {"root": root, "workers": workers, "docker_host": docker_host, **s3}
    workers.stop_all()


def write_spec(pools, name: str, *, model: dict | None = None, compute: dict | None = None,
               catalog: str | None = None) -> str:
    spec = yaml.safe_load(open(ROOT / "specs/flights.yaml"))
    spec["dataset"] = {"uri": pools["data"], "storage_options": pools["options"]}
    spec["store"] = f"s3://{BUCKET}/{name}"
    spec["store_options"] = pools["options"]
    spec["model"].update({"max_epochs": 2, "checkpoint_every": 25, "hidden": [32, 16], "batch_size": 256,
                          **(model or {})})
    spec["compute"] = {"mode": "pools", "catalog": catalog or str(ROOT / "deployments/clouds.yaml"),
                       "clouds": [FIRST, SECOND], "gpu_count": 0,
                       "failover": {"retries": 0, "backoff_seconds": 1, "start_timeout_s": 30,
                                    "startup_timeout_s": 180, "heartbeat_timeout_s": 60},
                       "breaker": {"failures": 20, "window_minutes": 30}, **(compute or {})}
    path = pools["root"] / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def retrain(path: str, **kw):
    from flows.retrain import retrain as flow

    return flow(spec=path, deploy=False, reason="container-test", **kw)


def flow_run(run_id: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as c:
        return c.read_flow_run(run_id)


def test_retrain_trains_inside_a_container_through_the_store(pools):
    pools["workers"].start(FIRST)
    s = retrain(write_spec(pools, "basic"))
    [attempt] = s["attempts"]
    assert (attempt["cloud"], attempt["outcome"]) == (FIRST, "completed")
    run = flow_run(attempt["run_id"])
    assert run.work_pool_name == "docker"
    assert re.fullmatch(r"http\+docker://localhost:[0-9a-f]{64}", run.infrastructure_pid or ""), \
        f"not a container run: {run.infrastructure_pid}"  # the docker worker's container id
    assert s["training"]["where"] == FIRST
    spec = yaml.safe_load(open(pools["root"] / "basic.yaml"))
    registry = Registry(Store(spec["store"], spec["store_options"]), spec["name"])
    assert registry.verify(s["version"]) == []
    assert any(k.endswith(".pt") for k in registry.store.list("checkpoints"))


def test_training_code_error_in_a_container_is_not_failed_over(pools):
    pools["workers"].start(FIRST)
    pools["workers"].start(SECOND)
    with pytest.raises(TrainingFailed) as e:
        retrain(write_spec(pools, "nan", model={"learning_rate": 1e30}))
    assert "no failover" in str(e.value) and "NaN" in str(e.value)
    assert [a.cloud for a in e.value.attempts] == [FIRST]


def test_missing_image_is_an_infrastructure_fault_and_fails_over(pools):
    pools["workers"].start(FIRST)
    pools["workers"].start(SECOND)
    catalog = yaml.safe_load((ROOT / "deployments/clouds.yaml").read_text())
    catalog["clouds"][FIRST]["offers"][0]["job_variables"] = {"image": "localhost/cloudhop-train:missing"}
    path = pools["root"] / "missing-image.yaml"
    path.write_text(yaml.safe_dump(catalog, sort_keys=False))
    s = retrain(write_spec(pools, "noimage", catalog=str(path)))
    assert [(a["cloud"], a["outcome"]) for a in s["attempts"]] == [(FIRST, "crashed"), (SECOND, "completed")]
    assert "missing" in s["attempts"][0]["detail"]


def test_killed_container_resumes_from_the_newest_checkpoint_on_the_other_pool(pools):
    w = pools["workers"]
    w.start(FIRST)
    w.start(SECOND)
    every = 20
    path = write_spec(pools, "kill", model={"batch_size": 256, "max_epochs": 4, "patience": 4,
                                            "hidden": [1024, 1024], "checkpoint_every": every})
    spec = yaml.safe_load(open(path))
    store = Store(spec["store"], spec["store_options"])
    result: dict = {}

    def run():
        try:
            result["summary"] = retrain(path)
        except BaseException as e:  # noqa: BLE001 - reported below
            result["error"] = e

    t = threading.Thread(target=contextvars.copy_context().run, args=(run,))  # keeps the test's Prefect settings
    t.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # wait for two checkpoints from the first pool's container
        ckpts = [k for k in store.list("checkpoints") if k.endswith(".pt")]
        if len(ckpts) >= 2:
            break
        time.sleep(0.3)
    else:
        pytest.fail("the first pool's container never wrote two checkpoints")
    names = engine.podman("ps", "--format", "{{.Names}}").stdout.split()
    [container] = [n for n in names if re.fullmatch(rf"train-{FIRST}-\d+(-\d+)?", n)]
    engine.podman("kill", container)
    killed_at_step = max(int(k.rsplit("step-", 1)[1].split(".")[0]) for k in store.list("checkpoints")
                         if k.endswith(".pt"))
    t.join(600)
    assert not t.is_alive()
    assert "error" not in result, result.get("error")
    s = result["summary"]
    assert [(a["cloud"], a["outcome"]) for a in s["attempts"]] == [(FIRST, "crashed"), (SECOND, "completed")]
    info = s["training"]
    assert info["where"] == SECOND
    assert info["resumed_from_step"] is not None and info["resumed_from_step"] >= killed_at_step
    assert info["steps_run"] < info["steps"], "the second pool redid everything"


# -- serving in the container --------------------------------------------------------------
@pytest.fixture(scope="module")
def serving(pools):
    """Three published versions in an S3 store; specs with a local target and a container target."""
    from cloudhop.spec import load_spec
    from cloudhop.targets import multi
    from cloudhop.testing import CATEGORICAL, NUMERIC, make_frame, publish_version
    from cloudhop.training.preprocess import Preprocessor
    from ops.net import free_port

    store = Store(f"s3://{BUCKET}/serving", pools["options"])
    registry = Registry(store, "flights")
    pre = Preprocessor.fit(make_frame(200, seed=1), CATEGORICAL, NUMERIC)
    for seed in (1, 2, 3):
        publish_version(registry, pre, seed, make_frame(12, seed=7))
    state = str(pools["root"] / "serving")
    local = {"name": "here", "kind": "local", "options": {"port": free_port(), "state_dir": state}}
    box = {"name": "box", "kind": "container", "options": {
        "port": free_port(), "credentials": "cloudhop-store", "docker_host": pools["docker_host"], "state_dir": state}}

    def spec(name: str, **box_options) -> str:
        data = yaml.safe_load(open(ROOT / "specs/flights.yaml"))
        data.update(name="flights", store=store.uri, store_options=pools["options"],
                    targets=[local, {**box, "options": {**box["options"], **box_options}}])
        path = pools["root"] / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return str(path)

    yield {"registry": registry, "spec": spec}
    s = load_spec(spec("teardown"))
    for t in s.targets:
        multi.build(t, s, {}).stop()


def container_id(name: str) -> str | None:
    out = engine.podman("ps", "--filter", f"name=^{name}$", "--format", "{{.ID}}").stdout.split()
    return out[0] if out else None


def test_container_target_serves_hot_swaps_and_logs_predictions_to_the_store(serving):
    from cloudhop.predlog import log_prefix
    from cloudhop.providers.container.target import env_from_block
    from cloudhop.spec import load_spec
    from cloudhop.targets import multi

    s = load_spec(serving["spec"]("serve"))
    target = multi.build(s.targets[1], s, env_from_block({"aws_access_key_id": "testing",
                                                           "aws_secret_access_key": "testing"}))
    target.roll_out("1")
    assert target.health()["status"] == "ok" and target.live_version() == "1"
    first = container_id(target.container_name)
    assert first is not None
    target.roll_out("2")  # hot swap: the same container loads v2 through /admin/load
    assert target.live_version() == "2" and container_id(target.container_name) == first
    smoke = multi.load_smoke(serving["registry"], "2")
    result = target.smoke_test(smoke["rows"], smoke["predictions"])
    assert result.ok, result.error
    target.roll_back("1")
    assert target.live_version() == "1"
    assert target.stop()  # SIGTERM: the server flushes its prediction log to the store
    assert container_id(target.container_name) is None
    assert serving["registry"].store.list_dirs(log_prefix("flights")), "no prediction log in the store"


@pytest.mark.parametrize("command, why, code, restarts, log", [
    (["serve-flights"], "could not be started", None, 0, "serve-flights"),  # no such program in the image
    (["python", "-m", "cloudhop.serving", "--store", f"s3://{BUCKET}/serving", "--model", "flights", "--port", "eighty"],
     "kept crashing before it was healthy", 2, 2, "argument --port: invalid int value: 'eighty'"),
], ids=["bad-command", "crash-loop"])
def test_a_container_that_cannot_start_fails_clearly_and_the_other_targets_go_back(serving, command, why, code,
                                                                                 restarts, log):
    from cloudhop.providers.container.target import env_from_block
    from cloudhop.spec import load_spec
    from cloudhop.targets import multi

    keys = env_from_block({"aws_access_key_id": "testing", "aws_secret_access_key": "testing"})

    def targets(path: str):
        s = load_spec(path)
        return [multi.build(t, s, keys if t.kind == "container" else {}) for t in s.targets]

    here, box = targets(serving["spec"]("good"))
    assert multi.deploy_all(serving["registry"], [here, box], "1").ok
    name = box.container_name
    engine.podman("rm", "-f", name)  # its machine went away; it comes back with a broken command
    broken = targets(serving["spec"]("broken", command=command, max_restarts=2))
    report = multi.deploy_all(serving["registry"], broken, "2", policy="all-or-nothing")
    assert not report.ok and report.targets["here"].status == "rolled-back", report.summary()
    failed = report.targets["box"]
    # putting it back on v1 starts the same broken command: that fails too, and says so
    assert failed.status == "rollback-failed" and failed.version is None, report.summary()
    first = failed.error.split("; rolling back to v1 failed")[0]
    assert f"container {name} (localhost/cloudhop-serve:dev) {why}" in first, first
    assert f"restarted {restarts} time" in first and "The last lines of its log:" in first, first
    if code is not None:
        assert f"exit code {code}," in first, first
    assert log in first, first
    assert (here.live_version(), box.live_version()) == ("1", None)
    assert container_id(name) is None and engine.podman("ps", "-a", "--filter", f"name=^{name}$", "-q").stdout == ""
