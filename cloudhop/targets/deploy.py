"""Deploy one registered version to one target: publish, roll out, smoke test, roll back on failure.

One deploy per target at a time: each holds the lease `leases/deploy/<target>.json` in the
registry's store while it runs, so two deploys to one target run one after the other and the
`live-<target>` alias ends on what the target serves. A version that fails the registry's checks
(unsigned or wrongly signed with a public key set, a file or manifest changed) is refused before
the target is touched. Every deploy, rollback and hot swap is recorded in the audit log.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from cloudhop.registry import IntegrityError, Registry
from cloudhop.registry.audit import default_actor
from cloudhop.store.lease import Lease, LeaseError
from cloudhop.targets.base import SmokeResult, Target

log = logging.getLogger("cloudhop.deploy")

__all__ = ["DeployOutcome", "deploy_to_target"]


@dataclass
class DeployOutcome:
    target: str
    version: str
    previous: str | None
    ok: bool
    changed: bool
    rolled_back: bool
    smoke: SmokeResult | None
    seconds: float
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        if self.ok:
            what = f"v{self.version} is live" if self.changed else f"v{self.version} was already live"
            return f"{self.target}: {what} ({self.seconds:.1f}s)"
        back = (f"rolled back to v{self.previous}" if self.rolled_back
                else f"not rolled back (live: v{self.previous})" if self.previous else "nothing to roll back to")
        return f"{self.target}: deploying v{self.version} FAILED: {self.error}; {back}"


def deploy_to_target(registry: Registry, target: Target, version: str, smoke: dict | None = None,
                     *, run_id: str | None = None, atol: float = 1e-4, lease_wait: float = 600.0) -> DeployOutcome:
    """Ship `version` to `target`; on any failure put the previous live version back.

    `smoke` is a smoke.json document: {"rows": [...], "predictions": [...]}. The alias
    `live-<target>` moves only when the version is live and passed the smoke test. Waits up to
    `lease_wait` seconds for another deploy to the same target to finish.
    Errors become the outcome's `error`; this function raises only for a bad smoke document.
    """
    t0 = time.monotonic()
    rows, expected = _smoke_set(smoke)
    try:
        version = registry.get(version).version  # signature, alias pin: refused before the target is touched
    except IntegrityError as e:
        log.error("deploy to %s refused: %s", target.name, e)
        return DeployOutcome(target.name, str(version), None, False, False, False, None,
                             round(time.monotonic() - t0, 3), f"refused: {e}")
    actor = registry.actor or default_actor()
    holder = json.dumps({**actor, "run_id": run_id, "version": version}, sort_keys=True)
    try:
        with Lease(registry.store, f"leases/deploy/{target.name}.json", holder, wait=lease_wait) as lease:
            out = _deploy(registry, target, version, rows, expected, run_id, atol, t0, lease)
    except LeaseError as e:  # another deploy to this target still runs: nothing was touched
        log.error("deploy of v%s to %s: %s", version, target.name, e)
        return DeployOutcome(target.name, version, None, False, False, False, None,
                             round(time.monotonic() - t0, 3), str(e))
    audit = registry.audit
    audit.record(registry.name, "deploy", target.name, out.previous, version, actor=actor, ok=out.ok,
                 changed=out.changed, error=out.error, run_id=run_id)
    if out.changed and getattr(target, "hot_swap", False):
        audit.record(registry.name, "hot-swap", target.name, out.previous, version, actor=actor, run_id=run_id)
    if out.rolled_back:
        audit.record(registry.name, "rollback", target.name, version, out.previous, actor=actor,
                     reason=out.error, run_id=run_id)
    return out


def _deploy(registry: Registry, target: Target, version: str, rows: list[dict] | None,
            expected: list[float] | None, run_id: str | None, atol: float, t0: float, lease: Lease) -> DeployOutcome:
    previous = target.live_version()

    def outcome(ok: bool, changed: bool, rolled_back: bool = False, result: SmokeResult | None = None,
                error: str | None = None) -> DeployOutcome:
        return DeployOutcome(target.name, version, previous, ok, changed, rolled_back, result,
                             round(time.monotonic() - t0, 3), error)

    if previous == version:
        alias = registry.alias(f"live-{target.name}")
        if alias is None or alias.get("version") != version:
            registry.set_alias(f"live-{target.name}", version, target=target.name, run_id=run_id)
        return outcome(True, changed=False)

    result = None
    try:
        target.publish(registry, version)
        lease.renew()  # an upload can be long: the lease stays ours for the roll-out
        target.roll_out(version)
        if rows is not None and expected is not None:
            result = target.smoke_test(rows, expected, atol)
            if not result.ok:
                raise RuntimeError(f"smoke test failed: {result.error}")
    except Exception as e:
        error = str(e)
        rolled_back = False
        if previous is not None and target.live_version() != previous:
            try:
                target.roll_back(previous)
                rolled_back = True
            except Exception as back:  # report both; the caller decides what to do with a broken target
                error += f"; roll back to v{previous} also failed: {back}"
        return outcome(False, changed=False, rolled_back=rolled_back, result=result, error=error)

    registry.set_alias(f"live-{target.name}", version, target=target.name, run_id=run_id)
    return outcome(True, changed=True, result=result)


def _smoke_set(smoke: dict | None) -> tuple[list[dict] | None, list[float] | None]:
    if smoke is None:
        return None, None
    if not isinstance(smoke, dict) or not isinstance(smoke.get("rows"), list) \
            or not isinstance(smoke.get("predictions"), list):
        raise ValueError('smoke set must be {"rows": [...], "predictions": [...]}')
    if len(smoke["rows"]) != len(smoke["predictions"]):
        raise ValueError(f"smoke set has {len(smoke['rows'])} rows but {len(smoke['predictions'])} predictions")
    return smoke["rows"], smoke["predictions"]
