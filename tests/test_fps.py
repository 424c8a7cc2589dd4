"""`esg fps`: one figure per network, with its spread, at the digits the spread allows (issue 34, s.1
item 11). The committed ``results/cpu/fps.json`` is read as the tables and figures read it."""
from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import numpy as np
import pytest

from esg_lib.engine import fps as F

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = json.loads((ROOT / "results" / "cpu" / "fps.json").read_text())


@pytest.mark.parametrize("timings, text", [
    ([18.897, 17.690, 18.266, 19.658, 19.101], "19 (18–20)"),          # half range 0.98 → 1: units
    ([174.0, 173.3, 161.5, 143.2, 184.2], "170 (140–180)"),            # 20.5 → 20: tens
    ([153.4, 154.1, 141.9, 149.7, 155.1], "153 (142–155)"),            # 6.6 → 7: units
    ([1.234, 1.236, 1.235], "1.235 (1.234–1.236)"),                     # 0.001: thousandths
    ([42.0], "42.0 (42.0–42.0)"),                                       # one timing: three digits
])
def test_a_figure_keeps_the_digits_its_spread_allows(timings, text) -> None:
    figure = F.FpsFigure(statistics.median(timings), min(timings), max(timings), len(timings), ("m",))
    assert figure.text == text


def test_rows_of_one_network_share_one_figure_over_all_their_timings() -> None:
    figures = F.fps_figures(COMMITTED)
    models = COMMITTED["models"]
    assert set(figures) == set(models)
    for group in COMMITTED["networks"].values():
        pooled = [t for k in group for t in models[k]["fps_all"]]
        shared = {figures[k] for k in group}
        assert len(shared) == 1
        [figure] = shared
        # cross-checked a second way: numpy over the raw timings of fps.json
        assert figure.median == pytest.approx(float(np.median(pooled)))
        assert (figure.low, figure.high, figure.n) == (min(pooled), max(pooled), len(pooled))
    assert COMMITTED["networks"]["convnextv2"] == ["convnextv2", "esg-abl1"]
    # a network measured alone: its figure is its own median, as fps.json records it
    assert figures["esg-convnext"].median == pytest.approx(models["esg-convnext"]["fps"])


def test_the_committed_grouping_is_what_same_network_finds() -> None:
    """Table 2's row 1 is ConvNeXtV2-atto (one network: weights of one give the other's outputs); no
    other rows are one network."""
    assert F.group_networks("cpu", list(COMMITTED["models"])) == COMMITTED["networks"]


def test_same_network_needs_the_same_function_not_only_the_same_shapes() -> None:
    import timm
    import torch

    a = timm.create_model("convnextv2_atto", num_classes=7)
    assert F.same_network(a, timm.create_model("esg_convnext_atto_abl1", num_classes=7))
    assert not F.same_network(a, timm.create_model("esg_convnext_atto_abl2", num_classes=7))
    b = timm.create_model("convnextv2_atto", num_classes=7)
    b.stem[1] = torch.nn.Identity()        # same shapes but one LayerNorm fewer
    assert not F.same_network(a, b)


def _fps_column(path: Path, column: str) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return {r[0]: r[header.index(column)] for r in rows}


def test_every_committed_table_shows_one_fps_figure_per_network() -> None:
    """The same network shows the same FPS text in every table (it once showed 18.9 in one and the
    runs' own 17.3 in another), and that text is fps.json's figure."""
    figures = F.fps_figures(COMMITTED)
    by_label = {v["label"]: figures[k].text for k, v in COMMITTED["models"].items()}
    by_label["ESG-ConvNeXt"] = figures["esg-convnext"].text
    seen: dict[str, set[str]] = {}
    results = ROOT / "results" / "cpu"
    for name, column in [("x-sdd.md", "FPS"), ("neu-cls-64.md", "FPS"), ("table1_x-sdd.md", "FPS ours (this machine)"),
                         ("table2_x-sdd.md", "FPS ours (this machine)"), ("table3_x-sdd.md", "FPS ours (this machine)")]:
        for label, text in _fps_column(results / name, column).items():
            label = re.sub(r" \[.*\]$", "", label)
            seen.setdefault(label, set()).add(text)
    assert all(len(texts) == 1 for texts in seen.values()), {k: v for k, v in seen.items() if len(v) > 1}
    assert {label: texts.pop() for label, texts in seen.items()} == {label: by_label[label] for label in seen}
    assert seen.keys() >= {"ESG-ConvNeXt", "ConvNeXtV2", "Row 1: ConvNeXt"}


def test_fps_note_says_what_the_figure_is() -> None:
    note = F.fps_note(COMMITTED)
    assert "median (lowest–highest timing)" in note and "ConvNeXtV2 = Row 1: ConvNeXt" in note
    assert COMMITTED["hardware"] in note and f"{COMMITTED['protocol']['repeats']} timings" in note
