"""Traffic replay: send a dataset window's rows to a serving endpoint at a given rate.

For the demo and the tests: replay January's flights and nothing drifts; replay September's,
or shift a feature (`--shift temp=+30`), and the monitor sees the served traffic move.
"""
from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Literal, Sequence

import pandas as pd

from cloudhop.spec import PipelineSpec

__all__ = ["ReplayError", "Shift", "ReplayStats", "parse_shift", "apply_shifts", "window_rows", "replay"]

MAX_BATCH = 10_000


class ReplayError(ValueError):
    """The replay cannot start or go on: the message says what is wrong."""


@dataclass(frozen=True)
class Shift:
    """One change to a feature before sending: add (`+k`/`-k`), multiply (`*k`) or set (`value`)."""
    column: str
    op: Literal["+", "*", "="]
    value: float | str

    def __str__(self) -> str:
        if self.op == "+":
            return f"{self.column}={'+' if float(self.value) >= 0 else ''}{self.value:g}"
        return f"{self.column}={'*' if self.op == '*' else ''}{self.value}"


def parse_shift(text: str) -> Shift:
    """`col=+k` adds k, `col=-k` subtracts k, `col=*k` multiplies by k, `col=v` sets every value to v."""
    col, sep, rhs = text.partition("=")
    col, rhs = col.strip(), rhs.strip()
    if not sep or not col or not rhs:
        raise ReplayError(f"bad shift {text!r}: write column=+k, column=-k, column=*k or column=value")
    if rhs[0] in "+-*":
        try:
            k = float(rhs[1:]) if rhs[0] == "*" else float(rhs)
        except ValueError:
            raise ReplayError(f"bad shift {text!r}: {rhs[1:]!r} is not a number") from None
        if not math.isfinite(k):
            raise ReplayError(f"bad shift {text!r}: the amount must be finite")
        return Shift(col, "*" if rhs[0] == "*" else "+", k)
    return Shift(col, "=", rhs)


def apply_shifts(df: pd.DataFrame, shifts: list[Shift], spec: PipelineSpec) -> pd.DataFrame:
    """A copy of df with every shift applied; a shift on a non-feature or of the wrong kind is an error."""
    out = df.copy()
    for s in shifts:
        if s.column not in spec.features:
            raise ReplayError(f"shift {s}: {s.column!r} is not a feature of {spec.name} "
                              f"(features: {', '.join(spec.features)})")
        if s.op != "=" and s.column not in spec.numeric:
            raise ReplayError(f"shift {s}: {s.column!r} is categorical; only `{s.column}=value` can change it")
        if s.op == "+":
            out[s.column] = pd.to_numeric(out[s.column], errors="coerce") + s.value
        elif s.op == "*":
            out[s.column] = pd.to_numeric(out[s.column], errors="coerce") * s.value
        elif s.column in spec.numeric:
            try:
                out[s.column] = float(s.value)
            except ValueError:
                raise ReplayError(f"shift {s}: {s.column!r} is numeric and {s.value!r} is not a number") from None
        else:
            out[s.column] = s.value
    return out


def window_rows(spec: PipelineSpec, start: datetime | str, end: datetime | str, max_rows: int | None = None,
                seed: int = 0, data: pd.DataFrame | None = None, with_target: bool = False) -> pd.DataFrame:
    """The feature columns (and the target, `with_target`) of the rows with start <= time < end, in time order.

    With `max_rows`, a seeded random sample of the window (still in time order), so a
    short replay still covers the whole window.
    """
    from cloudhop.data import load_dataset

    df = load_dataset(spec) if data is None else data
    tc = spec.split.time_column
    lo, hi = pd.Timestamp(start), pd.Timestamp(end)
    if lo >= hi:
        raise ReplayError(f"replay window start {lo} is not before its end {hi}")
    t = df[tc]
    rows = df[(t >= lo) & (t < hi)]
    if rows.empty:
        raise ReplayError(f"no rows of {spec.dataset.uri} in {lo} .. {hi}: {tc} spans {t.min()} .. {t.max()}")
    if max_rows is not None and len(rows) > max_rows:
        rows = rows.sample(n=max_rows, random_state=seed).sort_index(kind="stable")
    cols = spec.features + ([spec.target.column] if with_target else [])
    missing = [c for c in cols if c not in rows.columns]
    if missing:
        raise ReplayError(f"dataset {spec.dataset.uri} lacks column(s) {missing}")
    return rows[cols].reset_index(drop=True)


@dataclass
class ReplayStats:
    rows: int = 0
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    versions: Counter = field(default_factory=Counter)  # rows answered per model version
    last_error: str | None = None
    answered: list[int] = field(default_factory=list)      # positions of the rows answered
    row_ids: list[str] = field(default_factory=list)       # the ids the server logged them under

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        v = ", ".join(f"v{k}: {n}" for k, n in sorted(self.versions.items())) or "none"
        err = f", {self.errors} failed requests (last: {self.last_error})" if self.errors else ""
        return (f"sent {self.rows} rows in {self.requests} requests over {self.seconds:.1f}s "
                f"({self.rate:.0f} rows/s); answered by {v}{err}")


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records", date_format="iso"))  # NaN -> null


def replay(rows: pd.DataFrame, url: str, rate: float, batch: int = 100, *, ids: Sequence[str] | None = None,
           max_errors: int = 10, timeout: float = 30.0,
           on_batch: Callable[[ReplayStats], None] | None = None) -> ReplayStats:
    """POST rows to `url`/predict in batches, never faster than `rate` rows per second.

    `ids` (one per row) are sent as the rows' ids, which the server logs, so labels can be
    joined later. An endpoint that refuses connections stops the replay at once; HTTP errors
    are counted and stop it after `max_errors`.
    """
    import httpx

    if not rate > 0 or not math.isfinite(rate):
        raise ReplayError(f"rate must be a positive number of rows per second, got {rate}")
    if not 1 <= batch <= MAX_BATCH:
        raise ReplayError(f"batch must be 1..{MAX_BATCH} rows, got {batch}")
    if not url.startswith(("http://", "https://")):
        raise ReplayError(f"url must start with http:// or https://, got {url!r}")
    if ids is not None and len(ids) != len(rows):
        raise ReplayError(f"{len(ids)} ids for {len(rows)} rows")
    endpoint = url.rstrip("/") + ("" if url.rstrip("/").endswith("/predict") else "/predict")
    stats = ReplayStats()
    t0 = time.monotonic()
    with httpx.Client(timeout=httpx.Timeout(timeout, connect=5.0), trust_env=False) as client:
        for i in range(0, len(rows), batch):
            chunk = rows.iloc[i:i + batch]
            wait = t0 + i / rate - time.monotonic()  # pace: the rows sent so far at `rate`
            if wait > 0:
                time.sleep(wait)
            body: dict[str, Any] = {"rows": _records(chunk)}
            if ids is not None:
                body["ids"] = [str(x) for x in ids[i:i + batch]]
            try:
                r = client.post(endpoint, json=body)
            except httpx.TransportError as e:
                raise ReplayError(f"cannot reach {endpoint}: {type(e).__name__}: {e} "
                                  f"(after {stats.rows} rows)") from None
            stats.requests += 1
            if r.status_code == 200:
                answer = r.json()
                stats.rows += len(chunk)
                stats.versions[str(answer.get("version"))] += len(chunk)
                stats.answered += range(i, i + len(chunk))
                stats.row_ids += [str(x) for x in answer.get("row_ids") or [None] * len(chunk)]
            else:
                stats.errors += 1
                stats.last_error = f"HTTP {r.status_code}: {r.text[:200]}"
                if stats.errors >= max_errors:
                    stats.seconds = time.monotonic() - t0
                    raise ReplayError(f"{endpoint} failed {stats.errors} requests; last: {stats.last_error}")
            stats.seconds = time.monotonic() - t0
            if on_batch is not None:
                on_batch(stats)
    stats.seconds = time.monotonic() - t0
    return stats
