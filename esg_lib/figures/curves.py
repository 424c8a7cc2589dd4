"""A metric per epoch, one line per model (paper Fig. 9 / 11 / 15), from the runs' ``log.jsonl``."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from .layout import fit_lines, spread, text_width
from .style import MAX_WIDTH, highlight_style, line_styles, text_color

__all__ = ["plot_curves"]

_END_LABEL_WIDTH = 2.0   # inches: a longer end-of-line label is broken into lines


def plot_curves(curves: Mapping[str, Sequence[Sequence[float]]], metric: str = "validation accuracy (%)",
                title: str = "", highlight: str | None = None, ordered: bool = False,
                val_size: int | None = None) -> plt.Figure:
    """Paper Fig. 9 / 11 / 15: a metric per epoch, one line per model (mean over seeds, band = ±1 SD).

    ``curves[label]`` is a list of per-seed series (seeds may have different lengths: the common
    prefix is used). Every line has its own hue, dash and marker and its label at its end;
    ``highlight`` draws that model as the thick black line, on top. ``ordered=True`` colours the
    lines by row (:func:`row_colors`: ablation rows 1 → 5, as in the ablation dot plot). ``val_size`` (images in the validation part) goes into
    the note under the axes, which also says what the band is and over how many seeds.
    """
    from matplotlib.ticker import MaxNLocator
    from matplotlib.transforms import blended_transform_factory

    fig, ax = plt.subplots(figsize=(MAX_WIDTH, 4.0))
    styles = line_styles(len(curves), ordered=ordered)
    labels = list(curves)
    if highlight in labels:
        styles = highlight_style(styles, labels.index(highlight))
    ends, seeds = [], set()
    for (label, series), style in zip(curves.items(), styles):
        series = [np.asarray(s, dtype=float) for s in series if len(s)]
        if not series:
            continue
        n = min(len(s) for s in series)
        stack = np.stack([s[:n] for s in series])
        mean = stack.mean(0)
        std = stack.std(0, ddof=1) if len(series) > 1 else np.zeros(n)
        seeds.add(len(series))
        epochs = np.arange(1, n + 1)
        strong = label == highlight
        ax.plot(epochs, mean, label=f"{label} (n={len(series)})", color=style["color"], ls=style["ls"],
                marker=style["marker"], markersize=4, markevery=max(1, n // 8), lw=2.6 if strong else 1.4,
                zorder=5 if strong else 2)
        if len(series) > 1:
            ax.fill_between(epochs, mean - std, mean + std, alpha=0.12, color=style["color"], lw=0)
        ends.append((label, len(series), n, mean[-1], style["color"], strong))
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel(metric, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ends:   # labels at the line ends, nudged apart so none overlap
        mixed = len({e[1] for e in ends}) > 1   # lines over different seed counts: each label says its n
        texts = [fit_lines(f"{label} (n={k})" if mixed else label, 7, width=_END_LABEL_WIDTH,
                           weight="bold" if strong else "normal") for label, k, *_, strong in ends]
        # the axes end where the widest label still fits inside the figure: the labels start 3 % of
        # the axes' width right of it (x_text = right + 0.03 (right - left), in figure fractions)
        widest = max(text_width(t, 7, "bold") for t in texts) / MAX_WIDTH
        left = fig.subplotpars.left
        fig.subplots_adjust(right=(1 - 0.01 - widest + 0.03 * left) / 1.03)
        low, high = ax.get_ylim()
        lines = max(t.count("\n") + 1 for t in texts)
        ys = spread([e[3] for e in ends], gap=(high - low) * 0.045 * lines)
        beside = blended_transform_factory(ax.transAxes, ax.transData)   # x: just right of the axes
        for text, (label, k, n, y, color, strong), y_text in zip(texts, ends, ys):
            ax.annotate(text, xy=(n, y), xytext=(1.03, y_text), textcoords=beside,
                        fontsize=7, color=text_color(color), va="center", fontweight="bold" if strong else "normal",
                        arrowprops=dict(arrowstyle="-", color=color, lw=0.5, alpha=0.6), annotation_clip=False)
    if title:   # over the whole figure (axes and end labels): fewer lines than over the axes alone
        text = fit_lines(title, 9, weight="bold")
        height = fig.get_figheight()
        # the title's lines, and room above the axes for an end label pushed over the top line
        fig.subplots_adjust(top=1 - (0.35 + 0.16 * (text.count("\n") + 1)) / height)
        fig.suptitle(text, fontsize=9, fontweight="bold", y=1 - 0.05 / height, va="top")
    if seeds == {1}:   # one seed per line: there is no mean and no band to describe
        note = "one seed per line (n = 1): no mean, no band"
    else:
        note = ("line = mean over seeds, band = ±1 SD over seeds"
                + (f" (n = {max(seeds)})" if len(seeds) == 1 else " (n beside each line's label; n = 1: no band)"))
    note = (note
            + (f";\nvalidation part: {val_size} images (one image = {100 / val_size:.2f} points)" if val_size else ""))
    # a fixed distance under the axes (below the x label), whatever height the title leaves the axes
    ax.annotate(note, xy=(0, 0), xycoords="axes fraction", xytext=(0, -30), textcoords="offset points",
                fontsize=7, va="top", color="0.3")
    return fig
