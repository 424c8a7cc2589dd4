"""The figures' one style: the backend, the print width, the colours and line styles, the theme.

Palettes are colour-blind safe (seaborn's ``colorblind`` for categories, ``viridis``/``rocket`` for
sequential values). Lines and classes that must be told apart (up to nine) take their hues from
:data:`DISTINCT_COLORS`, nine colours chosen to stay apart for normal vision and for the common
colour-vision deficiencies (:func:`color_distance`, checked by the tests); lines also differ in line
style and marker (:func:`line_styles`). The full network (ESG-ConvNeXt, Table 2's row 5) is the black
line in every figure; the ablation rows 1-4 take the first four colours in row order
(:func:`row_colors`).

Every module of :mod:`esg_lib.figures` takes its colours and widths from here, so a figure added
to any of them looks like the others. The package imports this module first: it picks the backend
before anything imports ``matplotlib.pyplot``.
"""
from __future__ import annotations

import sys
from typing import Sequence

import matplotlib


def in_kernel() -> bool:
    """Whether this code runs inside a Jupyter kernel (JupyterLab, papermill), not a script or a test."""
    if "IPython" not in sys.modules:   # never import IPython just to ask
        return False
    from IPython import get_ipython

    return getattr(get_ipython(), "kernel", None) is not None


# Scripts and tests draw with Agg (no display, same pixels everywhere); a kernel keeps its own
# backend (inline), and save_figure shows each saved figure in its cell.
if not in_kernel():
    matplotlib.use("Agg", force=False)
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

__all__ = ["in_kernel", "set_style", "PALETTE", "MAX_WIDTH", "BLACK", "DISTINCT_COLORS", "SPLIT_COLORS",
           "distinct_colors", "row_colors", "line_styles", "text_color", "highlight_style", "ordered_colors",
           "color_distance"]

PALETTE = "colorblind"
MAX_WIDTH = 7.1   # inches: the journal's full text width
BLACK = "#000000"
# Nine hues for lines and classes, from the colour-blind safe palettes of Okabe & Ito (blue, orange)
# and Paul Tol (muted wine; vibrant teal, red, cyan, magenta), with black and a mid grey: picked so
# that every pair stays apart (CIEDE2000) for normal vision and under simulated deuteranopia and
# protanopia, in an order where each first n are as far apart as n colours of the set can be. Every
# pair of the first 7 differs by ≥ 24 for normal vision and ≥ 19 with either deficiency; of all 9,
# by ≥ 22 and ≥ 13 (seaborn's colour-blind palette: 11.6 and 6.1 for 7 -- its orange and tan, its
# green and tan). tests/test_figures.py recomputes these (color_distance).
DISTINCT_COLORS = ["#0072B2", "#E69F00", BLACK, "#882255", "#009988", "#CC3311", "#33BBEE", "#EE3377", "#BBBBBB"]
# the split colours of the class-count bars (train, val, test): unchanged, they are never told apart by hue alone
SPLIT_COLORS = ["#0173b2", "#de8f05", "#029e73", "#d55e00"]
_DASHES = ["-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (8, 2)), (0, (3, 1, 3, 3)), "-"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", "h"]   # "*" is the highlight's (highlight_style)


def distinct_colors(n: int) -> list[str]:
    """The first ``n`` of :data:`DISTINCT_COLORS` (repeating past nine, where hue alone cannot carry it)."""
    return [DISTINCT_COLORS[i % len(DISTINCT_COLORS)] for i in range(n)]


def row_colors(n: int) -> list[str]:
    """Colours of Table 2's rows 1 → ``n``: the first ``n - 1`` distinct colours other than black in row
    order, and black for the last row, the full network (ESG-ConvNeXt, black in every figure)."""
    if n < 1:
        return []
    return [c for c in DISTINCT_COLORS if c != BLACK][:n - 1] + [BLACK]


def line_styles(n: int, ordered: bool = False) -> list[dict]:
    """``n`` matplotlib line styles (``color``, ``ls``, ``marker``) that differ in hue and in dash or
    marker, so no two lines are told apart by colour alone. ``ordered=True`` is for Table 2's rows
    1 → ``n``: :func:`row_colors` (the same colours as the ablation dot plot, the last row black)."""
    colors = row_colors(n) if ordered else distinct_colors(n)
    return [dict(color=colors[i], ls=_DASHES[i % len(_DASHES)], marker=_MARKERS[i % len(_MARKERS)])
            for i in range(n)]


def text_color(color) -> tuple[float, float, float]:
    """``color`` darkened, keeping its hue, until small text in it reads on white (CIELAB lightness
    ≤ 55): the palette's light grey, cyan and orange are fine as lines and dots, not as 7-pt labels."""
    from matplotlib.colors import to_rgb

    rgb = np.asarray(to_rgb(color))
    while _lab(_linear(rgb))[0] > 55:
        rgb = rgb * 0.9
    return tuple(float(c) for c in rgb)


def highlight_style(styles: Sequence[dict], i: int) -> list[dict]:
    """``styles`` with the ``i``-th made the highlight -- the black solid line with stars (ESG-ConvNeXt
    in every figure) -- and the style that held black given the ``i``-th's old one, so that exactly
    one is black and no two share a style."""
    styles = [dict(st) for st in styles]
    black = dict(color=BLACK, ls="-", marker="*")
    for j, st in enumerate(styles):
        if j != i and st["color"] == BLACK:
            styles[j] = styles[i]
    styles[i] = black
    return styles


def ordered_colors(n: int) -> list:
    """``n`` colours of an ordered, colour-blind safe palette (viridis without its pale yellow end), for
    things that follow each other (a network's stages), not for lines or classes to be told apart."""
    return list(sns.color_palette("viridis", n_colors=max(n, 1) + 1))[:n]


# Machado, Oliveira & Fernandes (2009), severity 1, on linear RGB
_DEFICIENCIES = {
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
}


def _linear(rgb) -> np.ndarray:
    c = np.asarray(rgb, dtype=float)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _lab(linear: np.ndarray) -> np.ndarray:
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear
    t = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > 0.008856, np.cbrt(t), 7.787 * t + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def color_distance(a, b, vision: str = "normal") -> float:
    """CIEDE2000 colour difference of two matplotlib colours as seen with ``vision``: ``normal``,
    ``deuteranopia`` or ``protanopia`` (simulated, Machado et al. 2009). About 2 is just noticeable;
    thin lines and small dots need far more."""
    from matplotlib.colors import to_rgb

    lab1, lab2 = [_lab(np.clip(_DEFICIENCIES[vision] @ _linear(to_rgb(c)), 0, 1) if vision != "normal"
                       else _linear(to_rgb(c))) for c in (a, b)]
    return _ciede2000(lab1, lab2)


def _ciede2000(lab1, lab2) -> float:
    """CIEDE2000 of two CIELAB colours (Sharma, Wu & Dalal 2005)."""
    (l1, a1, b1), (l2, a2, b2) = lab1, lab2
    c_mean = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_mean ** 7 / (c_mean ** 7 + 25.0 ** 7)))
    a1, a2 = (1 + g) * a1, (1 + g) * a2
    c1, c2 = np.hypot(a1, b1), np.hypot(a2, b2)
    h1, h2 = np.degrees(np.arctan2(b1, a1)) % 360, np.degrees(np.arctan2(b2, a2)) % 360
    dh = 0.0 if c1 * c2 == 0 else (h2 - h1 + 180) % 360 - 180
    d_l, d_c, d_h = l2 - l1, c2 - c1, 2 * np.sqrt(c1 * c2) * np.sin(np.radians(dh / 2))
    l_mean, c_mean = (l1 + l2) / 2, (c1 + c2) / 2
    if c1 * c2 == 0:
        h_mean = h1 + h2
    elif abs(h1 - h2) <= 180:
        h_mean = (h1 + h2) / 2
    else:
        h_mean = (h1 + h2 + 360) / 2 if h1 + h2 < 360 else (h1 + h2 - 360) / 2
    t = (1 - 0.17 * np.cos(np.radians(h_mean - 30)) + 0.24 * np.cos(np.radians(2 * h_mean))
         + 0.32 * np.cos(np.radians(3 * h_mean + 6)) - 0.20 * np.cos(np.radians(4 * h_mean - 63)))
    s_l = 1 + 0.015 * (l_mean - 50) ** 2 / np.sqrt(20 + (l_mean - 50) ** 2)
    s_c, s_h = 1 + 0.045 * c_mean, 1 + 0.015 * c_mean * t
    r_t = (-np.sin(np.radians(60 * np.exp(-(((h_mean - 275) / 25) ** 2))))
           * 2 * np.sqrt(c_mean ** 7 / (c_mean ** 7 + 25.0 ** 7)))
    return float(np.sqrt((d_l / s_l) ** 2 + (d_c / s_c) ** 2 + (d_h / s_h) ** 2 + r_t * (d_c / s_c) * (d_h / s_h)))


def set_style() -> None:
    """The project's one style: seaborn whitegrid, colour-blind palette, readable font sizes."""
    sns.set_theme(style="whitegrid", palette=PALETTE, context="notebook",
                  rc={"figure.dpi": 110, "savefig.dpi": 150, "axes.titleweight": "bold",
                      "savefig.bbox": "tight"})
