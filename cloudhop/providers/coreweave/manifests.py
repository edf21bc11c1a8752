"""CoreWeave's serving manifests: a Kubernetes Deployment + Service, or a KServe InferenceService.

Checked offline with kubernetes-validate (the Kubernetes OpenAPI schemas). The KServe CRD's own
schema is not available offline: its predictor is checked as the v1 Pod spec it extends.

Both run the pod hardened (`hardened_pod`): non-root uid/gid 1000, read-only root filesystem with
an in-memory emptyDir on /tmp, every capability dropped, no privilege escalation, seccomp
RuntimeDefault, no service-account token mounted, CPU and memory limits, probe timeouts.
"""
from __future__ import annotations

from typing import Any

from cloudhop.providers.base import ManifestKind
from cloudhop.targets.description import RUN_AS, ManifestError, ServingDescription, labels

__all__ = ["KUBERNETES", "KSERVE", "kubernetes", "kserve", "validate_kubernetes", "validate_kserve", "K8S_VERSION",
           "hardened_pod"]

K8S_VERSION = "1.30"


def _container(desc: ServingDescription, version: str, store: str, target: str,
               store_options: dict[str, Any] | None) -> dict[str, Any]:
    env: list[dict[str, Any]] = [{"name": k, "value": v}
                                 for k, v in sorted(desc.plain_env(version, store_options).items())]
    env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": s.name, "key": s.key}}}
            for k, s in sorted(desc.secret_env.items())]
    probe = {"httpGet": {"path": "/health", "port": desc.port}, "periodSeconds": 5,
             "timeoutSeconds": desc.probe_timeout_seconds, "failureThreshold": 3}
    need = {"cpu": str(desc.cpu), "memory": f"{desc.memory_mib}Mi"}
    return {"name": "server", "image": desc.image, "command": desc.command(store, version, target),
            "ports": [{"name": "http", "containerPort": desc.port}], "env": env,
            "resources": {"requests": need, "limits": need},
            "readinessProbe": probe, "livenessProbe": {**probe, "initialDelaySeconds": 20},
            "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                                "allowPrivilegeEscalation": False, "privileged": False,
                                "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}


def hardened_pod(desc: ServingDescription, containers: list[dict[str, Any]]) -> dict[str, Any]:
    """The pod-level half of the hardening: who the pod runs as, no service-account token, a writable /tmp."""
    return {"containers": containers, "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": f"{desc.tmp_mib}Mi"}}]}


def kubernetes(desc: ServingDescription, version: str, store: str, target: str, namespace: str = "default",
               store_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """An apps/v1 Deployment and a v1 Service."""
    common = labels(desc, target)
    selector = {"app.kubernetes.io/name": desc.name, "cloudhop/target": target}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": desc.name, "namespace": namespace, "labels": common},
        "spec": {
            "replicas": desc.replicas, "selector": {"matchLabels": selector},
            # a rolling update that never drops below the desired count: no request lands on nothing
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": common},
                         "spec": {**hardened_pod(desc, [_container(desc, version, store, target, store_options)]),
                                  "terminationGracePeriodSeconds": 30}}}}
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": desc.name, "namespace": namespace, "labels": common},
               "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": desc.port}]}}
    return [deployment, service]


def kserve(desc: ServingDescription, version: str, store: str, target: str, namespace: str = "default",
           store_options: dict[str, Any] | None = None, canary_percent: int | None = None) -> dict[str, Any]:
    """A serving.kserve.io/v1beta1 InferenceService."""
    predictor: dict[str, Any] = {"minReplicas": desc.replicas,
                                 **hardened_pod(desc, [_container(desc, version, store, target, store_options)])}
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = int(canary_percent)
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": desc.name, "namespace": namespace, "labels": labels(desc, target)},
            "spec": {"predictor": predictor}}


def _validate_object(obj: dict[str, Any]) -> None:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        where = ".".join(str(p) for p in e.path) or "(top)"
        raise ManifestError(f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}: {where}: "
                            f"{e.message}") from None


def validate_kubernetes(objs: list[dict[str, Any]]) -> None:
    for o in objs:
        _validate_object(o)


def validate_kserve(obj: dict[str, Any]) -> None:
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
    _validate_object({"apiVersion": "v1", "kind": "Pod", "metadata": obj.get("metadata", {}), "spec": pred})


KUBERNETES = ManifestKind("kubernetes", kubernetes, validate_kubernetes, suffix="yaml")
KSERVE = ManifestKind("kserve", kserve, validate_kserve, suffix="yaml")
