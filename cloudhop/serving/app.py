"""The inference HTTP app (Starlette): /predict, /health, /version, /metrics, /admin/load.

/predict takes {"rows": [{feature: value}, ...], "ids": [optional, one per row]} and answers
{"predictions", "version", "model", "row_ids"}; row ids (the client's, or generated) are
logged with each row so that labels arriving later can be joined to it.

The served model is one immutable LoadedModel held in `state.model`. A request reads
that reference once and uses it to the end; /admin/load builds and verifies the new
one completely, then replaces the reference in one assignment. So a swap never fails
or mixes a request.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import sys
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloudhop.registry import Registry
from cloudhop.serving.log import PredictionLog
from cloudhop.serving.metrics import CONTENT_TYPE_LATEST, ServerMetrics
from cloudhop.serving.model import LoadedModel, ModelLoadError, load_model

__all__ = ["create_app", "RequestError", "parse_rows", "ServerState"]

MAX_BODY_BYTES = 64 << 20
INLINE_ROWS = 64  # smaller requests run on the event loop; larger ones in the threadpool


class RequestError(ValueError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(v), type(v).__name__)


def parse_rows(body: bytes, max_rows: int) -> tuple[list[dict[str, Any]], list[str] | None]:
    """A /predict body -> (rows, the client's row ids or None), or a RequestError that says what is wrong."""
    if not body:
        raise RequestError(400, 'empty request body: send a JSON object like {"rows": [{...}, ...]}')
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise RequestError(400, f"request body is not valid JSON: {e}") from None
    if not isinstance(payload, dict):
        raise RequestError(422, f'request body must be a JSON object like {{"rows": [...]}}, got {_json_type(payload)}')
    if "rows" not in payload:
        raise RequestError(422, f'request body has no "rows" (keys: {sorted(payload)[:10]})')
    rows = payload["rows"]
    if not isinstance(rows, list):
        raise RequestError(422, f'"rows" must be an array of objects, got {_json_type(rows)}')
    if not rows:
        raise RequestError(422, '"rows" is empty: send at least one row')
    if len(rows) > max_rows:
        raise RequestError(422, f'too many rows: {len(rows)} (the limit is {max_rows} per request)')
    if not all(type(r) is dict for r in rows):
        i = next(i for i, r in enumerate(rows) if type(r) is not dict)
        raise RequestError(422, f"rows[{i}] must be a JSON object of feature: value, got {_json_type(rows[i])}")
    ids = payload.get("ids")
    if ids is None:
        return rows, None
    if not isinstance(ids, list) or len(ids) != len(rows):
        raise RequestError(422, f'"ids" must be an array with one id per row ({len(rows)}), '
                                f'got {_json_type(ids)}{f" of {len(ids)}" if isinstance(ids, list) else ""}')
    bad = next((i for i, x in enumerate(ids) if not isinstance(x, (str, int)) or isinstance(x, bool)), None)
    if bad is not None:
        raise RequestError(422, f"ids[{bad}] must be a string or an integer, got {_json_type(ids[bad])}")
    return rows, [str(x) for x in ids]


def _content_length(request: Request) -> int:
    try:
        return int(request.headers.get("content-length") or 0)
    except ValueError:
        return 0  # the server reads what arrives; a garbled header only skips the early size check


def _json(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


class ServerState:
    def __init__(self, registry: Registry, model: LoadedModel | None, target: str,
                 log: PredictionLog | None, max_rows: int, admin_token: str | None, threads: int):
        self.registry, self.model, self.target = registry, model, target
        self.log, self.max_rows, self.admin_token, self.threads = log, max_rows, admin_token, threads
        self.metrics = ServerMetrics()
        self.load_lock: asyncio.Lock | None = None
        if model is not None:
            self.metrics.serving(model.name, model.version, model.sha256)


class _MetricsMiddleware:
    """Pure ASGI: counts and times every HTTP request by endpoint and status."""

    def __init__(self, app: Any, metrics: ServerMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500
        t0 = time.perf_counter()

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe(scope["path"], status, time.perf_counter() - t0)


def create_app(registry: Registry, model: LoadedModel | None, *, target: str = "local",
               prediction_log: PredictionLog | None = None, max_rows: int = 10_000,
               admin_token: str | None = None, threads: int = 1) -> Starlette:
    state = ServerState(registry, model, target, prediction_log, max_rows, admin_token, threads)
    m = state.metrics
    if prediction_log is not None:
        prediction_log.on_error = prediction_log.on_error or (lambda e: m.errors.labels("log_write").inc())
        prediction_log.on_written = prediction_log.on_written or m.log_rows.inc

    async def predict(request: Request) -> Response:
        current = state.model  # this request's model, whatever swaps happen meanwhile
        if current is None:
            return _error(503, "no model loaded")
        try:
            if _content_length(request) > MAX_BODY_BYTES:
                raise RequestError(413, f"request body is larger than {MAX_BODY_BYTES} bytes")
            rows, ids = parse_rows(await request.body(), state.max_rows)
        except RequestError as e:
            m.errors.labels("bad_request").inc()
            return _error(e.status, str(e))
        try:
            if len(rows) <= INLINE_ROWS:
                preds = current.predict_records(rows)
            else:
                preds = await run_in_threadpool(current.predict_records, rows)
        except Exception as e:
            m.errors.labels("predict").inc()
            return _error(500, f"prediction failed on {current.name} v{current.version}: {e}")
        values = preds.tolist()
        if ids is None:
            request_id = uuid.uuid4().hex[:16]
            ids = [f"{request_id}-{i}" for i in range(len(rows))]
        m.rows.inc(len(rows))
        if state.log is not None:
            pre = current.preprocessor
            state.log.add(current.version, pre.categorical, pre.numeric, rows, values, ids)
        return _json({"predictions": values, "version": current.version, "model": current.name, "row_ids": ids})

    async def health(request: Request) -> Response:
        current = state.model
        if current is None:
            return _json({"status": "no model loaded", "model": registry.name, "version": None}, 503)
        return _json({"status": "ok", "model": current.name, "version": current.version})

    async def version(request: Request) -> Response:
        current = state.model
        if current is None:
            return _error(503, "no model loaded")
        return _json({"model": current.name, "version": current.version, "sha256": current.sha256,
                      "loaded_at": current.loaded_at, "target": state.target})

    async def metrics(request: Request) -> Response:
        if state.log is not None:
            m.log_pending.set(state.log.pending_rows)
        return Response(m.render(), media_type=CONTENT_TYPE_LATEST)

    def admin_denied(request: Request) -> Response | None:
        if state.admin_token:
            got = request.headers.get("authorization", "")
            if not hmac.compare_digest(got.encode(), f"Bearer {state.admin_token}".encode()):
                return _error(401, "admin endpoints need header 'Authorization: Bearer <CLOUDHOP_ADMIN_TOKEN>'")
            return None
        host = request.client.host if request.client else ""
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            return _error(403, "admin endpoints are open only to loopback clients unless CLOUDHOP_ADMIN_TOKEN is set")
        return None

    async def admin_load(request: Request) -> Response:
        denied = admin_denied(request)
        if denied is not None:
            return denied
        try:
            payload = orjson.loads(await request.body())
        except orjson.JSONDecodeError as e:
            return _error(400, f"request body is not valid JSON: {e}")
        ref = payload.get("version") if isinstance(payload, dict) else None
        if not isinstance(ref, (str, int)) or isinstance(ref, bool) or str(ref).strip() == "":
            return _error(422, 'send {"version": "<number, latest or alias>"}')
        if state.load_lock is None:
            state.load_lock = asyncio.Lock()
        async with state.load_lock:  # one load at a time
            old = state.model
            try:
                new = await run_in_threadpool(load_model, registry, str(ref), state.threads)
            except ModelLoadError as e:
                m.errors.labels("load").inc()
                still = old.version if old else None
                print(f"cloudhop.serving: load of {ref!r} failed, still serving v{still}: {e}", file=sys.stderr,
                      flush=True)
                return _json({"error": str(e), "version": still}, e.status)
            state.model = new  # the swap: one reference assignment
            m.swaps.inc()
            m.serving(new.name, new.version, new.sha256)
        print(f"cloudhop.serving: now serving {new.name} v{new.version} (was v{old.version if old else None})",
              file=sys.stderr, flush=True)
        return _json({"previous": old.version if old else None, "version": new.version})

    @asynccontextmanager
    async def lifespan(app: Starlette):
        if state.log is not None:
            state.log.start()
        try:
            yield
        finally:
            if state.log is not None:
                await run_in_threadpool(state.log.close)

    app = Starlette(routes=[
        Route("/predict", predict, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/version", version, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/admin/load", admin_load, methods=["POST"]),
    ], lifespan=lifespan)
    app.state.cloudhop = state
    app.add_middleware(_MetricsMiddleware, metrics=m)
    return app
