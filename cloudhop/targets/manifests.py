"""One serving description -> the manifest each cloud wants, each checked against its schema.

    desc = load_description("deployments/serving/serving.yaml")
    m = render(desc, "ecs", version="3", store="s3://bucket/root", target="aws-us-east-1")

Renderers (pure functions, no cloud calls):

| cloud       | manifest                                        | validated with (offline)                              |
|-------------|-------------------------------------------------|-------------------------------------------------------|
| kubernetes  | apps/v1 Deployment + v1 Service (CoreWeave)     | kubernetes-validate (the Kubernetes OpenAPI schemas)  |
| kserve      | serving.kserve.io/v1beta1 InferenceService      | predictor pod spec as a v1 Pod (kubernetes-validate); |
|             |                                                 | the CRD's own schema is not available offline         |
| ecs         | RegisterTaskDefinition input                    | botocore's ECS service model                          |
| cloud-run   | run.googleapis.com v2 Service                   | google-cloud-run's protobuf message (unknown fields)  |
| container-app | Microsoft.App/containerApps resource           | azure-mgmt-appcontainers models (unknown fields)      |

Every manifest runs the same command (`python -m cloudhop.serving`) from the same image,
carries the version in the env var CLOUDHOP_VERSION and probes GET /health.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["ServingDescription", "ManifestError", "load_description", "render", "validate", "CLOUDS",
           "VERSION_ENV", "version_of"]

VERSION_ENV = "CLOUDHOP_VERSION"
CLOUDS = ("kubernetes", "kserve", "ecs", "cloud-run", "container-app")
K8S_VERSION = "1.30"


class ManifestError(ValueError):
    """A description or a rendered manifest that is not valid; the message says where."""


class SecretRef(BaseModel):
    """An env var filled from the cloud's secret store (never a value)."""
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="secret name (K8s Secret, ECS secret ARN, GCP Secret Manager, Azure app secret)")
    key: str = Field(default="value", description="key inside the secret (K8s) / version (GCP)")


class ServingDescription(BaseModel):
    """What to run, once, for every cloud."""
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z]([-a-z0-9]{0,40}[a-z0-9])?$", description="service name (DNS-1035 label)")
    model: str = Field(description="model name in the registry")
    image: str
    port: int = Field(default=8080, ge=1, le=65535)
    cpu: float = Field(default=1.0, gt=0, description="vCPU per replica")
    memory_mib: int = Field(default=2048, ge=128)
    replicas: int = Field(default=2, ge=1)
    threads: int = Field(default=1, ge=1, description="ONNX Runtime threads per request")
    env: dict[str, str] = Field(default_factory=dict, description="extra plain env vars (no secrets)")
    secret_env: dict[str, SecretRef] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)

    def command(self, store: str, version: str, target: str) -> list[str]:
        return ["python", "-m", "cloudhop.serving", "--store", store, "--model", self.model,
                "--version", str(version), "--host", "0.0.0.0", "--port", str(self.port),
                "--target-name", target, "--threads", str(self.threads)]

    def plain_env(self, version: str, store_options: dict[str, Any] | None) -> dict[str, str]:
        env = dict(self.env)
        env[VERSION_ENV] = str(version)
        if store_options:
            env["CLOUDHOP_STORE_OPTIONS"] = json.dumps(store_options, sort_keys=True)
        return env


def load_description(path: str | Path) -> ServingDescription:
    p = Path(path)
    if not p.exists():
        raise ManifestError(f"serving description {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
        return ServingDescription.model_validate(data)
    except yaml.YAMLError as e:
        raise ManifestError(f"serving description {p} is not valid YAML: {e}") from None
    except ValidationError as e:
        lines = [f"  {'.'.join(map(str, x['loc'])) or '(top)'}: {x['msg']}" for x in e.errors()]
        raise ManifestError(f"invalid serving description {p}:\n" + "\n".join(lines)) from None


def _check_plain_env(desc: ServingDescription, store_options: dict[str, Any] | None) -> None:
    secretish = re.compile(r"(secret|password|token|key|connection_string|credential)", re.I)
    for k in desc.env:
        if secretish.search(k):
            raise ManifestError(f"env.{k}: looks like a secret; put it under secret_env so it comes from "
                                f"the cloud's secret store")
    for k in (store_options or {}):
        if secretish.search(k):
            raise ManifestError(f"store options: {k!r} looks like a credential; the serving container gets "
                                f"credentials from its cloud identity or secret_env, not from a manifest")


def version_of(env: list[dict[str, Any]] | dict[str, str]) -> str | None:
    """The CLOUDHOP_VERSION in a container's env (a list of name/value pairs or a mapping)."""
    if isinstance(env, dict):
        return env.get(VERSION_ENV)
    for e in env or []:
        if e.get("name") == VERSION_ENV:
            return e.get("value")
    return None


# -- renderers -----------------------------------------------------------------
def _labels(desc: ServingDescription, target: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": desc.name, "app.kubernetes.io/part-of": "cloudhop",
            "cloudhop/target": target, **desc.labels}


def _k8s_container(desc: ServingDescription, version: str, store: str, target: str,
                   store_options: dict[str, Any] | None) -> dict[str, Any]:
    env = [{"name": k, "value": v} for k, v in sorted(desc.plain_env(version, store_options).items())]
    env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": s.name, "key": s.key}}}
            for k, s in sorted(desc.secret_env.items())]
    probe = {"httpGet": {"path": "/health", "port": desc.port}, "periodSeconds": 5, "failureThreshold": 3}
    mem = f"{desc.memory_mib}Mi"
    return {"name": "server", "image": desc.image, "command": desc.command(store, version, target),
            "ports": [{"name": "http", "containerPort": desc.port}], "env": env,
            "resources": {"requests": {"cpu": str(desc.cpu), "memory": mem}, "limits": {"memory": mem}},
            "readinessProbe": probe, "livenessProbe": {**probe, "initialDelaySeconds": 20}}


def kubernetes(desc: ServingDescription, version: str, store: str, target: str, namespace: str = "default",
               store_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    labels = _labels(desc, target)
    selector = {"app.kubernetes.io/name": desc.name, "cloudhop/target": target}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": desc.name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": desc.replicas, "selector": {"matchLabels": selector},
            # a rolling update that never drops below the desired count: no request lands on nothing
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [_k8s_container(desc, version, store, target, store_options)],
                                  "terminationGracePeriodSeconds": 30}}}}
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": desc.name, "namespace": namespace, "labels": labels},
               "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": desc.port}]}}
    return [deployment, service]


def kserve(desc: ServingDescription, version: str, store: str, target: str, namespace: str = "default",
           store_options: dict[str, Any] | None = None, canary_percent: int | None = None) -> dict[str, Any]:
    predictor: dict[str, Any] = {"minReplicas": desc.replicas,
                                 "containers": [_k8s_container(desc, version, store, target, store_options)]}
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = int(canary_percent)
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": desc.name, "namespace": namespace, "labels": _labels(desc, target)},
            "spec": {"predictor": predictor}}


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


def cloud_run(desc: ServingDescription, version: str, store: str, target: str,
              service_account: str | None = None, store_options: dict[str, Any] | None = None,
              canary_percent: int | None = None, previous_revision: str | None = None) -> dict[str, Any]:
    container = {
        "image": desc.image, "command": desc.command(store, version, target)[:1],
        "args": desc.command(store, version, target)[1:], "ports": [{"containerPort": desc.port}],
        "env": [{"name": k, "value": v} for k, v in sorted(desc.plain_env(version, store_options).items())]
        + [{"name": k, "valueSource": {"secretKeyRef": {"secret": s.name, "version": s.key}}}
           for k, s in sorted(desc.secret_env.items())],
        "resources": {"limits": {"cpu": str(desc.cpu), "memory": f"{desc.memory_mib}Mi"}},
        "startupProbe": {"httpGet": {"path": "/health", "port": desc.port}, "periodSeconds": 2,
                         "failureThreshold": 30},
    }
    template: dict[str, Any] = {"revision": f"{desc.name}-v{version}", "containers": [container],
                                "scaling": {"minInstanceCount": desc.replicas}}
    if service_account:
        template["serviceAccount"] = service_account
    traffic = [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]
    if canary_percent is not None and previous_revision:
        traffic = [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": int(canary_percent)},
                   {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": previous_revision,
                    "percent": 100 - int(canary_percent)}]
    return {"labels": {"cloudhop-target": _label_value(target)}, "template": template, "traffic": traffic}


def container_app(desc: ServingDescription, version: str, store: str, target: str, location: str = "westeurope",
                  environment_id: str | None = None, store_options: dict[str, Any] | None = None,
                  canary_percent: int | None = None, previous_revision: str | None = None) -> dict[str, Any]:
    container = {
        "name": "server", "image": desc.image, "command": desc.command(store, version, target),
        "env": [{"name": k, "value": v} for k, v in sorted(desc.plain_env(version, store_options).items())]
        + [{"name": k, "secretRef": s.name} for k, s in sorted(desc.secret_env.items())],
        "resources": {"cpu": desc.cpu, "memory": f"{desc.memory_mib / 1024:g}Gi"},
        "probes": [{"type": "Readiness", "httpGet": {"path": "/health", "port": desc.port}, "periodSeconds": 5}],
    }
    traffic = [{"latestRevision": True, "weight": 100}]
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


def _label_value(s: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", s.lower())[:63]


_RENDERERS = {"kubernetes": kubernetes, "kserve": kserve, "ecs": ecs, "cloud-run": cloud_run,
              "container-app": container_app}


def render(desc: ServingDescription, cloud: Literal["kubernetes", "kserve", "ecs", "cloud-run", "container-app"],
           *, version: str, store: str, target: str, check: bool = True, **extra: Any) -> Any:
    """The manifest for one cloud, validated against its schema unless check=False."""
    if cloud not in _RENDERERS:
        raise ManifestError(f"unknown manifest kind {cloud!r}; known: {', '.join(CLOUDS)}")
    _check_plain_env(desc, extra.get("store_options"))
    manifest = _RENDERERS[cloud](desc, str(version), store, target, **extra)
    if check:
        validate(cloud, manifest)
    return manifest


# -- validators ------------------------------------------------------------------
def validate(cloud: str, manifest: Any) -> None:
    """Raise ManifestError when `manifest` does not fit the cloud's schema."""
    {"kubernetes": _validate_k8s_list, "kserve": _validate_kserve, "ecs": _validate_ecs,
     "cloud-run": _validate_cloud_run, "container-app": _validate_container_app}[cloud](manifest)


def _validate_k8s(obj: dict[str, Any]) -> None:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        where = ".".join(str(p) for p in e.path) or "(top)"
        raise ManifestError(f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}: {where}: "
                            f"{e.message}") from None


def _validate_k8s_list(objs: list[dict[str, Any]]) -> None:
    for o in objs:
        _validate_k8s(o)


def _validate_kserve(obj: dict[str, Any]) -> None:
    if obj.get("apiVersion") != "serving.kserve.io/v1beta1" or obj.get("kind") != "InferenceService":
        raise ManifestError("InferenceService: apiVersion/kind must be serving.kserve.io/v1beta1 InferenceService")
    pred = dict(obj.get("spec", {}).get("predictor") or {})
    if not pred.get("containers"):
        raise ManifestError("InferenceService: spec.predictor.containers is empty")
    pct = pred.pop("canaryTrafficPercent", None)
    if pct is not None and not (isinstance(pct, int) and 0 <= pct <= 100):
        raise ManifestError(f"InferenceService: canaryTrafficPercent must be 0..100, got {pct!r}")
    for k in ("minReplicas", "maxReplicas"):
        pred.pop(k, None)
    # the predictor is a PodSpec plus the fields removed above: check it as one
    _validate_k8s({"apiVersion": "v1", "kind": "Pod", "metadata": obj.get("metadata", {}), "spec": pred})


def _validate_ecs(td: dict[str, Any]) -> None:
    import botocore.session
    from botocore.exceptions import ParamValidationError
    from botocore.validate import validate_parameters

    shape = botocore.session.get_session().get_service_model("ecs").operation_model(
        "RegisterTaskDefinition").input_shape
    try:
        validate_parameters(td, shape)
    except ParamValidationError as e:
        raise ManifestError(f"ECS task definition {td.get('family')}: {e}") from None


def _validate_cloud_run(svc: dict[str, Any]) -> None:
    from google.cloud import run_v2

    try:
        run_v2.Service.from_json(json.dumps(svc), ignore_unknown_fields=False)
    except Exception as e:  # google.protobuf.json_format.ParseError
        raise ManifestError(f"Cloud Run service: {e}") from None


def _validate_container_app(app: dict[str, Any]) -> None:
    from azure.mgmt.appcontainers import models

    problems = _azure_unknown(models.ContainerApp, app, "containerApp", models)
    if "location" not in app:
        problems.append("containerApp.location: required")
    if problems:
        raise ManifestError("Container App: " + "; ".join(problems))


def _azure_unknown(cls: type, data: Any, where: str, models: Any) -> list[str]:
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


def main(argv: list[str] | None = None) -> int:
    """python -m cloudhop.targets.manifests DESCRIPTION --out DIR [--version V --store URI]: write every manifest."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m cloudhop.targets.manifests", description=main.__doc__)
    p.add_argument("description")
    p.add_argument("--out", required=True)
    p.add_argument("--version", default="1")
    p.add_argument("--store", default="s3://cloudhop-artifacts/store")
    p.add_argument("--target", default="example")
    a = p.parse_args(argv)
    desc = load_description(a.description)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for cloud in CLOUDS:
        m = render(desc, cloud, version=a.version, store=a.store, target=a.target)  # type: ignore[arg-type]
        ext = "json" if cloud in ("ecs", "cloud-run", "container-app") else "yaml"
        path = out / f"{cloud}.{ext}"
        if ext == "json":
            path.write_text(json.dumps(m, indent=2) + "\n")
        else:
            path.write_text(yaml.safe_dump_all(m if isinstance(m, list) else [m], sort_keys=False))
        print(f"wrote {path} (valid)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
