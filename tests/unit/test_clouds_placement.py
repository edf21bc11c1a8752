from datetime import datetime, timedelta, timezone

import pytest

from cloudhop.clouds import (BreakerPolicy, Failure, PastRun, PlacementError, TrainingRequest, breaker_open,
                             estimate_hours, locate_data, parse_catalog, rank_clouds)
from cloudhop.clouds.placement import DEFAULT_HOURS_PER_GB, GB, MIN_HOURS

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
BREAKER = BreakerPolicy(max_failures=3, window_minutes=30)


def catalog(**enabled):
    def cloud(pool, ptype, offers, uri, egress, endpoint=None):
        return {"region": "r1", "prices_as_of": "2025-06-01", "enabled": enabled.get(pool.split("-")[0], True),
                "work_pools": [{"name": pool, "type": ptype}], "offers": offers,
                "object_store": {"uri": uri, "egress_per_gb": egress, "endpoint_url": endpoint}}
    return parse_catalog({"clouds": {
        "alpha": cloud("alpha-gpu", "kubernetes", [
            {"gpu": "H100", "count": 8, "on_demand": 16.0, "divisible": True},
            {"gpu": "A100", "count": 1, "on_demand": 2.0, "spot": 0.8,
             "spot_job_variables": {"node_selector": {"spot": "yes"}}},
        ], "s3://alpha-bucket", 0.0, endpoint="https://alpha.example"),
        "beta": cloud("beta-gpu", "ecs", [
            {"gpu": "A100", "count": 1, "on_demand": 3.0, "spot": 1.0},
            {"gpu": "L4", "count": 1, "on_demand": 0.8, "job_variables": {"placement_constraints": ["x"]}},
            {"gpu": "A100", "count": 8, "on_demand": 20.0},
        ], "s3://beta-bucket", 0.09),
        "gamma": cloud("gamma-gpu", "vertex-ai", [
            {"gpu": "A100", "count": 1, "on_demand": 2.5, "job_variables": {"accelerator_count": 1}},
        ], "gs://gamma-bucket", 0.12),
        "home": cloud("home", "process", [{"gpu": "cpu", "count": 1, "on_demand": 0.0, "spot": 0.0}],
                      ".cloudhop/store", 0.0),
    }})


def req(**kw):
    base = dict(gpu_type="A100", dataset_bytes=0, dataset_location="home", estimated_hours=10.0)
    return TrainingRequest(**{**base, **kw})


def fail(cloud, minutes_ago, reason="crashed"):
    return Failure(cloud, NOW - timedelta(minutes=minutes_ago), reason)


def test_ranks_eligible_clouds_by_total_cost():
    p = rank_clouds(catalog(), req(), [], NOW, BREAKER)
    assert p.order == ["alpha", "gamma", "beta"]
    best = p.best
    assert (best.cloud, best.pool, best.gpu, best.price_per_hour) == ("alpha", "alpha-gpu", "A100", 2.0)
    assert best.compute_cost == pytest.approx(20.0) and best.total_cost == pytest.approx(20.0)
    assert [c.total_cost for c in p.chosen] == pytest.approx([20.0, 25.0, 30.0])
    home = p.candidate("home")
    assert not home.eligible and home.reason == "no A100 offer" and home.total_cost is None
    assert p.candidates[-1].cloud == "home"  # skipped clouds come after the eligible ones


def test_egress_from_the_cloud_holding_the_data_changes_the_order():
    size = 100 * GB
    p = rank_clouds(catalog(), req(dataset_bytes=size, dataset_location="gs://gamma-bucket/flights/"), [], NOW,
                    BREAKER)
    assert p.data_cloud == "gamma"
    costs = {c.cloud: (c.compute_cost, c.egress_cost, c.total_cost) for c in p.chosen}
    assert costs["gamma"] == pytest.approx((25.0, 0.0, 25.0))
    assert costs["alpha"] == pytest.approx((20.0, 100 * 0.12, 32.0))
    assert costs["beta"] == pytest.approx((30.0, 100 * 0.12, 42.0))
    assert p.order == ["gamma", "alpha", "beta"]


def test_local_and_builtin_data_cost_nothing_to_move():
    for location, where in ((".cloudhop/data/x.parquet", "home"), ("home", "home"),
                            ("builtin://nycflights13/flights", None), ("https://example.org/x.csv", None)):
        p = rank_clouds(catalog(), req(dataset_bytes=500 * GB, dataset_location=location), [], NOW, BREAKER)
        assert p.data_cloud == where
        assert all(c.egress_cost == 0 for c in p.candidates), location


def test_locate_data():
    cat = catalog()
    assert locate_data(cat, "s3://alpha-bucket/data/x.parquet") == "alpha"
    assert locate_data(cat, "s3://beta-bucket/x") == "beta"
    assert locate_data(cat, "s3://someone-elses-bucket/x") == "beta"  # plain s3 without a custom endpoint: AWS
    assert locate_data(cat, "s3://alpha-bucket-2/x") == "beta"  # a prefix of the name is not the bucket
    assert locate_data(cat, "gcs://gamma-bucket/x") == "gamma"
    assert locate_data(cat, "/data/x.csv") == "home"
    assert locate_data(cat, "alpha") == "alpha"
    assert locate_data(cat, "builtin://nycflights13/flights") is None
    assert locate_data(cat, "https://example.org/flights.csv") is None  # in no catalog cloud
    # two S3-API clouds with custom endpoints and a bucket under neither: ambiguous
    two = parse_catalog({"clouds": {name: {
        "region": "r", "prices_as_of": "2025-06-01", "work_pools": [{"name": f"{name}-pool", "type": "process"}],
        "offers": [{"gpu": "L4", "count": 1, "on_demand": 1.0}],
        "object_store": {"uri": f"s3://{name}-bucket", "endpoint_url": f"https://{name}.example", "egress_per_gb": 0}}
        for name in ("one", "two")}})
    assert locate_data(two, "s3://one-bucket/x") == "one"
    with pytest.raises(PlacementError, match="cannot tell which cloud holds the dataset at 's3://three/x'"):
        locate_data(two, "s3://three/x")


def test_skip_reasons():
    cat = catalog(gamma=False)
    p = rank_clouds(cat, req(clouds=["alpha", "gamma", "home"]), [], NOW, BREAKER)
    assert p.candidate("gamma").reason == "disabled in the catalog"
    assert p.candidate("beta").reason == "not among the request's allowed clouds"
    assert p.candidate("home").reason == "no A100 offer"
    assert p.order == ["alpha"]

    p = rank_clouds(catalog(), req(gpu_type="L4", max_price_per_hour=0.5), [], NOW, BREAKER)
    assert "costs $0.80/hour, above the $0.50/hour limit" in p.candidate("beta").reason
    assert p.order == []

    p = rank_clouds(catalog(), req(gpu_count=4), [], NOW, BREAKER)
    assert p.candidate("gamma").reason == "no A100 offer with 4 GPUs (at most 1)"
    assert p.candidate("beta").eligible and p.candidate("beta").instance is None
    assert p.candidate("beta").price_per_hour == 20.0  # only the 8-GPU machine fits

    p = rank_clouds(catalog(), req(spot=True), [], NOW, BREAKER)
    assert p.candidate("gamma").reason == "no spot price for A100"
    assert p.order == ["alpha", "beta"]
    assert p.candidate("alpha").price_per_hour == 0.8

    p = rank_clouds(catalog(), req(), [fail("alpha", m, f"boom {m}") for m in (1, 2, 3)], NOW, BREAKER)
    assert p.candidate("alpha").reason == "circuit open: 3 infrastructure failures in the last 30 min (latest: boom 1)"
    assert p.order == ["gamma", "beta"]
    assert p.candidate("alpha").total_cost == pytest.approx(20.0)  # still priced, for the table


def test_divisible_offer_costs_its_share_and_any_gpu_type():
    p = rank_clouds(catalog(), req(gpu_type="h100", gpu_count=2), [], NOW, BREAKER)
    assert p.order == ["alpha"]
    assert p.best.price_per_hour == pytest.approx(16.0 * 2 / 8)
    p = rank_clouds(catalog(), req(gpu_type=None), [], NOW, BREAKER)
    assert p.best.cloud == "beta" and p.best.gpu == "L4"  # cheapest of any GPU type
    assert p.candidate("home").reason == "no GPU offer"


def test_cpu_requests_use_cpu_offers_only():
    for r in (req(gpu_type=None, gpu_count=0), req(gpu_type="CPU")):
        p = rank_clouds(catalog(), r, [], NOW, BREAKER)
        assert p.order == ["home"]
        assert p.best.total_cost == 0 and p.best.job_variables == {}
        assert p.candidate("alpha").reason == "no CPU offer"


def test_job_variables_select_the_offer_and_ask_for_gpus():
    p = rank_clouds(catalog(), req(gpu_count=1, spot=True), [], NOW, BREAKER)
    assert p.candidate("alpha").job_variables == {"node_selector": {"spot": "yes"}, "gpu_count": 1}
    assert p.candidate("beta").job_variables == {"gpu_count": "1"}  # ECS wants a string
    p = rank_clouds(catalog(), req(gpu_type="L4"), [], NOW, BREAKER)
    assert p.candidate("beta").job_variables == {"placement_constraints": ["x"], "gpu_count": "1"}
    p = rank_clouds(catalog(), req(), [], NOW, BREAKER)
    assert p.candidate("gamma").job_variables == {"accelerator_count": 1}  # the machine type fixes the count


def test_breaker_opens_at_n_failures_in_window_and_closes_after():
    two = [fail("alpha", 5), fail("alpha", 10)]
    assert breaker_open("alpha", two, NOW, BREAKER) == []
    three = two + [fail("alpha", 29)]
    assert len(breaker_open("alpha", three, NOW, BREAKER)) == 3
    # one of the three is outside the window: closed
    assert breaker_open("alpha", two + [fail("alpha", 31)], NOW, BREAKER) == []
    # other clouds' failures do not count
    assert breaker_open("alpha", two + [fail("beta", 1)], NOW, BREAKER) == []
    # half an hour later the failures have aged out
    assert breaker_open("alpha", three, NOW + timedelta(minutes=30), BREAKER) == []
    assert len(breaker_open("alpha", three, NOW + timedelta(minutes=0.5), BREAKER)) == 3
    # a stricter policy opens sooner
    assert len(breaker_open("alpha", two, NOW, BreakerPolicy(max_failures=2, window_minutes=30))) == 2
    with pytest.raises(PlacementError):
        BreakerPolicy(max_failures=0)


def test_estimate_hours_from_history_and_default():
    history = [PastRun(2 * GB, 1.0), PastRun(4 * GB, 2.0), PastRun(1 * GB, 5.0), PastRun(0, 3.0)]
    assert estimate_hours(10 * GB, history) == pytest.approx(5.0)  # median 0.5 h/GB
    assert estimate_hours(10 * GB, []) == pytest.approx(10 * DEFAULT_HOURS_PER_GB)
    assert estimate_hours(10 * GB, [], default_hours_per_gb=2.0) == pytest.approx(20.0)
    assert estimate_hours(1000, history) == MIN_HOURS
    # with no estimate given, ranking uses the default rate
    p = rank_clouds(catalog(), req(estimated_hours=None, dataset_bytes=4 * GB), [], NOW, BREAKER)
    assert p.best.hours == pytest.approx(4 * DEFAULT_HOURS_PER_GB)
    assert p.best.compute_cost == pytest.approx(2.0 * 4 * DEFAULT_HOURS_PER_GB)


def test_table_rows():
    p = rank_clouds(catalog(), req(), [], NOW, BREAKER)
    rows = p.table()
    assert [r["cloud"] for r in rows] == ["alpha", "gamma", "beta", "home"]
    assert [r["rank"] for r in rows] == [1, 2, 3, None]
    assert rows[0]["gpu"] == "1x A100" and rows[0]["total $"] == 20.0 and rows[0]["eligible"] is True
    assert rows[3]["reason"] == "no A100 offer" and rows[3]["$/hour"] is None


def test_bad_requests():
    with pytest.raises(PlacementError, match="gpu_count"):
        req(gpu_count=-1)
    with pytest.raises(PlacementError, match="max_price_per_hour"):
        req(max_price_per_hour=0)
    with pytest.raises(PlacementError, match=r"unknown clouds \['delta'\]"):
        rank_clouds(catalog(), req(clouds=["alpha", "delta"]), [], NOW, BREAKER)


def test_breaker_policy_from_spec():
    from cloudhop.spec import BreakerSpec
    b = BreakerPolicy.from_spec(BreakerSpec(failures=5, window_minutes=12))
    assert (b.max_failures, b.window_minutes) == (5, 12)
