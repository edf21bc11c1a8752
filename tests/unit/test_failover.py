import pytest

from cloudhop.clouds.failover import (AllCloudsFailed, AttemptOutcome, FailoverPolicy, TrainingFailed,
                                      run_with_failover)


def scripted(script):
    """launch() that plays back outcomes per cloud and records the calls."""
    calls = []

    def launch(cloud, number):
        calls.append((cloud, number))
        kind = script[cloud][number - 1]
        if kind == "raise":
            raise ConnectionError("pool refused")
        return AttemptOutcome(kind, detail=f"{cloud}#{number}", run_id=f"{cloud}-{number}")

    return launch, calls


def test_retries_same_cloud_then_moves_on():
    launch, calls = scripted({"a": ["crashed", "not_started"], "b": ["completed"]})
    sleeps = []
    r = run_with_failover(["a", "b", "c"], launch, FailoverPolicy(retries=1, backoff_seconds=3), sleep=sleeps.append)
    assert r.cloud == "b"
    assert calls == [("a", 1), ("a", 2), ("b", 1)]
    assert sleeps == [3]
    assert [a.outcome for a in r.attempts] == ["crashed", "not_started", "completed"]


def test_backoff_doubles():
    launch, calls = scripted({"a": ["crashed"] * 3 + ["completed"]})
    sleeps = []
    run_with_failover(["a"], launch, FailoverPolicy(retries=3, backoff_seconds=1), sleep=sleeps.append)
    assert sleeps == [1, 2, 4]


def test_training_error_is_not_failed_over():
    launch, calls = scripted({"a": ["failed"], "b": ["completed"]})
    with pytest.raises(TrainingFailed, match="training failed on a .*no failover.*a#1"):
        run_with_failover(["a", "b"], launch, FailoverPolicy(retries=2), sleep=lambda s: None)
    assert calls == [("a", 1)]


def test_submission_error_is_a_cloud_fault():
    launch, calls = scripted({"a": ["raise"], "b": ["completed"]})
    r = run_with_failover(["a", "b"], launch, FailoverPolicy(retries=0), sleep=lambda s: None)
    assert r.cloud == "b" and r.attempts[0].outcome == "infra_error"
    assert "pool refused" in r.attempts[0].detail


def test_every_cloud_down_lists_each_attempt():
    launch, _ = scripted({"a": ["not_started", "not_started"], "b": ["crashed", "infra_error"]})
    with pytest.raises(AllCloudsFailed) as e:
        run_with_failover(["a", "b"], launch, FailoverPolicy(retries=1), sleep=lambda s: None)
    msg = str(e.value)
    assert msg.count("attempt") == 4
    assert "a attempt 2: not_started" in msg and "b attempt 1: crashed" in msg
    assert len(e.value.attempts) == 4


def test_unknown_outcome_rejected():
    with pytest.raises(ValueError):
        AttemptOutcome("weird")


def test_preemption_retries_the_same_cloud_without_backoff_and_spares_the_fault_budget():
    launch, calls = scripted({"a": ["preempted", "crashed", "completed"]})
    sleeps = []
    r = run_with_failover(["a", "b"], launch, FailoverPolicy(retries=1, backoff_seconds=5, spot_retries=1),
                          sleep=sleeps.append)
    assert calls == [("a", 1), ("a", 2), ("a", 3)] and r.cloud == "a"
    assert sleeps == [5]  # only the crash backs off
    assert [a.outcome for a in r.attempts] == ["preempted", "crashed", "completed"]


def test_preemption_moves_on_when_the_policy_says_next_cloud():
    launch, calls = scripted({"a": ["preempted", "completed"], "b": ["completed"]})
    r = run_with_failover(["a", "b"], launch, FailoverPolicy(retries=3, on_preemption="next-cloud"),
                          sleep=lambda s: None)
    assert calls == [("a", 1), ("b", 1)] and r.cloud == "b"


def test_spot_losses_have_their_own_budget():
    launch, calls = scripted({"a": ["preempted", "preempted", "completed"], "b": ["completed"]})
    r = run_with_failover(["a", "b"], launch, FailoverPolicy(retries=5, spot_retries=1), sleep=lambda s: None)
    assert calls == [("a", 1), ("a", 2), ("b", 1)] and r.cloud == "b"


def test_a_spot_run_that_did_not_start_is_a_spot_loss_and_an_on_demand_one_a_fault():
    def launch(cloud, number):
        return AttemptOutcome("not_started" if number == 1 else "completed", data={"spot": cloud == "a"})

    sleeps = []
    r = run_with_failover(["a"], launch, FailoverPolicy(retries=0, spot_retries=1), sleep=sleeps.append)
    assert [(a.outcome, a.spot) for a in r.attempts] == [("not_started", True), ("completed", True)]
    with pytest.raises(AllCloudsFailed):  # on-demand: a cloud fault, and retries=0
        run_with_failover(["b"], launch, FailoverPolicy(retries=0, spot_retries=1), sleep=sleeps.append)
    assert sleeps == []


def test_the_clock_is_the_callers():
    from datetime import datetime, timedelta, timezone

    t = [datetime(2026, 1, 1, tzinfo=timezone.utc)]

    def launch(cloud, number):
        t[0] += timedelta(hours=2)
        return AttemptOutcome("completed")

    r = run_with_failover(["a"], launch, FailoverPolicy(), now=lambda: t[0])
    assert r.attempts[0].row()["seconds"] == 7200.0
