"""The inference HTTP app (Starlette): /predict, /health, /version, /metrics, /admin/load.

/predict takes {"rows": [{feature: value}, ...]} or, without a dict per row, {"columns": {feature:
[value, ...], ...}}, and optional "ids" (one per row); it answers {"predictions", "version",
"model", "row_ids"}. Every value is checked against the model's features first
(`rows.RowSchema.read`, column by column): a request with one bad value is refused whole with a
422 that names the row and the field, and nothing of it is logged. The row ids, the client's or
generated, are namespaced by the caller (`request.namespaced_ids`) and logged with each row
so that labels arriving later join to it.

The served model and the rows it accepts are one immutable `Served` held in `state.served`.
A request reads that reference once and uses it to the end; /admin/load builds and verifies
the new one completely, then replaces the reference in one assignment. So a swap never fails
or mixes a request.

Every response carries an `X-Request-Id`. An error inside the server answers a generic JSON
500 with that id; the traceback goes to the server's log under the same id.
"""
from __future__ import annotations

import asyncio
import re
import sys
import time
import traceback
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloudhop.registry import Registry
from cloudhop.registry.audit import AuditLog
from cloudhop.serving.auth import Callers
from cloudhop.serving.log import PredictionLog
from cloudhop.serving.metrics import CONTENT_TYPE_LATEST, ServerMetrics
from cloudhop.serving.model import LoadedModel, ModelLoadError, load_model
from cloudhop.serving.request import (PredictBody, RequestError, check_content_type, namespaced_ids, parse_json,
                                      parse_predict, read_body)
from cloudhop.serving.rows import Columns, RowSchema
from cloudhop.serving.telemetry import instrument

__all__ = ["create_app", "ServerState", "Served", "serve", "check_ref", "MAX_BODY_BYTES"]

MAX_BODY_BYTES = 64 << 20
MAX_ADMIN_BODY_BYTES = 4096
INLINE_BODY_BYTES = 16 << 10  # a larger body is parsed, checked and predicted in the thread pool
REQUEST_ID = "cloudhop.request_id"  # the ASGI scope key of this request's id
_REF = re.compile(r"^(\d{1,12}|[A-Za-z0-9][A-Za-z0-9._-]{0,63})$")


def check_ref(ref: Any) -> str:
    """A version ref as the registry takes it (a number, 'latest' or an alias name); a 422 otherwise,
    so a path such as '../x' or '/etc/x' never reaches the store."""
    if isinstance(ref, (str, int)) and not isinstance(ref, bool) and _REF.match(str(ref)):
        return str(ref)
    got = repr(ref)[:80] if isinstance(ref, str) else type(ref).__name__
    raise RequestError(422, f'send {{"version": <a number, "latest" or an alias name of A-Z a-z 0-9 . _ -, '
                            f'up to 64>}}; got {got}', field="version")


@dataclass(frozen=True)
class Served:
    """The model a request uses and the rows it accepts, swapped together as one reference."""
    model: LoadedModel
    schema: RowSchema


def serve(registry: Registry, model: LoadedModel) -> Served:
    """`model` with its row schema. The manifest's spec copy only names the other columns a client may
    send (an ignored column, the time column); what a feature is comes from the loaded preprocessor."""
    spec = registry.get(model.version).manifest.spec
    pre = model.preprocessor
    return Served(model, RowSchema.for_model(pre.categorical, pre.numeric, spec))


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type="application/json", headers=headers)


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


def _refused(e: RequestError) -> Response:
    headers = {}
    if e.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if e.status == 413:  # the rest of the body is never read: the connection cannot be reused
        headers["Connection"] = "close"
    return _json(e.to_dict(), e.status, headers)


class ServerState:
    def __init__(self, registry: Registry, served: Served | None, target: str, log: PredictionLog | None,
                 max_rows: int, callers: Callers, threads: int, max_body: int, check_rows: bool):
        self.registry, self.served, self.target, self.log = registry, served, target, log
        self.max_rows, self.callers, self.threads = max_rows, callers, threads
        self.max_body, self.check_rows = max_body, check_rows
        self.metrics = ServerMetrics()
        self.load_lock = asyncio.Lock()
        if served is not None:
            m = served.model
            self.metrics.serving(m.name, m.version, m.sha256)


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


class _RequestIdMiddleware:
    """Pure ASGI, outermost: an id per request in `X-Request-Id`; an unhandled error becomes a generic
    JSON 500 that quotes the id, and its traceback goes to stderr under the same id."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = uuid.uuid4().hex[:16]
        scope[REQUEST_ID] = rid
        started = False

        async def send_with_id(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            print(f"cloudhop.serving: request {rid} ({scope.get('method')} {scope.get('path')}) failed:\n"
                  f"{traceback.format_exc()}", file=sys.stderr, flush=True)
            if started:
                raise
            body = orjson.dumps({"error": f"internal server error (request id {rid}; the details are in the "
                                          f"server log)", "request_id": rid})
            await send_with_id({"type": "http.response.start", "status": 500,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
            await send_with_id({"type": "http.response.body", "body": body})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _json({"error": f"{exc.detail}: {request.method} {request.url.path[:200]}"}, exc.status_code,
                 dict(exc.headers or {}))


def create_app(registry: Registry, model: LoadedModel | None, *, target: str = "local",
               prediction_log: PredictionLog | None = None, max_rows: int = 10_000,
               admin_token: str | None = None, predict_tokens: dict[str, str] | None = None, threads: int = 1,
               max_body_bytes: int = MAX_BODY_BYTES, check_rows: bool = True,
               audit: AuditLog | None = None) -> Starlette:
    """The app serving `model`. `admin_token` opens /admin/* (closed without one); `predict_tokens`
    ({id: token}) make /predict need one of them; `audit` records every hot swap (/admin/load),
    with the admin token's id as the actor. `check_rows=False` exists for the serving
    benchmark's A/B of what the row check costs, and nothing else."""
    served = serve(registry, model) if model is not None else None
    state = ServerState(registry, served, target, prediction_log, max_rows, Callers(admin_token, predict_tokens),
                        threads, max_body_bytes, check_rows)
    m = state.metrics
    if prediction_log is not None:
        prediction_log.on_error = prediction_log.on_error or (lambda e: m.errors.labels("log_write").inc())
        prediction_log.on_written = prediction_log.on_written or m.log_rows.inc

    def answer(current: Served, body: bytes) -> tuple[PredictBody, Columns, list[float]]:
        request = parse_predict(body, state.max_rows)
        columns = current.schema.read(request) if state.check_rows else current.schema.read_unchecked(request)
        try:
            preds = current.model.predict_columns(columns, request.n)
        except Exception:
            m.errors.labels("predict").inc()
            raise
        return request, columns, preds.tolist()

    async def predict(request: Request) -> Response:
        current = state.served  # this request's model, whatever swaps happen meanwhile
        if current is None:
            return _error(503, "no model loaded")
        try:
            caller = state.callers.predict(request.headers.get("authorization"))
            check_content_type(request.headers.get("content-type"))
            body = await read_body(request, state.max_body)
            if len(body) > INLINE_BODY_BYTES:
                sent, columns, values = await run_in_threadpool(answer, current, body)
            else:
                sent, columns, values = answer(current, body)
        except RequestError as e:
            m.errors.labels("bad_request").inc()
            return _refused(e)
        model = current.model
        row_ids = namespaced_ids(caller, sent.ids, request.scope[REQUEST_ID], sent.n)
        m.rows.inc(sent.n)
        if state.log is not None:
            pre = model.preprocessor
            state.log.add(model.version, pre.categorical, pre.numeric, columns, sent.n, values, row_ids)
        return _json({"predictions": values, "version": model.version, "model": model.name, "row_ids": row_ids})

    async def health(request: Request) -> Response:
        current = state.served
        if current is None:
            return _json({"status": "no model loaded", "model": registry.name, "version": None}, 503)
        return _json({"status": "ok", "model": current.model.name, "version": current.model.version})

    async def version(request: Request) -> Response:
        current = state.served
        if current is None:
            return _error(503, "no model loaded")
        mod = current.model
        return _json({"model": mod.name, "version": mod.version, "sha256": mod.sha256,
                      "loaded_at": mod.loaded_at, "target": state.target})

    async def metrics(request: Request) -> Response:
        if state.log is not None:
            m.log_pending.set(state.log.pending_rows)
        return Response(m.render(), media_type=CONTENT_TYPE_LATEST)

    def load(ref: str) -> Served:
        return serve(registry, load_model(registry, ref, state.threads))

    async def admin_load(request: Request) -> Response:
        try:
            state.callers.admin(request.headers.get("authorization"))
            check_content_type(request.headers.get("content-type"))
            payload = parse_json(await read_body(request, MAX_ADMIN_BODY_BYTES))
            ref = check_ref(payload.get("version") if isinstance(payload, dict) else None)
        except RequestError as e:
            m.errors.labels("bad_request").inc()
            return _refused(e)
        async with state.load_lock:  # one load at a time
            old = state.served
            still = old.model.version if old else None
            try:
                new = await run_in_threadpool(load, ref)
            except ModelLoadError as e:  # missing (404), or refused: checksums, signature (its status, 409)
                m.errors.labels("load").inc()
                print(f"cloudhop.serving: load of {ref!r} failed, still serving v{still}: {e}", file=sys.stderr,
                      flush=True)
                return _json({"error": str(e), "version": still}, e.status)
            state.served = new  # the swap: one reference assignment
            m.swaps.inc()
            m.serving(new.model.name, new.model.version, new.model.sha256)
            if audit is not None:
                try:
                    await run_in_threadpool(audit.record, new.model.name, "hot-swap", target, still,
                                            new.model.version, actor={"token": state.callers.admin_id,
                                                                      "server": target},
                                            reason=f"/admin/load {ref}")
                except Exception as e:  # the swap is done; an audit write that failed must be seen
                    m.errors.labels("audit_write").inc()
                    print(f"cloudhop.serving: hot swap to v{new.model.version} NOT recorded in the audit "
                          f"trail: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        print(f"cloudhop.serving: now serving {new.model.name} v{new.model.version} (was v{still})",
              file=sys.stderr, flush=True)
        return _json({"previous": still, "version": new.model.version})

    async def admin_other(request: Request) -> Response:
        try:  # every /admin path asks for the token first, even one that does not exist
            state.callers.admin(request.headers.get("authorization"))
        except RequestError as e:
            return _refused(e)
        return _error(404, f"no admin endpoint {request.method} {request.url.path[:200]}")

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
        Route("/admin/{rest:path}", admin_other, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ], lifespan=lifespan, exception_handlers={HTTPException: _http_error})
    app.state.cloudhop = state
    app.add_middleware(_MetricsMiddleware, metrics=m)
    app.add_middleware(_RequestIdMiddleware)
    instrument(app, state)  # a span and metrics per /predict, outermost, when an OTLP endpoint is set
    return app
