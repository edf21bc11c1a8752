"""Thin Prefect tasks around cloudhop.targets.multi: snapshot, deploy one target, roll back, finalize.

Credentials live in Prefect blocks: a target's `options.credentials` names a block of the type
its provider declares (cloudhop.providers), and `options.admin_token_secret` a Secret block.
They are resolved by tasks.credentials into plain values handed to the library; they are never logged nor returned.
"""
from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.runtime import deployment, flow_run

from cloudhop.events import DEPLOY_ROLLED_BACK, model_resource
from cloudhop.registry import Registry
from cloudhop.spec import PipelineSpec, ServingTargetSpec
from cloudhop.targets import multi
from cloudhop.targets.deploy import DeployOutcome, deploy_to_target
from tasks.credentials import target_secrets


class TargetDeployFailed(RuntimeError):
    """One target's deploy attempt failed (Prefect retries the task)."""


def run_actor() -> dict[str, Any]:
    """Who acts, for the audit log: this flow run, its flow and its deployment (None outside one)."""
    return {"flow_run": str(flow_run.get_id() or "") or None, "flow": flow_run.get_flow_name(),
            "deployment": deployment.get_name()}


def _target(spec: PipelineSpec, target_spec: ServingTargetSpec):
    return multi.build(target_spec, spec, target_secrets(target_spec))


@task(name="snapshot-targets", cache_policy=NO_CACHE, persist_result=False)
def snapshot_task(spec: PipelineSpec, registry: Registry) -> dict[str, str | None]:
    """What every target serves before the deploy."""
    targets = [_target(spec, t) for t in spec.targets]
    previous = multi.snapshot(registry, targets)
    get_run_logger().info("before: %s", ", ".join(f"{n} v{v}" for n, v in previous.items()))
    return previous


@task(name="deploy-target", cache_policy=NO_CACHE, persist_result=False, task_run_name="deploy-{target_spec.name}")
def deploy_target_task(spec: PipelineSpec, registry: Registry, target_spec: ServingTargetSpec, version: str,
                       smoke: dict | None, run_id: str | None) -> DeployOutcome:
    """One attempt; a failed attempt (already rolled back on that target) raises so Prefect retries."""
    registry = registry.acting_as(run_actor())
    outcome = deploy_to_target(registry, _target(spec, target_spec), version, smoke, run_id=run_id)
    get_run_logger().info(outcome.summary())
    if not outcome.ok:
        raise TargetDeployFailed(outcome.error or "failed")
    return outcome


@task(name="roll-back-target", cache_policy=NO_CACHE, persist_result=False,
      task_run_name="roll-back-{target_spec.name}-to-v{version}")
def rollback_task(spec: PipelineSpec, target_spec: ServingTargetSpec, version: str) -> multi.RollbackResult:
    result = multi.roll_back_target(_target(spec, target_spec), version)
    log = get_run_logger()
    (log.info if result.ok else log.error)("roll back %s to v%s: %s", target_spec.name, version,
                                            "done" if result.ok and not result.skipped
                                            else "already there" if result.ok else result.error)
    return result


@task(name="finalize-deploy", cache_policy=NO_CACHE, persist_result=False)
def finalize_task(spec: PipelineSpec, registry: Registry, version: str, previous: dict, outcomes: dict,
                  plan: dict, rollbacks: dict, policy: str, run_id: str | None, seconds: float,
                  canary: dict | None = None) -> multi.DeployReport:
    targets = [_target(spec, t) for t in spec.targets]
    registry = registry.acting_as(run_actor())
    report = multi.finalize(registry, targets, version, previous, outcomes, plan, rollbacks, policy, run_id,
                            seconds=seconds, canary=canary)
    log = get_run_logger()
    (log.info if report.ok else log.error)(report.summary())
    if not report.ok:
        emit_rolled_back(report)
    return report


def emit_rolled_back(report: multi.DeployReport) -> None:
    """A deploy that did not stick (an alert): each target's status, what it serves, and why."""
    emit_event(event=DEPLOY_ROLLED_BACK, resource=model_resource(report.model, run_id=report.run_id),
               payload={"version": report.version, "policy": report.policy, "summary": report.summary(),
                        "failed": report.failed,
                        "targets": {n: {"status": t.status, "serves": t.version, "previous": t.previous,
                                        "error": t.error} for n, t in report.targets.items()}})


@task(name="canary", cache_policy=NO_CACHE, persist_result=False, task_run_name="canary-{target_spec.name}")
def canary_task(spec: PipelineSpec, registry: Registry, target_spec: ServingTargetSpec, version: str,
                smoke: dict | None, run_id: str | None, seconds: float, retries: int = 0):
    """Deploy to one target, let its traffic run `seconds`, judge it from /metrics against the others."""
    registry = registry.acting_as(run_actor())
    canary = _target(spec, target_spec)
    baseline = [_target(spec, t) for t in spec.targets if t.name != target_spec.name]
    outcome, attempts, verdict = multi.run_canary(registry, canary, baseline, version, smoke, seconds=seconds,
                                                  retries=retries, run_id=run_id)
    log = get_run_logger()
    log.info("canary %s: %s", target_spec.name, (verdict or {}).get("reason", outcome.summary()))
    return outcome, verdict
