"""Traffic replay: shifts, the dataset window, and pacing against a real local HTTP server."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

from cloudhop.replay import ReplayError, Shift, apply_shifts, parse_shift, replay, window_rows
from cloudhop.spec import parse_spec

SPEC = parse_spec({
    "name": "toy", "dataset": {"uri": "unused.parquet"},
    "columns": {"t": {"type": "datetime", "role": "time"}, "x": {"type": "float"},
                "c": {"type": "category"}, "y": {"type": "int", "role": "target"}},
    "target": {"column": "y", "task": "binary"},
    "split": {"time_column": "t", "validation_start": "2024-03-01", "holdout_start": "2024-04-01"},
})


def data(n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"t": pd.date_range("2024-01-01", periods=n, freq="D"), "x": rng.normal(size=n),
                         "c": rng.choice(["a", "b"], n), "y": rng.integers(0, 2, n)})


@pytest.mark.parametrize("text,want", [
    ("temp=+30", Shift("temp", "+", 30.0)), ("temp=-2.5", Shift("temp", "+", -2.5)),
    ("distance=*1.5", Shift("distance", "*", 1.5)), ("origin=JFK", Shift("origin", "=", "JFK")),
    (" hour = +1 ", Shift("hour", "+", 1.0)),
])
def test_parse_shift(text, want):
    assert parse_shift(text) == want


@pytest.mark.parametrize("text,msg", [("temp", r"write column=\+k"), ("=+3", "write column"), ("temp=", "write"),
                                      ("temp=+abc", "'abc' is not a number"), ("temp=*x", "'x' is not a number"),
                                      ("temp=+inf", "finite")])
def test_bad_shift_says_what_is_wrong(text, msg):
    with pytest.raises(ReplayError, match=msg):
        parse_shift(text)


def test_apply_shifts_changes_only_the_named_columns():
    df = window_rows(SPEC, "2024-01-01", "2024-02-01", data=data())
    out = apply_shifts(df, [parse_shift("x=+10"), parse_shift("c=z")], SPEC)
    np.testing.assert_allclose(out["x"], df["x"] + 10)
    assert set(out["c"]) == {"z"} and set(df["c"]) <= {"a", "b"}
    np.testing.assert_allclose(apply_shifts(df, [parse_shift("x=*2")], SPEC)["x"], df["x"] * 2)
    with pytest.raises(ReplayError, match="'y' is not a feature"):
        apply_shifts(df, [parse_shift("y=+1")], SPEC)
    with pytest.raises(ReplayError, match="'c' is categorical"):
        apply_shifts(df, [parse_shift("c=+1")], SPEC)
    with pytest.raises(ReplayError, match="'x' is numeric and 'hot' is not a number"):
        apply_shifts(df, [parse_shift("x=hot")], SPEC)


def test_window_rows_selects_the_window_and_samples_reproducibly():
    df = data()
    jan = window_rows(SPEC, "2024-01-01", "2024-02-01", data=df)
    assert len(jan) == 31 and list(jan.columns) == SPEC.features
    a = window_rows(SPEC, "2024-01-01", "2024-04-01", max_rows=20, seed=3, data=df)
    b = window_rows(SPEC, "2024-01-01", "2024-04-01", max_rows=20, seed=3, data=df)
    c = window_rows(SPEC, "2024-01-01", "2024-04-01", max_rows=20, seed=4, data=df)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 20 and not a.equals(c)
    # the sample spreads over the window and keeps time order
    idx = df.index[df["x"].isin(a["x"])]
    assert list(idx) == sorted(idx) and idx.max() - idx.min() > 45
    with pytest.raises(ReplayError, match=r"no rows .* t spans 2024-01-01 00:00:00 \.\. 2024-04-29"):
        window_rows(SPEC, "2025-01-01", "2025-02-01", data=df)
    with pytest.raises(ReplayError, match="not before its end"):
        window_rows(SPEC, "2024-02-01", "2024-01-01", data=df)


class _Recorder(BaseHTTPRequestHandler):
    received: list = []
    ids: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        _Recorder.received.append((time.monotonic(), self.path, body["rows"]))
        _Recorder.ids.append(body.get("ids"))
        status = 500 if any(r.get("c") == "boom" for r in body["rows"]) else 200
        ids = body.get("ids") or [f"gen-{len(_Recorder.ids)}-{i}" for i in range(len(body["rows"]))]
        out = json.dumps({"predictions": [0.5] * len(body["rows"]), "version": "7", "row_ids": ids}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    _Recorder.received, _Recorder.ids = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_replay_sends_every_row_in_batches_at_the_rate(endpoint):
    rows = window_rows(SPEC, "2024-01-01", "2024-04-01", data=data())  # 91 rows
    t0 = time.monotonic()
    stats = replay(rows, endpoint, rate=300.0, batch=10)
    got = _Recorder.received
    assert stats.rows == 91 and stats.requests == 10 and stats.errors == 0
    assert stats.versions == {"7": 91}
    assert [len(r) for _, _, r in got] == [10] * 9 + [1] and {p for _, p, _ in got} == {"/predict"}
    sent = [row for _, _, r in got for row in r]
    assert [r["x"] for r in sent] == pytest.approx(rows["x"].tolist())
    # never faster than the rate: the last batch (rows 90..) leaves no earlier than 90/300 s after the start
    assert got[-1][0] - t0 >= 0.3 and stats.seconds >= 0.3


def test_replay_sends_ids_and_records_what_the_server_logged(endpoint):
    rows = pd.DataFrame({"x": np.arange(5.0), "c": ["a", "b", "boom", "a", "b"]})
    stats = replay(rows, endpoint, rate=1000.0, batch=2, ids=[f"r{i}" for i in range(5)])
    assert _Recorder.ids == [["r0", "r1"], ["r2", "r3"], ["r4"]]
    assert stats.answered == [0, 1, 4] and stats.row_ids == ["r0", "r1", "r4"]  # the batch with "boom" failed
    stats = replay(rows.head(2), endpoint, rate=1000.0)  # no ids: the server's own
    assert _Recorder.ids[-1] is None and stats.row_ids == ["gen-4-0", "gen-4-1"]
    with pytest.raises(ReplayError, match="1 ids for 2 rows"):
        replay(rows.head(2), endpoint, rate=1000.0, ids=["a"])


def test_window_rows_with_the_target_for_labels():
    df = window_rows(SPEC, "2024-01-01", "2024-02-01", data=data(), with_target=True)
    assert list(df.columns) == SPEC.features + ["y"]


def test_replay_sends_nulls_for_missing_values(endpoint):
    rows = pd.DataFrame({"x": [1.0, np.nan], "c": ["a", None]})
    replay(rows, endpoint, rate=1000.0)
    assert _Recorder.received[0][2] == [{"x": 1.0, "c": "a"}, {"x": None, "c": None}]


def test_replay_counts_http_errors_and_stops_after_too_many(endpoint):
    rows = pd.DataFrame({"x": np.arange(6.0), "c": ["a", "boom", "a", "a", "boom", "a"]})
    stats = replay(rows, endpoint, rate=1000.0, batch=1, max_errors=5)
    assert stats.rows == 4 and stats.errors == 2 and "HTTP 500" in stats.last_error
    with pytest.raises(ReplayError, match="failed 2 requests; last: HTTP 500"):
        replay(rows, endpoint, rate=1000.0, batch=1, max_errors=2)


def test_replay_to_a_closed_port_fails_at_once():
    from ops.net import free_port

    with pytest.raises(ReplayError, match=r"cannot reach http://127.0.0.1:\d+/predict: ConnectError"):
        replay(pd.DataFrame({"x": [1.0]}), f"http://127.0.0.1:{free_port()}", rate=10.0)


@pytest.mark.parametrize("kwargs,msg", [({"rate": 0}, "rate must be a positive"), ({"rate": float("nan")}, "rate"),
                                        ({"rate": 1, "batch": 0}, "batch must be"),
                                        ({"rate": 1, "url": "127.0.0.1:80"}, "must start with http")])
def test_replay_refuses_bad_arguments(kwargs, msg):
    args = {"url": "http://127.0.0.1:9", **kwargs}
    with pytest.raises(ReplayError, match=msg):
        replay(pd.DataFrame({"x": [1.0]}), **args)


def test_cli_replay_shifts_sends_and_writes_labels(endpoint, tmp_path, capsys):
    import yaml

    from cloudhop.cli import main
    from cloudhop.drift.monitor import read_labels
    from cloudhop.store import Store

    data().to_parquet(tmp_path / "d.parquet")
    spec = SPEC.model_dump(mode="json")
    spec.update(dataset={"uri": str(tmp_path / "d.parquet")}, store=str(tmp_path / "store"))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    rc = main(["replay", "--spec", str(tmp_path / "s.yaml"), "--url", endpoint, "--start", "2024-01-01",
               "--end", "2024-01-11", "--rate", "1000", "--batch", "4", "--shift", "x=+100", "--labels"])
    assert rc == 0, capsys.readouterr().err
    sent = [r for _, _, rows in _Recorder.received for r in rows]
    assert len(sent) == 10 and all(r["x"] > 90 for r in sent) and set(sent[0]) == {"x", "c"}  # no target sent
    labels = read_labels(Store(str(tmp_path / "store")), "toy")
    assert sorted(labels["row_id"]) == sorted(f"gen-{i}-{j}" for i, n in [(1, 4), (2, 4), (3, 2)] for j in range(n))
    assert labels["label"].tolist() == data()["y"].head(10).tolist()
    assert "wrote 10 labels" in capsys.readouterr().out
    rc = main(["replay", "--spec", str(tmp_path / "s.yaml"), "--url", endpoint, "--start", "2030-01-01",
               "--end", "2030-02-01", "--shift", "x=+1"])
    assert rc == 2 and "no rows of" in capsys.readouterr().err
