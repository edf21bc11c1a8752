"""The multi-target rollout decisions: what goes back, what each target ends as, what is recorded."""
from __future__ import annotations

import pytest

from cloudhop.registry import Manifest, Registry
from cloudhop.store import Store
from cloudhop.targets import multi
from cloudhop.targets.deploy import DeployOutcome
from cloudhop.testing import MemoryTarget


def ok(name, version, previous, changed=True):
    return DeployOutcome(name, version, previous, True, changed, False, None, 0.1)


def bad(name, version, previous, error="boom"):
    return DeployOutcome(name, version, previous, False, False, True, None, 0.1, error)


def test_policy_is_checked():
    assert multi.check_policy("best-effort") == "best-effort"
    with pytest.raises(ValueError, match="all-or-nothing, best-effort"):
        multi.check_policy("yolo")


def test_nothing_goes_back_when_every_target_succeeds():
    outcomes = {"a": ok("a", "2", "1"), "b": ok("b", "2", "2", changed=False)}
    assert multi.rollback_plan(outcomes, {"a": "1", "b": "2"}, "2", "all-or-nothing") == {}


def test_all_or_nothing_sends_every_target_back_to_its_own_previous():
    outcomes = {"a": ok("a", "3", "1"), "b": ok("b", "3", "2"), "c": bad("c", "3", "2"), "d": ok("d", "3", "3", False)}
    previous = {"a": "1", "b": "2", "c": "2", "d": "3"}
    # d already served v3 before: its previous IS v3, it stays
    assert multi.rollback_plan(outcomes, previous, "3", "all-or-nothing") == {"a": "1", "b": "2", "c": "2"}


def test_best_effort_sends_back_only_the_failed():
    outcomes = {"a": ok("a", "3", "1"), "c": bad("c", "3", "2")}
    assert multi.rollback_plan(outcomes, {"a": "1", "c": "2"}, "3", "best-effort") == {"c": "2"}


def test_a_target_with_no_known_previous_cannot_be_sent_back():
    outcomes = {"a": ok("a", "3", None), "c": bad("c", "3", None)}
    assert multi.rollback_plan(outcomes, {"a": None, "c": None}, "3", "all-or-nothing") == {}


@pytest.fixture()
def registry(tmp_path):
    r = Registry(Store(str(tmp_path / "store")), "m")
    for i in range(3):
        r.publish({"model.onnx": f"v{i}".encode()}, Manifest())
    return r


def test_deploy_all_happy_path_records_live_aliases(registry):
    ts = [MemoryTarget("a", "1"), MemoryTarget("b", "1")]
    rep = multi.deploy_all(registry, ts, "2", smoke=None)
    assert rep.ok and [t.live for t in ts] == ["2", "2"]
    assert {n: t.status for n, t in rep.targets.items()} == {"a": "deployed", "b": "deployed"}
    assert registry.alias("live-a")["version"] == "2" and registry.alias("live-a")["run_id"] == rep.run_id
    assert rep.as_result()["a"]["previous"] == "1" and rep.as_result()["a"]["changed"] is True
    assert registry.store.list(f"{registry.base}/deploys")


def test_deploy_all_all_or_nothing_puts_every_target_back(registry):
    ts = [MemoryTarget("a", "1"), MemoryTarget("b", "2"), MemoryTarget("c", "1", unloadable={"3"})]
    rep = multi.deploy_all(registry, ts, "3", smoke=None)
    assert not rep.ok and [t.live for t in ts] == ["1", "2", "1"]
    st = {n: t.status for n, t in rep.targets.items()}
    assert st == {"a": "rolled-back", "b": "rolled-back", "c": "not-deployed"}
    assert "cannot load v3" in rep.targets["c"].error
    assert {n: registry.alias(f"live-{n}")["version"] for n in "abc"} == {"a": "1", "b": "2", "c": "1"}


def test_deploy_all_best_effort_keeps_the_good_ones(registry):
    ts = [MemoryTarget("a", "1"), MemoryTarget("b", "1", down=True)]
    registry.set_alias("live-b", "1")
    rep = multi.deploy_all(registry, ts, "2", smoke=None, policy="best-effort")
    assert rep.failed == ["b"] and ts[0].live == "2"
    assert rep.targets["b"].status == "rollback-failed" and rep.targets["b"].version is None
    # the registry keeps what b was last seen running
    assert registry.alias("live-a")["version"] == "2" and registry.alias("live-b")["version"] == "1"


def test_retries_get_a_flaky_target_through(registry):
    ts = [MemoryTarget("a", "1", fail_times=2)]
    rep = multi.deploy_all(registry, ts, "2", smoke=None, retries=2, retry_delay=0)
    assert rep.ok and rep.targets["a"].attempts == 3
    rep = multi.deploy_all(registry, [MemoryTarget("b", "1", fail_times=2)], "2", smoke=None, retries=1, retry_delay=0)
    assert not rep.ok and rep.targets["b"].attempts == 2


def test_redeploying_the_live_version_touches_nothing(registry):
    ts = [MemoryTarget("a", "1"), MemoryTarget("b", "1")]
    multi.deploy_all(registry, ts, "2", smoke=None)
    before = registry.alias("live-a")
    rep = multi.deploy_all(registry, ts, "2", smoke=None)
    assert all(t.status == "unchanged" and not t.changed for t in rep.targets.values())
    assert [t.calls for t in ts] == [[("publish", "2"), ("roll_out", "2")]] * 2
    assert registry.alias("live-a") == before


def test_a_version_that_does_not_exist_is_refused_before_any_target_moves(registry):
    ts = [MemoryTarget("a", "1")]
    with pytest.raises(Exception, match="no version 9|no alias"):
        multi.deploy_all(registry, ts, "nine", smoke=None)
    assert ts[0].calls == []


def test_bad_arguments_are_named(registry):
    with pytest.raises(ValueError, match="unique"):
        multi.deploy_all(registry, [MemoryTarget("a"), MemoryTarget("a")], "1", smoke=None)
    with pytest.raises(ValueError, match="canary 'x'"):
        multi.deploy_all(registry, [MemoryTarget("a")], "1", smoke=None, canary="x")
