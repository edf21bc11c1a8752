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
