"""Sizes and text in a figure: every figure fits the print width, :data:`~.style.MAX_WIDTH`.

Print width: every figure is at most 7.1 in (the journal's two-column width) wide as saved, so it
reads at print size and inside a JupyterLab cell. ``savefig.bbox = "tight"`` crops white margins but
also *grows* the image to take in anything drawn past the figure's edge, so titles and notes are
broken into lines that fit (:func:`fit_lines`, measured in the font they are drawn in) and
end-of-line labels get a margin sized from the longest one (:func:`text_width`);
:func:`~.saving.save_figure` warns when a saved figure is still wider than the print width.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from .style import MAX_WIDTH

__all__ = ["text_width", "fit_lines", "fit_suptitle", "title_and_layout", "spread", "grid_shape"]


def spread(values: Sequence[float], gap: float) -> list[float]:
    """Label positions near ``values`` at least ``gap`` apart, in the same order (end-of-line labels)."""
    order = np.argsort(values)
    out = np.asarray(values, dtype=float).copy()
    for a, b in zip(order[:-1], order[1:]):
        out[b] = max(out[b], out[a] + gap)
    shift = (np.mean(out) - np.mean(values)) if len(values) else 0.0   # keep the block centred
    return list(out - shift)


def text_width(text: str, fontsize: float, weight: str = "normal") -> float:
    """Width in inches of the widest line of ``text`` at ``fontsize`` points, in the style's font, as
    drawn on screen (``figure.dpi``) or saved (``savefig.dpi``), whichever is wider: glyph hinting
    makes the same line up to ~8 % wider at one resolution than at another."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    font = FontProperties(size=fontsize, weight=weight)
    dpis = {float(d) for d in (matplotlib.rcParams["figure.dpi"], matplotlib.rcParams["savefig.dpi"]) if d != "figure"}
    return max(RendererAgg(1, 1, dpi).get_text_width_height_descent(line, font, ismath=False)[0] / dpi
               for dpi in dpis for line in text.split("\n"))


def fit_lines(text: str, fontsize: float, width: float = MAX_WIDTH - 0.3, weight: str = "normal") -> str:
    """``text`` with each of its lines broken at spaces into lines at most ``width`` inches wide
    (measured, not counted in characters), as even as the same number of lines allows (no lone last
    word). A single word wider than ``width`` stays whole. The default leaves room for
    ``savefig.pad_inches`` (0.1 in) on both sides of a full-width line."""
    def greedy(line: str, room: float) -> list[str]:
        out, current = [], ""
        for word in line.split(" "):
            trial = f"{current} {word}" if current else word
            if current and text_width(trial, fontsize, weight) > room:
                out.append(current)
                trial = word
            current = trial
        return [*out, current]

    out = []
    for line in text.split("\n"):
        lines = greedy(line, width)
        if len(lines) > 1:   # the narrowest width that still needs no more lines: even lines
            low, high = 0.0, width
            for _ in range(12):
                mid = (low + high) / 2
                low, high = (mid, high) if len(greedy(line, mid)) > len(lines) else (low, mid)
            lines = greedy(line, high)
        out.extend(lines)
    return "\n".join(out)


def fit_suptitle(fig: plt.Figure, title: str, fontsize: float, **kwargs) -> matplotlib.text.Text:
    """Give ``fig`` a centred title at ``fontsize`` points, broken by :func:`fit_lines` into lines of the
    full print width; ``kwargs`` go to ``Figure.suptitle``."""
    return fig.suptitle(fit_lines(title, fontsize), fontsize=fontsize, **kwargs)


def title_and_layout(ax: plt.Axes, title: str, fontsize: float | str | None = None, **kwargs) -> None:
    """Give ``ax`` its title and lay its figure out (``tight_layout``, which keeps the title inside
    the figure by narrowing the axes, as long as the title is narrower than the figure). A title
    wider than the figure is first broken into lines that fit it (less ``tight_layout``'s padding)."""
    fontsize = fontsize or matplotlib.rcParams["axes.titlesize"]
    room = ax.figure.get_figwidth() - 0.4
    ax.set_title(fit_lines(title, fontsize, room, weight=matplotlib.rcParams["axes.titleweight"]) if title else title,
                 fontsize=fontsize, **kwargs)
    ax.figure.tight_layout()


def grid_shape(n: int, max_cols: int) -> tuple[int, int]:
    """``(rows, columns)`` of a grid of ``n`` panels at most ``max_cols`` wide: one shape for every
    figure of one panel per model."""
    cols = min(n, max_cols)
    return (n + cols - 1) // cols, cols
