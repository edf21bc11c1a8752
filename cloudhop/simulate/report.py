"""The simulator's output: one row per policy, the comparison the README quotes, and a PNG."""
from __future__ import annotations

import io
import math
from typing import Any

from cloudhop.simulate.engine import PolicyResult

__all__ = ["table", "format_table", "savings", "chart_png"]


def table(results: list[PolicyResult]) -> list[dict[str, Any]]:
    return [r.row() for r in results]


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table (Markdown pipes), one policy a row."""
    if not rows:
        return ""
    cols = list(rows[0])
    cells = [[("never" if isinstance(v, float) and math.isinf(v) else str(v)) for v in r.values()] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths]), *(line(c) for c in cells)])


def savings(rows: list[dict[str, Any]], policy: str = "cloudhop") -> dict[str, Any]:
    """`policy` against the cheapest single-cloud on-demand policy (the strictest baseline)."""
    ours = next(r for r in rows if r["policy"] == policy)
    on_demand = [r for r in rows if r["policy"].endswith(" on-demand")]
    if not on_demand:
        raise ValueError("no single-cloud on-demand policy to compare with")
    base = min(on_demand, key=lambda r: r["total $"])
    return {"policy": policy, "baseline": base["policy"], "baseline $": base["total $"], "policy $": ours["total $"],
            "cheaper %": round(100.0 * (1.0 - ours["total $"] / base["total $"]), 1) if base["total $"] else None,
            "on time %": ours["on time %"], "baseline on time %": base["on time %"]}


def chart_png(rows: list[dict[str, Any]], title: str) -> bytes:
    """Two panels per policy: $ per retrain and % of retrains on time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["policy"] for r in rows]
    colours = ["tab:green" if n.startswith("cloudhop") else "tab:orange" if n.endswith(" spot") else "tab:blue"
               for n in names]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 0.45 * len(rows) + 1.8), sharey=True)
    ax1.barh(names, [r["$ per retrain"] or 0 for r in rows], color=colours)
    ax1.set_xlabel("$ per retrain")
    ax2.barh(names, [r["on time %"] or 0 for r in rows], color=colours)
    ax2.set_xlabel("% of retrains on time")
    ax2.set_xlim(min([r["on time %"] or 0 for r in rows] + [99.0]) - 1, 100.5)
    ax1.invert_yaxis()
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
