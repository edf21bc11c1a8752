"""The spot policy over the real placement: which clouds are tried, on which capacity, in which order."""
from datetime import datetime, timezone

import pytest

from cloudhop.clouds import BreakerPolicy, TrainingRequest, parse_catalog
from cloudhop.clouds.failover import AllCloudsFailed, AttemptOutcome, FailoverPolicy, run_with_failover
from cloudhop.clouds.spot import plan_capacity, spot_launcher
from cloudhop.spec import ComputeSpec

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def catalog():
    def cloud(pool, ptype, offers):
        return {"region": "r1", "prices_as_of": "2025-06-01", "work_pools": [{"name": pool, "type": ptype}],
                "offers": offers, "object_store": {"uri": f"s3://{pool}", "egress_per_gb": 0.0}}
    return parse_catalog({"clouds": {
        "alpha": cloud("alpha-gpu", "kubernetes", [{"gpu": "A100", "count": 1, "on_demand": 2.0, "spot": 0.9,
                                                   "spot_job_variables": {"node_selector": {"spot": "yes"}}}]),
        "beta": cloud("beta-gpu", "vertex-ai", [{"gpu": "A100", "count": 1, "on_demand": 2.5, "spot": 0.8,
                                                "spot_job_variables": {"scheduling": {"strategy": "SPOT"}}}]),
        "gamma": cloud("gamma-gpu", "ecs", [{"gpu": "A100", "count": 1, "on_demand": 1.5}]),
    }})


def plan(policy, on_preemption="same-cloud"):
    request = TrainingRequest(gpu_type="A100", dataset_bytes=0, dataset_location="alpha", estimated_hours=1.0)
    return plan_capacity(catalog(), request, [], NOW, BreakerPolicy(), policy, on_preemption=on_preemption)


def test_orders_per_policy():
    assert plan("on-demand").order == ["gamma", "alpha", "beta"]
    assert plan("spot").order == ["beta", "alpha"]  # gamma has no spot price
    assert plan("auto").order == ["beta", "alpha", "gamma"]  # spot ones by spot cost, then on-demand ones
    rows = plan("auto").table()
    assert {(r["cloud"], r["capacity"], r["eligible"]) for r in rows} >= {("gamma", "spot", False),
                                                                          ("gamma", "on-demand", True)}
    with pytest.raises(ValueError, match="unknown spot policy 'cheap'"):
        plan("cheap")


def scripted(p, script):
    calls = []

    def launch(cloud, number, candidate):
        spot = candidate.job_variables.get("node_selector") == {"spot": "yes"} or "scheduling" in candidate.job_variables
        calls.append((cloud, number, "spot" if spot else "on-demand", candidate.price_per_hour))
        return AttemptOutcome(script.pop(0))

    return spot_launcher(p, launch), calls


def test_auto_falls_back_to_on_demand_on_the_same_cloud_after_a_preemption():
    p = plan("auto")
    launch, calls = scripted(p, ["preempted", "completed"])
    r = run_with_failover(p.order, launch, FailoverPolicy(retries=0), sleep=lambda s: None)
    assert calls == [("beta", 1, "spot", 0.8), ("beta", 2, "on-demand", 2.5)]
    assert [(a.outcome, a.spot) for a in r.attempts] == [("preempted", True), ("completed", False)]


def test_auto_falls_back_when_spot_does_not_start():
    p = plan("auto")
    launch, calls = scripted(p, ["not_started", "completed"])
    run_with_failover(p.order, launch, FailoverPolicy(retries=0), sleep=lambda s: None)
    assert [c[2] for c in calls] == ["spot", "on-demand"] and {c[0] for c in calls} == {"beta"}


def test_spot_policy_stays_on_spot_and_moves_on():
    p = plan("spot")
    launch, calls = scripted(p, ["preempted", "preempted", "completed"])
    run_with_failover(p.order, launch, FailoverPolicy(retries=0, spot_retries=1), sleep=lambda s: None)
    assert [(c[0], c[2]) for c in calls] == [("beta", "spot"), ("beta", "spot"), ("alpha", "spot")]


def test_auto_with_next_cloud_moves_on_after_a_preemption():
    p = plan("auto", "next-cloud")
    launch, calls = scripted(p, ["preempted", "crashed", "completed"])
    run_with_failover(p.order, launch, FailoverPolicy(retries=0, on_preemption="next-cloud"), sleep=lambda s: None)
    assert [(c[0], c[2]) for c in calls] == [("beta", "spot"), ("alpha", "spot"), ("gamma", "on-demand")]


def test_auto_with_next_cloud_still_tries_the_spot_clouds_on_demand():
    """Moving on after spot losses must not lose the on-demand capacity of the clouds that had spot:
    every cloud comes again, on-demand, cheapest first."""
    p = plan("auto", "next-cloud")
    assert p.order == ["beta", "alpha", "gamma", "alpha", "beta"]
    launch, calls = scripted(p, ["not_started", "preempted", "crashed", "completed"])
    r = run_with_failover(p.order, launch, FailoverPolicy(retries=0, on_preemption="next-cloud"),
                          sleep=lambda s: None)
    assert calls == [("beta", 1, "spot", 0.8), ("alpha", 1, "spot", 0.9), ("gamma", 1, "on-demand", 1.5),
                     ("alpha", 1, "on-demand", 2.0)]
    assert (r.cloud, [a.spot for a in r.attempts]) == ("alpha", [True, True, False, False])


def test_a_spot_cloud_with_a_cloud_fault_is_on_demand_on_its_second_pass():
    """A fault that is not a spot loss (the cloud is down) moves on too; the cloud's second pass asks
    for on-demand, not spot again."""
    p = plan("auto", "next-cloud")
    launch, calls = scripted(p, ["infra_error", "preempted", "crashed", "crashed", "completed"])
    run_with_failover(p.order, launch, FailoverPolicy(retries=0, on_preemption="next-cloud"), sleep=lambda s: None)
    assert [(c[0], c[2]) for c in calls] == [("beta", "spot"), ("alpha", "spot"), ("gamma", "on-demand"),
                                            ("alpha", "on-demand"), ("beta", "on-demand")]


def test_the_order_reads_with_each_capacity():
    assert plan("auto", "next-cloud").order_text() == ("beta (spot), alpha (spot), gamma (on-demand), "
                                                       "alpha (on-demand), beta (on-demand)")
    assert plan("auto", "same-cloud").order_text() == ("beta (spot, then on-demand), alpha (spot, then on-demand), "
                                                       "gamma (on-demand)")
    assert plan("on-demand").order_text() == "gamma (on-demand), alpha (on-demand), beta (on-demand)"
    assert plan("spot").order_text() == "beta (spot), alpha (spot)"


def test_same_cloud_lists_each_cloud_once():
    assert plan("auto", "same-cloud").order == ["beta", "alpha", "gamma"]
    assert plan("on-demand", "next-cloud").order == ["gamma", "alpha", "beta"]
    assert plan("spot", "next-cloud").order == ["beta", "alpha"]


def test_on_demand_never_asks_for_spot():
    p = plan("on-demand")
    launch, calls = scripted(p, ["crashed", "crashed", "crashed"])
    with pytest.raises(AllCloudsFailed):
        run_with_failover(p.order, launch, FailoverPolicy(retries=0), sleep=lambda s: None)
    assert [c[2] for c in calls] == ["on-demand"] * 3


def test_spec_default_after_a_spot_loss_is_the_next_cloud():
    assert ComputeSpec().failover.on_preemption == "next-cloud"


def test_spec_spot_policy_accepts_the_old_boolean():
    assert ComputeSpec(spot=True).spot == "spot" and ComputeSpec(spot=False).spot == "on-demand"
    assert ComputeSpec().spot == "on-demand" and ComputeSpec(spot="auto").spot == "auto"
    with pytest.raises(ValueError, match="spot"):
        ComputeSpec(spot="sometimes")
