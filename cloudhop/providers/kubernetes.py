"""The `kubernetes` work-pool type, shared by the providers whose GPU jobs run on Kubernetes
(CoreWeave, Azure AKS). Pure dict patching of the worker's default template: no SDK.

On top of the common part (cloudhop.clouds.templates) a kubernetes pool gets a `gpu_count`
variable with no default (so `nvidia.com/gpu` is dropped from the limits when unset),
`node_selector` and `tolerations` variables, the object store's credentials as env from a
Secret (secretKeyRef, optional), its endpoint as AWS_ENDPOINT_URL, and `completions` /
`parallelism` moved from the pod spec (where the default template puts them and a strict API
server rejects them) to the Job spec.
"""
from __future__ import annotations

from typing import Any

from cloudhop.providers.base import PoolType

__all__ = ["KUBERNETES", "CREDENTIAL_ENV", "GPU_TOLERATION"]

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}

# object-store scheme -> (env var, key in the Kubernetes Secret)
CREDENTIAL_ENV: dict[str, list[tuple[str, str]]] = {
    "s3": [("AWS_ACCESS_KEY_ID", "access-key-id"), ("AWS_SECRET_ACCESS_KEY", "secret-access-key")],
    "az": [("AZURE_STORAGE_ACCOUNT_NAME", "account-name"), ("AZURE_STORAGE_ACCOUNT_KEY", "account-key")],
}


def _patch(t: dict[str, Any], cloud: Any) -> None:
    props = t["variables"]["properties"]
    props["gpu_count"] = {"title": "GPU count", "type": "integer", "minimum": 1,
                          "description": "GPUs for the job container (nvidia.com/gpu limit); none when unset."}
    props["node_selector"] = {"title": "Node selector", "type": "object", "additionalProperties": {"type": "string"},
                              "default": {},
                              "description": "Node labels the pod must match, e.g. CoreWeave's gpu.nvidia.com/class."}
    props["tolerations"] = {"title": "Tolerations", "type": "array", "items": {"type": "object"},
                            "default": [GPU_TOLERATION], "description": "Taints the pod tolerates (GPU nodes)."}
    job = t["job_configuration"]["job_manifest"]["spec"]
    pod = job["template"]["spec"]
    for key in ("completions", "parallelism"):  # Job fields, misplaced in the default pod spec
        job[key] = pod.pop(key, 1)
    pod["nodeSelector"] = "{{ node_selector }}"
    pod["tolerations"] = "{{ tolerations }}"
    container = pod["containers"][0]
    container["resources"]["limits"]["nvidia.com/gpu"] = "{{ gpu_count }}"
    env = _store_env(cloud)
    if env:  # a list here: the worker puts its own env (and the `env` variable) in front
        container["env"] = env


def _store_env(cloud: Any) -> list[dict[str, Any]]:
    store = cloud.object_store
    scheme = store.uri.split("://", 1)[0] if "://" in store.uri else "file"
    env: list[dict[str, Any]] = []
    if store.credentials_secret:
        for var, key in CREDENTIAL_ENV.get(scheme, []):
            env.append({"name": var, "valueFrom": {"secretKeyRef": {
                "name": store.credentials_secret, "key": key, "optional": True}}})
    if store.endpoint_url:
        env.append({"name": "AWS_ENDPOINT_URL", "value": store.endpoint_url})
    return env


KUBERNETES = PoolType("kubernetes", worker="prefect_kubernetes.worker:KubernetesWorker", patch=_patch,
                      gpu_variables=lambda count: {"gpu_count": count})
