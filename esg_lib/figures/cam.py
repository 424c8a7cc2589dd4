"""Grad-CAM (paper Fig. 13): the images, then one row of class-activation overlays per model.

:func:`plot_cam_grid` draws plain arrays; :func:`plot_gradcam` draws what
:meth:`esg_lib.experiments.Experiment.gradcam` returns (a ``CamSet``), with its caption.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from .layout import fit_lines, fit_suptitle
from .style import MAX_WIDTH

__all__ = ["plot_cam_grid", "plot_gradcam"]


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


def plot_gradcam(cams, title: str) -> plt.Figure:
    """Fig. 13 from an :class:`esg_lib.experiments.CamSet`: the maps with each panel's predicted class
    (✓/✗), each row's CAM grid, a colour bar, and a caption counting the right predictions per model
    and keying the short class codes."""
    n = len(cams.images)
    right = ", ".join(f"{label} {k}/{n}" for label, k in cams.correct().items())
    key = "; ".join(f"{a} = {b}" for a, b in zip(cams.short_names, cams.class_names) if a != b)
    caption = (f"Under each map: the class the model predicted (✓ right, ✗ wrong), which the map explains. "
               f"Right on these {n} images: {right}.\nBright = more weight; a map is its row's CAM grid upsampled "
               f"to the image." + (f"\n{key}" if key else ""))
    return plot_cam_grid(
        cams.images, cams.cams, [cams.short_names[int(t)] for t in cams.truths], title=title,
        predictions={label: e.predictions for label, e in cams.explained.items()}, truths=cams.truths,
        class_names=cams.short_names, grids={label: e.grid for label, e in cams.explained.items()},
        caption=caption)
