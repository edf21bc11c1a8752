from datetime import datetime, timezone

from cloudhop.clouds import CurrentPool, DesiredPool, failure_from_run, plan_pools

T = {"job_configuration": {"a": 1, "b": "{{ b }}"}, "variables": {"properties": {"b": {"default": 2}}}}


def desired(name="p", type_="kubernetes", template=T, description="d"):
    return DesiredPool(name, type_, "cloud", template, description)


def test_plan_create_update_unchanged_conflict():
    reordered = {"variables": {"properties": {"b": {"default": 2}}}, "job_configuration": {"b": "{{ b }}", "a": 1}}
    other = {**T, "job_configuration": {"a": 2, "b": "{{ b }}"}}
    want = [desired("new"), desired("same"), desired("tmpl"), desired("desc"), desired("kind")]
    have = {
        "same": CurrentPool("same", "kubernetes", reordered, "d", "READY"),  # key order does not matter
        "tmpl": CurrentPool("tmpl", "kubernetes", other, "d"),
        "desc": CurrentPool("desc", "kubernetes", T, "old words"),
        "kind": CurrentPool("kind", "process", T, "d", "NOT_READY"),
        "unrelated": CurrentPool("unrelated", "process", {}, None),
    }
    plan = {c.pool.name: c for c in plan_pools(want, have)}
    assert list(plan) == ["new", "same", "tmpl", "desc", "kind"]
    assert plan["new"].action == "create" and plan["new"].status is None
    assert (plan["same"].action, plan["same"].status) == ("unchanged", "READY")
    assert (plan["tmpl"].action, plan["tmpl"].detail) == ("update", "base job template")
    assert (plan["desc"].action, plan["desc"].detail) == ("update", "description")
    assert plan["kind"].action == "conflict"
    assert "exists as type 'process', wanted 'kubernetes'" in plan["kind"].detail


def test_failure_from_run():
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    tags = ["cloudhop-train", "cloud:aws"]
    f = failure_from_run(tags, "CRASHED", "pod evicted", at, "run-1")
    assert (f.cloud, f.at, f.reason) == ("aws", at, "run-1: crashed: pod evicted")
    f = failure_from_run(tags, "CANCELLED", "not started within 60s", at)
    assert (f.cloud, f.reason) == ("aws", "not started within 60s")
    assert failure_from_run(tags, "CANCELLED", "Cancelled by a person", at) is None
    assert failure_from_run(tags, "FAILED", "ValueError: loss is NaN", at) is None
    assert failure_from_run(tags, "COMPLETED", None, at) is None
    assert failure_from_run(["cloud:aws"], "CRASHED", "", at) is None  # not a training run
    assert failure_from_run(["cloudhop-train"], "CRASHED", "", at) is None  # no cloud tag
