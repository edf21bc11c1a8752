"""The alerts file and the events it may name: a wrong file is refused with the field at fault."""
from __future__ import annotations

import re

import pytest
import yaml

from cloudhop.events import ALERTABLE, AlertsError, load_alerts, model_resource
from cloudhop.guard import webhook_url_problem


def test_the_project_alerts_cover_the_four_events():
    alerts = load_alerts("deployments/alerts.yaml")
    assert sorted(a.event for a in alerts.alerts) == sorted(ALERTABLE)
    gate = next(a for a in alerts.alerts if a.event == "cloudhop.validation.failed")
    assert gate.match == {"cloudhop.run.reason": "schedule"}  # only a refused scheduled run alerts


def _write(tmp_path, data) -> str:
    path = tmp_path / "alerts.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


ALERT = {"name": "a", "event": "cloudhop.drift.detected", "subject": "s", "body": "b"}


@pytest.mark.parametrize("data,error", [
    ({"block": "b", "alerts": [{**ALERT, "event": "cloudhop.drift.detectd"}]},
     r"alerts\.0\.event: .*unknown event 'cloudhop\.drift\.detectd'"),
    ({"block": "b", "alerts": [ALERT, ALERT]}, r"alerts: .*alert names must be unique: a appear"),
    ({"block": "b", "alerts": [{**ALERT, "subjet": "x"}]}, r"alerts\.0\.subjet: Extra inputs"),
    ({"alerts": [ALERT]}, r"block: Field required"),
    ("block: [", r"not valid YAML"),
], ids=["misspelt-event", "duplicate-name", "unknown-field", "no-block", "bad-yaml"])
def test_a_wrong_alerts_file_names_the_field(tmp_path, data, error):
    path = _write(tmp_path, data)
    with pytest.raises(AlertsError, match=rf"^{tmp_path}/alerts\.yaml: {error}"):
        load_alerts(path)


def test_a_missing_alerts_file_is_named(tmp_path):
    with pytest.raises(AlertsError, match=r"no alerts file at .*nope\.yaml"):
        load_alerts(tmp_path / "nope.yaml")


def test_model_resource_labels():
    r = model_resource("m", run_reason="schedule", run_id=None, cloud="aws")
    assert r == {"prefect.resource.id": "cloudhop.model.m", "prefect.resource.name": "m", "cloudhop.model.name": "m",
                 "cloudhop.run.reason": "schedule", "cloudhop.cloud": "aws"}


@pytest.mark.parametrize("url,allow_private,error", [
    ("https://hooks.example.com/T0/secret-token", False, None),
    ("http://127.0.0.1:9/hook", True, None),
    ("http://127.0.0.1:9/hook", False, r"127\.0\.0\.1 is a private or loopback address, refused for a webhook"),
    ("http://localhost/hook", False, r"localhost is loopback"),
    ("http://10.1.2.3/hook", False, r"10\.1\.2\.3 is a private"),
    ("http://169.254.169.254/latest", True, r"metadata service"),
    ("http://[fe80::1]/hook", True, r"link-local"),
    ("file:///etc/passwd", True, r"must be http:// or https://"),
])
def test_webhook_addresses(url, allow_private, error):
    problem = webhook_url_problem(url, allow_private)
    if error is None:
        assert problem is None
    else:
        assert problem is not None and re.search(error, problem), problem
        assert "secret-token" not in problem
