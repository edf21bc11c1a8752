"""Desired vs current work pools: what `apply` must create or update. Pure logic."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["DesiredPool", "CurrentPool", "PoolChange", "plan_pools", "same_template"]

Action = Literal["create", "update", "unchanged", "conflict"]


@dataclass(frozen=True)
class DesiredPool:
    name: str
    type: str
    cloud: str
    base_job_template: dict[str, Any]
    description: str


@dataclass(frozen=True)
class CurrentPool:
    name: str
    type: str
    base_job_template: dict[str, Any]
    description: str | None
    status: str | None = None


@dataclass(frozen=True)
class PoolChange:
    pool: DesiredPool
    action: Action
    detail: str  # what differs, or why it conflicts
    status: str | None = None  # the server's pool status, when it exists


def same_template(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal as JSON (key order ignored)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def plan_pools(desired: list[DesiredPool], current: dict[str, CurrentPool]) -> list[PoolChange]:
    """One change per desired pool. A pool whose type differs cannot be updated in place (conflict)."""
    changes = []
    for want in desired:
        have = current.get(want.name)
        if have is None:
            changes.append(PoolChange(want, "create", "not on the server"))
        elif have.type != want.type:
            changes.append(PoolChange(
                want, "conflict", f"exists as type {have.type!r}, wanted {want.type!r}: "
                                  f"delete it first (prefect work-pool delete {want.name})", have.status))
        else:
            diffs = []
            if not same_template(have.base_job_template, want.base_job_template):
                diffs.append("base job template")
            if (have.description or "") != want.description:
                diffs.append("description")
            action: Action = "update" if diffs else "unchanged"
            changes.append(PoolChange(want, action, ", ".join(diffs) or "in sync", have.status))
    return changes
