"""Azure's serving manifest: a Microsoft.App/containerApps resource, checked against the
azure-mgmt-appcontainers models (unknown fields are errors).

Hardening Container Apps can express: CPU and memory (its resources are limits), readiness and
liveness probes with timeouts, and no identity unless one is assigned. It has no security
context: the user is the image's `USER 1000:1000`, and a read-only root filesystem, dropped
capabilities, seccomp and no-privilege-escalation cannot be set (the platform's defaults apply).
"""
from __future__ import annotations

from typing import Any

from cloudhop.providers.base import ManifestKind
from cloudhop.targets.description import ManifestError, ServingDescription

__all__ = ["CONTAINER_APP", "container_app", "validate_container_app"]


def container_app(desc: ServingDescription, version: str, store: str, target: str, location: str = "westeurope",
                  environment_id: str | None = None, store_options: dict[str, Any] | None = None,
                  canary_percent: int | None = None, previous_revision: str | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "server", "image": desc.image, "command": desc.command(store, version, target),
        "env": [{"name": k, "value": v} for k, v in sorted(desc.plain_env(version, store_options).items())]
        + [{"name": k, "secretRef": s.name} for k, s in sorted(desc.secret_env.items())],
        "resources": {"cpu": desc.cpu, "memory": f"{desc.memory_mib / 1024:g}Gi"},
        "probes": [{"type": kind, "httpGet": {"path": "/health", "port": desc.port}, "periodSeconds": period,
                    "timeoutSeconds": desc.probe_timeout_seconds}
                   for kind, period in (("Readiness", 5), ("Liveness", 10))],
    }
    traffic: list[dict[str, Any]] = [{"latestRevision": True, "weight": 100}]
    if canary_percent is not None and previous_revision:
        traffic = [{"latestRevision": True, "weight": int(canary_percent)},
                   {"revisionName": previous_revision, "weight": 100 - int(canary_percent)}]
    props: dict[str, Any] = {
        "configuration": {"activeRevisionsMode": "Multiple" if canary_percent is not None else "Single",
                          "ingress": {"external": True, "targetPort": desc.port, "traffic": traffic}},
        "template": {"revisionSuffix": f"v{version}", "containers": [container],
                     "scale": {"minReplicas": desc.replicas, "maxReplicas": max(desc.replicas, 10)}},
    }
    if environment_id:
        props["environmentId"] = environment_id
    return {"location": location, "tags": {"cloudhop-target": target}, "properties": props}


def validate_container_app(app: dict[str, Any]) -> None:
    from azure.mgmt.appcontainers import models

    problems = _azure_unknown(models.ContainerApp, app, "containerApp", models)
    if "location" not in app:
        problems.append("containerApp.location: required")
    if problems:
        raise ManifestError("Container App: " + "; ".join(problems))


def _azure_unknown(cls: Any, data: Any, where: str, models: Any) -> list[str]:
    """Keys in `data` that the Azure SDK model `cls` does not define (recursively)."""
    import typing

    from azure.mgmt.appcontainers.models import _models

    if not isinstance(data, dict):
        return [f"{where}: expected an object, got {type(data).__name__}"]
    cls({})  # the SDK fills its field table on first use
    fields = {f._rest_name: attr for attr, f in cls._attr_to_rest_field.items()}
    hints = typing.get_type_hints(cls, globalns={"_models": models, **vars(_models)})
    problems = []
    for key, value in data.items():
        attr = fields.get(key)
        if attr is None:
            problems.append(f"{where}.{key}: unknown field (known: {', '.join(sorted(fields))})")
            continue
        t = hints.get(attr)
        args = typing.get_args(t) or (t,)
        inner = next((a for a in args if a is not type(None)), None)
        if typing.get_origin(inner) is list and isinstance(value, list):
            item = typing.get_args(inner)[0]
            if _is_model(item):
                for i, v in enumerate(value):
                    problems += _azure_unknown(item, v, f"{where}.{key}[{i}]", models)
        elif _is_model(inner):
            problems += _azure_unknown(inner, value, f"{where}.{key}", models)
    return problems


def _is_model(t: Any) -> bool:
    from azure.mgmt.appcontainers._utils.model_base import Model

    return isinstance(t, type) and issubclass(t, Model)


CONTAINER_APP = ManifestKind("container-app", container_app, validate_container_app)
