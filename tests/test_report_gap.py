"""The `cpu-gap` experiments (issue 18): arms pair per seed with the committed `cpu` runs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from esg_lib.engine import config as C
from esg_lib.engine import plan as P
from esg_lib.report import gap as G

ROOT = Path(__file__).resolve().parents[1]


def test_gap_arms_train_new_identities_on_the_cpu_splits():
    base = C.build_config("cpu", model="esg-convnext")
    for stage in P.plan("cpu-gap"):
        cfg = C.build_config("cpu-gap", model=stage.models[0], dataset=stage.dataset, **dict(stage.overrides))
        # the split fields are the cpu profile's: every seed pairs with its cpu partner
        assert {f: getattr(cfg, f) for f in ("seed", "val_fraction", "test_fraction", "augment_copies",
                                              "max_images", "protocol")} == \
               {f: getattr(base, f) for f in ("seed", "val_fraction", "test_fraction", "augment_copies",
                                              "max_images", "protocol")}
        for model in stage.models:
            assert P.expected_variant("cpu-gap", model, stage.dataset, stage.protocol, stage.overrides) != \
                P.expected_variant("cpu", model, stage.dataset, stage.protocol)
    steps = next(s for s in P.plan("cpu-gap") if s.overrides.get("epochs") == 60)
    assert P.stage_scale("cpu-gap", steps) == 4.0
    size = next(s for s in P.plan("cpu-gap") if s.overrides.get("img_size") == 128)
    assert P.stage_scale("cpu-gap", size) == 4.0


def _fake_arm_records(results: Path, stage: P.Stage, extra: dict[int, float]) -> None:
    """cpu-gap records for ``stage``: each cpu partner's accuracy plus ``extra[seed]``."""
    out = results / "cpu-gap" / "runs"
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted((results / "cpu" / "runs").glob("x-sdd__*.json")):
        rec = json.loads(path.read_text())
        if rec["model"] not in stage.models or rec.get("protocol") != "leak-free":
            continue
        if rec["variant"] != P.expected_variant("cpu", rec["model"], "x-sdd", "leak-free"):
            continue
        rec.update(profile="cpu-gap", acc=rec["acc"] + extra[rec["seed"]], steps=rec["steps"] * 4,
                   variant=P.expected_variant("cpu-gap", rec["model"], "x-sdd", "leak-free", stage.overrides))
        (out / path.name).write_text(json.dumps(rec))


def test_gains_and_gaps_pair_each_arm_with_its_cpu_partner(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results" / "cpu" / "runs", results / "cpu" / "runs")
    stage = next(s for s in P.plan("cpu-gap") if s.overrides.get("epochs") == 60)
    _fake_arm_records(results, stage, {0: 0.01, 1: 0.02, 2: 0.03})
    frame = G.arm_frame("cpu-gap", results)
    assert set(frame["arm"]) == {G.BASE_ARM, "60 epochs, 64 px"}
    gains = G.gains(frame)
    assert len(gains) == 3 and set(gains["arm"]) == {"60 epochs, 64 px"}
    for _, row in gains.iterrows():       # +1, +2, +3 points: mean 2, t interval 2 ± 4.303 * 1 / sqrt(3)
        assert row["_mean"] == pytest.approx(2.0) and row["_low"] == pytest.approx(2.0 - 4.3027 / 3 ** 0.5, abs=1e-3)
        assert row["reading"] == "within noise"
    gaps = G.gaps(frame)
    base = gaps[gaps["arm"] == G.BASE_ARM].set_index("ESG-ConvNeXt minus")["_mean"]
    arm = gaps[gaps["arm"] == "60 epochs, 64 px"].set_index("ESG-ConvNeXt minus")["_mean"]
    # every row gained the same per seed, so the gaps do not move
    assert arm.to_dict() == pytest.approx(base.to_dict())
    written = G.write_gap_report("cpu-gap", results, figures=tmp_path / "figures")
    assert {p.suffix for p in written} == {".md", ".csv", ".png", ".pdf"}
    assert "| 60 epochs, 64 px | ResNet18 | 0 1 2 | +2.0 |" in (results / "cpu-gap" / "gap_x-sdd.md").read_text()


def test_a_record_of_another_recipe_is_left_out(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results" / "cpu" / "runs", results / "cpu" / "runs")
    stage = next(s for s in P.plan("cpu-gap") if s.overrides.get("img_size") == 128)
    _fake_arm_records(results, stage, {0: 0.0, 1: 0.0, 2: 0.0})
    for path in (results / "cpu-gap" / "runs").glob("*.json"):
        path.write_text(json.dumps({**json.loads(path.read_text()), "variant": "deadbeef"}))
    assert set(G.arm_frame("cpu-gap", results)["arm"]) == {G.BASE_ARM}


def test_committed_gap_report_is_what_esg_report_writes():
    committed = ROOT / "results" / "cpu-gap" / "gap_x-sdd.md"
    assert committed.read_text() == G.gap_markdown("cpu-gap", ROOT / "results"), \
        "results/cpu-gap/gap_x-sdd.md is stale: run `esg report --profile cpu-gap`"


def test_docs_reading_is_what_esg_report_writes():
    page = (ROOT / "docs" / "results.md").read_text()
    begin, end = G.GAP_BEGIN.format(profile="cpu-gap"), G.GAP_END.format(profile="cpu-gap")
    block = page.split(begin, 1)[1].split(end, 1)[0].strip()
    assert block == "\n".join(G.reading(G.arm_frame("cpu-gap", ROOT / "results"))), \
        "docs/results.md: run `esg report --profile cpu-gap --readme`"


def test_gap_figure_joins_only_means_over_the_same_seeds_and_labels_n_beside_them(tmp_path):
    """The committed records: ResNet18 has seeds 0 1 2 at 915 steps but seed 0 only at 3660, and
    ConvNeXtV2 seeds 0 1 at 128 px: no line may join those means. Every ``n=`` label is beside the
    markers (its box covers none), the figure has a title, and ``esg report`` saves it in the
    notebooks' style at the print width (it was once 710 px: matplotlib's 100 dpi)."""
    from esg_lib import figures

    results = tmp_path / "results"
    for profile in ("cpu", "cpu-gap"):
        shutil.copytree(ROOT / "results" / profile / "runs", results / profile / "runs")
    frame = G.arm_frame("cpu-gap", results)
    fig = G.gap_figure(frame)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert "Why ESG-ConvNeXt trails ResNet18" in fig._suptitle.get_text()
    joins = {}
    for ax in fig.axes[:2]:
        lines = [line for line in ax.get_lines() if line.get_linestyle() != "None"]
        markers = [line for line in ax.get_lines() if line.get_linestyle() == "None"]
        joins[ax.get_xlabel()] = [line.get_color() for line in lines]
        boxes = [t.get_window_extent(renderer) for t in ax.texts if t.get_text().startswith("n=")]
        points = [ax.transData.transform(xy) for m in markers for xy in m.get_xydata()]
        assert boxes and len(boxes) == len(points)            # one n= per mean
        for box in boxes:
            assert not any(box.x0 - 2 <= x <= box.x1 + 2 and box.y0 - 2 <= y <= box.y1 + 2 for x, y in points), box
    # expected from the records: a join per model and pair of neighbouring x values with the same seeds
    # (at the time of writing: ConvNeXtV2 915 → 3660 steps only; ResNet18's 3 seeds then 1, and
    # ConvNeXtV2's 3 then 2 at 128 px, stand alone)
    colors = {line.get_label(): line.get_color() for line in fig.axes[0].get_lines() if line.get_linestyle() == "None"}
    base = frame[frame["arm"] == G.BASE_ARM]
    panels = {fig.axes[0].get_xlabel(): (frame[frame["img_size"] == int(base["img_size"].iloc[0])], "steps"),
              fig.axes[1].get_xlabel(): (frame[frame["steps"] == int(base["steps"].iloc[0])], "img_size")}
    expected = {}
    for label, (part, x) in panels.items():
        expected[label] = []
        for key in G.MODELS:
            rows = part[part["key"] == key]
            xs = sorted(rows[x].unique())
            seeds = [sorted(rows.loc[rows[x] == v, "seed"]) for v in xs]
            expected[label] += [colors[rows["model"].iloc[0]] for a, b in zip(seeds, seeds[1:]) if a == b]
    assert joins == expected
    written = G.write_gap_report("cpu-gap", results, figures=tmp_path / "figures")
    png = next(p for p in written if p.suffix == ".png")
    assert 6.5 <= figures.saved_width(png, 150) <= figures.MAX_WIDTH + 0.01


def test_an_arm_that_changes_only_the_learning_rate_is_named_by_its_plan(tmp_path, monkeypatch):
    """Arms are data (issue 36): an arm of any field is named by its stage, not guessed from the
    epochs and size it happens to share with the base arm, and it stays off the steps/size axes."""
    lr_stage = P.Stage("Learning rate 3e-4, pivotal rows", "x-sdd", "leak-free", G.MODELS,
                       "a lower peak learning rate", {"lr": 3e-4}, arm="lr 3e-4")
    monkeypatch.setitem(P.PLANS, "cpu-gap", (*P.PLANS["cpu-gap"], lr_stage))
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results" / "cpu" / "runs", results / "cpu" / "runs")
    _fake_arm_records(results, lr_stage, {0: -0.01, 1: -0.01, 2: -0.01})
    for path in (results / "cpu-gap" / "runs").glob("*.json"):   # same steps as the base: only lr differs
        rec = json.loads(path.read_text())
        path.write_text(json.dumps({**rec, "steps": rec["steps"] // 4}))
    frame = G.arm_frame("cpu-gap", results)
    assert set(frame["arm"]) == {G.BASE_ARM, "lr 3e-4"}
    assert set(frame.loc[frame["arm"] == "lr 3e-4", "changes"]) == {frozenset({"lr"})}
    gains = G.gains(frame)
    assert set(gains["arm"]) == {"lr 3e-4"} and gains["_mean"].tolist() == pytest.approx([-1.0] * len(gains))
    markdown = G.gap_markdown("cpu-gap", results, frame=frame)
    assert "| lr 3e-4 | ResNet18 | 0 1 2 | -1.0 |" in markdown
    fig = G.gap_figure(frame)   # on neither axis: each panel holds the base runs only
    base = frame[frame["arm"] == G.BASE_ARM]
    for ax, x in zip(fig.axes[:2], ("steps", "img_size")):
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(int(base[x].iloc[0]))]


def test_a_stage_with_overrides_must_name_its_arm():
    with pytest.raises(C.ConfigError, match="names no arm"):
        P.Stage("unnamed", "x-sdd", "leak-free", ("resnet18",), overrides={"lr": 3e-4})
