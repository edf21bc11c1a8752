"""Placement that knows GPU speed, and the cost of each training attempt (pure logic)."""
from datetime import datetime, timedelta, timezone

import pytest

from cloudhop.clouds import BreakerPolicy, PlacementError, TrainingRequest, parse_catalog, rank_clouds
from cloudhop.clouds.cost import RetrainCost, attempt_cost, retrain_cost
from cloudhop.clouds.failover import Attempt
from cloudhop.clouds.placement import DEFAULT_HOURS_PER_GB, GB
from cloudhop.clouds.speed import RELATIVE_SPEED, SpeedModel, Throughput, relative_speed
from cloudhop.registry.manifest import CostInfo, Manifest

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
BREAKER = BreakerPolicy(max_failures=3, window_minutes=30)


def catalog():
    def cloud(pool, offers, uri, egress):
        return {"region": "r1", "prices_as_of": "2025-06-01", "work_pools": [{"name": pool, "type": "kubernetes"}],
                "offers": offers, "object_store": {"uri": uri, "egress_per_gb": egress}}
    return parse_catalog({"clouds": {
        "cheap": cloud("cheap-gpu", [{"gpu": "T4", "count": 1, "instance": "t4-box", "on_demand": 0.5}],
                       "gs://cheap-bucket", 0.12),
        "fast": cloud("fast-gpu", [{"gpu": "A100", "count": 1, "instance": "a100-box", "on_demand": 2.0}],
                      "s3://fast-bucket", 0.09),
        "mixed": cloud("mixed-gpu", [
            {"gpu": "T4", "count": 1, "instance": "m-t4", "on_demand": 0.6},
            {"gpu": "H100", "count": 8, "instance": "m-8xh100", "on_demand": 40.0, "divisible": True},
            {"gpu": "A100", "count": 8, "instance": "m-8xa100", "on_demand": 16.0},
        ], "s3://mixed-bucket", 0.0),
        "home": cloud("home", [{"gpu": "cpu", "count": 1, "on_demand": 0.0}], ".cloudhop/store", 0.0),
    }})


def req(**kw):
    base = dict(dataset_bytes=10 * GB, dataset_location="home", clouds=["cheap", "fast"])
    return TrainingRequest(**{**base, **kw})


def test_speed_table_is_relative_to_the_reference_gpu():
    assert relative_speed("a100") == 1.0
    assert relative_speed("H100") == pytest.approx(RELATIVE_SPEED["H100"] / RELATIVE_SPEED["A100"])
    assert relative_speed("T4") < relative_speed("L4") < relative_speed("A100") < relative_speed("H100")
    assert relative_speed("cpu") is None and relative_speed("TPU-v5") is None


def test_speed_model_measured_then_scaled_then_none():
    cat = catalog()
    t4, a100 = cat.cloud("cheap").offers[0], cat.cloud("fast").offers[0]
    assert SpeedModel().samples_per_s("cheap", t4) is None
    history = [Throughput("fast", "a100-box", "A100", 900.0), Throughput("fast", "a100-box", "A100", 1100.0),
               Throughput("fast", "a100-box", "A100", 0.0)]  # a zero is no measurement
    own = SpeedModel(history).samples_per_s("fast", a100)
    assert own.samples_per_s == 1000.0 and own.source.startswith("measured: median of 2 run(s)")
    scaled = SpeedModel(history).samples_per_s("cheap", t4)  # no T4 run: A100's, scaled by the table
    assert scaled.samples_per_s == pytest.approx(1000.0 * relative_speed("T4"))
    assert "T4 speed table" in scaled.source
    cpu = cat.cloud("home").offers[0]
    assert SpeedModel(history).samples_per_s("home", cpu) is None  # GPUs say nothing about a CPU
    assert SpeedModel([Throughput("other", "x", "cpu", 50.0)]).samples_per_s("home", cpu).samples_per_s == 50.0


def test_without_history_the_speed_table_beats_the_cheapest_hourly_price():
    # 10 GB: 5 h on an A100 ($10); the T4 is 65/312 as fast: 24 h at $0.50 ($12). $/hour alone picks the T4.
    p = rank_clouds(catalog(), req(), [], NOW, BREAKER)
    assert p.order == ["fast", "cheap"]
    fast, cheap = p.candidate("fast"), p.candidate("cheap")
    assert fast.hours == pytest.approx(10 * DEFAULT_HOURS_PER_GB)
    assert cheap.hours == pytest.approx(10 * DEFAULT_HOURS_PER_GB / relative_speed("T4"))
    assert fast.total_cost == pytest.approx(10.0) and cheap.total_cost == pytest.approx(12.0)
    assert "speed table" in fast.hours_from and fast.samples_per_s is None
    # a fixed estimate from the request is the same everywhere: the hourly price decides again
    assert rank_clouds(catalog(), req(estimated_hours=2.0), [], NOW, BREAKER).order == ["cheap", "fast"]


def test_measured_throughput_gives_hours_from_the_work():
    history = [Throughput("cheap", "t4-box", "T4", 400.0), Throughput("fast", "a100-box", "A100", 1000.0)]
    work = 3600 * 1000 * 3  # samples: 3 h on the A100, 7.5 h on the T4
    p = rank_clouds(catalog(), req(work_samples=work), [], NOW, BREAKER, SpeedModel(history))
    assert p.candidate("fast").hours == pytest.approx(3.0) and p.candidate("cheap").hours == pytest.approx(7.5)
    assert p.order == ["cheap", "fast"]  # $3.75 against $6
    assert p.candidate("cheap").samples_per_s == 400.0 and "measured" in p.candidate("cheap").hours_from
    slow = [Throughput("cheap", "t4-box", "T4", 100.0), Throughput("fast", "a100-box", "A100", 1000.0)]
    p = rank_clouds(catalog(), req(work_samples=work), [], NOW, BREAKER, SpeedModel(slow))
    assert p.order == ["fast", "cheap"]  # the T4 measured slow: 30 h, $15


def test_within_a_cloud_the_offer_with_the_lowest_expected_cost_wins():
    r = req(clouds=["mixed"], trainer_gpus=1)
    p = rank_clouds(catalog(), r, [], NOW, BREAKER)
    best = p.best  # T4 $0.60 x 24 h = $14.4; one H100 of eight: $5 x 5 h / 3.17 = $7.9
    assert (best.gpu, best.gpu_count, best.offer) == ("H100", 1, "m-8xh100")
    assert best.price_per_hour == pytest.approx(5.0)
    # under a $/hour limit the dearer-per-hour offer is out, the slow one stays
    p = rank_clouds(catalog(), req(clouds=["mixed"], trainer_gpus=1, max_price_per_hour=1.0), [], NOW, BREAKER)
    assert p.best.gpu == "T4"


def test_gpu_count_is_capped_at_what_the_trainer_uses():
    r = req(clouds=["mixed"], gpu_type="H100", gpu_count=4, trainer_gpus=1)
    p = rank_clouds(catalog(), r, [], NOW, BREAKER)
    assert p.best.gpu_count == 1 and p.best.price_per_hour == pytest.approx(40.0 / 8)
    assert p.best.job_variables == {"gpu_count": 1}
    assert p.notes == ("gpu_count 4 capped at 1: the trainer uses at most 1 GPU(s), more would sit idle",)
    # a whole 8-GPU machine is never rented for a one-GPU trainer
    p = rank_clouds(catalog(), req(clouds=["mixed"], gpu_type="A100", trainer_gpus=1), [], NOW, BREAKER)
    assert p.order == []
    assert "whole machine of 8+ GPUs; the trainer uses 1" in p.candidate("mixed").reason
    # without a trainer limit the request is taken as given (the old behaviour)
    p = rank_clouds(catalog(), req(clouds=["mixed"], gpu_type="A100"), [], NOW, BREAKER)
    assert p.best.price_per_hour == 16.0 and p.notes == ()
    with pytest.raises(PlacementError, match="trainer_gpus"):
        req(trainer_gpus=0)
    with pytest.raises(PlacementError, match="work_samples"):
        req(work_samples=-1)


def test_table_shows_hours_cost_and_why_each_cloud():
    rows = rank_clouds(catalog(), req(clouds=["cheap", "fast", "mixed"], gpu_type="T4"), [], NOW, BREAKER).table()
    by = {r["cloud"]: r for r in rows}
    assert by["cheap"]["reason"].startswith("picked: lowest expected total ($12.00 over 24.00 h)")
    assert by["mixed"]["reason"] == "fallback #1: $2.40 more than cheap"
    assert by["fast"]["reason"] == "no T4 offer" and by["fast"]["eligible"] is False
    assert by["home"]["reason"] == "not among the request's allowed clouds"
    assert by["cheap"]["hours"] == 24.0 and by["cheap"]["total $"] == 12.0
    assert "speed table" in by["cheap"]["hours from"]


def attempt(cloud, number, outcome, started_min, ended_min):
    start = NOW + timedelta(minutes=started_min) if started_min is not None else None
    return Attempt(cloud, number, NOW, NOW + timedelta(minutes=ended_min), outcome, "", f"run-{cloud}-{number}", start)


def test_every_attempt_costs_price_times_measured_time():
    # data on the 'cheap' cloud's bucket: training elsewhere moves its 10 GB out at $0.12/GB
    p = rank_clouds(catalog(), req(dataset_location="gs://cheap-bucket/d.parquet"), [], NOW, BREAKER)
    attempts = [attempt("fast", 1, "not_started", None, 2), attempt("fast", 2, "crashed", 3, 33),
                attempt("cheap", 1, "completed", 35, 95)]
    cost = retrain_cost("m", "run-1", p, attempts)
    never, crashed, done = cost.attempts
    assert (never.billed_seconds, never.cost, never.egress_bytes) == (0.0, 0.0, 0)  # nothing ran, nothing read
    assert crashed.billed_seconds == 1800 and crashed.price_per_hour == 2.0
    assert crashed.compute_cost == pytest.approx(2.0 * 1800 / 3600)
    assert crashed.egress_bytes == 10 * GB and crashed.egress_cost == pytest.approx(1.2)
    assert crashed.cost == pytest.approx(1.0 + 1.2)
    assert done.egress_cost == 0 and done.cost == pytest.approx(0.5 * 3600 / 3600)
    for a in cost.attempts:
        assert a.cost == pytest.approx(a.price_per_hour * a.billed_seconds / 3600 + a.egress_cost)
    assert cost.total == pytest.approx(2.7) and cost.wasted == pytest.approx(2.2)
    assert (crashed.offer, crashed.gpu, crashed.gpu_count, crashed.spot) == ("a100-box", "A100", 1, False)
    table = cost.table()
    assert table[-1]["attempt"] == "total" and table[-1]["cost $"] == pytest.approx(2.7)
    # what the manifest, the record and the event carry is a CostInfo
    info = CostInfo.model_validate(cost.to_dict())
    assert info.total == pytest.approx(2.7) and [a.outcome for a in info.attempts] == ["not_started", "crashed",
                                                                                     "completed"]
    # an attempt that ran on other capacity than placed (spot falling back) is priced as it ran
    spot = attempt_cost(p, attempts[1], spot=True, price_per_hour=0.8)
    assert spot.spot and spot.compute_cost == pytest.approx(0.4)


def test_manifests_without_cost_still_read_and_keep_their_bytes():
    old = Manifest.model_validate({"name": "m", "version": "1", "run_id": "r"})
    assert old.cost is None and b"cost" not in old.to_json()
    cost = RetrainCost("m", "r", [attempt_cost(rank_clouds(catalog(), req(), [], NOW, BREAKER),
                                               attempt("fast", 1, "completed", 0, 6))])
    new = Manifest.model_validate({"name": "m", "version": "2", "cost": cost.to_dict()})
    again = Manifest.model_validate_json(new.to_json())
    assert again.to_json() == new.to_json() and again.cost.total == pytest.approx(0.2)
    with pytest.raises(ValueError, match="billed_seconds"):
        Manifest.model_validate({"cost": {"total": 1, "wasted": 0, "attempts": [{"cloud": "x"}]}})
