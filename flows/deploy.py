"""deploy: ship one registered version to every serving target of a spec."""
from __future__ import annotations

import json

from prefect import flow, get_run_logger

from cloudhop.pipeline import open_registry
from cloudhop.spec import load_spec
from tasks.deploy import deploy_target_task


class DeployFailed(RuntimeError):
    pass


@flow(name="deploy", log_prints=True)
def deploy(spec: str = "specs/flights.yaml", version: str = "champion", overrides: dict | None = None) -> dict:
    """Ship one registered version to every serving target of a spec.

    Args:
        spec: Path to the pipeline spec (YAML).
        version: Version number, 'latest' or an alias; an older version rolls every target back to it.
        overrides: Spec fields to override, as dotted keys, e.g. {"store": "s3://bucket/prefix"}.
    """
    s = load_spec(spec, overrides)
    registry = open_registry(s)
    v = registry.resolve(version)
    mv = registry.get(v)
    smoke = json.loads(registry.read_file(mv, "smoke.json")) if "smoke.json" in mv.manifest["files"] else None
    outcomes = [deploy_target_task(s, registry, t, v, smoke) for t in s.targets]
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise DeployFailed("; ".join(f"{o.target}: {o.error}" for o in failed))
    return {o.target: {"version": o.version, "previous": o.previous, "changed": o.changed} for o in outcomes}


if __name__ == "__main__":
    import sys
    print(deploy(*sys.argv[1:]))
