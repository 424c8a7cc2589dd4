"""The data before any model: sample images per class (paper Fig. 1 / 14) and images per class and split."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from .layout import fit_lines, title_and_layout
from .style import MAX_WIDTH, SPLIT_COLORS

__all__ = ["plot_sample_grid", "plot_class_counts"]


def plot_sample_grid(images: np.ndarray, labels: Sequence[int], class_names: Sequence[str],
                     per_class: int = 4, seed: int = 0, title: str = "",
                     order: Sequence[int] | None = None) -> plt.Figure:
    """Paper Fig. 1 / 14: ``per_class`` random images of each class, one row per class.

    ``images`` is uint8 (N, 3, H, W) or (N, H, W, 3). ``order`` lists the class indices row by row
    (default: label order) and ``class_names`` are the row labels in that row order, e.g. the
    paper's Fig. 14 caption names with their panel letters.
    """
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[1] in (1, 3):
        images = images.transpose(0, 2, 3, 1)
    labels = np.asarray(labels)
    order = list(range(len(class_names))) if order is None else list(order)
    rng = np.random.default_rng(seed)
    # fixed margins (not tight_layout): row labels up to ~40 characters on the left, the title on top,
    # and the whole figure within the print width
    label_in = min(2.5, 0.3 + 0.062 * max(map(len, class_names), default=0))
    cell = min(1.0, (MAX_WIDTH - 0.1 - label_in) / per_class)
    width, height = label_in + cell * per_class + 0.05, cell * len(order) + 0.4
    fig, axes = plt.subplots(len(order), per_class, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=label_in / width, right=1 - 0.05 / width, top=1 - 0.35 / height,
                        bottom=0.05 / height, wspace=0.04, hspace=0.04)
    for row, (label, name) in enumerate(zip(order, class_names)):
        idx = np.flatnonzero(labels == label)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else []
        for col in range(per_class):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col < len(pick):
                ax.imshow(images[pick[col]].squeeze(), cmap="gray" if images.shape[-1] == 1 else None)
            elif col > 0:
                ax.axis("off")  # fewer images than columns in this class
            if col == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(fit_lines(title or "Samples per class", 9, width - 0.2), fontsize=9, y=1 - 0.08 / height, va="top")
    return fig


def plot_class_counts(counts: Mapping[str, Sequence[int]], class_names: Sequence[str], title: str = "",
                      copies: Sequence[int] | None = None) -> plt.Figure:
    """Images per class for each split (``counts[split][class]``), grouped bars with their numbers.

    ``copies[class]`` (optional) is how many of ``counts["train"]`` are augmented copies: the train
    bar is then split into originals (solid, number inside) and copies (hatched, total on top)."""
    splits = list(counts)
    n = len(class_names)
    width = 0.8 / len(splits)
    colors = dict(zip(splits, SPLIT_COLORS))
    fig, ax = plt.subplots(figsize=(MAX_WIDTH, 3.6))
    x = np.arange(n)
    top = max(max(v) for v in counts.values()) if counts else 1
    for k, split in enumerate(splits):
        values = np.asarray(counts[split], dtype=float)
        pos = x + (k - (len(splits) - 1) / 2) * width
        if split == "train" and copies is not None:
            extra = np.asarray(copies, dtype=float)
            base = values - extra
            ax.bar(pos, base, width, color=colors[split], label="train: originals")
            bars = ax.bar(pos, extra, width, bottom=base, color="white", edgecolor=colors[split], hatch="////",
                          lw=0.8, label="train: augmented copies")
            # originals + copies on top of the bar: both parts readable even where a part is thin
            ax.bar_label(bars, labels=[f"{int(b)} + {int(e)}" for b, e in zip(base, extra)], fontsize=6,
                         padding=1, rotation=90)
        else:
            bars = ax.bar(pos, values, width, color=colors[split], label=split)
            ax.bar_label(bars, labels=[f"{int(v)}" for v in values], fontsize=6, padding=1, rotation=90)
    ax.set_xticks(x, class_names, rotation=25, ha="right", fontsize=8)
    ax.set_ylim(0, top * 1.45)   # room above the tallest bar's label for the legend's one row
    ax.set_ylabel("images", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=7, frameon=False, loc="upper center", ncol=4)
    title_and_layout(ax, title or "Images per class and split", fontsize=9)
    return fig
