"""`prefect deploy --all` against a fresh server, then each deployment as the server holds it:
parameter schemas (fields, types, enums, defaults, descriptions for the UI form), schedules,
the drift trigger and the concurrency limit.
"""
from __future__ import annotations

import pytest
import yaml

from ops.procs import ROOT

pytestmark = pytest.mark.integration


def _schema(d) -> dict:
    return d.parameter_openapi_schema


def _ref(schema: dict, prop: dict) -> dict:
    """The definition a property points at ($ref or anyOf [$ref, null])."""
    refs = [prop.get("$ref")] + [a.get("$ref") for a in prop.get("anyOf", [])]
    name = next(r for r in refs if r).rsplit("/", 1)[-1]
    return schema["definitions"][name]


def test_every_deployment_in_prefect_yaml_is_on_the_server(deployed):
    names = {d["name"] for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    assert {"retrain", "deploy", "monitor"} <= names
    assert names <= set(deployed["deployments"])


def test_every_parameter_of_every_deployment_is_typed_and_described(deployed):
    """What the UI's run form needs: a type (or a model), a description, a default unless required."""
    problems = []
    for name, d in deployed["deployments"].items():
        schema = _schema(d)
        required = set(schema.get("required", []))
        for field, prop in schema["properties"].items():
            if not prop.get("description"):
                problems.append(f"{name}.{field}: no description")
            if not any(k in prop for k in ("type", "$ref", "anyOf", "allOf", "enum")):
                problems.append(f"{name}.{field}: no type")
            if field not in required and "default" not in prop:
                problems.append(f"{name}.{field}: neither required nor defaulted")
        assert d.enforce_parameter_schema, f"{name}: the server does not check parameters against the schema"
    assert not problems, "\n".join(problems)


def test_monitor_parameters(deployed):
    schema = _schema(deployed["deployments"]["monitor"])
    p = schema["properties"]
    assert list(p) == ["spec", "window", "sample_size", "seed", "min_rows", "cooldown_minutes",
                       "max_metric_drop", "on_drift", "retrain_window"]
    assert p["spec"]["type"] == "string" and p["spec"]["default"] == "specs/flights.yaml"
    assert p["on_drift"]["enum"] == ["event", "report-only"] and p["on_drift"]["default"] == "event"
    assert p["seed"] == {**p["seed"], "type": "integer", "default": 0}
    assert p["min_rows"]["default"] == 200 and p["cooldown_minutes"]["default"] == 30.0
    assert p["window"]["default"] == {"start": None, "end": None, "minutes": 60.0}
    window = _ref(schema, p["window"])["properties"]
    assert set(window) == {"start", "end", "minutes"}
    assert {"format": "date-time", "type": "string"} in window["start"]["anyOf"]
    assert window["minutes"]["exclusiveMinimum"] == 0
    retrain_window = _ref(schema, p["retrain_window"])["properties"]
    assert set(retrain_window) == {"train_start", "validation_start", "holdout_start", "holdout_end"}
    assert {"format": "date", "type": "string"} in retrain_window["holdout_start"]["anyOf"]
    assert deployed["deployments"]["monitor"].parameters == {"spec": "specs/flights.yaml"}


def test_retrain_parameters(deployed):
    schema = _schema(deployed["deployments"]["retrain"])
    p = schema["properties"]
    assert {"spec", "window", "max_epochs", "dataset_limit", "dataset_uri", "deploy", "reason", "overrides",
            "model"} <= set(p)
    assert p["deploy"]["type"] == "boolean" and p["deploy"]["default"] is True
    assert p["reason"]["default"] == "manual"
    assert p["window"]["default"] is None
    assert set(_ref(schema, p["window"])["properties"]) == {"train_start", "validation_start", "holdout_start",
                                                             "holdout_end"}
    assert {"type": "integer"} in p["max_epochs"]["anyOf"]


def test_simulate_parameters(deployed):
    """The simulator's run form: a scenario path and typed, optional overrides."""
    d = deployed["deployments"]["simulate"]
    p = _schema(d)["properties"]
    assert set(p) == {"scenario", "days", "seed", "drift_retrains_per_week", "png"}
    assert p["scenario"]["type"] == "string" and d.parameters == {"scenario": "scenarios/default.yaml"}
    assert {"type": "integer"} in p["days"]["anyOf"] and {"type": "integer"} in p["seed"]["anyOf"]
    assert {"type": "number"} in p["drift_retrains_per_week"]["anyOf"]
    assert all(p[k]["default"] is None for k in ("days", "seed", "drift_retrains_per_week"))


def test_schedules(deployed):
    d = deployed["deployments"]
    retrain = [s for s in d["retrain"].schedules]
    assert len(retrain) == 1 and retrain[0].schedule.cron == "0 2 * * *" and retrain[0].schedule.timezone == "UTC"
    assert retrain[0].parameters == {"reason": "schedule"} and retrain[0].active
    monitor = d["monitor"].schedules
    assert len(monitor) == 1 and monitor[0].schedule.interval.total_seconds() == 900 and monitor[0].active


def test_drift_trigger_and_one_retrain_at_a_time(deployed):
    retrain = deployed["deployments"]["retrain"]
    assert retrain.global_concurrency_limit is not None and retrain.global_concurrency_limit.limit == 1
    assert retrain.concurrency_options.collision_strategy.value == "CANCEL_NEW"
    a = deployed["automations"]["retrain-on-drift"]
    t = a.trigger
    assert t.expect == {"cloudhop.drift.detected"} and t.posture.value == "Reactive" and t.threshold == 1
    assert t.within.total_seconds() == 3600 and t.for_each == {"prefect.resource.id"}
    assert t.match.root == {"prefect.resource.id": "cloudhop.model.*"}
    (action,) = a.actions
    assert action.deployment_id == retrain.id
    assert set(action.parameters) == {"spec", "model", "reason", "window"}
    assert action.parameters["spec"] is None  # an event names a model; its payload gives no spec path
