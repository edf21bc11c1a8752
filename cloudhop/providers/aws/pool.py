"""The `ecs` work-pool type: EC2 launch type (Fargate has no GPUs), `requiresCompatibilities: [EC2]`,
a container `resourceRequirements` GPU entry from a `gpu_count` variable (a string: ECS wants
one), and a `placement_constraints` variable (e.g. pin an instance type)."""
from __future__ import annotations

from typing import Any

from cloudhop.providers.base import PoolType, set_default

__all__ = ["ECS_POOL"]


def _patch(t: dict[str, Any], cloud: Any) -> None:
    props = t["variables"]["properties"]
    set_default(props, "launch_type", "EC2")
    props["gpu_count"] = {"title": "GPU count", "type": "string", "pattern": "^[1-9][0-9]*$", "default": "1",
                          "description": "GPUs for the container (a string, as ECS resourceRequirements take)."}
    props["placement_constraints"] = {
        "title": "Placement constraints", "type": "array", "items": {"type": "object"},
        "description": "ECS placement constraints, e.g. "
                       "[{type: memberOf, expression: 'attribute:ecs.instance-type == g5.xlarge'}]."}
    jc = t["job_configuration"]
    taskdef = jc["task_definition"]
    taskdef["requiresCompatibilities"] = ["EC2"]
    taskdef["containerDefinitions"][0]["resourceRequirements"] = [{"type": "GPU", "value": "{{ gpu_count }}"}]
    jc["task_run_request"]["placementConstraints"] = "{{ placement_constraints }}"


ECS_POOL = PoolType("ecs", worker="prefect_aws.workers.ecs_worker:ECSWorker", patch=_patch,
                    gpu_variables=lambda count: {"gpu_count": str(count)})
