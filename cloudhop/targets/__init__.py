"""Serving targets: one Target protocol, one module per kind, imported only when used."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from cloudhop.targets.base import SmokeResult, Target, TargetError
from cloudhop.targets.deploy import DeployOutcome, deploy_to_target

if TYPE_CHECKING:
    from cloudhop.spec import PipelineSpec, ServingTargetSpec

__all__ = ["Target", "SmokeResult", "TargetError", "DeployOutcome", "deploy_to_target", "build_target", "KINDS"]

# kind -> "module:function"; the function takes (ServingTargetSpec, PipelineSpec[, secrets]) and
# returns a Target. Each module, and its cloud SDK, is imported only when a spec uses that kind.
KINDS: dict[str, str] = {
    "local": "cloudhop.targets.local:from_spec",
    "aws": "cloudhop.targets.aws:from_spec",
    "gcp": "cloudhop.targets.gcp:from_spec",
    "azure": "cloudhop.targets.azure:from_spec",
    "coreweave": "cloudhop.targets.coreweave:from_spec",
}


def build_target(spec_target: "ServingTargetSpec", spec: "PipelineSpec", secrets: dict | None = None) -> Target:
    """A Target from the spec; `secrets` (plain values from Prefect blocks, never logged) go to cloud kinds."""
    path = KINDS.get(spec_target.kind)
    if path is None:
        raise NotImplementedError(f"target {spec_target.name!r}: kind {spec_target.kind!r} is not implemented "
                                  f"(available: {', '.join(sorted(KINDS))})")
    module, func = path.split(":")
    factory = getattr(importlib.import_module(module), func)
    return factory(spec_target, spec) if spec_target.kind == "local" else factory(spec_target, spec, secrets)
