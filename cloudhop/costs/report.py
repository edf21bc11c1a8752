"""The cost report: every priced training attempt in a store, totals by cloud, model or month.

Reads the cost records (costs/<model>/<run>.json, one per retrain, failed retrains included)
and the registry's manifests (a version's `cost`, and which version a run made). A run found
in both is counted once. "Wasted" is what attempts that did not complete cost.
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any, Sequence

import pandas as pd

from cloudhop.costs.records import read_costs, record_models
from cloudhop.registry import Registry
from cloudhop.registry.manifest import CostInfo
from cloudhop.store import Store

__all__ = ["attempt_rows", "totals", "cost_chart_png", "GROUPS", "COLUMNS"]

GROUPS = {"cloud": "cloud", "model": "model", "month": "month"}
COLUMNS = ["model", "version", "run_key", "cloud", "number", "outcome", "wasted", "pool", "offer", "gpu",
           "gpu_count", "spot", "price_per_hour", "started_at", "ended_at", "billed_seconds", "egress_bytes",
           "egress_cost", "compute_cost", "cost", "day", "month"]


def _as_utc(ts: str) -> datetime:
    t = datetime.fromisoformat(ts)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def attempt_rows(store: Store, models: Sequence[str] | None = None, since: date | None = None,
                 public_key: Any = None) -> pd.DataFrame:
    """One row per priced attempt (COLUMNS), oldest first; `since` keeps attempts that ended on or after it.
    With `public_key`, manifests are read only when their signature verifies (as everywhere else)."""
    names = list(models) if models else sorted(set(record_models(store)) | set(store.list_dirs("models")))
    runs: dict[tuple[str, str], tuple[CostInfo, str | None]] = {}
    for name in names:
        for info in read_costs(store, name):
            runs[(name, info.run_key or "")] = (info, None)
        reg = Registry(store, name, public_key=public_key)
        for v in reg.versions():
            m = reg.get(v).manifest
            key = (name, (m.cost.run_key if m.cost else None) or m.run_id or f"version-{v}")
            if key in runs:
                runs[key] = (runs[key][0], v)
            elif m.cost is not None:
                runs[key] = (m.cost, v)
    rows = []
    for (name, run_key), (info, version) in runs.items():
        for a in info.attempts:
            ended = _as_utc(a.ended_at)
            if since is not None and ended.date() < since:
                continue
            rows.append({**a.model_dump(), "model": name, "version": version, "run_key": run_key,
                         "wasted": a.outcome != "completed", "day": ended.date().isoformat(),
                         "month": ended.strftime("%Y-%m")})
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.sort_values(["ended_at", "model", "number"], kind="stable").reset_index(drop=True)


def totals(rows: pd.DataFrame, by: str = "cloud") -> pd.DataFrame:
    """Per group: retrains, attempts, failed attempts, billed hours, compute/egress/total $ and the $
    wasted on attempts that did not complete; a last row 'total'."""
    if by not in GROUPS:
        raise ValueError(f"cannot group costs by {by!r}; choose one of {', '.join(GROUPS)}")
    col = GROUPS[by]

    def summarise(g: pd.DataFrame) -> dict[str, Any]:
        return {"retrains": g["run_key"].nunique(), "attempts": len(g), "failed": int(g["wasted"].sum()),
                "hours": round(g["billed_seconds"].sum() / 3600, 4), "compute $": round(g["compute_cost"].sum(), 4),
                "egress $": round(g["egress_cost"].sum(), 4), "cost $": round(g["cost"].sum(), 4),
                "wasted $": round(g.loc[g["wasted"], "cost"].sum(), 4)}

    out = [{by: key, **summarise(g)} for key, g in rows.groupby(col, sort=True)]
    out.append({by: "total", **summarise(rows)})
    return pd.DataFrame(out)


def cost_chart_png(rows: pd.DataFrame) -> bytes:
    """Cost by cloud over time: one stacked bar per day, one colour per cloud."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if rows.empty:
        ax.text(0.5, 0.5, "no priced training attempts", ha="center", va="center", transform=ax.transAxes)
    else:
        table = rows.pivot_table(index="day", columns="cloud", values="cost", aggfunc="sum", fill_value=0.0)
        bottom = [0.0] * len(table)
        for cloud in table.columns:
            values = table[cloud].tolist()
            ax.bar(table.index.tolist(), values, bottom=bottom, label=str(cloud))
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.legend(title="cloud")
        ax.tick_params(axis="x", labelrotation=45)
    ax.set_xlabel("day (UTC)")
    ax.set_ylabel("cost (USD)")
    ax.set_title("training cost by cloud")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
