"""Writing a figure: PNG for screens, PDF for print, both byte-identical on a rebuild.

:func:`save_figure` is the one place figures are written (docs/development.md, "Byte-identical
rebuilds"); inside a Jupyter kernel it also shows the PNG it wrote, so a notebook's cell and
``figures/`` never disagree.
"""
from __future__ import annotations

import struct
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt

from .style import MAX_WIDTH, in_kernel

__all__ = ["save_figure", "show_saved", "saved_width"]


def saved_width(path: str | Path, dpi: float | None = None) -> float:
    """Width in inches of a saved PNG at ``dpi`` (default: the style's ``savefig.dpi``), read from
    its header."""
    data = Path(path).read_bytes()[:24]
    pixels = struct.unpack(">I", data[16:20])[0]   # PNG header: IHDR width, big-endian
    return pixels / float(dpi or matplotlib.rcParams["savefig.dpi"])



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
