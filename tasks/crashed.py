"""Crashed means crashed: flow runs whose process died are marked Crashed by Prefect's own zombie detection.

A running flow run emits a `prefect.flow-run.heartbeat` event every
PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds (Prefect's default: 180; at least 30). A process
killed with SIGKILL sends no final state and stays Running forever, unless something notices
that its heartbeats stopped: the automation here, Prefect's documented one ("detect zombie
flows"), a proactive trigger that expects another heartbeat or a final state within
`MISSED_HEARTBEATS` heartbeat periods of the last heartbeat, per flow run, and otherwise sets
the run to Crashed. `flows.pools apply` registers it (created, or updated in place by name).

Its window is read from the heartbeat frequency of the process that applies it, so set
PREFECT_FLOWS_HEARTBEAT_FREQUENCY the same there as where runs execute (or leave it unset
everywhere): runs that beat more slowly than the automation expects would be marked Crashed.
"""
from __future__ import annotations

from datetime import timedelta

from prefect.automations import Automation
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.settings import get_current_settings

__all__ = ["CRASHED_AUTOMATION", "MISSED_HEARTBEATS", "crashed_automation", "apply_crashed_automation"]

CRASHED_AUTOMATION = "cloudhop-crash-silent-flow-runs"
MISSED_HEARTBEATS = 3  # heartbeat periods without a heartbeat or a final state before a run counts as dead
_FINAL = ("Completed", "Failed", "Cancelled", "Crashed")


def crashed_automation(heartbeat_seconds: int | None = None) -> Automation:
    """The automation (not yet created) for runs beating every `heartbeat_seconds` (default: this
    process's PREFECT_FLOWS_HEARTBEAT_FREQUENCY)."""
    beat = heartbeat_seconds or get_current_settings().flows.heartbeat_frequency or 180
    window = timedelta(seconds=MISSED_HEARTBEATS * beat)
    return Automation(
        name=CRASHED_AUTOMATION,
        description=(f"Marks a flow run Crashed when it sent no heartbeat and reached no final state for "
                     f"{window.total_seconds():.0f} s after its last heartbeat (its process died: SIGKILL, "
                     f"lost machine, evicted container). Heartbeats every {beat} s; registered by "
                     f"`python -m flows.pools apply`."),
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{s}" for s in _FINAL)},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=window,
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"no heartbeat for {window.total_seconds():.0f} s: the flow run's "
                                            f"process is gone")],
    )


def apply_crashed_automation(heartbeat_seconds: int | None = None) -> str:
    """Create the automation, or update the one of that name; returns 'created', 'updated' or 'unchanged'."""
    want = crashed_automation(heartbeat_seconds)
    try:
        have = Automation.read(name=CRASHED_AUTOMATION)
    except ValueError:  # not there yet
        want.create()
        return "created"
    fields = {"description", "trigger", "actions", "enabled"}
    if have.model_dump(include=fields) == want.model_dump(include=fields):
        return "unchanged"
    want.id = have.id
    want.update()
    return "updated"
