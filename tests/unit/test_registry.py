import json

import pytest

from cloudhop.registry import Manifest, Registry, RegistryError
from cloudhop.registry.manifest import Metrics
from cloudhop.store import Store


@pytest.fixture
def reg(tmp_path):
    return Registry(Store(str(tmp_path)), "m")


def test_publish_versions_and_aliases(reg):
    v1 = reg.publish({"model.onnx": b"one"}, Manifest(metrics=Metrics(candidate={"auc": 0.7})))
    v2 = reg.publish({"model.onnx": b"two"}, Manifest())
    assert (v1.version, v2.version) == ("1", "2")
    assert reg.versions() == ["1", "2"]
    assert reg.get("latest").version == "2"
    assert reg.get("1").manifest.metrics == Metrics(candidate={"auc": 0.7})
    assert reg.read_file(reg.get("2"), "model.onnx") == b"two"
    reg.set_alias("champion", "1")
    rec = reg.set_alias("champion", "2", run_id="r")
    assert rec["previous"] == "1" and rec["run_id"] == "r"
    assert reg.champion().version == "2"
    assert reg.resolve("champion") == "2"


def test_half_written_version_is_invisible_and_skipped(reg):
    reg.publish({"model.onnx": b"one"}, Manifest())
    reg.store.write_bytes("models/m/2/model.onnx", b"crashed before manifest")
    assert reg.versions() == ["1"]
    with pytest.raises(RegistryError, match="no version 2"):
        reg.get("2")
    with pytest.raises(RegistryError, match="no such committed version"):
        reg.set_alias("champion", "2")
    assert reg.publish({"model.onnx": b"three"}, Manifest()).version == "3"
    assert reg.versions() == ["1", "3"]


def test_tampered_file_fails_checksum(reg):
    mv = reg.publish({"model.onnx": b"good"}, Manifest())
    reg.store.write_bytes(mv.key("model.onnx"), b"evil")
    with pytest.raises(RegistryError, match="sha256 mismatch"):
        reg.read_file(mv, "model.onnx")
    assert reg.verify("1") and "sha256 mismatch" in reg.verify("1")[0]


def test_manifest_is_create_only(reg):
    reg.publish({"a": b"x"}, Manifest())
    before = reg.store.read_bytes("models/m/1/manifest.json")
    assert not reg.store.write_bytes_if_absent("models/m/1/manifest.json", b"{}")
    assert reg.store.read_bytes("models/m/1/manifest.json") == before
    assert json.loads(before)["files"]["a"]["bytes"] == 1
