"""cloudhop.testing: the stand-ins users test their pipelines with behave like the real parts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cloudhop.registry import Registry
from cloudhop.serving.model import load_model
from cloudhop.store import Store
from cloudhop.targets import Target, TargetError
from cloudhop.testing import CATEGORICAL, NUMERIC, MemoryTarget, make_frame, ort_predict, publish_version, records
from cloudhop.training.preprocess import Preprocessor


def test_make_frame_is_seeded_and_has_missing_temperatures():
    a, b = make_frame(500, seed=3), make_frame(500, seed=3)
    assert a.equals(b) and not a.equals(make_frame(500, seed=4))
    assert list(a.columns) == CATEGORICAL + NUMERIC
    assert 0.03 < a["temp"].isna().mean() < 0.2 and a[CATEGORICAL + ["distance", "hour"]].notna().all().all()
    rows = records(a.head(50))
    assert any(r["temp"] is None for r in rows) and json.loads(json.dumps(rows)) == rows


def test_a_published_version_loads_in_the_server_and_predicts_its_smoke_set(tmp_path):
    reg = Registry(Store(str(tmp_path / "store")), "m")
    pre = Preprocessor.fit(make_frame(200, seed=0), CATEGORICAL, NUMERIC)
    smoke_df = make_frame(10, seed=1)
    v1 = publish_version(reg, pre, 1, smoke_df)
    v2 = publish_version(reg, pre, 2, smoke_df, hidden=[16, 4])
    assert (v1.version, v2.version) == ("1", "2")
    smoke = json.loads(reg.read_file(v1, "smoke.json"))
    assert smoke["rows"] == records(smoke_df)
    served = load_model(reg, "1").predict_records(smoke["rows"])
    assert np.allclose(served, smoke["predictions"], atol=1e-5)
    onnx2 = reg.read_file(v2, "model.onnx")
    assert np.abs(ort_predict(onnx2, pre, smoke_df) - np.asarray(smoke["predictions"])).max() > 1e-3


def test_memory_target_is_a_target_and_records_what_it_is_asked():
    t = MemoryTarget("a", live="1", unloadable={"3"}, bad={"2"})
    assert isinstance(t, Target)
    t.publish(None, "2")
    t.roll_out("2")
    assert t.live_version() == "2" and not t.smoke_test([{}, {}], [0.3, 0.7]).ok
    with pytest.raises(TargetError, match="a: cannot load v3"):
        t.roll_out("3")
    t.roll_back("1")
    assert t.smoke_test([{}, {}], [0.3, 0.7]).ok and t.health() == {"status": "ok"}
    assert t.calls == [("publish", "2"), ("roll_out", "2"), ("roll_out", "3"), ("roll_back", "1")]


def test_memory_target_down_or_flaky():
    down = MemoryTarget("d", live="1", down=True)
    assert down.live_version() is None and down.health() == {"status": "down"}
    with pytest.raises(TargetError, match="d: connection refused"):
        down.roll_back("1")
    flaky = MemoryTarget("f", fail_times=1)
    with pytest.raises(TargetError, match="f: flaky"):
        flaky.roll_out("1")
    flaky.roll_out("1")
    assert flaky.live_version() == "1"
