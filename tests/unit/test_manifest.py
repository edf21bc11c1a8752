"""The manifest model against manifests written before it existed.

tests/data/manifests/register-v*.json were written by `pipeline.register` when it still built
the manifest as a dict literal (two versions of a small flights run: the first without a
champion, the second compared with it; only the host name was replaced).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from cloudhop.registry import Manifest, Registry, RegistryError
from cloudhop.registry.manifest import FileEntry
from cloudhop.store import Store

DATA = Path(__file__).parent.parent / "data" / "manifests"
WRITTEN = sorted(DATA.glob("register-v*.json"))
PUBLISH_ADDS = {"name", "version", "created_at", "files"}


def test_the_fixtures_are_there():
    assert [p.name for p in WRITTEN] == ["register-v1.json", "register-v2.json"]


@pytest.mark.parametrize("path", WRITTEN, ids=lambda p: p.stem)
def test_a_written_manifest_reads_back_and_reserialises_to_the_same_bytes(path):
    blob = path.read_bytes()
    m = Manifest.model_validate(json.loads(blob))
    assert m.to_json() == blob
    assert m.to_dict() == json.loads(blob)


def test_written_fields_read_as_attributes():
    v1, v2 = (Manifest.model_validate(json.loads(p.read_bytes())) for p in WRITTEN)
    assert v1.parent_version is None and v1.metrics.champion is None and v1.metrics.champion_version is None
    assert v2.parent_version == "1" and v2.metrics.champion_version == "1"
    assert v2.metrics.metric == "roc_auc" and 0.5 < v2.metrics.candidate["roc_auc"] <= 1.0
    assert v2.dataset.windows == {"train": 4015, "validation": 1427, "holdout": 2742}
    assert "carrier" in v2.features.categorical and "distance" in v2.features.numeric
    assert v2.validation is not None and v2.validation.success and v2.validation.failed == 0
    assert v2.drift is not None and v2.drift.sample_size == 2000 and "carrier" in v2.drift.columns
    assert v2.training.where == v2.trained_where == "local" and v2.training.history[0]["epoch"] == 1
    assert v2.spec is not None and v2.spec["name"] == v2.name == "flights-delay"
    assert isinstance(v2.files["model.onnx"], FileEntry) and len(v2.files["model.onnx"].sha256) == 64
    assert v2.run_id == "run-2" and v2.task == "binary" and v2.target == "late"


def test_the_registry_reads_a_written_manifest_unchanged(tmp_path):
    blob = WRITTEN[1].read_bytes()
    store = Store(str(tmp_path))
    store.write_bytes("models/flights-delay/2/manifest.json", blob)
    mv = Registry(store, "flights-delay").get("2")
    assert mv.manifest.to_json() == blob and mv.manifest.version == "2"


def test_publish_keeps_every_field_and_adds_its_own(tmp_path):
    written = json.loads(WRITTEN[1].read_bytes())
    mine = Manifest.model_validate({k: v for k, v in written.items() if k not in PUBLISH_ADDS})
    reg = Registry(Store(str(tmp_path)), "flights-delay")
    mv = reg.publish({"model.onnx": b"weights"}, mine)
    stored = json.loads(reg.store.read_bytes(mv.key("manifest.json")))
    assert {k: v for k, v in stored.items() if k not in PUBLISH_ADDS} == \
        {k: v for k, v in written.items() if k not in PUBLISH_ADDS}
    assert stored["files"] == {"model.onnx": {"bytes": 7, "sha256": mv.manifest.files["model.onnx"].sha256}}
    assert stored["name"] == "flights-delay" and stored["version"] == "1" and stored["created_at"]
    assert mine.files == {} and mine.version is None  # the caller's manifest is left as it was


def test_an_empty_manifest_writes_only_what_publish_adds(tmp_path):
    reg = Registry(Store(str(tmp_path)), "m")
    mv = reg.publish({"a": b"x"}, Manifest())
    assert set(json.loads(reg.store.read_bytes(mv.key("manifest.json")))) == PUBLISH_ADDS
    assert reg.get("1").manifest.metrics.candidate == {} and reg.get("1").manifest.spec is None


def test_unknown_or_mistyped_fields_are_refused_with_their_path(tmp_path):
    with pytest.raises(ValidationError, match=r"metrics\.candidat\n.*Extra inputs are not permitted"):
        Manifest.model_validate({"metrics": {"candidat": {"auc": 0.7}}})
    with pytest.raises(ValidationError, match=r"files\.`model\.onnx`\.sha256\n  Field required"):
        Manifest.model_validate({"files": {"model.onnx": {"bytes": 1}}})
    store = Store(str(tmp_path))
    store.write_bytes("models/m/1/manifest.json", json.dumps({"dataset": {"windows": {"train": "many"}}}).encode())
    with pytest.raises(RegistryError, match=r"(?s)models/m/1/manifest.json is not a valid manifest.*"
                                            r"dataset\.windows\.train\n  Input should be a valid integer"):
        Registry(store, "m").get("1")
