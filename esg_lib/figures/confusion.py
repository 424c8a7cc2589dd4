"""Confusion matrices, one per model (paper Fig. 10), from the runs' test predictions."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from .layout import fit_lines, grid_shape
from .style import MAX_WIDTH

__all__ = ["plot_confusion_matrices"]


def plot_confusion_matrices(matrices: Mapping[str, np.ndarray], class_names: Sequence[str], title: str = "",
                            max_cols: int = 3, short_names: Sequence[str] | None = None,
                            shown: str = "") -> plt.Figure:
    """Paper Fig. 10: one confusion matrix per model (rows = true class, columns = predicted).

    Colour = the row's share (recall per true class, 0-1, one colour bar for all panels); the
    numbers are the counts. Axes use ``short_names`` (e.g. the paper's two-letter codes) with a key
    under the grid naming each class. ``shown`` says which runs the counts are ("seed 0" or "sum
    over seeds 0, 1, 2") and goes into the title. At most :data:`MAX_WIDTH` wide.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    short = list(short_names) if short_names is not None else list(class_names)
    rows, cols = grid_shape(len(matrices), max_cols)
    side = (MAX_WIDTH - 0.6) / cols
    key_lines = max(1, int(np.ceil(len(class_names) / 3)))
    first, *rest = (title or "Confusion matrices").split("\n", 1)   # "shown" belongs to the first line
    title = fit_lines("\n".join([first + (f" ({shown})" if shown else ""), *rest]), 9)
    title_h = 0.2 + 0.15 * title.count("\n")   # the grid keeps its size however many lines the title takes
    fig, axes = plt.subplots(rows, cols, figsize=(MAX_WIDTH, side * rows + 0.3 + title_h + 0.16 * key_lines),
                             squeeze=False)
    fs = 6 if len(class_names) > 7 else 7
    for i, (ax, (label, cm)) in enumerate(zip(axes.flat, matrices.items())):
        cm = np.asarray(cm)
        share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        first_col, last_row = i % cols == 0, i // cols == rows - 1 or i + cols >= len(matrices)
        sns.heatmap(share, annot=cm, fmt="d", cmap="rocket_r", vmin=0, vmax=1, cbar=False, square=True, ax=ax,
                    xticklabels=short if last_row else False, yticklabels=short if first_col else False,
                    annot_kws={"fontsize": fs - 1}, linewidths=0.3, linecolor="white")
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("predicted" if last_row else "", fontsize=7)
        ax.set_ylabel("true" if first_col else "", fontsize=7)
        ax.tick_params(labelsize=fs, length=0)
    for ax in list(axes.flat)[len(matrices):]:
        ax.axis("off")
    key = [f"{a} = {b}" for a, b in zip(short, class_names) if a != b]
    bottom = 0.0
    if key:
        per_line = 3 if max(map(len, key)) > 24 else 5
        text = "\n".join("    ".join(key[j:j + per_line]) for j in range(0, len(key), per_line))
        fig.text(0.5, 0.005, text, ha="center", va="bottom", fontsize=6.5, color="0.25")
        bottom = (0.08 + 0.12 * (text.count("\n") + 1)) / fig.get_figheight()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, bottom, 0.88, 1 - title_h / fig.get_figheight()), pad=0.3, h_pad=1.2)
    cax = fig.add_axes((0.895, 0.3, 0.015, 0.4))
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), "rocket_r"), cax=cax)
    bar.set_label("row share (recall)", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    return fig
