"""The loss curve as a PNG (matplotlib's Agg canvas; no pyplot, no global state)."""
from __future__ import annotations

import io
from typing import Any

__all__ = ["loss_curve_png"]


def loss_curve_png(history: list[dict[str, Any]]) -> bytes:
    """Training and validation loss per epoch, as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    ax.plot(epochs, [h["valid_loss"] for h in history], marker="o", label="validation")
    if history:
        best = min(history, key=lambda h: h["valid_loss"])
        ax.axvline(best["epoch"], color="grey", linestyle=":", label=f"best (epoch {best['epoch']})")
    else:
        ax.text(0.5, 0.5, "no epochs", ha="center", va="center", transform=ax.transAxes)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("training and validation loss")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
