"""deploy: ship one registered version to every serving target of a spec, at once.

Run it with an older version to roll every target back to it.
"""
from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from cloudhop.pipeline import open_registry
from cloudhop.targets import multi
from tasks.credentials import load_resolved_spec
from tasks.deploy import canary_task, deploy_target_task, finalize_task, rollback_task, snapshot_task


class DeployFailed(RuntimeError):
    pass


@flow(name="deploy", log_prints=True)
def deploy(spec: str = "specs/flights.yaml", version: str = "champion", overrides: dict | None = None,
           policy: str = "all-or-nothing", retries: int = 2, retry_delay_seconds: float = 2.0,
           canary: str | None = None, canary_seconds: float = 60.0) -> dict:
    """Ship one registered version to every serving target of a spec.

    Args:
        spec: Path to the pipeline spec (YAML).
        version: Version number, 'latest' or an alias; an older version rolls every target back to it.
        overrides: Spec fields to override, as dotted keys; only training knobs, windows, the dataset
            and thresholds (cloudhop.guard.OVERRIDABLE): targets, stores, images and credentials
            come from the spec file alone.
        policy: all-or-nothing (a target still failing after its retries puts every target back on
            its previous version) or best-effort (only the failing targets go back).
        retries: Extra attempts per target before it counts as failed.
        retry_delay_seconds: Wait between attempts.
        canary: A target name: it gets the version first; the others only when its error rate and
            latency over `canary_seconds` of live traffic are no worse than theirs (from /metrics).
        canary_seconds: How long the canary serves before it is judged.
    """
    t0 = time.monotonic()
    multi.check_policy(policy)
    s = load_resolved_spec(spec, overrides)
    registry = open_registry(s)
    v = registry.resolve(version)
    smoke = multi.load_smoke(registry, v)
    run_id = str(flow_run.get_id() or "") or None

    previous = snapshot_task(s, registry)
    outcomes, verdict, rest = {}, None, list(s.targets)
    if canary:
        first = next((t for t in s.targets if t.name == canary), None)
        if first is None:
            raise ValueError(f"canary {canary!r} is not a target of {spec} ({[t.name for t in s.targets]})")
        outcomes[canary], verdict = canary_task(s, registry, first, v, smoke, run_id, canary_seconds, retries)
        rest = [t for t in s.targets if t.name != canary]
        if not outcomes[canary].ok:
            outcomes.update({t.name: multi.failed_outcome(t.name, v, previous.get(t.name),
                                                          f"not attempted: canary {canary} failed") for t in rest})
            rest = []
    step = deploy_target_task.with_options(retries=retries, retry_delay_seconds=retry_delay_seconds)
    futures = {t.name: step.submit(s, registry, t, v, smoke, run_id) for t in rest}
    for name, fut in futures.items():
        result = fut.result(raise_on_failure=False)
        outcomes[name] = result if not isinstance(result, BaseException) else multi.failed_outcome(
            name, v, previous.get(name), f"{type(result).__name__}: {result}")

    plan = multi.rollback_plan(outcomes, previous, v, policy)
    by_name = {t.name: t for t in s.targets}
    back = {n: rollback_task.submit(s, by_name[n], to) for n, to in plan.items()}
    rollbacks = {n: f.result() for n, f in back.items()}

    report = finalize_task(s, registry, v, previous, outcomes, plan, rollbacks, policy, run_id,
                           round(time.monotonic() - t0, 3), verdict)
    create_markdown_artifact(key=f"{s.name}-deploy", markdown=_markdown(report), description="deploy result")
    if not report.ok:
        if policy == "all-or-nothing":
            raise DeployFailed(report.summary())
        get_run_logger().warning("best-effort: %s", report.summary())
    return report.as_result()


def _markdown(r: multi.DeployReport) -> str:
    rows = "\n".join(f"| {t.target} | {t.status} | v{t.version} | v{t.previous} | {t.error or ''} |"
                     for t in r.targets.values())
    return (f"# {r.model} v{r.version} ({r.policy}): {'ok' if r.ok else 'failed'}\n\n"
            f"| target | status | serves | before | error |\n|---|---|---|---|---|\n{rows}\n")


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description="run the deploy flow once, in this process")
    p.add_argument("--spec", default="specs/flights.yaml")
    p.add_argument("--version", default="champion")
    p.add_argument("--policy", default="all-or-nothing", choices=multi.POLICIES)
    p.add_argument("--retries", type=int, default=2)
    a = p.parse_args()
    print(deploy(spec=a.spec, version=a.version, policy=a.policy, retries=a.retries))
