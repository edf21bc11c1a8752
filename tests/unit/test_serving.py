"""Pure logic of the serving package and targets: request parsing, the prediction log, smoke
comparison, deploy decisions, the target factory. No server process here (see integration)."""
from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from cloudhop.predlog import part_key, read_prediction_log
from cloudhop.registry import Manifest, Registry
from cloudhop.serving.app import check_ref
from cloudhop.serving.auth import Callers, TokenError, parse_predict_tokens
from cloudhop.serving.request import PredictBody, RequestError, namespaced_ids, parse_predict
from cloudhop.serving.rows import RowSchema
from cloudhop.serving.log import PredictionLog
from cloudhop.spec import parse_spec
from cloudhop.store import Store
from cloudhop import providers
from cloudhop.targets import SmokeResult, Target, TargetError, build_target, deploy_to_target
from cloudhop.targets.base import compare_predictions
from cloudhop.providers.local.target import LocalTarget
from cloudhop.testing import MemoryTarget

UTC = timezone.utc


# -- request parsing ------------------------------------------------------------------------
def test_parse_predict_accepts_objects_with_any_keys_or_equal_columns():
    body = parse_predict(b'{"rows": [{"a": 1}, {}, {"b": null, "c": {"x": 1}}]}', max_rows=10)
    assert body.rows == [{"a": 1}, {}, {"b": None, "c": {"x": 1}}] and body.n == 3 and body.ids is None
    assert parse_predict(b'{"rows": [{}, {}], "ids": ["a", 7]}', max_rows=10).ids == ["a", "7"]
    body = parse_predict(b'{"columns": {"a": [1, null], "b": ["x", "y"]}, "ids": [1, 2]}', max_rows=10)
    assert body.columns == {"a": [1, None], "b": ["x", "y"]} and body.n == 2 and body.rows is None
    assert body.ids == ["1", "2"]


@pytest.mark.parametrize("body, status, message", [
    (b"", 400, "empty request body"),
    (b'{"rows": [', 400, "not valid JSON"),
    (b"[1, 2]", 422, "must be a JSON object"),
    (b'{"data": []}', 422, 'neither "rows" nor "columns"'),
    (b'{"rows": [{}], "columns": {"a": [1]}}', 422, 'either "rows" or "columns", not both'),
    (b'{"columns": [1]}', 422, '"columns" must be an object of column: [values], got array'),
    (b'{"columns": {}}', 422, '"columns" is empty'),
    (b'{"columns": {"a": 1}}', 422, "columns.a must be an array of values, got number"),
    (b'{"columns": {"a": []}}', 422, "columns.a is empty"),
    (b'{"columns": {"a": [1, 2], "b": [1]}}', 422, "columns.b has 1 values but columns.a has 2"),
    (b'{"columns": {"a": [1, 2, 3, 4]}}', 422, "too many rows: 4 (the limit is 3"),
    (b'{"rows": {"a": 1}}', 422, "must be an array of objects, got object"),
    (b'{"rows": []}', 422, '"rows" is empty'),
    (b'{"rows": [{}, {}, {}, {}]}', 422, "too many rows: 4 (the limit is 3"),
    (b'{"rows": [{}, [1], {}]}', 422, "rows[1] must be a JSON object"),
    (b'{"rows": [{}, "x"]}', 422, "got string"),
    (b'{"rows": [{}, {}], "ids": ["a"]}', 422, '"ids" must be an array with one id per row (2), got array of 1'),
    (b'{"rows": [{}], "ids": "a"}', 422, "got string"),
    (b'{"rows": [{}, {}], "ids": ["a", null]}', 422, "ids[1] must be a string or an integer, got null"),
])
def test_parse_predict_rejects_bad_bodies_with_a_clear_message(body, status, message):
    with pytest.raises(RequestError) as e:
        parse_predict(body, max_rows=3)
    assert e.value.status == status
    assert message in str(e.value)


@pytest.mark.parametrize("body, where", [
    (b'{"rows": [{"a": 1}, {"a": NaN}]}', (1, "a")),
    (b'{"rows": [{"a": -Infinity}]}', (0, "a")),
    (b'{"rows": [{"a": 1e999}]}', (0, "a")),
    (b'{"rows": [{}], "ids": [Infinity]}', (0, "ids")),
    (b'{"columns": {"a": [1, 2, NaN]}}', (2, "a")),
])
def test_non_finite_numbers_are_a_422_that_names_the_row_and_field(body, where):
    with pytest.raises(RequestError) as e:
        parse_predict(body, max_rows=3)
    assert e.value.status == 422 and (e.value.row, e.value.field) == where and "not a finite number" in str(e.value)


def test_long_ids_are_refused_and_ids_are_namespaced_by_caller():
    with pytest.raises(RequestError, match="ids\\[1\\] is 129 characters") as e:
        parse_predict(b'{"rows": [{}, {}], "ids": ["a", "%s"]}' % (b"x" * 129), max_rows=3)
    assert (e.value.row, e.value.field) == (1, "ids")
    assert namespaced_ids("anon", ["a:b", "7"], "r1", 2) == ["anon:a:b", "anon:7"]
    assert namespaced_ids("team-a", None, "r1", 2) == ["team-a:r1-0", "team-a:r1-1"]
    # a client cannot forge another caller's id: the caller is everything before the first ':'
    assert namespaced_ids("anon", ["team-a:x"], "r", 1)[0].split(":", 1)[0] == "anon"


SCHEMA = RowSchema(["carrier"], ["distance", "flag"], bool_columns=["flag"], other=["month", "carrier"])
GOOD = {"carrier": "AA", "distance": 10.5, "flag": True}


def test_rows_that_fit_the_model_pass():
    SCHEMA.check([GOOD, {"carrier": 7, "distance": None, "flag": None}, {**GOOD, "month": 12},
                  {**GOOD, "carrier": "x" * 256}, {**GOOD, "carrier": False, "distance": 3}])


@pytest.mark.parametrize("row, field, message", [
    ({"distance": 1, "flag": None}, "carrier", "lacks feature 'carrier'"),
    ({**GOOD, "extra": 1}, "extra", "unknown column 'extra'"),
    ({"carrier": "AA", "distance": 1, "zzz": 1}, "flag", "lacks feature 'flag'"),  # as many keys, one swapped
    ({**GOOD, "distance": "12"}, "distance", "expected a number or null, got string '12'"),
    ({**GOOD, "distance": True}, "distance", "expected a number or null, got boolean"),
    ({**GOOD, "flag": "yes"}, "flag", "expected a number, true/false or null"),
    ({**GOOD, "carrier": ["AA"]}, "carrier", "got array"),
    ({**GOOD, "carrier": "x" * 257}, "carrier", "string of 257 characters; the limit is 256"),
    ({**GOOD, "month": "y" * 300}, "month", "string of 300 characters"),
    ({**GOOD, "month": {"a": 1}}, "month", "expected a plain value, got object"),
])
def test_a_row_that_does_not_fit_is_a_422_naming_row_and_field(row, field, message):
    with pytest.raises(RequestError) as e:
        SCHEMA.check([GOOD, GOOD, row])
    assert e.value.status == 422 and e.value.to_dict() == {"error": str(e.value), "row": 2, "field": field}
    assert message in str(e.value) and str(e.value).startswith("rows[2]")


def _columns_of(rows: list[dict]) -> dict:
    return {k: [r.get(k) for r in rows] for k in dict.fromkeys(k for r in rows for k in r)}


def test_columns_read_the_same_as_rows():
    rows = [GOOD, {"carrier": 7, "distance": None, "flag": None}, {**GOOD, "carrier": False, "distance": 3}]
    by_rows = SCHEMA.read(PredictBody(3, rows=rows))
    by_columns = SCHEMA.read(PredictBody(3, columns=_columns_of(rows)))
    assert {c: list(v) for c, v in by_rows.items()} == {c: list(v) for c, v in by_columns.items()} == {
        "carrier": ["AA", 7, False], "distance": [10.5, None, 3], "flag": [True, None, True]}
    # another column the spec declares is checked, then left out
    assert list(SCHEMA.read(PredictBody(1, columns={**_columns_of([GOOD]), "month": [12]}))) == \
        ["carrier", "distance", "flag"]


def _good_columns(**change) -> dict:
    """Three good rows as columns, with `change` applied (a column set to None is left out)."""
    cols = {**_columns_of([GOOD] * 3), **change}
    return {k: v for k, v in cols.items() if v is not None}


@pytest.mark.parametrize("columns, field, message", [
    (_good_columns(carrier=None), "carrier", "columns lacks feature 'carrier'"),
    (_good_columns(extra=[1, 1, 1]), "extra", "columns has unknown column 'extra'"),
    (_good_columns(distance=[1, 2, "12"]), "distance", "columns.distance[2]: expected a number or null, got string '12'"),
    (_good_columns(flag=[True, None, "yes"]), "flag", "columns.flag[2]: expected a number, true/false or null"),
    (_good_columns(carrier=["a", "b", "x" * 257]), "carrier", "columns.carrier[2]: string of 257 characters"),
    (_good_columns(month=[1, 2, {"a": 1}]), "month", "columns.month[2]: expected a string, number, true/false or null"),
])
def test_a_column_that_does_not_fit_is_a_422_naming_row_and_field(columns, field, message):
    with pytest.raises(RequestError) as e:
        SCHEMA.read(PredictBody(3, columns=columns))
    assert e.value.status == 422 and e.value.field == field and message in str(e.value)
    assert e.value.row == (2 if "[" in message else None)


def test_the_spec_copy_names_other_columns_and_bool_features():
    spec = {"columns": {"t": {"type": "datetime"}, "flag": {"type": "bool"}, "x": {"type": "float"}}}
    schema = RowSchema.for_model(["c"], ["x", "flag"], spec)
    schema.check([{"c": "a", "x": 1, "flag": False, "t": "2024-01-01T00:00:00"}])
    with pytest.raises(RequestError, match="expected a number or null, got boolean"):
        RowSchema.for_model(["c"], ["x", "flag"], None).check([{"c": "a", "x": 1, "flag": False}])


@pytest.mark.parametrize("ref", ["../x", "/etc/passwd", "a/b", ".hidden", "", "x" * 65, True, None, {"v": 1}])
def test_bad_version_refs_are_refused_before_the_store(ref):
    with pytest.raises(RequestError) as e:
        check_ref(ref)
    assert e.value.status == 422 and e.value.field == "version"


def test_good_version_refs_pass():
    assert [check_ref(r) for r in ("3", 3, "latest", "champion", "live-aws_1.b")] == \
        ["3", "3", "latest", "champion", "live-aws_1.b"]


def test_callers_admin_always_needs_its_token_and_predict_tokens_name_the_caller():
    closed = Callers(None)
    with pytest.raises(RequestError) as e:
        closed.admin("Bearer anything")
    assert e.value.status == 403
    assert closed.predict(None) == "anon" and closed.predict("Bearer nope") == "anon"
    c = Callers("adm-secret", parse_predict_tokens("# teams\nteam-a:tok-a\nteam-b:tok-b, bot:tok-c", "test"))
    c.admin("Bearer adm-secret")
    for header in (None, "", "Bearer", "Bearer tok-a", "Basic adm-secret", "bearer adm-secretx"):
        with pytest.raises(RequestError) as e:
            c.admin(header)
        assert e.value.status == 401
    assert [c.predict(f"Bearer {t}") for t in ("tok-a", "tok-b", "tok-c", "adm-secret")] == \
        ["team-a", "team-b", "bot", "admin"]
    with pytest.raises(RequestError) as e:
        c.predict("Bearer wrong")
    assert e.value.status == 401


@pytest.mark.parametrize("text, message", [
    ("nocolonS3CRET", "entry 1 is not ID:TOKEN"), ("a:S3CRET\nb c:S3CRET", "entry 2: the id"),
    ("a:S3CRET,a:S3CRET", "entry 2: the id 'a' is taken"), ("anon:S3CRET", "is taken"),
    ("# only a comment", "no ID:TOKEN entries"),
])
def test_bad_token_entries_say_which_without_the_token(text, message):
    with pytest.raises(TokenError) as e:
        parse_predict_tokens(text, "tokens.txt")
    assert message in str(e.value) and "S3CRET" not in str(e.value)


# -- smoke comparison -------------------------------------------------------------------------
def test_compare_predictions():
    ok = compare_predictions([0.1, 0.2], [0.10001, 0.2], atol=1e-4)
    assert ok.ok and ok.n == 2 and ok.max_abs_diff == pytest.approx(1e-5, abs=1e-9)
    bad = compare_predictions([0.1, 0.5, 0.2], [0.1, 0.2, 0.2], atol=1e-4)
    assert not bad.ok and bad.max_abs_diff == pytest.approx(0.3) and "row 1" in bad.error
    assert not compare_predictions([0.1], [0.1, 0.2], atol=1).ok
    assert not compare_predictions([None, 0.2], [0.1, 0.2], atol=1).ok
    assert not compare_predictions([float("nan")], [0.1], atol=1).ok


# -- the prediction log -----------------------------------------------------------------------
CATS, NUMS = ["carrier"], ["distance", "temp"]


def test_part_key_layout():
    at = datetime(2024, 3, 5, 23, 59, 7, tzinfo=UTC)
    assert re.fullmatch(r"predictions/m/date=2024-03-05/part-235907-[0-9a-f]{8}\.parquet", part_key("m", at))


def test_log_writes_typed_parts_per_date_and_reads_ranges(tmp_path):
    store = Store(str(tmp_path / "store"))
    log = PredictionLog(store, "m", target="edge", flush_rows=10**6, flush_seconds=3600)
    day1 = datetime(2024, 1, 1, 23, 0, tzinfo=UTC)
    day2 = datetime(2024, 1, 2, 1, 0, tzinfo=UTC)
    log.add_rows("1", CATS, NUMS, [{"carrier": "AA", "distance": 100, "temp": None},
                              {"carrier": 5, "distance": "12.5", "temp": {"x": 1}}], [0.25, 0.5],
            row_ids=["r1", "r2"], served_at=day1)
    log.add_rows("2", CATS, NUMS, [{"distance": float("inf")}], [0.75], served_at=day2)
    keys = log.flush()
    assert sorted(k.split("/")[2] for k in keys) == ["date=2024-01-01", "date=2024-01-02"]
    assert log.pending_rows == 0 and log.written_rows == 3

    df = read_prediction_log(store, "m")
    assert list(df["prediction"]) == [0.25, 0.5, 0.75]
    assert list(df["version"]) == ["1", "1", "2"] and set(df["target"]) == {"edge"}
    assert df["row_id"].tolist()[:2] == ["r1", "r2"] and pd.isna(df["row_id"].iloc[2])
    assert df["carrier"].tolist()[:2] == ["AA", "5"] and pd.isna(df["carrier"].iloc[2])
    assert df["distance"].tolist()[:2] == [100.0, 12.5] and pd.isna(df["distance"].iloc[2])
    assert df["temp"].isna().all() and df["temp"].dtype == np.float64
    assert str(df["served_at"].dt.tz) == "UTC"

    # a range reads only its partitions: a corrupt part in another day is never opened
    store.write_bytes("predictions/m/date=2023-12-31/part-000000-deadbeef.parquet", b"not parquet")
    only2 = read_prediction_log(store, "m", start="2024-01-02")
    assert list(only2["prediction"]) == [0.75]
    only1 = read_prediction_log(store, "m", start=day1, end=day1 + timedelta(minutes=1))
    assert list(only1["prediction"]) == [0.25, 0.5]
    assert read_prediction_log(store, "other").empty


def test_log_parts_with_different_versions_and_all_null_columns_concatenate(tmp_path):
    store = Store(str(tmp_path / "store"))
    log = PredictionLog(store, "m", flush_rows=10**6, flush_seconds=3600)
    at = datetime(2024, 1, 1, tzinfo=UTC)
    log.add_rows("1", CATS, NUMS, [{}], [0.1], served_at=at)  # every feature missing
    log.flush()
    log.add_rows("1", CATS, NUMS, [{"carrier": "UA", "distance": 1, "temp": 2}], [0.2], served_at=at + timedelta(seconds=1))
    log.flush()
    log.add_rows("2", ["carrier", "origin"], NUMS, [{"origin": "JFK"}], [0.3], served_at=at + timedelta(seconds=2))
    log.flush()
    df = read_prediction_log(store, "m")
    assert len(df) == 3 and df["carrier"].tolist()[1] == "UA"
    assert df["origin"].tolist()[2] == "JFK" and pd.isna(df["origin"].iloc[0])
    assert df["distance"].dtype == np.float64


def test_log_background_thread_flushes_by_rows(tmp_path):
    store = Store(str(tmp_path / "store"))
    log = PredictionLog(store, "m", flush_rows=3, flush_seconds=3600)
    log.start()
    try:
        log.add_rows("1", CATS, NUMS, [{}, {}, {}], [0.1, 0.2, 0.3])
        deadline = time.monotonic() + 10
        while log.written_rows < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert log.written_rows == 3
    finally:
        log.close()


def test_log_keeps_rows_when_the_store_write_fails_and_writes_them_later(tmp_path):
    store = Store(str(tmp_path / "store"))
    (tmp_path / "store" / "predictions").write_text("a file where the folder should be")
    errors = []
    log = PredictionLog(store, "m", flush_rows=10**6, flush_seconds=3600, on_error=errors.append)
    log.add_rows("1", CATS, NUMS, [{"carrier": "AA"}], [0.5])
    assert log.flush() == [] and errors and log.pending_rows == 1
    (tmp_path / "store" / "predictions").unlink()
    assert len(log.flush()) == 1 and log.pending_rows == 0
    assert read_prediction_log(store, "m")["carrier"].tolist() == ["AA"]


# -- targets: factory -----------------------------------------------------------------------------
def _spec(targets):
    return parse_spec({
        "name": "m", "dataset": {"uri": "x.parquet"}, "store": "/tmp/s",
        "columns": {"t": {"type": "datetime", "role": "time"}, "x": {"type": "float"},
                    "y": {"type": "int", "role": "target"}},
        "target": {"column": "y", "task": "binary"},
        "split": {"time_column": "t", "validation_start": "2024-01-01", "holdout_start": "2024-02-01"},
        "targets": targets})


def test_build_target_maps_kinds():
    spec = _spec([{"name": "dev", "kind": "local", "options": {"port": 9123}},
                  {"name": "cloud", "kind": "aws"},
                  {"name": "odd", "kind": "local", "options": {"prot": 1}}])
    t = build_target(spec.targets[0], spec)
    assert isinstance(t, LocalTarget) and isinstance(t, Target)
    assert (t.name, t.port, t.model, t.store_uri, t.url) == ("dev", 9123, "m", "/tmp/s", "http://127.0.0.1:9123")
    assert set(providers.names()) == {"local", "aws", "gcp", "azure", "coreweave", "container"}
    with pytest.raises(TargetError, match="unknown option.*prot"):
        build_target(spec.targets[2], spec)
    assert all(providers.get(kind).name == kind and callable(providers.get(kind).target)
               for kind in providers.names())


# -- deploy decisions, against an in-memory target ----------------------------------------------------
@pytest.fixture
def registry(tmp_path):
    reg = Registry(Store(str(tmp_path / "store")), "m")
    for _ in range(3):
        reg.publish({"model.onnx": b"x"}, Manifest())
    return reg


SMOKE = {"rows": [{"a": 1}, {"a": 2}], "predictions": [0.3, 0.7]}


def test_deploy_success_moves_the_live_alias(registry):
    t = MemoryTarget(live="1")
    out = deploy_to_target(registry, t, "2", SMOKE, run_id="r1")
    assert (out.ok, out.changed, out.rolled_back, out.previous, out.version) == (True, True, False, "1", "2")
    assert out.smoke == SmokeResult(True, 0.0, 2, None)
    assert registry.alias("live-mem")["version"] == "2" and registry.alias("live-mem")["run_id"] == "r1"
    assert "v2 is live" in out.summary()


def test_deploy_failed_smoke_rolls_back_and_keeps_the_alias(registry):
    registry.set_alias("live-mem", "1")
    t = MemoryTarget(live="1", bad={"2"})
    out = deploy_to_target(registry, t, "2", SMOKE)
    assert (out.ok, out.rolled_back, t.live) == (False, True, "1")
    assert "smoke test failed" in out.error and not out.smoke.ok
    assert ("roll_back", "1") in t.calls
    assert registry.alias("live-mem")["version"] == "1"
    assert "rolled back to v1" in out.summary()


def test_deploy_failed_roll_out_is_reported(registry):
    t = MemoryTarget(live="1", unloadable={"3"})
    out = deploy_to_target(registry, t, "3", None)
    assert not out.ok and "cannot load v3" in out.error and t.live == "1" and not out.rolled_back
    assert registry.alias("live-mem") is None


def test_deploy_with_nothing_live_cannot_roll_back(registry):
    t = MemoryTarget(live=None, bad={"2"})
    out = deploy_to_target(registry, t, "2", SMOKE)
    assert not out.ok and not out.rolled_back and out.previous is None
    assert "nothing to roll back to" in out.summary()


def test_redeploying_the_live_version_changes_nothing(registry):
    t = MemoryTarget(live="2")
    out = deploy_to_target(registry, t, "2", SMOKE)
    assert out.ok and not out.changed and t.calls == []
    assert registry.alias("live-mem")["version"] == "2"  # recorded, since it was missing


def test_deploy_rejects_a_malformed_smoke_set(registry):
    with pytest.raises(ValueError, match="2 rows but 1 predictions"):
        deploy_to_target(registry, MemoryTarget(), "1", {"rows": [{}, {}], "predictions": [0.1]})


# -- the preprocessor's server path ------------------------------------------------------------
def test_transform_columns_equals_transform_on_a_frame_for_every_json_form_of_a_category():
    from cloudhop.training.preprocess import Preprocessor

    train = pd.DataFrame({"code": ["5", "2.5", "True", "x", "9007199254740993", "05"],
                          "n": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    pre = Preprocessor.fit(train, ["code"], ["n"])
    sent = ["5", 5, 5.0, 2.5, "2.5", True, "True", 1, "x", None, 9007199254740993, "05", 7, 3.25]
    nums = [1, 2.5, None, True, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    cat, num = pre.transform_columns({"code": sent, "n": nums}, len(sent))
    want_cat, want_num = pre.transform(pd.DataFrame({"code": pd.Series(sent, dtype=object),
                                                     "n": pd.Series(nums, dtype=object)}))
    assert cat.tolist() == want_cat.tolist()
    np.testing.assert_allclose(num, want_num)
    ids = dict(zip(pre.vocab["code"], range(1, 7)))
    assert cat[:, 0].tolist()[:6] == [ids["5"]] * 3 + [ids["2.5"]] * 2 + [ids["True"]]
    # without a bool in the column, the dict path maps the same numbers to the same ids
    fast, _ = pre.transform_columns({"code": sent[:5] + sent[8:], "n": nums[:5] + nums[8:]}, len(sent) - 3)
    assert fast[:, 0].tolist() == cat[:, 0].tolist()[:5] + cat[:, 0].tolist()[8:]
    # a missing column reads as nulls; so do unusable numbers when rows are not checked
    cat, num = pre.transform_columns({"n": ["abc", {"x": 1}]}, 2)
    assert cat.tolist() == [[0], [0]] and num.tolist() == [[0.0], [0.0]]


def test_a_few_rows_transform_exactly_as_many_rows_do():
    from cloudhop.training.preprocess import FEW_ROWS, Preprocessor

    rng = np.random.default_rng(0)
    train = pd.DataFrame({"code": rng.choice(["5", "2.5", "True", "x", "y"], 200), "a": rng.normal(size=200),
                          "b": rng.normal(1e6, 1e3, size=200)})
    pre = Preprocessor.fit(train, ["code"], ["a", "b"])
    pool = {"code": ["5", 5, 5.0, 2.5, True, "y", None, "zz", 7, {"x": 1}],
            "a": [0.5, -3, None, True, "2.5", "abc", 1e300, 10**400, 0, {"x": 1}],
            "b": [1e6, 1.5e6, None, 3.4e38 * 1e6, -2, 0.0, 7, 1, 2, 3]}
    many = FEW_ROWS + 11
    cols = {c: [pool[c][int(i)] for i in rng.integers(0, len(pool[c]), many)] for c in pool}
    cat_many, num_many = pre.transform_columns(cols, many)
    for start in range(0, many - FEW_ROWS + 1):
        part = {c: v[start:start + FEW_ROWS] for c, v in cols.items()}
        cat, num = pre.transform_columns(part, FEW_ROWS)
        assert cat.tolist() == cat_many[start:start + FEW_ROWS].tolist()
        assert num.tobytes() == num_many[start:start + FEW_ROWS].tobytes()  # bit for bit
        assert cat.flags.c_contiguous and num.flags.c_contiguous and num.dtype == np.float32
    one_cat, one_num = pre.transform_columns({"code": [None]}, 1)  # a missing column reads as nulls
    assert one_cat.tolist() == [[0]] and one_num.tolist() == [[0.0, 0.0]]
