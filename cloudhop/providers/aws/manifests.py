"""AWS's serving manifest: an ECS RegisterTaskDefinition input, checked against botocore's ECS model.

The container runs hardened: user 1000:1000, read-only root filesystem (a task volume on /tmp,
Fargate's ephemeral storage), not privileged, every Linux capability dropped, CPU and memory
limits on the container, a health check with a timeout. ECS has no seccomp profile setting on
Fargate (its default applies), nothing like no-new-privileges there, and no service-account
token to leave out (the task role is the identity; give it read access to the model store only).
"""
from __future__ import annotations

from typing import Any

from cloudhop.providers.base import ManifestKind
from cloudhop.targets.description import RUN_AS, VERSION_ENV, ManifestError, ServingDescription

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
                        "interval": 10, "timeout": desc.probe_timeout_seconds, "retries": 3, "startPeriod": 30},
        "cpu": int(desc.cpu * 1024), "memory": desc.memory_mib,
        "user": f"{RUN_AS}:{RUN_AS}", "readonlyRootFilesystem": True, "privileged": False,
        "linuxParameters": {"capabilities": {"drop": ["ALL"]}},
        "mountPoints": [{"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False}],
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": f"/cloudhop/{desc.name}", "awslogs-region": region, "awslogs-stream-prefix": target}},
    }
    if desc.secret_env:
        container["secrets"] = [{"name": k, "valueFrom": s.name} for k, s in sorted(desc.secret_env.items())]
    td: dict[str, Any] = {
        "family": f"{desc.name}-{target}", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
        "cpu": str(int(desc.cpu * 1024)), "memory": str(desc.memory_mib), "containerDefinitions": [container],
        "volumes": [{"name": "tmp"}],
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
