"""The placement simulator: a year of retrains against simulated clouds, driving the real placement,
breaker, spot and failover policy code (cloudhop.clouds); only time (SimPy) and the clouds are simulated.

    results = simulate(load_scenario("scenarios/default.yaml"))
    print(format_table(table(results)))
"""
from cloudhop.simulate.engine import Policy, PolicyResult, RetrainResult, default_policies, run_policy, simulate
from cloudhop.simulate.report import chart_png, format_table, savings, table
from cloudhop.simulate.scenario import Scenario, ScenarioError, load_scenario, parse_scenario

__all__ = ["Policy", "PolicyResult", "RetrainResult", "default_policies", "run_policy", "simulate",
           "chart_png", "format_table", "savings", "table",
           "Scenario", "ScenarioError", "load_scenario", "parse_scenario"]
