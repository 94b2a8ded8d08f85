"""Progress plot of the per-term losses (``progress_terms.png``, next to nnU-Net's ``progress.png``)."""
from __future__ import annotations

import os

import matplotlib

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_loss_terms(terms: dict[str, list[float]], png_path: str) -> None:
    """Plot each loss term's per-epoch mean (one line per term, log-scaled y when all values are positive).

    The file is written to a temporary name and renamed, so a viewer never sees a half-written PNG. Matplotlib's
    default style is used (nnU-Net's own progress plot changes the global seaborn font scale).
    """
    with matplotlib.rc_context(matplotlib.rcParamsDefault):
        _plot(terms, png_path)


def _plot(terms: dict[str, list[float]], png_path: str) -> None:
    fig = Figure(figsize=(10, 6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    positive = True
    for name, values in terms.items():
        ax.plot(range(len(values)), values, label=name, linewidth=2)
        positive &= all(v > 0 for v in values if v == v)
    if positive and any(terms.values()):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss term (unweighted epoch mean)")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = f"{png_path}.tmp.png"
    fig.savefig(tmp, dpi=80)
    os.replace(tmp, png_path)
