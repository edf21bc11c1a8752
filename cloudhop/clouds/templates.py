"""Work-pool base job templates: each worker's default template, patched for GPU training.

Pure dict patching: the worker's default template is passed in (the Prefect side gets it from
the installed worker class; `python -m flows.pools templates` writes deployments/work-pools/).

What each pool type gets on top of its worker's default:
- every type: env default CLOUDHOP_CLOUD=<cloud>, image default = the catalog's training image,
  then the pool's `defaults` from the catalog.
- kubernetes (CoreWeave, AKS): a `gpu_count` variable with no default (so `nvidia.com/gpu`
  is dropped from the limits when unset), `node_selector` and `tolerations` variables, the
  object store's credentials as env from a Secret (secretKeyRef, optional), its endpoint as
  AWS_ENDPOINT_URL, and `completions`/`parallelism` moved from the pod spec (where the
  default template puts them and a strict API server rejects them) to the Job spec.
- ecs: EC2 launch type (Fargate has no GPUs), `requiresCompatibilities: [EC2]`, a container
  `resourceRequirements` GPU entry from a `gpu_count` variable (a string: ECS wants one), and a
  `placement_constraints` variable (e.g. pin an instance type).
- vertex-ai: region default = the cloud's region; machine/accelerator defaults from the catalog.
- azure-container-instance, process: the common part only.
"""
from __future__ import annotations

import copy
from typing import Any

from cloudhop.clouds.catalog import Catalog, CatalogError, Cloud, WorkPool

__all__ = ["build_template", "pool_description", "gpu_count_variables", "CREDENTIAL_ENV", "GPU_TOLERATION"]

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}

# object-store scheme -> (env var, key in the Kubernetes Secret)
CREDENTIAL_ENV: dict[str, list[tuple[str, str]]] = {
    "s3": [("AWS_ACCESS_KEY_ID", "access-key-id"), ("AWS_SECRET_ACCESS_KEY", "secret-access-key")],
    "az": [("AZURE_STORAGE_ACCOUNT_NAME", "account-name"), ("AZURE_STORAGE_ACCOUNT_KEY", "account-key")],
}


def gpu_count_variables(pool_type: str, count: int) -> dict[str, Any]:
    """Job variables asking a pool of `pool_type` for `count` GPUs (empty where the offer fixes it)."""
    if pool_type == "kubernetes":
        return {"gpu_count": count}
    if pool_type == "ecs":
        return {"gpu_count": str(count)}
    return {}


def pool_description(cloud: Cloud, pool: WorkPool, local: bool = False) -> str:
    if local:
        return f"cloudhop {cloud.name}: local process stand-in for the {pool.type} pool"
    return f"cloudhop {cloud.name}: {pool.type} pool in {cloud.region}"


def build_template(catalog: Catalog, pool_name: str, default: dict[str, Any], *, local: bool = False) -> dict[str, Any]:
    """The base job template for `pool_name`: the worker's `default` template, patched.

    With `local=True` the default is the process worker's and only the common part is applied
    (a local stand-in with the same name runs the same deployments on this machine).
    """
    cloud, pool = _find(catalog, pool_name)
    t = copy.deepcopy(default)
    props = t["variables"]["properties"]
    props["env"]["default"] = {"CLOUDHOP_CLOUD": cloud.name}
    if local:
        return t
    if "image" in props:
        _set_default(props, "image", catalog.image)
    if pool.type == "kubernetes":
        _kubernetes(t, cloud)
    elif pool.type == "ecs":
        _ecs(t)
    elif pool.type == "vertex-ai":
        _set_default(props, "region", cloud.region)
    for key, value in pool.defaults.items():
        if key not in props:
            raise CatalogError(f"clouds.{cloud.name}.work_pools.{pool.name}.defaults.{key}: not a job variable "
                               f"of the {pool.type} template (it has: {', '.join(sorted(props))})")
        _set_default(props, key, value)
    return t


def _find(catalog: Catalog, pool_name: str) -> tuple[Cloud, WorkPool]:
    for cloud, pool in catalog.pools(enabled_only=False):
        if pool.name == pool_name:
            return cloud, pool
    names = [p.name for _, p in catalog.pools(enabled_only=False)]
    raise CatalogError(f"unknown work pool {pool_name!r}; the catalog has {names}")


def _set_default(props: dict[str, Any], key: str, value: Any) -> None:
    props[key] = {**props[key], "default": value}


def _kubernetes(t: dict[str, Any], cloud: Cloud) -> None:
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


def _store_env(cloud: Cloud) -> list[dict[str, Any]]:
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


def _ecs(t: dict[str, Any]) -> None:
    props = t["variables"]["properties"]
    _set_default(props, "launch_type", "EC2")
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
