"""The events cloudhop emits about a model, and the alerts that bring some of them to a person.

Every event is about one model: its resource id is `cloudhop.model.<name>` with the label
`cloudhop.model.name`, so an automation can match on either and a message can name the model.

    cloudhop.training.<outcome>   one training attempt on one cloud ended (tasks.failover)
    cloudhop.training.exhausted   training failed on every cloud it was placed on: no model this run
    cloudhop.deploy.rolled-back   a deploy did not stick: its targets went back to what they served
    cloudhop.validation.failed    the data gate refused a run; label `cloudhop.run.reason` says why
                                  the run ran (`schedule` for the nightly one, see prefect.yaml)
    cloudhop.drift.detected       the monitor found drift in served traffic (cloudhop.drift.monitor)

The alerts live in deployments/alerts.yaml (data): each is one of these events, optionally
narrowed by resource labels, and the subject and body of the message (Jinja templates that
Prefect renders from the event). `load_alerts` reads and checks them; flows.alerts registers
them as automations that notify one webhook block.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cloudhop.drift.monitor import EVENT_DETECTED as DRIFT_DETECTED

__all__ = ["TRAINING_EXHAUSTED", "DEPLOY_ROLLED_BACK", "VALIDATION_FAILED", "DRIFT_DETECTED", "ALERTABLE",
           "AlertsError", "Alert", "Alerts", "model_resource", "load_alerts"]

TRAINING_EXHAUSTED = "cloudhop.training.exhausted"
DEPLOY_ROLLED_BACK = "cloudhop.deploy.rolled-back"
VALIDATION_FAILED = "cloudhop.validation.failed"
ALERTABLE = (TRAINING_EXHAUSTED, DEPLOY_ROLLED_BACK, VALIDATION_FAILED, DRIFT_DETECTED)
"""The events an alert may fire on: a misspelt name in the alerts file would never fire."""


class AlertsError(ValueError):
    """The alerts file is missing or wrong; the message names the file and the field."""


def model_resource(model: str, **labels: Any) -> dict[str, str]:
    """The event resource of a model, with extra labels (`run_reason="schedule"` becomes
    `cloudhop.run.reason`); labels whose value is None are left out."""
    out = {"prefect.resource.id": f"cloudhop.model.{model}", "prefect.resource.name": model,
           "cloudhop.model.name": model}
    out.update({f"cloudhop.{k.replace('_', '.')}": str(v) for k, v in labels.items() if v is not None})
    return out


class Alert(BaseModel):
    """One automation: `event` (matched by resource `match`, globs allowed) sends `subject` and `body`."""
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    event: str
    match: dict[str, str] = Field(default_factory=dict)
    subject: str = Field(min_length=1)
    body: str = Field(min_length=1)

    @field_validator("event")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in ALERTABLE:
            raise ValueError(f"unknown event {v!r}; alerts fire on {', '.join(ALERTABLE)}")
        return v


class Alerts(BaseModel):
    """The alerts file: the name of the webhook block they notify, and the alerts."""
    model_config = ConfigDict(extra="forbid")

    block: str = Field(min_length=1, description="name of the Custom Webhook notification block")
    alerts: list[Alert] = Field(min_length=1)

    @field_validator("alerts")
    @classmethod
    def _unique(cls, v: list[Alert]) -> list[Alert]:
        names = [a.name for a in v]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"alert names must be unique: {', '.join(twice)} appear more than once")
        return v


def load_alerts(path: str | Path) -> Alerts:
    """Read and check an alerts file; errors name the file and the field at fault."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise AlertsError(f"no alerts file at {path}") from None
    except yaml.YAMLError as e:
        raise AlertsError(f"{path}: not valid YAML: {e}") from None
    try:
        return Alerts.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or '(top)'}: {err['msg']}" for err in e.errors())
        raise AlertsError(f"{path}: {problems}") from None
