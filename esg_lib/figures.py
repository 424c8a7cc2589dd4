"""Figure helpers for the notebooks: one function per figure type of the paper, one style.

Every function takes plain arrays (no training inside), returns the matplotlib ``Figure`` and leaves
saving to :func:`save_figure` (PNG for screens, PDF for print). Palettes are colour-blind safe
(seaborn's ``colorblind`` for categories, ``viridis``/``rocket`` for sequential values); titles name
the model, dataset and profile when the caller gives them.
"""
from __future__ import annotations

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

__all__ = ["set_style", "save_figure", "show_saved", "in_kernel", "plot_activations", "plot_sample_grid",
           "plot_class_counts",
           "plot_curves", "plot_confusion_matrices", "plot_tsne", "tsne_embedding", "plot_cam_grid",
           "plot_metric_bars", "PALETTE"]

PALETTE = "colorblind"


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
    width = struct.unpack(">I", data[16:20])[0]   # PNG header: IHDR width, big-endian
    saved_dpi = matplotlib.rcParams["savefig.dpi"]
    if fig is not None and saved_dpi != "figure":
        width = round(width * fig.dpi / float(saved_dpi))
    display(Image(data=data, format="png", width=width), metadata={"esg_lib": {"figure": Path(png).name}})


def _grid(n: int, max_cols: int) -> tuple[int, int]:
    cols = min(n, max_cols)
    return (n + cols - 1) // cols, cols


# -------------------------------------------------------------------------------- Fig. 7
def plot_activations(prelu_slope: float = 0.25, x_range: tuple[float, float] = (-4, 4)) -> plt.Figure:
    """Paper Fig. 7: GELU, ReLU, sigmoid and PReLU (slope ``a`` for x < 0) on one axis."""
    import torch

    x = torch.linspace(*x_range, 401)
    curves = {
        "GELU": torch.nn.functional.gelu(x),
        "ReLU": torch.relu(x),
        "Sigmoid": torch.sigmoid(x),
        f"PReLU (a = {prelu_slope})": torch.where(x >= 0, x, prelu_slope * x),
    }
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for (label, y), style in zip(curves.items(), ["-", "--", "-.", ":"]):
        ax.plot(x.numpy(), y.numpy(), style, lw=2.2, label=label)
    ax.axhline(0, color="0.4", lw=0.8)
    ax.axvline(0, color="0.4", lw=0.8)
    ax.set(xlabel="input x", ylabel="activation f(x)", title="Activation functions (paper Fig. 7)",
           ylim=(-1.5, 4.2))
    ax.legend(frameon=True)
    return fig


# ---------------------------------------------------------------------------- Fig. 1 / 14
def plot_sample_grid(images: np.ndarray, labels: Sequence[int], class_names: Sequence[str],
                     per_class: int = 4, seed: int = 0, title: str = "") -> plt.Figure:
    """Paper Fig. 1 / 14: ``per_class`` random images of each class, one row per class.

    ``images`` is uint8 (N, 3, H, W) or (N, H, W, 3).
    """
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[1] in (1, 3):
        images = images.transpose(0, 2, 3, 1)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(class_names), per_class, figsize=(1.6 * per_class + 2.2, 1.6 * len(class_names)),
                             squeeze=False)
    for row, name in enumerate(class_names):
        idx = np.flatnonzero(labels == row)
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
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=10)
    fig.suptitle(title or "Samples per class")
    fig.tight_layout()
    return fig


def plot_class_counts(counts: Mapping[str, Sequence[int]], class_names: Sequence[str], title: str = "") -> plt.Figure:
    """Images per class for each split (``counts[split][class]``), grouped bars."""
    import pandas as pd

    frame = pd.DataFrame([{"class": class_names[c], "split": split, "images": n}
                          for split, row in counts.items() for c, n in enumerate(row)])
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(class_names) + 2), 4))
    sns.barplot(frame, x="class", y="images", hue="split", ax=ax)
    ax.set(xlabel="", ylabel="images", title=title or "Images per class and split")
    ax.tick_params(axis="x", rotation=30)
    for label in ax.get_xticklabels():
        label.set_ha("right")
    return fig


# ------------------------------------------------------------------------ Fig. 9 / 11 / 15
def plot_curves(curves: Mapping[str, Sequence[Sequence[float]]], metric: str = "validation accuracy (%)",
                title: str = "", highlight: str | None = None) -> plt.Figure:
    """Paper Fig. 9 / 11 / 15: a metric per epoch, one line per model (mean over seeds, band = ±1 std).

    ``curves[label]`` is a list of per-seed series (seeds may have different lengths: the common
    prefix is used). ``highlight`` draws that model dashed in red, as the paper draws its own.
    """
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    colors = sns.color_palette(PALETTE, n_colors=max(len(curves), 1))
    for (label, series), color in zip(curves.items(), colors):
        series = [np.asarray(s, dtype=float) for s in series if len(s)]
        if not series:
            continue
        n = min(len(s) for s in series)
        stack = np.stack([s[:n] for s in series])
        mean, std = stack.mean(0), stack.std(0)
        epochs = np.arange(1, n + 1)
        style = (dict(color="tab:red", ls="--", lw=2.6, zorder=5) if label == highlight
                 else dict(color=color, lw=1.6, zorder=2))
        ax.plot(epochs, mean, label=f"{label} (n={len(series)})", **style)
        if len(series) > 1:
            ax.fill_between(epochs, mean - std, mean + std, alpha=0.15, color=style["color"])
    ax.set(xlabel="epoch", ylabel=metric, title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


# --------------------------------------------------------------------------------- Fig. 10
def plot_confusion_matrices(matrices: Mapping[str, np.ndarray], class_names: Sequence[str], title: str = "",
                            max_cols: int = 4) -> plt.Figure:
    """Paper Fig. 10: one confusion matrix per model (rows = true class, columns = predicted)."""
    rows, cols = _grid(len(matrices), max_cols)
    side = 0.45 * len(class_names) + 1.5
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols, side * rows), squeeze=False)
    for i, (ax, (label, cm)) in enumerate(zip(axes.flat, matrices.items())):
        first_col = i % cols == 0
        sns.heatmap(np.asarray(cm), annot=True, fmt="d", cmap="rocket_r", cbar=False, square=True, ax=ax,
                    xticklabels=class_names, yticklabels=class_names if first_col else False,
                    annot_kws={"fontsize": 7})
        ax.set(title=label, xlabel="predicted", ylabel="true" if first_col else "")
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(matrices):]:
        ax.axis("off")
    fig.suptitle(title or "Confusion matrices")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------- Fig. 12
def tsne_embedding(features: np.ndarray, random_state: int = 42, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE (scikit-learn) of pre-logit features; the paper's seed is 42. Perplexity is capped
    below the sample count so small test sets (smoke profile) still work."""
    from sklearn.manifold import TSNE

    features = np.asarray(features, dtype=np.float32)
    perplexity = min(perplexity, max(2.0, (len(features) - 1) / 3))
    return TSNE(n_components=2, random_state=random_state, perplexity=perplexity, init="pca").fit_transform(features)


def plot_tsne(embeddings: Mapping[str, tuple[np.ndarray, np.ndarray]], class_names: Sequence[str], title: str = "",
              max_cols: int = 4) -> plt.Figure:
    """Paper Fig. 12: one t-SNE scatter per model, coloured by true class."""
    rows, cols = _grid(len(embeddings), max_cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.4 * rows), squeeze=False)
    colors = sns.color_palette(PALETTE, n_colors=len(class_names))
    for ax, (label, (xy, y)) in zip(axes.flat, embeddings.items()):
        for c, name in enumerate(class_names):
            mask = np.asarray(y) == c
            ax.scatter(xy[mask, 0], xy[mask, 1], s=6, color=colors[c], label=name)
        ax.set(title=label, xticks=[], yticks=[])
    for ax in list(axes.flat)[len(embeddings):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(class_names), 5), markerscale=3, fontsize=8,
               bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(title or "t-SNE of pre-logit features (random_state=42)")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


# --------------------------------------------------------------------------------- Fig. 13
def plot_cam_grid(images: np.ndarray, cams: Mapping[str, np.ndarray], column_titles: Sequence[str],
                  title: str = "") -> plt.Figure:
    """Paper Fig. 13: the original images in the first row, then one row of Grad-CAM overlays per model
    (viridis, colour-blind safe: bright = more important; the paper uses jet).

    ``images`` float in [0, 1], (N, H, W, 3); ``cams[model]`` (N, H, W) in [0, 1].
    """
    import cv2
    from pytorch_grad_cam.utils.image import show_cam_on_image

    n = len(images)
    fig, axes = plt.subplots(len(cams) + 1, n, figsize=(1.7 * n + 1.8, 1.7 * (len(cams) + 1)), squeeze=False)
    for col in range(n):
        axes[0, col].imshow(images[col])
        axes[0, col].set_title(column_titles[col], fontsize=8)
    axes[0, 0].set_ylabel("image", rotation=0, ha="right", va="center")
    for row, (label, cam) in enumerate(cams.items(), start=1):
        for col in range(n):
            axes[row, col].imshow(show_cam_on_image(images[col].astype(np.float32), cam[col], use_rgb=True,
                                                          colormap=cv2.COLORMAP_VIRIDIS))
        axes[row, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or "Grad-CAM")
    fig.tight_layout()
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
    fig, ax = plt.subplots(figsize=(max(6.0, 2.6 * len(xs)), 4.2))
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
    ax.set_xticks(np.arange(len(xs)), xs)
    ax.set(title=title, ylabel=ylabel or y, xlabel="")
    if hue:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig
