"""The faithfulness curve: normalized faithfulness against the share of edges kept.

    plot_curve([0.1, 1, 10, 100], [0.21, 0.64, 0.93, 1.0], "out/curve.svg", title="eap-ig on ioi")

The x axis is the percent of the model's edges (log scale); the full model's level (1) and the
empty circuit's (0) are marked, as MIB's curves are read.
"""

from __future__ import annotations

import math
from pathlib import Path

from .style import BLUE, need_matplotlib

__all__ = ["plot_curve"]


def plot_curve(budgets_percent, faithfulness_values, path: str | Path, title: str = ""
               ) -> list[Path]:
    """Draw the curve of ``faithfulness_values`` at ``budgets_percent``. Writes a PNG at
    ``path`` (with a ``.png`` suffix); when ``path`` ends in ``.svg`` it writes that SVG too.
    Points with a missing or non-finite value are left out. Returns the paths written."""
    matplotlib = need_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pts = sorted((float(x), float(y)) for x, y in zip(budgets_percent, faithfulness_values)
                 if x is not None and y is not None and float(x) > 0 and math.isfinite(float(y)))
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_axes((0.11, 0.13, 0.85, 0.76 if title else 0.82))
    ax.set_xscale("log")
    ax.axhline(1.0, color="#2a9d55", lw=1.2, ls="--", label="full model (1)")
    ax.axhline(0.0, color="#999999", lw=0.8, ls=":", label="empty circuit (0)")
    if pts:
        xs, ys = zip(*pts)
        ax.plot(xs, ys, color=BLUE, lw=2, marker="o", ms=5, label="circuit")
        ax.set_xlim(min(xs) / 1.6, max(xs) * 1.6)
        ymin, ymax = min(0.0, *ys), max(1.0, *ys)
        span = ymax - ymin
        ax.set_ylim(ymin - 0.08 * span, ymax + 0.1 * span)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}%"))
    ax.set_xlabel("edges kept (% of the model's edges, log scale)")
    ax.set_ylabel("normalized faithfulness")
    ax.grid(True, which="major", color="#e6e6e6", lw=0.8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="lower right", frameon=False, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=12, y=0.97)
    png = path.with_suffix(".png")
    fig.savefig(png, dpi=150, facecolor="white")
    written = [png]
    if path.suffix.lower() == ".svg":
        with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "acdc-engine"}):
            fig.savefig(path, format="svg", metadata={"Date": None})
        written.append(path)
    return written
