"""Every figure of the project, in one package: one module per family of figures, one style.

Every drawing function takes plain arrays or a tidy frame (no training, no file reading inside),
returns the matplotlib ``Figure`` and leaves saving to :func:`save_figure` (PNG for screens, PDF for
print); titles name the model, dataset and profile when the caller gives them. The frames come from
the report layer (:mod:`esg_lib.report`) or a notebook's :class:`~esg_lib.experiments.Experiment`;
this package imports nothing of ``esg_lib`` but the base (docs/architecture.md), so it never
decides *what* to draw, only how.

- :mod:`.style`: the backend, the print width, palettes, colour distance, line styles, ``set_style``;
- :mod:`.layout`: text widths, lines broken to fit, titles, label spreading, panel grids;
- :mod:`.saving`: ``save_figure`` (PNG and undated PDF) and showing the PNG in a notebook cell;
- :mod:`.samples`: sample images per class (Fig. 1 / 14), images per class and split;
- :mod:`.network`: activation functions (Fig. 7), the network's stages;
- :mod:`.curves`: a metric per epoch (Fig. 9 / 11 / 15);
- :mod:`.confusion`: confusion matrices (Fig. 10);
- :mod:`.embeddings`: t-SNE (Fig. 12);
- :mod:`.cam`: Grad-CAM (Fig. 13);
- :mod:`.summaries`: many runs in one picture: metric bars, accuracy against cost, paired
  differences, the ablation, per-class recall, the ``cpu-gap`` arms.

A new figure goes into the module of its family (a new module only for a new family), takes its
data as arguments, draws with :mod:`.style` and :mod:`.layout`, and is re-exported here; the frame
it draws is built in the report layer. Notebooks write ``figures.plot_curves(...)``.
"""
from __future__ import annotations

from . import style   # first: picks the backend before anything below imports matplotlib.pyplot
from .cam import plot_cam_grid, plot_gradcam
from .confusion import plot_confusion_matrices
from .curves import plot_curves
from .embeddings import plot_tsne, tsne_embedding
from .layout import fit_lines, fit_suptitle, text_width, title_and_layout
from .network import plot_activations, plot_stages
from .samples import plot_class_counts, plot_sample_grid
from .saving import save_figure, saved_width, show_saved
from .style import (DISTINCT_COLORS, MAX_WIDTH, PALETTE, color_distance, distinct_colors, highlight_style, in_kernel,
                    line_styles, ordered_colors, row_colors, set_style, text_color)
from .summaries import (plot_ablation, plot_accuracy_vs_cost, plot_forest, plot_gap, plot_metric_bars,
                        plot_recall_heatmap)

__all__ = ["style", "set_style", "save_figure", "fit_lines", "fit_suptitle", "text_width", "saved_width",
           "title_and_layout", "show_saved", "in_kernel", "plot_activations", "plot_stages", "plot_sample_grid",
           "plot_class_counts", "plot_curves", "plot_confusion_matrices", "plot_tsne", "tsne_embedding",
           "plot_cam_grid", "plot_gradcam", "plot_metric_bars", "plot_accuracy_vs_cost", "plot_forest",
           "plot_ablation", "plot_recall_heatmap", "plot_gap", "PALETTE", "MAX_WIDTH", "line_styles",
           "ordered_colors", "DISTINCT_COLORS", "distinct_colors", "row_colors", "color_distance",
           "highlight_style", "text_color"]
