"""Work-pool base job templates: each worker's default template, patched for GPU training.

Pure dict patching: the worker's default template is passed in (the Prefect side gets it from
the installed worker class; `python -m flows.pools templates` writes deployments/work-pools/).

Every pool gets the common part here: env default CLOUDHOP_CLOUD=<cloud>, image default = the
catalog's training image, then the pool's `defaults` from the catalog. What its type adds on top
(GPU variables, launch type, node selectors, ...) is the pool type's `patch`, declared by the
provider that brings the type (cloudhop/providers/<cloud>/, kubernetes in
cloudhop/providers/kubernetes.py).
"""
from __future__ import annotations

import copy
from typing import Any

from cloudhop import providers
from cloudhop.clouds.catalog import Catalog, CatalogError, Cloud, WorkPool

__all__ = ["build_template", "pool_description", "gpu_count_variables"]


def gpu_count_variables(pool_type: str, count: int) -> dict[str, Any]:
    """Job variables asking a pool of `pool_type` for `count` GPUs (empty where the offer fixes it)."""
    ask = providers.pool_type(pool_type).gpu_variables
    return ask(count) if ask else {}


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
        providers.set_default(props, "image", catalog.image)
    patch = providers.pool_type(pool.type).patch
    if patch is not None:
        patch(t, cloud)
    for key, value in pool.defaults.items():
        if key not in props:
            raise CatalogError(f"clouds.{cloud.name}.work_pools.{pool.name}.defaults.{key}: not a job variable "
                               f"of the {pool.type} template (it has: {', '.join(sorted(props))})")
        providers.set_default(props, key, value)
    return t


def _find(catalog: Catalog, pool_name: str) -> tuple[Cloud, WorkPool]:
    for cloud, pool in catalog.pools(enabled_only=False):
        if pool.name == pool_name:
            return cloud, pool
    names = [p.name for _, p in catalog.pools(enabled_only=False)]
    raise CatalogError(f"unknown work pool {pool_name!r}; the catalog has {names}")
