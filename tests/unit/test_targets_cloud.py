"""Cloud target construction (options, credentials) and the verified copy of a version."""
from __future__ import annotations

import pytest

from cloudhop.registry import Manifest, Registry
from cloudhop.spec import ServingTargetSpec
from cloudhop.store import Store
from cloudhop.targets import multi
from cloudhop.targets.base import TargetError
from cloudhop.targets.cloud import ManifestStore, copy_version


class _Spec:
    name = "flights"


def build(kind, **options):
    return multi.build(ServingTargetSpec(name="t1", kind=kind, options=options), _Spec())


def test_unknown_options_and_credentials_in_the_spec_are_refused():
    with pytest.raises(TargetError, match=r"unknown option\(s\) \['bucket'\]"):
        build("aws", store="s3://b/p", endpoint="http://x", cluster="c", bucket="b")
    with pytest.raises(TargetError, match="credentials never go in the spec"):
        build("gcp", store="gs://b/p", endpoint="http://x", control="gitops", manifests="/tmp/m", token="t")


def test_missing_and_wrong_options_say_what_to_write():
    with pytest.raises(TargetError, match=r"options.cluster is required for a aws target"):
        build("aws", store="s3://b/p", endpoint="http://x")
    with pytest.raises(TargetError, match="must be an az:// URI"):
        build("azure", store="s3://b/p", endpoint="http://x", control="gitops", manifests="/tmp/m")
    with pytest.raises(TargetError, match="workload must be deployment or kserve"):
        build("coreweave", store="s3://b/p", endpoint_url="http://cw", endpoint="http://x", workload="pod")


def test_copy_version_uploads_verifies_and_repairs(tmp_path):
    src = Registry(Store(str(tmp_path / "src")), "m")
    src.publish({"model.onnx": b"weights", "preprocess.json": b"{}"}, Manifest())
    dest = Store(str(tmp_path / "dest"))
    assert copy_version(src, dest, "1") == len(b"weights") + 2
    assert copy_version(src, dest, "1") == 0  # already complete: nothing sent
    dest.write_bytes("models/m/1/model.onnx", b"tampered")
    assert copy_version(src, dest, "1") > 0 and Registry(dest, "m").verify("1") == []


def test_copy_refuses_a_source_that_fails_its_checksums(tmp_path):
    src = Registry(Store(str(tmp_path / "src")), "m")
    src.publish({"model.onnx": b"weights"}, Manifest())
    src.store.write_bytes("models/m/1/model.onnx", b"bitrot")
    dest = Store(str(tmp_path / "dest"))
    with pytest.raises(TargetError, match="fails verification at the source"):
        copy_version(src, dest, "1")
    assert dest.list() == []


def test_gitops_control_plane_records_the_desired_version(tmp_path):
    t = build("gcp", store="gs://b/p", endpoint="http://127.0.0.1:9", control="gitops",
              manifests=str(tmp_path / "m"), endpoint_url="http://127.0.0.1:9")
    assert isinstance(t.control, ManifestStore) and t.control.desired_version() is None
    t.control.apply("4")
    assert t.control.desired_version() == "4"
    assert t.health()["status"] == "down" and t.health()["desired_version"] == "4"


def test_the_example_targets_parse_and_build():
    from pathlib import Path

    import yaml

    from cloudhop.spec import parse_spec

    root = Path(__file__).resolve().parents[2]
    example = yaml.safe_load((root / "deployments/serving/targets.example.yaml").read_text())["targets"]
    spec = parse_spec({**yaml.safe_load((root / "specs/flights.yaml").read_text()), "targets": example})
    assert {t.kind for t in spec.targets} == {"local", "aws", "gcp", "azure", "coreweave"}
    for t in spec.targets:
        if t.kind in ("aws", "coreweave"):  # gcp/azure clients need cloud credentials to construct
            target = multi.build(t, spec)
            assert target.store.uri == t.options["store"] and target.url == t.options["endpoint"]


def test_each_target_says_where_its_servers_log_predictions(tmp_path):
    from cloudhop.spec import parse_spec
    from cloudhop.targets import TargetError as Refused
    from cloudhop.targets import prediction_log_store

    spec = parse_spec({"name": "toy", "dataset": {"uri": str(tmp_path / "d.parquet")}, "store": str(tmp_path / "s"),
                       "columns": {"t": {"type": "datetime", "role": "time"}, "x": {"type": "float"},
                                   "y": {"type": "int", "role": "target"}},
                       "target": {"column": "y", "task": "binary"},
                       "split": {"time_column": "t", "validation_start": "2024-03-01", "holdout_start": "2024-04-01"}})
    local = ServingTargetSpec(name="here", kind="local")
    assert prediction_log_store(local, spec).uri == str(tmp_path / "s")  # the store it serves from
    for args in (["--log-store", str(tmp_path / "logs")], [f"--log-store={tmp_path / 'logs'}"]):
        logged = ServingTargetSpec(name="here", kind="local", options={"server_args": ["--threads", "2", *args]})
        assert prediction_log_store(logged, spec).uri == str(tmp_path / "logs")
    aws = ServingTargetSpec(name="east", kind="aws", options={
        "store": "s3://serving/cloudhop", "endpoint": "http://127.0.0.1:9", "cluster": "c",
        "endpoint_url": "http://127.0.0.1:9"})
    assert prediction_log_store(aws, spec, {"aws_access_key_id": "k", "aws_secret_access_key": "s"}).uri \
        == "s3://serving/cloudhop"  # the cloud's own bucket, not the pipeline's store
    with pytest.raises(Refused, match="options.cluster is required"):
        prediction_log_store(ServingTargetSpec(name="east", kind="aws", options={"store": "s3://b/p",
                                                                                 "endpoint": "http://x"}), spec)


class _ObjectStoreSpec:
    name, store, store_options = "flights", "s3://pipeline/root", {"client_kwargs": {"endpoint_url": "http://s3"}}


def container(secrets=None, **options):
    return multi.build(ServingTargetSpec(name="box", kind="container", options=options), _ObjectStoreSpec(),
                       secrets)


def test_a_container_target_serves_the_pipelines_store_or_one_of_its_own():
    from cloudhop.providers.container.target import env_from_block

    env = env_from_block({"aws_access_key_id": "AKID", "aws_secret_access_key": "shh", "region_name": "eu-west-1"})
    assert env == {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "shh", "AWS_DEFAULT_REGION": "eu-west-1"}
    default = container(env)
    assert default.store_uri == "s3://pipeline/root"
    assert default.server_store_options == _ObjectStoreSpec.store_options  # the keys reach it as environment
    assert default.store_options == {**_ObjectStoreSpec.store_options, "key": "AKID", "secret": "shh"}  # publishing
    own = container(env, store="s3://serving/root", store_options={"client_kwargs": {"endpoint_url": "http://other"}})
    assert own.store_uri == "s3://serving/root"
    assert own.server_store_options == {"client_kwargs": {"endpoint_url": "http://other"}}
    assert container(store="gs://serving/root").server_store_options == {}  # the pipeline's options are not its
    assert container(max_restarts=0).max_restarts == 0 and container().max_restarts == 3


def test_a_container_target_refuses_a_folder_store_and_unknown_or_wrong_options():
    with pytest.raises(TargetError, match="store '/srv/models' is a folder of this machine, which a container "
                                          "cannot see"):
        container(store="/srv/models")
    with pytest.raises(TargetError, match=r"unknown option\(s\) \['restart'\] for a container target"):
        container(restart="always")
    with pytest.raises(TargetError, match="options.max_restarts must be 0 or more, got -1"):
        container(max_restarts=-1)
