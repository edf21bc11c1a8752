"""Serving targets: one Target protocol, one module per kind, imported only when used."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from cloudhop.targets.base import SmokeResult, Target, TargetError
from cloudhop.targets.deploy import DeployOutcome, deploy_to_target

if TYPE_CHECKING:
    from cloudhop.spec import PipelineSpec, ServingTargetSpec

__all__ = ["Target", "SmokeResult", "TargetError", "DeployOutcome", "deploy_to_target", "build_target", "KINDS"]

# kind -> "module:function"; the function takes (ServingTargetSpec, PipelineSpec) and returns a Target.
KINDS: dict[str, str] = {
    "local": "cloudhop.targets.local:from_spec",
}


def build_target(spec_target: "ServingTargetSpec", spec: "PipelineSpec") -> Target:
    path = KINDS.get(spec_target.kind)
    if path is None:
        raise NotImplementedError(f"target {spec_target.name!r}: kind {spec_target.kind!r} is not implemented yet "
                                  f"(available: {', '.join(sorted(KINDS))})")
    module, func = path.split(":")
    return getattr(importlib.import_module(module), func)(spec_target, spec)
