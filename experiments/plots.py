"""Figures in the papers' style: accuracy against step (V2 Fig. 6), accuracy against cost (V1 Figs.
4-5), bars (V3 Table 5); every figure saved through the path layer (local or bucket)."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mobilenet_jax import paths
from experiments.runs import GroupStats


def fmt_mean_std(mean: float, std: float, n: int, *, scale: float = 100.0, digits: int = 2) -> str:
    """``"71.20 ± 0.30 (n=3)"`` — the form every results table uses."""
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f} (n={n})"


PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9})
    return plt


def plot_curves(
    stats: Mapping[str, GroupStats],
    path: str | Path,
    *,
    title: str,
    ylabel: str = "eval top-1 accuracy (%)",
    xlabel: str = "training step",
    scale: float = 100.0,
    labels: Mapping[str, str] | None = None,
) -> Path:
    """Accuracy against training step, one line per variant (mean over seeds) with a min–max band (V2 Fig. 6 style)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    for i, (name, s) in enumerate(stats.items()):
        color = PALETTE[i % len(PALETTE)]
        label = (labels or {}).get(name, name) + f"  ({fmt_mean_std(s.final_mean, s.final_std, s.n, scale=scale, digits=1)})"
        ax.plot(s.steps, s.mean * scale, color=color, lw=1.8, label=label)
        if s.n > 1:
            ax.fill_between(s.steps, s.lo * scale, s.hi * scale, color=color, alpha=0.18, lw=0)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    # Below the axes: never over a curve, however many variants.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), title="mean over seeds, band = min–max",
              title_fontsize=8, frameon=False)
    save_figure(fig, path, bbox_inches="tight")
    plt.close(fig)
    return paths.resolve(path)


@dataclasses.dataclass(frozen=True)
class TradeoffPoint:
    """One model in an accuracy-vs-cost plot (V1 Figs. 4-5): ``series`` joins points (e.g. one width)."""

    label: str
    madds: float  # multiply-adds, absolute
    mean: float
    std: float
    series: str


def plot_tradeoff(
    points: Sequence[TradeoffPoint],
    path: str | Path,
    *,
    title: str,
    ylabel: str = "eval top-1 accuracy (%)",
    xlabel: str = "multiply-adds (millions, log scale)",
    scale: float = 100.0,
    unjoined: Sequence[str] = (),
) -> list[tuple[str, tuple[float, float], tuple[float, float, float, float]]]:
    """Accuracy against cost (``TradeoffPoint.madds``: multiply-adds for V1 Fig. 4, parameters for Fig. 5)
    on a log x axis, error bars = seed std, one marker/colour per series; a series in ``unjoined``
    (unrelated networks) gets markers without a line.

    Labels: a joined series' label sits just right of its own marker, vertically centred on it. The
    unjoined markers often sit almost on top of each other, so their labels go in a column to the
    right, in the markers' vertical order and never overlapping, each with a leader line to its own
    marker. Returns, per point in input order, (label, marker position, label box (x0, y0, x1, y1)),
    both in display pixels, for checking the placement."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    series = list(dict.fromkeys(p.series for p in points))
    for i, name in enumerate(series):
        pts = sorted((p for p in points if p.series == name), key=lambda p: p.madds)
        ax.errorbar(
            [p.madds / 1e6 for p in pts], [p.mean * scale for p in pts], yerr=[p.std * scale for p in pts],
            fmt="s" if name in unjoined else "o-", ms=5, lw=1, capsize=3, color=PALETTE[i % len(PALETTE)], label=name,
        )
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    fig.canvas.draw()  # fixes the limits, so data -> display positions are final
    px_per_pt = fig.dpi / 72.0
    display = [ax.transData.transform((p.madds / 1e6, p.mean * scale)) for p in points]
    texts: list[Any] = [None] * len(points)
    for i, p in enumerate(points):
        if p.series not in unjoined:
            texts[i] = ax.annotate(p.label, (p.madds / 1e6, p.mean * scale), textcoords="offset points",
                                   xytext=(5, 0), va="center", fontsize=7)
    for name in unjoined:
        members = sorted((i for i, p in enumerate(points) if p.series == name), key=lambda i: display[i][1])
        if not members:
            continue
        column_x = max(display[i][0] for i in members) + 18 * px_per_pt
        line_h, last_y = 10 * px_per_pt, -math.inf
        for i in members:  # bottom to top: each label at its marker's height, or just above the previous one
            y = max(display[i][1], last_y + line_h)
            last_y = y
            p = points[i]
            texts[i] = ax.annotate(
                p.label, (p.madds / 1e6, p.mean * scale), textcoords="offset points",
                xytext=((column_x - display[i][0]) / px_per_pt, (y - display[i][1]) / px_per_pt), va="center",
                fontsize=7, arrowprops={"arrowstyle": "-", "lw": 0.6, "color": "0.4", "shrinkA": 0, "shrinkB": 3})
    save_figure(fig, path, bbox_inches="tight")
    from matplotlib.text import Text

    fig.canvas.draw()  # back at the figure's own dpi: markers and labels in the same pixels
    renderer = fig.canvas.get_renderer()
    display = [ax.transData.transform((p.madds / 1e6, p.mean * scale)) for p in points]
    placed = []
    for p, xy, text in zip(points, display, texts):
        box = Text.get_window_extent(text, renderer)  # the text alone, not its leader line
        placed.append((p.label, (float(xy[0]), float(xy[1])), (box.x0, box.y0, box.x1, box.y1)))
    plt.close(fig)
    return placed


def plot_bars(
    labels: Sequence[str],
    means: Sequence[float],
    stds: Sequence[float],
    path: str | Path,
    *,
    title: str,
    ylabel: str = "eval top-1 accuracy (%)",
    scale: float = 100.0,
) -> Path:
    """Bar chart with seed-std error bars, value printed on each bar (for tables such as V3 Table 5)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(labels) + 1.5), 4.0))
    x = np.arange(len(labels))
    m = np.asarray(means) * scale
    ax.bar(x, m, yerr=np.asarray(stds) * scale, capsize=4, color=[PALETTE[i % len(PALETTE)] for i in range(len(labels))])
    for xi, mi in zip(x, m):
        ax.annotate(f"{mi:.1f}", (xi, mi), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    ax.set_xticks(x, labels, rotation=20, ha="right")
    lo = float(np.min(m - np.asarray(stds) * scale))
    ax.set_ylim(max(0.0, lo - 0.1 * (float(np.max(m)) - lo + 1e-9) - 1.0), None)
    ax.set(title=title, ylabel=ylabel)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return paths.resolve(path)



def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """``fig`` as a PNG at ``path`` (local or in a bucket) through the path layer, 150 dpi."""
    path = paths.resolve(path)
    with path.open("wb") as f:
        fig.savefig(f, format="png", dpi=150, **kwargs)
    return path


