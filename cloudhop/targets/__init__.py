"""Serving targets: one Target protocol; the concrete target of each kind comes from the provider
of that name (cloudhop.providers), imported only when a spec uses it."""
from __future__ import annotations

from typing import TYPE_CHECKING

from cloudhop import providers
from cloudhop.store import Store
from cloudhop.targets.base import LogsPredictions, SmokeResult, Target, TargetError
from cloudhop.targets.deploy import DeployOutcome, deploy_to_target

if TYPE_CHECKING:
    from cloudhop.spec import PipelineSpec, ServingTargetSpec

__all__ = ["Target", "LogsPredictions", "SmokeResult", "TargetError", "DeployOutcome", "deploy_to_target",
           "build_target", "prediction_log_store"]


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


def prediction_log_store(spec_target: "ServingTargetSpec", spec: "PipelineSpec", secrets: dict | None = None) -> Store:
    """The store where the target's servers write their prediction log, opened with the target's
    credentials (`secrets`): each target's traffic is read where that target logged it."""
    target = build_target(spec_target, spec, secrets)
    try:
        if not isinstance(target, LogsPredictions):
            raise TargetError(f"target {spec_target.name!r}: a {spec_target.kind} target keeps no prediction log")
        return target.prediction_log_store()
    finally:
        close = getattr(target, "close", None)
        if callable(close):
            close()
