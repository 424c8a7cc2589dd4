"""The network itself: the activation functions (paper Fig. 7) and its stages (paper Fig. 2).

Both are drawn from computed values, not from run records: the activations from their formulas,
the stages from :func:`esg_lib.models.zoo.stage_table` (forward hooks on a model).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import matplotlib.pyplot as plt
import numpy as np

from .layout import fit_suptitle
from .style import MAX_WIDTH, ordered_colors

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["plot_activations", "plot_stages"]


def plot_activations(prelu_slope: float = 0.25, x_range: tuple[float, float] = (-4, 4)) -> plt.Figure:
    """Paper Fig. 7: GELU, ReLU, sigmoid and PReLU (slope ``a`` for x < 0) on one axis.

    The curves are computed in float64, one value at a time with :mod:`math`, and rounded to 9
    decimals: torch's (and numpy's) vectorised kernels take other paths on other processors and move
    the last bit, which a PDF's coordinates keep (its PNG does not), so the same figure would be
    rewritten with other bytes on another machine. Rounded, the values are the same everywhere."""
    import math

    x = np.linspace(*x_range, 401)    # exact IEEE arithmetic (arange × step + start): the same everywhere

    def curve(f) -> np.ndarray:
        return np.round(np.array([f(float(v)) for v in x]), 9)

    curves = {
        "GELU": curve(lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0)))),
        "ReLU": curve(lambda v: max(v, 0.0)),
        "Sigmoid": curve(lambda v: 1.0 / (1.0 + math.exp(-v))),
        f"PReLU (a = {prelu_slope})": curve(lambda v: v if v >= 0 else prelu_slope * v),
    }
    fig, ax = plt.subplots(figsize=(6, 4.2))
    # PReLU (the paper's choice) in vermilion, drawn last and thickest; the others in hues far from it
    styles = [dict(color="#0173b2", ls="-"), dict(color="#029e73", ls="--"), dict(color="#949494", ls="-."),
              dict(color="#d55e00", ls=":", lw=3.0)]
    for (label, y), style in zip(curves.items(), styles):
        ax.plot(x, y, **{"lw": 2.2, **style}, label=label)
    ax.axhline(0, color="0.4", lw=0.8)
    ax.axvline(0, color="0.4", lw=0.8)
    ax.set(xlabel="input x", ylabel="activation f(x)", title="Activation functions (paper Fig. 7)",
           ylim=(-1.5, 4.2))
    ax.legend(frameon=True)
    return fig


def plot_stages(tables: Mapping[str, pd.DataFrame], title: str = "") -> plt.Figure:
    """The stage tables of one or more networks (:func:`esg_lib.models.zoo.stage_table`) as a
    diagram: one box per part (stem, stages 1-4, ordered colours), labelled with its blocks,
    channels, parameters and the output feature-map size at each input size."""
    fig, axes = plt.subplots(len(tables), 1, figsize=(MAX_WIDTH, 1.45 * len(tables) + 0.35), squeeze=False)
    for ax, (name, table) in zip(axes[:, 0], tables.items()):
        sizes = [c for c in table.columns if c.startswith("map @")]
        colors = ordered_colors(len(table))
        x = 0.0
        for (_, row), color in zip(table.iterrows(), colors):
            ax.add_patch(plt.Rectangle((x, 0.02), 1.6, 0.96, color=color, alpha=0.9, lw=0))
            dark = 0.2126 * color[0] + 0.7152 * color[1] + 0.0722 * color[2] < 0.45
            text = "\n".join([f"{row['part']}: " + (f"{row['blocks']} blocks" if row["blocks"] else "4×4/4 conv"),
                              f"{row['channels']} channels, {row['params (M)']:.2f} M",
                              *[f"{row[c]} at {c.split('@ ')[1]}" for c in sizes]])
            ax.text(x + 0.8, 0.5, text, ha="center", va="center", fontsize=6.5,
                    color="white" if dark else "black")
            if x:
                ax.annotate("", xy=(x, 0.5), xytext=(x - 0.25, 0.5), arrowprops=dict(arrowstyle="->", lw=0.8))
            x += 1.85
        ax.set_xlim(-0.05, x)
        ax.set_ylim(0, 1)
        ax.axis("off")
        ax.set_title(name, fontsize=8, loc="left")
    fit_suptitle(fig, title, 9)
    fig.tight_layout()
    return fig
