"""AWS's serving manifest: an ECS RegisterTaskDefinition input, checked against botocore's ECS model."""
from __future__ import annotations

from typing import Any

from cloudhop.providers.base import ManifestKind
from cloudhop.targets.description import VERSION_ENV, ManifestError, ServingDescription

__all__ = ["ECS", "ecs", "validate_ecs"]


def ecs(desc: ServingDescription, version: str, store: str, target: str, region: str = "us-east-1",
        execution_role_arn: str | None = None, task_role_arn: str | None = None,
        store_options: dict[str, Any] | None = None) -> dict[str, Any]:
    container = {
        "name": "server", "image": desc.image, "essential": True, "command": desc.command(store, version, target),
        "portMappings": [{"containerPort": desc.port, "protocol": "tcp"}],
        "environment": [{"name": k, "value": v} for k, v in sorted(desc.plain_env(version, store_options).items())],
        "healthCheck": {"command": ["CMD-SHELL", f"python -c \"import urllib.request as u; "
                                                 f"u.urlopen('http://127.0.0.1:{desc.port}/health')\""],
                        "interval": 10, "timeout": 5, "retries": 3, "startPeriod": 30},
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": f"/cloudhop/{desc.name}", "awslogs-region": region, "awslogs-stream-prefix": target}},
    }
    if desc.secret_env:
        container["secrets"] = [{"name": k, "valueFrom": s.name} for k, s in sorted(desc.secret_env.items())]
    td: dict[str, Any] = {
        "family": f"{desc.name}-{target}", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
        "cpu": str(int(desc.cpu * 1024)), "memory": str(desc.memory_mib), "containerDefinitions": [container],
        "tags": [{"key": "cloudhop/target", "value": target}, {"key": VERSION_ENV, "value": str(version)}],
    }
    if execution_role_arn:
        td["executionRoleArn"] = execution_role_arn
    if task_role_arn:
        td["taskRoleArn"] = task_role_arn
    return td


def validate_ecs(td: dict[str, Any]) -> None:
    import botocore.session
    from botocore.exceptions import ParamValidationError
    from botocore.validate import validate_parameters

    shape = botocore.session.get_session().get_service_model("ecs").operation_model(
        "RegisterTaskDefinition").input_shape
    try:
        validate_parameters(td, shape)
    except ParamValidationError as e:
        raise ManifestError(f"ECS task definition {td.get('family')}: {e}") from None


ECS = ManifestKind("ecs", ecs, validate_ecs)
