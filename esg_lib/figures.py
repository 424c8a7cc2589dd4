"""Figure helpers for the notebooks: one function per figure type of the paper, one style.

Every function takes plain arrays (no training inside), returns the matplotlib ``Figure`` and leaves
saving to :func:`save_figure` (PNG for screens, PDF for print). Palettes are colour-blind safe
(seaborn's ``colorblind`` for categories, ``viridis``/``rocket`` for sequential values); titles name
the model, dataset and profile when the caller gives them.

Print width: every figure is at most :data:`MAX_WIDTH` (7.1 in, the journal's two-column width)
wide as saved, so it reads at print size and inside a JupyterLab cell. ``savefig.bbox = "tight"``
crops white margins but also *grows* the image to take in anything drawn past the figure's edge,
so titles and notes are broken into lines that fit (:func:`fit_lines`, measured in the font they
are drawn in), end-of-line labels get a margin sized from the longest one, and
:func:`save_figure` warns when a saved figure is still wider than :data:`MAX_WIDTH`.

Lines and classes that must be told apart (up to nine) take their hues from :data:`DISTINCT_COLORS`,
nine colours chosen to stay apart for normal vision and for the common colour-vision deficiencies
(:func:`color_distance`, checked by the tests); lines also differ in line style and marker
(:func:`line_styles`). The full network (ESG-ConvNeXt, Table 2's row 5) is the black line in every
figure; the ablation rows 1-4 take the first four colours in row order (:func:`row_colors`).
"""
from __future__ import annotations

import re

import struct
import sys
from pathlib import Path
from typing import Mapping, Sequence

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
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

__all__ = ["set_style", "save_figure", "fit_lines", "fit_suptitle", "text_width", "saved_width",
           "title_and_layout", "show_saved", "in_kernel", "plot_activations", "plot_sample_grid",
           "plot_class_counts", "plot_curves", "plot_confusion_matrices", "plot_tsne", "tsne_embedding",
           "plot_cam_grid", "plot_metric_bars", "PALETTE", "MAX_WIDTH", "line_styles", "ordered_colors",
           "DISTINCT_COLORS", "distinct_colors", "row_colors", "color_distance", "highlight_style", "text_color"]

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
_LINE_COLORS = DISTINCT_COLORS
# the split colours of the class-count bars (train, val, test): unchanged, they are never told apart by hue alone
_SPLIT_COLORS = ["#0173b2", "#de8f05", "#029e73", "#d55e00"]
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


def _spread(values: Sequence[float], gap: float) -> list[float]:
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


def saved_width(path: str | Path, dpi: float | None = None) -> float:
    """Width in inches of a saved PNG at ``dpi`` (default: the style's ``savefig.dpi``), read from
    its header."""
    data = Path(path).read_bytes()[:24]
    pixels = struct.unpack(">I", data[16:20])[0]   # PNG header: IHDR width, big-endian
    return pixels / float(dpi or matplotlib.rcParams["savefig.dpi"])


def set_style() -> None:
    """The project's one style: seaborn whitegrid, colour-blind palette, readable font sizes."""
    sns.set_theme(style="whitegrid", palette=PALETTE, context="notebook",
                  rc={"figure.dpi": 110, "savefig.dpi": 150, "axes.titleweight": "bold",
                      "savefig.bbox": "tight"})


def save_figure(fig: plt.Figure, folder: str | Path, name: str, close: bool = True) -> list[Path]:
    """Write ``<folder>/<name>.png`` and ``.pdf``; returns both paths.

    Inside a Jupyter kernel (JupyterLab, papermill) the PNG is also shown in the running cell
    (:func:`show_saved`) and the figure is then closed whatever ``close`` says, so the inline backend
    does not draw it a second time; the returned ``Figure`` object stays usable.

    The PDF carries no creation date, so re-running a notebook on the same runs rewrites
    byte-identical files and ``git status`` shows only figures whose content changed.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    fig.savefig(paths[0])
    fig.savefig(paths[1], metadata={"CreationDate": None})
    if matplotlib.rcParams["savefig.dpi"] != "figure" and (width := saved_width(paths[0])) > MAX_WIDTH + 0.01:
        import warnings

        warnings.warn(f"{paths[0].name} is {width:.2f} in wide as saved, over the print width "
                      f"of {MAX_WIDTH} in: something is drawn past the figure's edge", stacklevel=2)
    if in_kernel():
        show_saved(paths[0], fig)
        close = True   # shown once here; left open, the inline backend would draw it a second time
    if close:
        plt.close(fig)
    return paths


def show_saved(png: Path, fig: plt.Figure | None = None) -> None:
    """Display the PNG just written in the running cell, exactly the file's pixels (so the cell and
    ``figures/`` never disagree), at the size the figure has on screen (``figure.dpi``) rather than
    at ``savefig.dpi``. The output's metadata names the file (tests match cells to figures by it)."""
    from IPython.display import Image, display

    data = Path(png).read_bytes()
    width = round(saved_width(png, dpi=1.0))   # in pixels
    saved_dpi = matplotlib.rcParams["savefig.dpi"]
    if fig is not None and saved_dpi != "figure":
        width = round(width * fig.dpi / float(saved_dpi))
    display(Image(data=data, format="png", width=width), metadata={"esg_lib": {"figure": Path(png).name}})


def _grid(n: int, max_cols: int) -> tuple[int, int]:
    cols = min(n, max_cols)
    return (n + cols - 1) // cols, cols


# -------------------------------------------------------------------------------- Fig. 7
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


# ---------------------------------------------------------------------------- Fig. 1 / 14
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
    colors = dict(zip(splits, _SPLIT_COLORS))
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


# ------------------------------------------------------------------------ Fig. 9 / 11 / 15
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
        ys = _spread([e[3] for e in ends], gap=(high - low) * 0.045 * lines)
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


# --------------------------------------------------------------------------------- Fig. 10
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
    rows, cols = _grid(len(matrices), max_cols)
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


# --------------------------------------------------------------------------------- Fig. 12
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
    rows, cols = _grid(len(embeddings), max_cols)
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


# --------------------------------------------------------------------------------- Fig. 13
def plot_cam_grid(images: np.ndarray, cams: Mapping[str, np.ndarray], column_titles: Sequence[str],
                  title: str = "", predictions: Mapping[str, np.ndarray] | None = None,
                  truths: Sequence[int] | None = None, class_names: Sequence[str] | None = None,
                  grids: Mapping[str, tuple[int, int]] | None = None, caption: str = "") -> plt.Figure:
    """Paper Fig. 13: the original images in the first row, then one row of Grad-CAM overlays per model
    (viridis, colour-blind safe: bright = more important; the paper uses jet), with one colour bar.

    ``images`` float in [0, 1], (N, H, W, 3); ``cams[model]`` (N, H, W) in [0, 1]. With
    ``predictions[model]`` (class indices), ``truths`` and ``class_names``, each panel names the class
    the model predicted with a ✓ (right) or ✗ (wrong); ``grids[model]`` = ``(h, w)`` of the layer the
    map comes from is written under the model's name (a 4×4 map is upsampled, not 64×64 detail).
    A map that is 0 everywhere (no location raises the explained class's score) shows the plain
    image marked "map all 0". At most :data:`MAX_WIDTH` wide; ``caption`` goes under the grid.
    """
    import cv2
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from pytorch_grad_cam.utils.image import show_cam_on_image

    n, rows = len(images), len(cams) + 1
    label_w, bar_w = 1.05, 0.65
    side = min(1.2, (MAX_WIDTH - label_w - bar_w) / n)
    caption = fit_lines(caption, 6, MAX_WIDTH - 0.5) if caption else caption
    cap_h = 0.16 * (caption.count("\n") + 1) + 0.1 if caption else 0.0
    fig, axes = plt.subplots(rows, n, figsize=(MAX_WIDTH, side * rows * 1.12 + 0.45 + cap_h), squeeze=False)
    for col in range(n):
        axes[0, col].imshow(images[col])
        axes[0, col].set_title(column_titles[col], fontsize=6)
    axes[0, 0].set_ylabel("image\n(true class\nabove)", rotation=0, ha="right", va="center", fontsize=7)
    for row, (label, cam) in enumerate(cams.items(), start=1):
        for col in range(n):
            ax = axes[row, col]
            if np.max(cam[col]) > 0:
                ax.imshow(show_cam_on_image(images[col].astype(np.float32), cam[col], use_rgb=True,
                                            colormap=cv2.COLORMAP_VIRIDIS))
            else:
                # Grad-CAM is 0 everywhere when no location raises the explained class's score: say
                # so (show_cam_on_image would rescale a flat overlay into an unrelated pink tint)
                ax.imshow(images[col])
                ax.text(0.5, 0.5, "map all 0", transform=ax.transAxes, ha="center", va="center", fontsize=6,
                        color="white", bbox=dict(boxstyle="round,pad=0.2", fc="0.2", ec="none", alpha=0.8))
            if predictions is not None and truths is not None and class_names is not None:
                pred = int(predictions[label][col])
                right = pred == int(truths[col])
                ax.text(0.5, -0.04, f"{'✓' if right else '✗'} {class_names[pred]}", transform=ax.transAxes,
                        ha="center", va="top", fontsize=5, color="#1a7f37" if right else "#c62828")
        grid = (grids or {}).get(label)
        name = label + (f"\n{grid[0]}×{grid[1]} CAM" if grid else "")
        axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fit_suptitle(fig, title or "Grad-CAM", 8)
    bottom = cap_h / fig.get_figheight()
    if caption:
        fig.text(0.2 / MAX_WIDTH, 0.005, caption, ha="left", va="bottom", fontsize=6, color="0.25")
    fig.tight_layout(rect=(0, bottom, 1 - bar_w / MAX_WIDTH, 1 - 0.3 / fig.get_figheight()), pad=0.3, h_pad=0.9,
                     w_pad=0.2)
    # the bar's left edge just right of the grid: its ticks and label stay inside the figure's width
    cax = fig.add_axes((1 - 0.92 * bar_w / MAX_WIDTH, 0.2 + 0.6 * bottom, 0.018, 0.5))
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), "viridis"), cax=cax)
    bar.set_label("Grad-CAM (0 = no weight, 1 = most)", fontsize=6)
    bar.ax.tick_params(labelsize=5)
    return fig


def plot_metric_bars(frame, x: str, y: str, hue: str | None = None, err: str | None = None, title: str = "",
                     ylabel: str = "", count: str | None = None) -> plt.Figure:
    """Grouped bars of a metric (e.g. accuracy per protocol and model), ±``err`` error bars when it
    names a column. Categories keep their order of appearance in ``frame``. ``count`` names a
    column of seed counts: a bar resting on fewer seeds than the most any bar has is labelled
    ``(n=K)``, so a half-finished plan is not read as a complete one."""
    xs = list(dict.fromkeys(frame[x]))
    hues = list(dict.fromkeys(frame[hue])) if hue else [None]
    width = 0.8 / len(hues)
    colors = sns.color_palette(PALETTE, n_colors=len(hues))
    most = frame[count].max() if count else None   # the seed count of a complete cell
    fig, ax = plt.subplots(figsize=(min(MAX_WIDTH, max(6.0, 2.6 * len(xs))), 4.2))
    for k, (level, color) in enumerate(zip(hues, colors)):
        part = frame if level is None else frame[frame[hue] == level]
        values = [part.loc[part[x] == v, y].mean() for v in xs]
        errors = [part.loc[part[x] == v, err].mean() for v in xs] if err else None
        positions = np.arange(len(xs)) + (k - (len(hues) - 1) / 2) * width
        bars = ax.bar(positions, values, width, yerr=errors, capsize=3, color=color,
                      label=None if level is None else str(level))
        labels = [f"{v:.1f}" if v == v else "" for v in values]
        if count:
            for i, v in enumerate(xs):
                n = part.loc[part[x] == v, count].sum()
                if labels[i] and n < most:
                    labels[i] += f" (n={int(n)})"
        ax.bar_label(bars, labels=labels, fontsize=7, padding=2)
    # long category names (split protocols) break at their hyphens instead of running into each other
    ax.set_xticks(np.arange(len(xs)), [_wrap_label(str(v)) for v in xs])
    ax.grid(False, axis="x")   # vertical grid lines would cut through the bars
    ax.set(ylabel=ylabel or y, xlabel="")
    if hue:   # one row between title and bars: inside the print width, over no bar
        ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(hues), frameon=False)
    title_and_layout(ax, title, pad=22 if hue else 6)
    return fig


def _wrap_label(text: str, width: int = 16) -> str:
    """``augment-then-group-split`` → ``augment-then-\ngroup-split``: lines of at most ``width``
    characters, broken after a hyphen or at a space."""
    lines, line = [], ""
    for piece in re.split(r"(?<=-)|(?<= )", text):
        if line and len(line) + len(piece) > width:
            lines.append(line.rstrip())
            line = ""
        line += piece
    return "\n".join([*lines, line.rstrip()])
