"""The `vertex-ai` work-pool type: region default = the cloud's region (machine and accelerator
defaults come from the catalog's pool `defaults`)."""
from __future__ import annotations

from typing import Any

from cloudhop.providers.base import PoolType, set_default

__all__ = ["VERTEX_POOL"]


def _patch(t: dict[str, Any], cloud: Any) -> None:
    set_default(t["variables"]["properties"], "region", cloud.region)


VERTEX_POOL = PoolType("vertex-ai", worker="prefect_gcp.workers.vertex:VertexAIWorker", patch=_patch)
