"""Thin Prefect tasks that ship a registered version to serving targets."""
from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from cloudhop.registry import Registry
from cloudhop.spec import PipelineSpec, ServingTargetSpec
from cloudhop.targets import build_target
from cloudhop.targets.deploy import deploy_to_target


@task(name="deploy-target", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=2,
      task_run_name="deploy-{target_spec.name}")
def deploy_target_task(spec: PipelineSpec, registry: Registry, target_spec: ServingTargetSpec, version: str,
                       smoke: dict | None):
    target = build_target(target_spec, spec)
    outcome = deploy_to_target(registry, target, version, smoke, run_id=str(flow_run.get_id() or ""))
    get_run_logger().info("deploy %s -> %s: %s", version, target_spec.name, outcome)
    return outcome
