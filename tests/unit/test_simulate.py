"""The placement simulator: it drives the real placement/breaker/spot/failover code, its accounting
is exact on simple worlds, and the shipped scenarios give the figures the README quotes."""
from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import yaml

import cloudhop.clouds.failover as failover
import cloudhop.clouds.failures as failures
import cloudhop.clouds.placement as placement
import cloudhop.clouds.spot as spot
import cloudhop.simulate.engine as engine
from cloudhop.clouds import load_catalog
from cloudhop.simulate import (Policy, ScenarioError, default_policies, load_scenario, parse_scenario, run_policy,
                               savings, simulate, table)
from cloudhop.simulate.world import Timeline, World

ROOT = Path(__file__).resolve().parents[2]
CATALOG = load_catalog(ROOT / "deployments" / "clouds.yaml")


def scenario(**clouds):
    """A small scenario over the catalog: 20 nights, 2-hour A100 retrains, data in builtin:// (no egress)."""
    return parse_scenario({
        "name": "t", "sources": [{"what": "test", "url": "tests/unit/test_simulate.py"}], "days": 20,
        "workload": {"train_hours": 2.0, "startup_minutes": 6, "deadline_hours": 6},
        "failover": {"retries": 0, "start_timeout_s": 60, "startup_timeout_s": 900},
        "clouds": clouds or {"gcp": {}}})


def test_the_simulator_runs_the_flows_own_policy_functions(monkeypatch):
    # the very objects the retrain flow's tasks import
    from tasks import failover as flow_tasks

    assert engine.plan_capacity is spot.plan_capacity is flow_tasks.plan_capacity
    assert engine.spot_launcher is spot.spot_launcher is flow_tasks.spot_launcher
    assert engine.run_with_failover is failover.run_with_failover is flow_tasks.run_with_failover
    assert engine.failure_from_run is failures.failure_from_run
    assert spot.rank_clouds is placement.rank_clouds
    # ... and it calls them: count calls through wrappers that delegate to the real functions
    calls = {"rank_clouds": 0, "run_with_failover": 0, "breaker_open": 0, "failure_from_run": 0}

    def counting(module, name):
        real = getattr(module, name)

        def wrapper(*a, **kw):
            calls[name] += 1
            return real(*a, **kw)
        monkeypatch.setattr(module, name, wrapper)

    counting(spot, "rank_clouds")
    counting(engine, "run_with_failover")
    counting(placement, "breaker_open")
    counting(engine, "failure_from_run")
    s = scenario(gcp={"outages": {"per_year": 2000, "mean_hours": 6}})
    simulate(s, catalog=CATALOG, policies=[Policy("cloudhop", "auto", ("gcp",))])
    assert calls["rank_clouds"] >= 20 and calls["run_with_failover"] >= 20
    assert calls["breaker_open"] >= 20 and calls["failure_from_run"] >= 1


def test_cost_is_price_times_paid_hours_plus_egress():
    s = scenario(gcp={})
    r = run_policy(World(s, CATALOG), Policy("gcp on-demand", "on-demand", ("gcp",)))
    a100 = next(o for o in CATALOG.clouds["gcp"].offers if o.gpu == "A100")
    assert len(r.retrains) == 20 and all(x.attempts == 1 for x in r.retrains)
    for x in r.retrains:
        assert x.cost == pytest.approx(a100.on_demand * 2.1)  # 2 h of training + 6 min start-up, no egress
        assert x.finished == pytest.approx(x.trigger.at + 2.1) and x.lateness == 0


def test_price_traces_scale_the_month():
    s = scenario(gcp={"on_demand_price": [1.0, 2.0]})
    rows = {x.trigger.index: x.cost for x in run_policy(World(s.model_copy(update={"days": 40}), CATALOG),
                                                         Policy("g", "on-demand", ("gcp",))).retrains}
    assert rows[35] == pytest.approx(2 * rows[0])  # February costs twice January


def test_preemption_keeps_the_sigterm_checkpoint_and_auto_falls_back_on_demand():
    s = scenario(gcp={"interruption": {"rate": 0.9, "per": "day"}})  # spot dies within about 10 h on average
    r = run_policy(World(s, CATALOG), Policy("cloudhop", "auto", ("gcp",)))
    pre = [x for x in r.retrains if x.preemptions]
    assert pre, "no preemption in 20 nights at 90%/day"
    for x in pre:
        assert x.on_demand_fallbacks == 1 and x.finished is not None
        assert x.lost_hours <= 0.1 + 1e-9  # at most the start-up: training kept by the SIGTERM checkpoint
    no_ckpt = s.model_copy(update={"workload": s.workload.model_copy(update={"checkpoint_on_sigterm": False})})
    r2 = run_policy(World(no_ckpt, CATALOG), Policy("cloudhop", "auto", ("gcp",)))
    assert sum(x.lost_hours for x in r2.retrains) > sum(x.lost_hours for x in r.retrains)


def test_an_outage_fails_over_and_opens_the_breaker():
    s = scenario(gcp={"outages": {"per_year": 2000, "mean_hours": 6}}, azure={})
    world = World(s, CATALOG)
    assert world.outages["gcp"].hours > 0
    r = run_policy(world, Policy("cloudhop", "on-demand", ("gcp", "azure")))
    assert all(x.lateness == 0 for x in r.retrains)
    alone = run_policy(world, Policy("gcp on-demand", "on-demand", ("gcp",)))
    assert sum(x.lateness > 0 for x in alone.retrains) > 0


def test_same_world_for_every_policy_and_same_figures_for_the_same_seed():
    s = scenario(gcp={"interruption": {"band": ">20%"}, "outages": {"per_year": 50, "mean_hours": 4}},
                 azure={"interruption": {"band": "5-10%"}})
    full = table(simulate(s, catalog=CATALOG))
    assert [r["policy"] for r in full] == [p.name for p in default_policies(s)]
    again = table(simulate(s, catalog=CATALOG, policies=[default_policies(s)[-1]]))
    assert again == [full[-1]]


def test_timeline():
    t = Timeline([(5.0, 7.0), (1.0, 2.0), (6.0, 8.0)])
    assert t.intervals == [(1.0, 2.0), (5.0, 8.0)]
    assert t.active(1.5) and not t.active(2.0) and t.active(7.9)
    assert t.next_start(0) == 1.0 and t.next_start(1.0) == 5.0 and math.isinf(t.next_start(5.0))


def test_bad_scenarios_name_the_field(tmp_path):
    with pytest.raises(ScenarioError, match="clouds.gcp.interruption.*exactly one of band or rate"):
        scenario(gcp={"interruption": {"band": "<5%", "rate": 0.1}})
    with pytest.raises(ScenarioError, match="sources"):
        parse_scenario({"name": "x", "sources": [], "workload": {"train_hours": 1, "deadline_hours": 2},
                        "clouds": {"gcp": {}}})
    with pytest.raises(ValueError, match=r"clouds \['nope'\] are not in the catalog"):
        simulate(scenario(nope={}), catalog=CATALOG)
    loop = tmp_path / "a.yaml"
    loop.write_text("base: a.yaml\n")
    with pytest.raises(ScenarioError, match="comes back to itself"):
        load_scenario(loop)


def test_a_scenario_file_may_extend_another():
    base, s = load_scenario(ROOT / "scenarios/default.yaml"), load_scenario(ROOT / "scenarios/spot-unusable.yaml")
    assert s.sources == base.sources and s.workload == base.workload
    assert not s.clouds["gcp"].spot_usable and s.clouds["gcp"].interruption == base.clouds["gcp"].interruption


def test_every_shipped_scenario_names_its_sources():
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        s = load_scenario(path)
        assert s.sources and all(src.url for src in s.sources), path
        assert "base" in yaml.safe_load(path.read_text()) or len(s.sources) >= 5, path


def test_default_scenario_year_bars():
    """The default scenario: a year in under 60 s; cloudhop at least 40% cheaper than the cheapest
    single-cloud on-demand policy, with at least 99.9% of retrains on time."""
    t0 = time.perf_counter()
    rows = table(simulate(load_scenario(ROOT / "scenarios/default.yaml")))
    seconds = time.perf_counter() - t0
    assert seconds < 60, f"a simulated year took {seconds:.1f}s"
    ours = next(r for r in rows if r["policy"] == "cloudhop")
    assert ours["retrains"] > 365 and ours["on time %"] >= 99.9
    assert all(ours["total $"] < r["total $"] for r in rows if r["policy"].endswith(" on-demand"))
    assert savings(rows)["cheaper %"] >= 40.0, savings(rows)


def test_moving_on_after_a_spot_loss_is_what_makes_the_difference():
    """The same year with on_preemption: same-cloud (the on-demand retry on the cloud that lost spot):
    as reliable, dearer. The row is there to show what the default is worth."""
    rows = {r["policy"]: r for r in table(simulate(load_scenario(ROOT / "scenarios/default.yaml")))}
    same = rows["cloudhop (same-cloud)"]
    assert same["on time %"] >= 99.9 and same["total $"] > rows["cloudhop"]["total $"]
    assert same["on-demand fallbacks"] > rows["cloudhop"]["on-demand fallbacks"]


def test_spot_unusable_falls_back_and_stays_on_time():
    rows = {r["policy"]: r for r in table(simulate(load_scenario(ROOT / "scenarios/spot-unusable.yaml")))}
    for ours in (rows["cloudhop"], rows["cloudhop (same-cloud)"]):
        assert ours["on time %"] >= 99.9 and ours["abandoned"] == 0
        assert ours["on-demand fallbacks"] >= ours["retrains"]  # every retrain fell back to on-demand
        assert ours["preemptions"] == 0
    # moving on reaches the cheapest on-demand (CoreWeave); staying pays the cloud that lost spot
    assert rows["cloudhop"]["total $"] < rows["cloudhop (same-cloud)"]["total $"]
    for name in ("aws spot", "gcp spot", "azure spot"):  # the scenario does bite: spot alone never finishes
        assert rows[name]["on time %"] == 0 and rows[name]["abandoned"] == rows[name]["retrains"]


def test_simulate_command_prints_the_table_and_writes_the_chart(tmp_path, capsys):
    from flows.simulate import main, with_overrides

    png = tmp_path / "year.png"
    assert main([str(ROOT / "scenarios/default.yaml"), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "| cloudhop " in out and "coreweave on-demand" in out and "cheaper %" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    s = load_scenario(ROOT / "scenarios/default.yaml")
    assert with_overrides(s, days=7, drift_retrains_per_week=0).workload.drift_retrains_per_week == 0
    with pytest.raises(ScenarioError, match="days"):
        with_overrides(s, days=0)
