"""Serving targets: one Target protocol; the concrete target of each kind comes from the provider
of that name (cloudhop.providers), imported only when a spec uses it."""
from __future__ import annotations

from typing import TYPE_CHECKING

from cloudhop import providers
from cloudhop.targets.base import SmokeResult, Target, TargetError
from cloudhop.targets.deploy import DeployOutcome, deploy_to_target

if TYPE_CHECKING:
    from cloudhop.spec import PipelineSpec, ServingTargetSpec

__all__ = ["Target", "SmokeResult", "TargetError", "DeployOutcome", "deploy_to_target", "build_target"]


def build_target(spec_target: "ServingTargetSpec", spec: "PipelineSpec", secrets: dict | None = None) -> Target:
    """A Target from the spec; `secrets` (plain values from Prefect blocks, never logged) go to the provider."""
    try:
        provider = providers.get(spec_target.kind)
    except providers.ProviderError as e:
        raise TargetError(f"target {spec_target.name!r}: {e}") from None
    try:
        return provider.target(spec_target, spec, secrets)
    except ImportError as e:
        raise TargetError(f"target {spec_target.name!r}: {providers.missing_extra(provider, e)}") from None
