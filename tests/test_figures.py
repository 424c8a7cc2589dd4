"""Figure helpers produce non-empty PNG and PDF files with the content they claim."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from esg_lib import figures


@pytest.fixture(autouse=True)
def _style() -> None:
    figures.set_style()


def _saved(fig, tmp_path: Path, name: str) -> list[Path]:
    paths = figures.save_figure(fig, tmp_path, name)
    for path in paths:
        assert path.stat().st_size > 2000, path
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:4] == b"%PDF"
    return paths


def test_activation_figure_has_the_four_functions(tmp_path: Path) -> None:
    fig = figures.plot_activations(prelu_slope=0.25)
    labels = [line.get_label() for line in fig.axes[0].get_lines() if not line.get_label().startswith("_")]
    assert labels == ["GELU", "ReLU", "Sigmoid", "PReLU (a = 0.25)"]
    prelu = fig.axes[0].get_lines()[3]
    assert prelu.get_ydata()[0] == pytest.approx(-1.0)  # 0.25 * -4
    _saved(fig, tmp_path, "act")


def test_saving_the_same_figure_twice_writes_identical_files(tmp_path: Path) -> None:
    fig = figures.plot_activations(prelu_slope=0.25)
    first = [path.read_bytes() for path in figures.save_figure(fig, tmp_path / "a", "act", close=False)]
    second = [path.read_bytes() for path in figures.save_figure(fig, tmp_path / "b", "act")]
    assert first == second
    assert b"/CreationDate" not in first[1]


def test_sample_grid_has_a_row_per_class(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (30, 3, 16, 16), dtype=np.uint8)
    labels = np.repeat(np.arange(3), 10)
    fig = figures.plot_sample_grid(images, labels, ["cracks", "pits", "rust"], per_class=4, title="t")
    assert len(fig.axes) == 12
    assert [fig.axes[i * 4].get_ylabel() for i in range(3)] == ["cracks", "pits", "rust"]
    _saved(fig, tmp_path, "grid")


def test_curves_average_seeds(tmp_path: Path) -> None:
    fig = figures.plot_curves({"A": [[50, 60, 70], [60, 70, 80]], "B": [[40, 45]]}, highlight="A")
    line_a = fig.axes[0].get_lines()[0]
    assert list(line_a.get_ydata()) == [55, 65, 75]
    assert line_a.get_label() == "A (n=2)"
    _saved(fig, tmp_path, "curves")


def test_confusion_tsne_cam_and_bars(tmp_path: Path) -> None:
    names = ["a", "b", "c"]
    cm = np.array([[5, 1, 0], [0, 6, 0], [1, 0, 4]])
    _saved(figures.plot_confusion_matrices({"m1": cm, "m2": cm.T}, names), tmp_path, "cm")

    rng = np.random.default_rng(0)
    feats = np.concatenate([rng.normal(i * 5, 1, (10, 8)) for i in range(3)])
    y = np.repeat(np.arange(3), 10)
    xy = figures.tsne_embedding(feats, random_state=42)
    assert xy.shape == (30, 2)
    np.testing.assert_allclose(xy, figures.tsne_embedding(feats, random_state=42))  # seeded
    _saved(figures.plot_tsne({"m1": (xy, y)}, names), tmp_path, "tsne")

    images = rng.random((3, 16, 16, 3))
    cams = {"m1": rng.random((3, 16, 16)), "m2": rng.random((3, 16, 16))}
    fig = figures.plot_cam_grid(images, cams, ["a", "b", "c"])
    assert len(fig.axes) == 9
    _saved(fig, tmp_path, "cam")

    frame = pd.DataFrame(dict(protocol=["leak-free", "leak-free", "augment-then-split", "augment-then-split"],
                              model=["ESG", "ResNet18", "ESG", "ResNet18"], acc=[90.0, 91.0, 97.0, 98.0],
                              std=[1.0, 0.5, 0.2, 0.1]))
    fig = figures.plot_metric_bars(frame, "protocol", "acc", hue="model", err="std")
    heights = sorted(p.get_height() for p in fig.axes[0].patches)
    assert heights == [90.0, 91.0, 97.0, 98.0]
    _saved(fig, tmp_path, "bars")
    # a bar on fewer seeds than the others says so
    fig = figures.plot_metric_bars(frame.assign(n=[3, 3, 1, 3]), "protocol", "acc", hue="model", count="n")
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == ["90.0", "91.0", "97.0 (n=1)", "98.0"]
    _saved(fig, tmp_path, "bars_counts")
