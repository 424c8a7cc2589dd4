"""t-SNE of the models' pre-logit features (paper Fig. 12): the embedding and its scatter plots."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from .layout import fit_suptitle, grid_shape, text_width
from .style import MAX_WIDTH, distinct_colors

__all__ = ["tsne_embedding", "plot_tsne"]


def tsne_embedding(features: np.ndarray, random_state: int = 42, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE (scikit-learn) of pre-logit features; the paper's seed is 42. Perplexity is capped
    below the sample count so small test sets (smoke profile) still work.

    It runs on one thread (BLAS and OpenMP): the PCA start and the gradient sums are ordered by the
    thread count, and t-SNE magnifies those last-bit differences into another layout, so the same
    features would give another figure at 2 threads than at 1."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    features = np.asarray(features, dtype=np.float32)
    perplexity = min(perplexity, max(2.0, (len(features) - 1) / 3))
    with threadpool_limits(limits=1):
        return TSNE(n_components=2, random_state=random_state, perplexity=perplexity,
                    init="pca").fit_transform(features)


def plot_tsne(embeddings: Mapping[str, tuple[np.ndarray, np.ndarray]], class_names: Sequence[str], title: str = "",
              max_cols: int = 4) -> plt.Figure:
    """Paper Fig. 12: one t-SNE scatter per model, coloured by true class (:func:`distinct_colors`), the
    panels in the order of ``embeddings`` (the paper's: its Table 1 order), at most 7.1 in wide."""
    rows, cols = grid_shape(len(embeddings), max_cols)
    side = MAX_WIDTH / cols
    # the legend under the grid: as many columns as fit the print width (a column: marker, gap, the
    # longest name), and the figure that much taller so it covers no panel
    column = 0.45 + max(text_width(c, 8) for c in class_names)
    ncol = max(1, min(len(class_names), 5, int((MAX_WIDTH - 0.3) // column)))
    legend_h = 0.1 + 0.2 * -(-len(class_names) // ncol)
    height = side * rows + 0.6 + legend_h
    fig, axes = plt.subplots(rows, cols, figsize=(MAX_WIDTH, height), squeeze=False)
    colors = distinct_colors(len(class_names))   # apart for normal and colour-deficient vision (up to 9)
    for ax, (label, (xy, y)) in zip(axes.flat, embeddings.items()):
        for c, name in enumerate(class_names):
            mask = np.asarray(y) == c
            ax.scatter(xy[mask, 0], xy[mask, 1], s=6, color=colors[c], label=name)
        ax.set(xticks=[], yticks=[])
        ax.set_title(label, fontsize=9)
    for ax in list(axes.flat)[len(embeddings):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=ncol, markerscale=3, fontsize=8, bbox_to_anchor=(0.5, 0.0))
    fit_suptitle(fig, title or "t-SNE of pre-logit features (random_state=42)", 9)
    fig.tight_layout(rect=(0, legend_h / height, 1, 1))
    return fig
