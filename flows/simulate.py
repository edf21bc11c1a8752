"""simulate: a year of retrains per placement policy against a scenario's simulated clouds.

The simulator (cloudhop.simulate) drives the real placement, breaker, spot and failover code;
this flow runs it with the scenario and overrides given in the UI, and leaves a table artifact,
a markdown artifact (the comparison and the chart's path) and the chart as a PNG.

    python -m flows.simulate [scenarios/default.yaml] [--png out.png]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from cloudhop.simulate import Scenario, chart_png, format_table, load_scenario, parse_scenario, savings, simulate
from cloudhop.simulate import table as result_table

__all__ = ["simulate_flow", "with_overrides", "main"]


def with_overrides(scenario: Scenario, *, days: int | None = None, seed: int | None = None,
                   drift_retrains_per_week: float | None = None) -> Scenario:
    """The scenario with the UI's overrides, validated again (a bad value names its field)."""
    data = scenario.model_dump(mode="json")
    if days is not None:
        data["days"] = days
    if seed is not None:
        data["seed"] = seed
    if drift_retrains_per_week is not None:
        data["workload"]["drift_retrains_per_week"] = drift_retrains_per_week
    return parse_scenario(data, f"{scenario.name} with overrides")


@task(name="simulate-year", cache_policy=NO_CACHE, persist_result=False)
def simulate_task(scenario: Scenario) -> list[dict]:
    return result_table(simulate(scenario))


@flow(name="simulate", log_prints=True)
def simulate_flow(
    scenario: str = "scenarios/default.yaml",
    days: int | None = None,
    seed: int | None = None,
    drift_retrains_per_week: float | None = None,
    png: str = ".cloudhop/simulate/{name}.png",
) -> dict:
    """Compare single-cloud on-demand, single-cloud spot and cloudhop over a simulated year.

    Args:
        scenario: The scenario YAML (scenarios/default.yaml, scenarios/spot-unusable.yaml, ...).
        days: Days to simulate, 1 to 3660 (the scenario's when empty).
        seed: Random seed (the scenario's when empty).
        drift_retrains_per_week: Drift-triggered retrains per week on top of the nightly ones (the
            scenario's when empty).
        png: Where the chart is written ({name} is the scenario's name).
    """
    s = with_overrides(load_scenario(scenario), days=days, seed=seed, drift_retrains_per_week=drift_retrains_per_week)
    rows = simulate_task(s)
    versus = savings(rows)
    out = Path(png.format(name=s.name))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(chart_png(rows, f"{s.name}: {s.days} days, {rows[0]['retrains']} retrains"))
    create_table_artifact(key=f"simulate-{s.name}", table=rows, description=f"Simulated year: {s.description}")
    create_markdown_artifact(key=f"simulate-{s.name}-summary", markdown=_summary(s, rows, versus, out),
                             description="Simulator: cloudhop vs the cheapest single-cloud on-demand policy")
    get_run_logger().info("%s", format_table(rows))
    return {"scenario": s.name, "rows": rows, "savings": versus, "png": str(out)}


def _summary(s: Scenario, rows: list[dict], versus: dict, png: Path) -> str:
    sources = "\n".join(f"- {src.what}: {src.url}" for src in s.sources)
    return (f"# Simulated year: {s.name}\n\n{s.description}\n\n"
            f"cloudhop costs **{versus['policy $']}** $ against **{versus['baseline $']}** $ for "
            f"{versus['baseline']} ({versus['cheaper %']}% cheaper), with {versus['on time %']}% of retrains "
            f"on time ({versus['baseline on time %']}% for the baseline).\n\n{format_table(rows)}\n\n"
            f"Chart: `{png}`\n\n## Sources\n\n{sources}\n")


def main(argv: list[str] | None = None) -> int:
    """Run the simulator without Prefect and print the table and the comparison."""
    ap = argparse.ArgumentParser(prog="python -m flows.simulate", description=__doc__.splitlines()[0])
    ap.add_argument("scenario", nargs="?", default="scenarios/default.yaml")
    ap.add_argument("--png", help="write the chart here")
    args = ap.parse_args(argv)
    s = load_scenario(args.scenario)
    rows = result_table(simulate(s))
    print(format_table(rows))
    print(savings(rows))
    if args.png:
        Path(args.png).write_bytes(chart_png(rows, f"{s.name}: {s.days} days, {rows[0]['retrains']} retrains"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
