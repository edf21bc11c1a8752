"""Ship one version to many targets at once, and never leave them mixed and unrecorded.

The steps, each a plain function (the deploy flow runs them as Prefect tasks; `deploy_all`
runs them with threads, for scripts and benchmarks):

1. `snapshot`: what each target serves before (over HTTP; the registry's live-<target> alias
   when the target does not answer).
2. `deploy_with_retries` / `deploy_to_target` per target, concurrently.
3. `rollback_plan`: from the outcomes and the policy, which targets go back and to what.
   all-or-nothing: one target failed -> every target returns to its previous version.
   best-effort: only the failed targets return.
4. `roll_back_target` for each planned target (a target already there is left alone).
5. `finalize`: ask every target what it serves now, say what happened to each, point each
   live-<target> alias at what really runs (with time and run id) and write a deploy record.

With a canary (`run_canary`), one target gets the version first and the others only when its
/metrics over a window of live traffic look no worse than theirs (cloudhop.targets.canary).
"""
from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Literal, Mapping, Sequence

from cloudhop.registry import Registry
from cloudhop.targets.base import Target
from cloudhop.targets.deploy import DeployOutcome, deploy_to_target

__all__ = ["POLICIES", "Policy", "check_policy", "snapshot", "previous_of", "deploy_with_retries",
           "failed_outcome", "rollback_plan", "roll_back_target", "RollbackResult", "TargetReport",
           "DeployReport", "finalize", "deploy_all", "run_canary", "load_smoke", "build"]

def build(spec_target: Any, spec: Any, secrets: dict[str, Any] | None = None) -> Target:
    """A Target from the spec (see cloudhop.targets.build_target)."""
    from cloudhop.targets import build_target

    return build_target(spec_target, spec, secrets)


Policy = Literal["all-or-nothing", "best-effort"]
POLICIES: tuple[str, ...] = ("all-or-nothing", "best-effort")


def check_policy(policy: str) -> Policy:
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    return policy  # type: ignore[return-value]


def load_smoke(registry: Registry, version: str) -> dict | None:
    """The version's smoke.json ({"rows", "predictions"}), or None when it has none."""
    import json

    mv = registry.get(version)
    if "smoke.json" not in mv.manifest.files:
        return None
    return json.loads(registry.read_file(mv, "smoke.json"))


# -- 1. before ------------------------------------------------------------------
def previous_of(registry: Registry, target: Target) -> str | None:
    """What the target serves now; when it does not answer, what the registry last saw it serve."""
    live = target.live_version()
    if live is not None:
        return live
    alias = registry.alias(f"live-{target.name}")
    return alias["version"] if alias else None


def snapshot(registry: Registry, targets: Sequence[Target]) -> dict[str, str | None]:
    with ThreadPoolExecutor(max(1, len(targets))) as ex:
        return dict(zip([t.name for t in targets], ex.map(lambda t: previous_of(registry, t), targets)))


# -- 2. per target ------------------------------------------------------------------
def failed_outcome(target: str, version: str, previous: str | None, error: str, seconds: float = 0.0) -> DeployOutcome:
    """The outcome of a target whose deploy raised instead of returning (e.g. a task that gave up)."""
    return DeployOutcome(target, version, previous, ok=False, changed=False, rolled_back=False, smoke=None,
                         seconds=seconds, error=error)


def deploy_with_retries(registry: Registry, target: Target, version: str, smoke: dict | None, *,
                        retries: int = 0, retry_delay: float = 1.0, run_id: str | None = None,
                        sleep: Callable[[float], None] = time.sleep) -> tuple[DeployOutcome, int]:
    """deploy_to_target, tried up to 1 + retries times. Returns the last outcome and the attempts made."""
    attempt = 0
    while True:
        attempt += 1
        try:
            outcome = deploy_to_target(registry, target, version, smoke, run_id=run_id)
        except Exception as e:  # a bug or a bad smoke set: report it as this target's failure
            outcome = failed_outcome(target.name, version, None, f"{type(e).__name__}: {e}")
        if outcome.ok or attempt > retries:
            return outcome, attempt
        sleep(retry_delay)


# -- 3. decide -------------------------------------------------------------------------
def rollback_plan(outcomes: Mapping[str, DeployOutcome], previous: Mapping[str, str | None], version: str,
                  policy: str) -> dict[str, str]:
    """{target: version to return to}. Empty when every target succeeded.

    Targets that served `version` already before, or served nothing known, are not in the plan.
    """
    check_policy(policy)
    failed = {n for n, o in outcomes.items() if not o.ok}
    if not failed:
        return {}
    names = outcomes if policy == "all-or-nothing" else failed
    return {n: p for n in names if (p := previous.get(n)) is not None and p != version}


# -- 4. roll back ------------------------------------------------------------------------
@dataclass
class RollbackResult:
    target: str
    version: str
    ok: bool
    skipped: bool = False  # it was already there
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def roll_back_target(target: Target, version: str) -> RollbackResult:
    try:
        if target.live_version() == version:
            return RollbackResult(target.name, version, True, skipped=True)
        target.roll_back(version)
    except Exception as e:
        return RollbackResult(target.name, version, False, error=f"{type(e).__name__}: {e}")
    return RollbackResult(target.name, version, True)


# -- 5. after --------------------------------------------------------------------------------
@dataclass
class TargetReport:
    target: str
    version: str | None  # what it serves now, asked over HTTP (None: it does not answer)
    wanted: str
    previous: str | None
    changed: bool  # it serves something else than before
    status: str  # deployed | unchanged | failed | rolled-back | not-deployed | rollback-failed
    error: str | None = None
    url: str | None = None
    attempts: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DeployReport:
    model: str
    version: str
    policy: str
    run_id: str | None
    targets: dict[str, TargetReport] = field(default_factory=dict)
    seconds: float = 0.0
    canary: dict[str, Any] | None = None  # the canary verdict, when there was one

    @property
    def ok(self) -> bool:
        return all(t.status in ("deployed", "unchanged") for t in self.targets.values())

    @property
    def failed(self) -> list[str]:
        return [n for n, t in self.targets.items() if t.status not in ("deployed", "unchanged")]

    def as_result(self) -> dict[str, dict[str, Any]]:
        """{target: {"version", "previous", "changed", "status", ...}}: what the deploy flow returns."""
        return {n: t.to_dict() for n, t in self.targets.items()}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d

    def summary(self) -> str:
        lines = [f"{self.model} v{self.version} ({self.policy}): {'OK' if self.ok else 'FAILED: ' + ', '.join(self.failed)}"]
        for t in self.targets.values():
            extra = f" - {t.error}" if t.error else ""
            was = f"v{t.previous}" if t.previous else "none"
            lines.append(f"  {t.target}: {t.status}, serves v{t.version} (was {was}){extra}")
        return "\n".join(lines)


def _status(name: str, outcome: DeployOutcome, plan: Mapping[str, str],
            rollbacks: Mapping[str, RollbackResult]) -> tuple[str, str | None]:
    if name in plan:
        rb = rollbacks.get(name)
        why = outcome.error or "another target failed (all-or-nothing)"
        if rb is not None and rb.ok:
            return ("not-deployed" if rb.skipped and not outcome.ok else "rolled-back"), why
        back = rb.error if rb is not None else "not attempted"
        return "rollback-failed", f"{why}; rolling back to v{plan[name]} failed: {back}"
    if not outcome.ok:
        return "failed", outcome.error
    return ("deployed" if outcome.changed else "unchanged"), None


def finalize(registry: Registry, targets: Sequence[Target], version: str, previous: Mapping[str, str | None],
             outcomes: Mapping[str, DeployOutcome], plan: Mapping[str, str],
             rollbacks: Mapping[str, RollbackResult], policy: str, run_id: str | None = None,
             attempts: Mapping[str, int] | None = None, seconds: float = 0.0,
             canary: dict[str, Any] | None = None) -> DeployReport:
    """Check what each target serves, record it in the registry, and report."""
    report = DeployReport(registry.name, version, policy, run_id, seconds=seconds, canary=canary)
    with ThreadPoolExecutor(max(1, len(targets))) as ex:
        live = dict(zip([t.name for t in targets], ex.map(lambda t: t.live_version(), targets)))
    for t in targets:
        status, error = _status(t.name, outcomes[t.name], plan, rollbacks)
        now = live[t.name]
        if status == "deployed" and now != version:  # it moved again meanwhile, or died: say so
            status, error = "failed", f"deployed, but now serves v{now}"
        report.targets[t.name] = TargetReport(
            t.name, now, version, previous.get(t.name), changed=now is not None and now != previous.get(t.name),
            status=status, error=error, url=getattr(t, "url", None), attempts=(attempts or {}).get(t.name, 1))
    record(registry, report)
    return report


def record(registry: Registry, report: DeployReport) -> None:
    """live-<target> aliases follow what really runs; a deploy record keeps the whole report."""
    import json

    for t in report.targets.values():
        if t.version is None:
            continue  # it does not answer: the alias keeps the last version seen running
        alias = registry.alias(f"live-{t.target}")
        if alias is None or alias.get("version") != t.version:
            registry.set_alias(f"live-{t.target}", t.version, rollback=t.status == "rolled-back", target=t.target,
                               run_id=report.run_id, status=t.status, deploying=report.version)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    key = f"{registry.base}/deploys/{stamp}-{report.run_id or 'local'}.json"
    registry.store.write_bytes(key, json.dumps(report.to_dict(), indent=2, default=str).encode())


# -- canary ------------------------------------------------------------------------------------
def run_canary(registry: Registry, canary: Target, baseline: Sequence[Target], version: str, smoke: dict | None,
               *, seconds: float, thresholds: Any = None, retries: int = 0, retry_delay: float = 1.0,
               run_id: str | None = None, sleep: Callable[[float], None] = time.sleep
               ) -> tuple[DeployOutcome, int, dict[str, Any] | None]:
    """Deploy to `canary` alone, let traffic flow for `seconds`, judge it against `baseline` from
    /metrics. A rejected canary is rolled back and its outcome marked failed. Returns
    (outcome, attempts, verdict as a dict or None when there was nothing to judge)."""
    from cloudhop.targets.canary import combine, delta, judge, scrape

    urls = {t.name: getattr(t, "url", None) for t in [canary, *baseline]}
    before = {n: scrape(u) if u else None for n, u in urls.items()}
    outcome, attempts = deploy_with_retries(registry, canary, version, smoke, retries=retries,
                                            retry_delay=retry_delay, run_id=run_id, sleep=sleep)
    if not outcome.ok or not outcome.changed:
        return outcome, attempts, None
    sleep(seconds)
    after = {n: scrape(u) if u else None for n, u in urls.items()}
    now, then = after[canary.name], before[canary.name]
    if now is None or then is None:
        v = {"promote": False, "reason": f"canary {canary.name} "
                                         f"{'stopped answering' if now is None else 'did not answer'} /metrics"}
    else:
        base = [delta(a, b) for t in baseline if (a := after[t.name]) is not None and (b := before[t.name]) is not None]
        v = judge(delta(now, then), combine(base), thresholds).to_dict()
    if not v["promote"]:
        back = roll_back_target(canary, outcome.previous) if outcome.previous else None
        error = f"canary rejected: {v['reason']}"
        if back is not None and not back.ok:
            error += f"; roll back failed: {back.error}"
        outcome = failed_outcome(canary.name, version, outcome.previous, error, outcome.seconds)
    return outcome, attempts, v


# -- all of it, with threads --------------------------------------------------------------------
def deploy_all(registry: Registry, targets: Sequence[Target], version: str, *, smoke: dict | None | str = "auto",
               policy: str = "all-or-nothing", retries: int = 0, retry_delay: float = 1.0,
               run_id: str | None = None, canary: str | None = None, canary_seconds: float = 30.0,
               canary_thresholds: Any = None) -> DeployReport:
    """Ship `version` to every target concurrently and settle them per `policy`.

    With `canary` (a target name), that target gets the version first and the others only if
    its /metrics over `canary_seconds` of traffic look no worse than theirs.
    """
    check_policy(policy)
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise ValueError(f"target names must be unique, got {names}")
    if canary is not None and canary not in names:
        raise ValueError(f"canary {canary!r} is not one of the targets {names}")
    t0 = time.monotonic()
    run_id = run_id or f"local-{uuid.uuid4().hex[:8]}"
    version = registry.resolve(version)
    if smoke == "auto":
        smoke = load_smoke(registry, version)
    previous = snapshot(registry, targets)
    by_name = {t.name: t for t in targets}
    outcomes: dict[str, DeployOutcome] = {}
    attempts: dict[str, int] = {}
    verdict = None
    rest = list(targets)
    if canary is not None:
        rest = [t for t in targets if t.name != canary]
        o, a, verdict = run_canary(registry, by_name[canary], rest, version, smoke,  # type: ignore[arg-type]
                                   seconds=canary_seconds, thresholds=canary_thresholds, retries=retries,
                                   retry_delay=retry_delay, run_id=run_id)
        outcomes[canary], attempts[canary] = o, a
        if not o.ok:
            for t in rest:
                outcomes[t.name] = failed_outcome(t.name, version, previous[t.name],
                                                  f"not attempted: canary {canary} failed")
            rest = []
    with ThreadPoolExecutor(max(1, len(targets))) as ex:
        results = list(ex.map(lambda t: deploy_with_retries(registry, t, version, smoke,  # type: ignore[arg-type]
                                                            retries=retries, retry_delay=retry_delay,
                                                            run_id=run_id), rest))
        for t, (o, a) in zip(rest, results):
            outcomes[t.name], attempts[t.name] = o, a
        plan = rollback_plan(outcomes, previous, version, policy)
        rbs = list(ex.map(lambda n: roll_back_target(by_name[n], plan[n]), list(plan)))
    rollbacks = {r.target: r for r in rbs}
    return finalize(registry, targets, version, previous, outcomes, plan, rollbacks, policy, run_id,
                    attempts, round(time.monotonic() - t0, 3), canary=verdict)
