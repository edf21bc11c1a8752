"""Reading a request to the inference server: content type, body size, JSON, rows or columns, row ids.

Every refusal is a `RequestError` that carries the HTTP status and, where one row is at fault,
the row's position and the field, so the client is told exactly what to fix:
`{"error": "rows[3].distance: expected a number or null, got string 'abc'", "row": 3, "field": "distance"}`.

The body limit is counted on the stream as it arrives (a chunked body has no Content-Length
to trust). JSON is parsed by orjson, which refuses `NaN`/`Infinity` tokens and numbers beyond
the float range; only then the standard library parses it again to say where the non-finite
number sits. So every number in what `parse_json` returns is finite.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Iterable

import orjson
from starlette.requests import Request

__all__ = ["RequestError", "MAX_ID_CHARS", "check_content_type", "read_body", "parse_json",
           "json_type", "namespaced_ids", "PredictBody", "parse_predict"]

MAX_ID_CHARS = 128  # a client's row id, before its namespace is put in front


class RequestError(ValueError):
    """A request refused with `status`; `row` and `field` say where when one row is at fault."""

    def __init__(self, status: int, message: str, row: int | None = None, field: str | None = None):
        super().__init__(message)
        self.status, self.row, self.field = status, row, field

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": str(self)}
        if self.row is not None:
            out["row"] = self.row
        if self.field is not None:
            out["field"] = self.field
        return out


def json_type(v: Any) -> str:
    """The JSON name of a parsed value's type (for messages)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(v), type(v).__name__)


def check_content_type(value: str | None) -> None:
    """Only JSON is read: application/json (any charset) or an application/*+json type."""
    media = (value or "").split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return
    got = f"got {value[:80]!r}" if value else "no content-type header was sent"
    raise RequestError(415, f"send the body as JSON with 'content-type: application/json' ({got})")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or a 413 as soon as more than `limit` bytes have arrived (the rest is never read)."""
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        declared = 0  # a garbled header only skips the early check; the stream is counted anyway
    if declared > limit:
        raise RequestError(413, f"request body is larger than {limit} bytes (content-length {declared})")
    chunks, size, receive = [], 0, request.receive  # the ASGI messages themselves: no stream wrapper
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":  # nobody is left to answer; not a server error
            raise RequestError(400, f"the client went away after {size} bytes of the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"request body is larger than {limit} bytes (counted as it arrived)")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunk if len(chunks) == 1 else b"".join(chunks)


class _NonFinite:
    """Where the standard library met NaN, Infinity or a number beyond the float range."""

    def __init__(self, text: str):
        self.text = text[:24]


def _float(text: str) -> Any:
    x = float(text)
    return x if math.isfinite(x) else _NonFinite(text)


def _int(text: str) -> Any:
    x = int(text)
    try:
        float(x)
    except OverflowError:
        return _NonFinite(text)
    return x


def _first_non_finite(v: Any, path: tuple) -> tuple[tuple, _NonFinite] | None:
    if isinstance(v, _NonFinite):
        return path, v
    items: Iterable[tuple[Any, Any]]
    if isinstance(v, dict):
        items = v.items()
    elif isinstance(v, list):
        items = enumerate(v)
    else:
        return None
    for k, x in items:
        found = _first_non_finite(x, (*path, k))
        if found is not None:
            return found
    return None


def parse_json(body: bytes) -> Any:
    """The parsed body; a 400 for malformed JSON, a 422 that names the place of a non-finite number."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        error = e
    try:  # only to locate a NaN/Infinity/overflow: what orjson refused is never used
        again = json.loads(body, parse_constant=_NonFinite, parse_float=_float, parse_int=_int)
    except (ValueError, RecursionError):
        again = None
    found = _first_non_finite(again, ()) if again is not None else None
    if found is None:
        raise RequestError(400, f"request body is not valid JSON: {error}") from None
    path, bad = found
    what = f"{bad.text} is not a finite number (JSON numbers must be finite; send null for a missing value)"
    if len(path) >= 2 and path[0] == "rows" and isinstance(path[1], int):
        field = str(path[2]) if len(path) > 2 else None
        where = f"rows[{path[1]}]" + (f".{field[:64]}" if field is not None else "")
        raise RequestError(422, f"{where}: {what}", row=path[1], field=field)
    if len(path) == 3 and path[0] == "columns" and isinstance(path[2], int):
        field = str(path[1])[:64]
        raise RequestError(422, f"columns.{field}[{path[2]}]: {what}", row=path[2], field=field)
    if len(path) == 2 and path[0] == "ids" and isinstance(path[1], int):
        raise RequestError(422, f"ids[{path[1]}]: {what}", row=path[1], field="ids")
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{str(p)[:64]}" for p in path).lstrip(".")
    raise RequestError(422, f"{where or 'body'}: {what}")


@dataclass(frozen=True)
class PredictBody:
    """A /predict body whose shape is right: `n` rows, sent as `rows` (one object per row) or as
    `columns` (one array of `n` values per column), and the client's row ids or None."""
    n: int
    rows: list[dict[str, Any]] | None = None
    columns: dict[str, list[Any]] | None = None
    ids: list[str] | None = None


_FORMS = '{"rows": [{feature: value, ...}, ...]} or {"columns": {feature: [value, ...], ...}}'


def parse_predict(body: bytes, max_rows: int) -> PredictBody:
    """A /predict body -> its rows or columns and row ids, or a RequestError that says what is wrong.

    Only the shape is checked here; whether the values fit the model is `RowSchema.read`."""
    if not body:
        raise RequestError(400, f"empty request body: send a JSON object like {_FORMS}")
    payload = parse_json(body)
    if type(payload) is not dict:
        raise RequestError(422, f"request body must be a JSON object like {_FORMS}, got {json_type(payload)}")
    rows, columns = payload.get("rows"), payload.get("columns")
    if rows is not None and columns is not None:
        raise RequestError(422, 'send either "rows" or "columns", not both')
    if rows is not None:
        n = _check_rows(rows, max_rows)
    elif columns is not None:
        n = _check_columns(columns, max_rows)
    else:
        raise RequestError(422, f'request body has neither "rows" nor "columns" '
                                f'(keys: {[k[:32] for k in sorted(payload)[:10]]}); send {_FORMS}')
    ids = payload.get("ids")
    return PredictBody(n, rows, columns, None if ids is None else _check_ids(ids, n))


def _check_rows(rows: Any, max_rows: int) -> int:
    if type(rows) is not list:
        raise RequestError(422, f'"rows" must be an array of objects, got {json_type(rows)}')
    if not rows:
        raise RequestError(422, '"rows" is empty: send at least one row')
    if len(rows) > max_rows:
        raise RequestError(422, f"too many rows: {len(rows)} (the limit is {max_rows} per request)")
    if not all(type(r) is dict for r in rows):
        i = next(i for i, r in enumerate(rows) if type(r) is not dict)
        raise RequestError(422, f"rows[{i}] must be a JSON object of feature: value, got {json_type(rows[i])}", row=i)
    return len(rows)


def _check_columns(columns: Any, max_rows: int) -> int:
    if type(columns) is not dict:
        raise RequestError(422, f'"columns" must be an object of column: [values], got {json_type(columns)}')
    if not columns:
        raise RequestError(422, '"columns" is empty: send every feature as an array of values')
    n = None
    for name, values in columns.items():
        if type(values) is not list:
            raise RequestError(422, f"columns.{name[:64]} must be an array of values, got {json_type(values)}",
                               field=name[:64])
        if n is None:
            n, first = len(values), name
            if n == 0:
                raise RequestError(422, f"columns.{name[:64]} is empty: send at least one row", field=name[:64])
            if n > max_rows:
                raise RequestError(422, f"too many rows: {n} (the limit is {max_rows} per request)")
        elif len(values) != n:
            raise RequestError(422, f"columns.{name[:64]} has {len(values)} values but columns.{first[:64]} has "
                                    f"{n}: every column needs one value per row", field=name[:64])
    assert n is not None
    return n


def _check_ids(ids: Any, n: int) -> list[str]:
    if type(ids) is not list or len(ids) != n:
        raise RequestError(422, f'"ids" must be an array with one id per row ({n}), '
                                f'got {json_type(ids)}{f" of {len(ids)}" if isinstance(ids, list) else ""}',
                           field="ids")
    out = list(map(str, ids))
    kinds = set(map(type, ids))
    if not kinds <= {str, int} or max(map(len, out)) > MAX_ID_CHARS:
        for i, x in enumerate(ids):
            if type(x) not in (str, int):
                raise RequestError(422, f"ids[{i}] must be a string or an integer, got {json_type(x)}",
                                   row=i, field="ids")
            if len(out[i]) > MAX_ID_CHARS:
                raise RequestError(422, f"ids[{i}] is {len(out[i])} characters long; the limit is {MAX_ID_CHARS}",
                                   row=i, field="ids")
    return out


def namespaced_ids(caller: str, ids: list[str] | None, request_id: str, n: int) -> list[str]:
    """The row ids logged and returned: `<caller>:<id>`, the client's ids or `<request id>-<i>`.

    `caller` is the id of the caller's token ("anon" without one) and never holds ':', so two
    callers' ids can never be equal, and labels joined by row id only reach the caller's own rows."""
    if ids is None:
        return list(map(f"{caller}:{request_id}-".__add__, map(str, range(n))))
    return list(map(f"{caller}:".__add__, ids))
