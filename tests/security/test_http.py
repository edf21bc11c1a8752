"""Hostile requests against a real inference server process (`python -m cloudhop.serving`).

Every case asserts the JSON 4xx that names the problem, and that nothing reached the prediction
log: after each case a valid "fence" row is sent and waited for in the log (read back through
`cloudhop.predlog`), so every row the server logged before it is in the log too; the log must
then hold fence rows only.
"""
from __future__ import annotations

import http.client
import itertools
import json
import secrets
import socket
import time

import httpx
import pytest

from cloudhop.drift.monitor import join_labels, read_labels, write_labels
from cloudhop.predlog import read_prediction_log
from cloudhop.registry import Registry
from cloudhop.store import Store
from cloudhop.testing import CATEGORICAL, NUMERIC, make_frame, publish_version
from cloudhop.training.preprocess import Preprocessor
from ops.serving import ServerProcess

pytestmark = pytest.mark.integration
MODEL = "tiny"
MAX_BODY = 64 << 10
ADMIN_TOKEN = secrets.token_urlsafe(24)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TEAM_TOKENS = {"team-a": secrets.token_urlsafe(24), "team-b": secrets.token_urlsafe(24)}
NULLS = {c: None for c in CATEGORICAL + NUMERIC}
ROW = {"carrier": "AA", "origin": "JFK", "distance": 500.0, "temp": 50.5, "hour": 7}
_fences = itertools.count()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("security")
    store = Store(str(root / "store"))
    reg = Registry(store, MODEL)
    df = make_frame(200, seed=0)
    publish_version(reg, Preprocessor.fit(df, CATEGORICAL, NUMERIC), 1, make_frame(8, seed=1))
    reg.set_alias("champion", "1")
    (root / "admin-token").write_text(ADMIN_TOKEN + "\n")
    (root / "predict-tokens").write_text("".join(f"{i}:{t}\n" for i, t in TEAM_TOKENS.items()))
    return {"root": root, "store": store, "reg": reg}


@pytest.fixture(scope="module")
def server(world):
    """Open /predict, admin token from a file, a 64 KiB body limit, a log flushed every 0.2 s."""
    s = ServerProcess(world["store"].uri, MODEL, "champion", world["root"] / "server.log",
                      "--admin-token-file", str(world["root"] / "admin-token"), "--max-body-bytes", str(MAX_BODY),
                      "--log-flush-seconds", "0.2", "--target-name", "hostile")
    s.wait_healthy()
    yield s
    s.stop()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as c:
        yield c


def logged(store: Store, target: str | None = None):
    df = read_prediction_log(store, MODEL)
    return df[df["target"] == target] if target is not None and len(df) else df


def assert_nothing_logged(client: httpx.Client, store: Store) -> None:
    """Send one valid fence row, wait until the log holds it, then check the log holds fences only."""
    fence = f"fence-{next(_fences)}"
    r = client.post("/predict", json={"rows": [NULLS], "ids": [fence]})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 20
    while True:
        df = logged(store, "hostile")
        if df["row_id"].str.endswith(f":{fence}", na=False).any():
            break
        assert time.monotonic() < deadline, "the fence row never reached the prediction log"
        time.sleep(0.1)
    strays = df[~df["row_id"].str.contains(":fence-", na=False)]
    assert strays.empty, f"rows of refused requests were logged: {strays['row_id'].tolist()[:5]}"


def _body(rows, **extra) -> bytes:
    return json.dumps({"rows": rows, **extra}).encode()


JSON = {"content-type": "application/json"}
CASES = {
    # name: (body, headers, status, message, row, field)
    "rows not an array": (b'{"rows": {"carrier": "AA"}}', JSON, 422, '"rows" must be an array', None, None),
    "row not an object": (_body([ROW, 7]), JSON, 422, "rows[1] must be a JSON object", 1, None),
    "empty rows": (b'{"rows": [{}]}', JSON, 422, "rows[0] lacks feature 'carrier'", 0, "carrier"),
    "missing column": (_body([ROW, {k: v for k, v in ROW.items() if k != "temp"}]), JSON, 422,
                       "rows[1] lacks feature 'temp'", 1, "temp"),
    "unknown column": (_body([{**ROW, "is_admin": True}]), JSON, 422, "unknown column 'is_admin'", 0, "is_admin"),
    "string for a number": (_body([ROW, ROW, {**ROW, "distance": "abc"}]), JSON, 422,
                            "rows[2].distance: expected a number or null, got string 'abc'", 2, "distance"),
    "bool for a number": (_body([{**ROW, "hour": True}]), JSON, 422, "expected a number or null, got boolean",
                          0, "hour"),
    "object for a category": (_body([{**ROW, "origin": {"$ne": 1}}]), JSON, 422,
                              "rows[0].origin: expected a string, number, true/false or null, got object", 0,
                              "origin"),
    "array for a category": (_body([{**ROW, "carrier": ["AA"]}]), JSON, 422, "got array", 0, "carrier"),
    "NaN token": (b'{"rows": [%s, {"carrier": "AA", "origin": "JFK", "distance": NaN, "temp": 1, "hour": 2}]}'
                  % json.dumps(ROW).encode(), JSON, 422, "rows[1].distance: NaN is not a finite number", 1,
                  "distance"),
    "Infinity token": (b'{"rows": [{"carrier": "AA", "origin": "JFK", "distance": 1, "temp": -Infinity, '
                       b'"hour": 2}]}', JSON, 422, "-Infinity is not a finite number", 0, "temp"),
    "number beyond float range": (b'{"rows": [{"carrier": "AA", "origin": "JFK", "distance": 1e999, "temp": 1, '
                                  b'"hour": 2}]}', JSON, 422, "1e999 is not a finite number", 0, "distance"),
    "over-long string": (_body([{**ROW, "carrier": "A" * 5000}]), JSON, 422,
                         "rows[0].carrier: string of 5000 characters; the limit is 256", 0, "carrier"),
    "huge row id": (_body([ROW, ROW], ids=["ok", "x" * 10_000]), JSON, 422,
                    "ids[1] is 10000 characters long; the limit is 128", 1, "ids"),
    "wrong content type": (_body([ROW]), {"content-type": "text/plain"}, 415, "content-type: application/json",
                           None, None),
    "form content type": (b"rows=1", {"content-type": "application/x-www-form-urlencoded"}, 415,
                          "send the body as JSON", None, None),
    "malformed JSON": (b'{"rows": [{"carrier": "AA",', JSON, 400, "request body is not valid JSON", None, None),
    "empty body": (b"", JSON, 400, "empty request body", None, None),
    "declared body over the limit": (_body([{**ROW, "carrier": "A" * 250}] * 300), JSON, 413,
                                     f"larger than {MAX_BODY} bytes", None, None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_hostile_predict_body_gets_a_4xx_that_names_it_and_logs_nothing(name, client, world):
    body, headers, status, message, row, field = CASES[name]
    r = client.post("/predict", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    got = r.json()
    assert message in got["error"], got
    assert (got.get("row"), got.get("field")) == (row, field), got
    assert_nothing_logged(client, world["store"])


def test_a_chunked_body_over_the_limit_is_refused_before_it_ends(server, client, world):
    """Transfer-Encoding: chunked has no Content-Length: the server counts what arrives. The body
    sent here never ends, so an answer proves the server did not wait to read it whole."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    try:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                     b"transfer-encoding: chunked\r\n\r\n")
        piece = b'{"rows": [' + b" " * (16 << 10)
        sent = 0
        while sent <= MAX_BODY:  # just past the limit, then wait for the answer with the body unfinished
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        body = json.loads(resp.read())
    finally:
        sock.close()
    assert resp.status == 413 and f"larger than {MAX_BODY} bytes (counted as it arrived)" in body["error"]
    assert client.get("/health").json()["status"] == "ok"
    assert_nothing_logged(client, world["store"])


@pytest.mark.parametrize("headers, status, message", [
    ({}, 401, "admin endpoints need 'Authorization: Bearer <admin token>'"),
    ({"Authorization": "Bearer wrong"}, 401, "admin endpoints need"),
    ({"Authorization": f"Basic {ADMIN_TOKEN}"}, 401, "admin endpoints need"),
    # loopback is no exception, and proxy headers claiming it buy nothing
    ({"X-Forwarded-For": "127.0.0.1"}, 401, "admin endpoints need"),
    ({"Forwarded": "for=127.0.0.1", "X-Real-IP": "127.0.0.1"}, 401, "admin endpoints need"),
])
def test_admin_needs_its_token_from_every_address(client, headers, status, message):
    r = client.post("/admin/load", json={"version": "1"}, headers=headers)
    assert r.status_code == status and message in r.json()["error"]
    assert r.headers.get("www-authenticate") == "Bearer"
    other = client.get("/admin/anything", headers=headers)
    assert other.status_code == 401  # even a path that does not exist asks for the token first
    assert client.get("/version").json()["version"] == "1"


@pytest.mark.parametrize("ref, status, message", [
    ("../../../etc/passwd", 422, "got '../../../etc/passwd'"),
    ("/etc/passwd", 422, "alias name"),
    ("champion/../1", 422, "alias name"),
    ("..", 422, "alias name"),
    (["1"], 422, "got list"),
    ("no-such-alias", 404, "has no alias 'no-such-alias'"),
    ("999", 404, "no version 999"),
])
def test_bad_version_refs_get_a_json_4xx_and_change_nothing(client, ref, status, message):
    r = client.post("/admin/load", json={"version": ref}, headers=ADMIN)
    assert r.status_code == status and r.headers["content-type"] == "application/json"
    assert message in r.json()["error"], r.json()
    assert client.get("/version").json()["version"] == "1"


def test_an_internal_error_is_a_generic_500_with_a_request_id_and_the_details_go_to_the_log(server, client,
                                                                                              world):
    world["store"].write_bytes(f"models/{MODEL}/aliases/corrupt.json", b"{this is not json")
    r = client.post("/admin/load", json={"version": "corrupt"}, headers=ADMIN)
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    rid = r.headers["x-request-id"]
    assert r.json() == {"error": f"internal server error (request id {rid}; the details are in the server log)",
                        "request_id": rid}
    deadline = time.monotonic() + 10
    while f"request {rid}" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = server.log()
    assert f"request {rid} (POST /admin/load) failed" in log and "JSONDecodeError" in log
    assert client.get("/version").json()["version"] == "1"


def test_unknown_paths_and_methods_answer_json(client):
    r = client.get("/predict")
    assert r.status_code == 405 and "GET /predict" in r.json()["error"]
    r = client.get("/../../etc/passwd")
    assert r.status_code == 404 and r.json()["error"].startswith("Not Found")


@pytest.fixture(scope="module")
def guarded(world):
    """/predict needs a team token; no admin token at all, so /admin is closed."""
    s = ServerProcess(world["store"].uri, MODEL, "champion", world["root"] / "guarded.log",
                      "--predict-tokens-file", str(world["root"] / "predict-tokens"),
                      "--log-flush-seconds", "0.2", "--target-name", "guarded")
    s.wait_healthy()
    yield s
    s.stop()


def test_predict_tokens_are_enforced_and_admin_is_closed_without_its_token(guarded, world):
    with httpx.Client(base_url=guarded.url, timeout=30, trust_env=False) as c:
        for headers in ({}, {"Authorization": "Bearer not-a-team"}):
            r = c.post("/predict", json={"rows": [ROW], "ids": ["nope"]}, headers=headers)
            assert r.status_code == 401 and "/predict needs 'Authorization: Bearer <token>'" in r.json()["error"]
        r = c.post("/admin/load", json={"version": "1"}, headers={"Authorization": "Bearer anything"})
        assert r.status_code == 403 and "started without an admin token" in r.json()["error"]
        ok = c.post("/predict", json={"rows": [ROW]}, headers={"Authorization": f"Bearer {TEAM_TOKENS['team-a']}"})
        assert ok.status_code == 200 and ok.json()["row_ids"][0].startswith("team-a:")
    assert "nope" not in " ".join(logged(world["store"])["row_id"].dropna())


def test_one_caller_cannot_poison_another_callers_label_join(guarded, world):
    """team-b sends rows under team-a's id strings and labels them: the labels join only to team-b's rows."""
    store = world["store"]
    tag = secrets.token_hex(4)
    with httpx.Client(base_url=guarded.url, timeout=30, trust_env=False) as c:
        a = c.post("/predict", json={"rows": [ROW, ROW], "ids": [f"{tag}-1", f"{tag}-2"]},
                   headers={"Authorization": f"Bearer {TEAM_TOKENS['team-a']}"}).json()
        b = c.post("/predict", json={"rows": [ROW, ROW], "ids": a["row_ids"]},  # team-a's ids, verbatim
                   headers={"Authorization": f"Bearer {TEAM_TOKENS['team-b']}"}).json()
    assert a["row_ids"] == [f"team-a:{tag}-1", f"team-a:{tag}-2"]
    assert b["row_ids"] == [f"team-b:team-a:{tag}-1", f"team-b:team-a:{tag}-2"]
    deadline = time.monotonic() + 20
    while len(served := logged(store)[lambda d: d["row_id"].str.contains(tag, na=False)]) < 4:
        assert time.monotonic() < deadline, "rows did not reach the log"
        time.sleep(0.1)
    write_labels(store, MODEL, b["row_ids"], [1, 1])  # team-b labels what it sent
    write_labels(store, MODEL, a["row_ids"], [0, 0])  # team-a labels its own rows
    joined = join_labels(served, read_labels(store, MODEL))
    by_id = dict(zip(joined["row_id"], joined["label"]))
    assert by_id == {f"team-a:{tag}-1": 0, f"team-a:{tag}-2": 0,
                     f"team-b:team-a:{tag}-1": 1, f"team-b:team-a:{tag}-2": 1}


def test_every_hot_swap_is_in_the_audit_trail_under_the_admin_tokens_id_and_refused_ones_are_not(server, client,
                                                                                               world):
    import hashlib

    from cloudhop.registry.audit import AuditLog

    audit = AuditLog(world["store"])
    before = len(audit.events(MODEL))
    publish_version(world["reg"], Preprocessor.fit(make_frame(200, seed=0), CATEGORICAL, NUMERIC), 2,
                    make_frame(8, seed=1))
    assert client.post("/admin/load", json={"version": "999"}, headers=ADMIN).status_code == 404
    assert client.post("/admin/load", json={"version": "2"}, headers=ADMIN).json()["version"] == "2"
    assert client.post("/admin/load", json={"version": "1"}, headers=ADMIN).json()["version"] == "1"
    swaps = audit.events(MODEL)[before:]
    token_id = f"admin-token:{hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()[:12]}"
    assert [(e["action"], e["from"], e["to"], e["subject"]) for e in swaps] == \
        [("hot-swap", "1", "2", "hostile"), ("hot-swap", "2", "1", "hostile")]
    assert all(e["actor"] == {"token": token_id, "server": "hostile"} for e in swaps)
    assert ADMIN_TOKEN not in json.dumps(swaps)
