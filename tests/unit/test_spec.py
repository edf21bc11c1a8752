import copy

import pytest
import yaml

from cloudhop.spec import SpecError, load_spec, parse_spec

BASE = yaml.safe_load(open("specs/flights.yaml"))


def spec_with(**changes):
    d = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        node = d
        *parents, last = dotted.split("__")
        for p in parents:
            node = node[p]
        if value is ...:
            del node[last]
        else:
            node[last] = value
    return d


def test_flights_spec_loads_with_derived_views():
    s = load_spec("specs/flights.yaml")
    assert s.name == "flights-delay"
    assert s.target.task == "binary" and s.metric == "roc_auc"
    assert "late" not in s.features and "time_hour" not in s.features
    assert set(s.categorical) == {"carrier", "origin", "dest", "hour", "weekday"}  # hour, weekday: embedding
    assert "distance" in s.numeric and "temp" in s.numeric
    assert "month" not in s.features  # role: ignore
    assert s.spec_hash() == load_spec("specs/flights.yaml").spec_hash()


def test_unknown_field_is_named():
    with pytest.raises(SpecError) as e:
        parse_spec(spec_with(model__hiden=[3]), "x.yaml")
    assert "model.hiden: unknown field" in str(e.value)
    assert "x.yaml" in str(e.value)


def test_missing_required_field_is_named():
    with pytest.raises(SpecError, match=r"target: required field is missing"):
        parse_spec(spec_with(target=...))


def test_wrong_value_names_field_and_problem():
    with pytest.raises(SpecError, match=r"model\.batch_size: .*greater than or equal to 1"):
        parse_spec(spec_with(model__batch_size=0))
    with pytest.raises(SpecError, match=r"columns\.distance: .*min \(10.0\) is greater than max"):
        parse_spec(spec_with(columns__distance={"type": "float", "min": 10, "max": 1}))


def test_cross_field_checks():
    with pytest.raises(SpecError, match="target.column 'nope' is not in columns"):
        parse_spec(spec_with(target={"column": "nope", "task": "binary"}))
    with pytest.raises(SpecError, match="validation_start must be before holdout_start"):
        parse_spec(spec_with(split__holdout_start="2013-01-01"))
    with pytest.raises(SpecError, match="regression target must be int or float"):
        parse_spec(spec_with(target={"column": "carrier", "task": "regression"}))


def test_encoding_must_fit_the_type():
    with pytest.raises(SpecError, match=r"columns\.distance: .*embedding needs a category, string, int or bool"):
        parse_spec(spec_with(columns__distance={"type": "float", "encoding": "embedding"}))


def test_overrides_use_dotted_keys():
    s = parse_spec(BASE, overrides={"model.max_epochs": 1, "dataset.limit": 100, "split": {"holdout_end": "2013-12-31"}})
    assert s.model.max_epochs == 1 and s.dataset.limit == 100 and s.split.holdout_end.year == 2013
    assert s.model.batch_size == BASE["model"]["batch_size"]
    with pytest.raises(SpecError, match=r"overrides\.store: cannot be overridden in a run"):
        parse_spec(BASE, overrides={"model.max_epochs": 1, "store": "/tmp/x"})  # stores come from the spec file only


def test_bad_yaml_and_missing_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(p)
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "none.yaml")
    p.write_text("- a list")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_spec(p)


def test_target_kind_must_be_a_registered_provider():
    with pytest.raises(SpecError) as e:
        parse_spec(spec_with(targets=[{"name": "t", "kind": "lambda"}]), "x.yaml")
    assert "targets.0.kind" in str(e.value)
    assert "unknown target kind 'lambda'; known kinds: aws, azure, container, coreweave, gcp, local" in str(e.value)
    assert parse_spec(spec_with(targets=[{"name": "t", "kind": "coreweave"}])).targets[0].kind == "coreweave"


def test_pools_with_a_folder_store_are_refused_when_a_pool_runs_in_its_own_file_system():
    with pytest.raises(SpecError) as e:
        parse_spec(spec_with(compute={"mode": "pools", "clouds": ["local", "container"]}), "x.yaml")
    msg = str(e.value)
    assert "store '.cloudhop/store' is a folder of this machine" in msg
    assert "docker (docker)" in msg and "local (process)" not in msg and "s3://" in msg
    # every pool of the allowed clouds kubernetes/ecs/... when no cloud list narrows them down
    with pytest.raises(SpecError, match="coreweave-gpu \\(kubernetes\\)"):
        parse_spec(spec_with(compute={"mode": "pools"}), "x.yaml")


def test_pools_with_an_object_store_or_only_process_pools_load():
    assert parse_spec(spec_with(compute={"mode": "pools", "clouds": ["local"]})).compute.clouds == ["local"]
    s = parse_spec(spec_with(compute={"mode": "pools", "clouds": ["container"]}, store="s3://bucket/x"))
    assert s.store == "s3://bucket/x"
    assert parse_spec(spec_with(compute={"mode": "local", "clouds": ["container"]})).compute.mode == "local"


def test_gates_default_on_and_only_the_spec_turns_the_baseline_gate_off():
    s = load_spec("specs/flights.yaml")
    assert s.evaluation.require_beat_baseline is True and s.target.missing == "drop"
    assert parse_spec(spec_with(evaluation__require_beat_baseline=False)).evaluation.require_beat_baseline is False
    with pytest.raises(SpecError, match="evaluation.require_beat_baseline: cannot be overridden in a run"):
        load_spec("specs/flights.yaml", {"evaluation.require_beat_baseline": False})
    with pytest.raises(SpecError, match=r"target\.missing"):
        parse_spec(spec_with(target__missing="impute"))
