"""The experiment layer the notebooks call: paper tables, statistics, dataset fallback, and a tiny
real training pass through tables, curves, confusion matrices, features and Grad-CAM."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from esg_lib import experiments as X
from esg_lib import figures
from esg_lib.data.registry import short_class_names
from esg_lib.experiments import Experiment, RunResult, paired_difference, paper_table


def test_paper_tables_hold_the_published_rows() -> None:
    t1, t2, t3 = paper_table(1), paper_table(2), paper_table(3)
    assert len(t1) == 7 and len(t2) == 5 and len(t3) == 7
    assert set(t1["model"]) == set(t3["model"]) == set(X.PAPER_LABELS[k] for k in X.PAPER_MODELS)
    esg = t1.set_index("model").loc["ESG-ConvNeXt"]
    assert (esg["accuracy"], esg["f1"], esg["fps"]) == (97.5, 96.1, 6.0)
    assert t3.set_index("model").loc["ConvNeXtV2", "accuracy"] == 75.8
    assert list(t2["row"]) == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="Table 4"):
        paper_table(4)


def test_paired_difference_matches_a_hand_computation() -> None:
    d = paired_difference([92.0, 94.0, 93.0], [90.0, 91.0, 93.0])
    # differences 2, 3, 0: mean 5/3, sd sqrt(7/3), t(0.975, 2) = 4.302653
    half = 4.302653 * math.sqrt(7 / 3) / math.sqrt(3)
    assert d["mean"] == pytest.approx(5 / 3)
    assert (d["low"], d["high"]) == pytest.approx((5 / 3 - half, 5 / 3 + half), rel=1e-5)
    assert d["within_noise"] is True and d["n"] == 3
    clear = paired_difference([95.0, 96.0, 95.5], [90.0, 90.5, 90.2])
    assert clear["within_noise"] is False and clear["low"] > 0
    single = paired_difference([1.0], [0.0])
    assert single["mean"] == 1.0 and math.isnan(single["low"]) and single["within_noise"] is None


def test_main_dataset_falls_back_with_a_clear_note(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ESG_DATA_DIR", str(tmp_path / "nothing-fetched"))
    monkeypatch.delenv("ESG_NEU_CLS_64", raising=False)
    name, note = X.main_dataset("neu-cls-64", fallback="x-sdd")
    assert name == "x-sdd"
    assert "esg data fetch neu-cls-64" in note and "ESG_NEU_CLS_64" in note
    assert X.main_dataset("x-sdd") == ("x-sdd", "")


def test_main_dataset_without_training_needs_finished_runs_of_the_profile(tmp_path: Path) -> None:
    # x-sdd is always available (embedded): what decides is whether a finished cpu run exists
    name, note = X.main_dataset("x-sdd", fallback="elsewhere", profile="cpu", train_missing=False, root=tmp_path)
    assert name == "elsewhere" and "no finished `cpu` runs" in note and "esg queue --profile cpu" in note
    run = tmp_path / "runs" / "cpu" / "x-sdd" / "resnet18" / "s0-abc"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    assert X.main_dataset("x-sdd", "elsewhere", profile="cpu", train_missing=False, root=tmp_path)[0] == "elsewhere"
    (run / "metrics.json").write_text('{"status": "done"}')              # finished
    assert X.main_dataset("x-sdd", "elsewhere", profile="cpu", train_missing=False, root=tmp_path) == ("x-sdd", "")
    assert X.main_dataset("x-sdd", "elsewhere", profile="smoke", train_missing=False, root=tmp_path)[0] == "elsewhere"
    assert X.main_dataset("x-sdd", "elsewhere", profile="cpu", root=tmp_path) == ("x-sdd", "")  # it may train
    # a fresh clone: no run folder, but a committed rerun's light files of the run
    rerun = tmp_path / "results" / "smoke" / "reruns" / "x-sdd" / "resnet18" / "s0-abc"
    rerun.mkdir(parents=True)
    (rerun / "config.json").write_text("{}")
    (rerun / "metrics.json").write_text('{"status": "done"}')
    assert X.main_dataset("x-sdd", "elsewhere", profile="smoke", train_missing=False, root=tmp_path) == ("x-sdd", "")


def test_main_dataset_without_training_needs_a_finished_run_of_every_model_asked_for(tmp_path: Path) -> None:
    def finished(model: str, protocol: str = "leak-free") -> None:
        run = tmp_path / "runs" / "cpu" / "x-sdd" / model / f"s0-{protocol}"
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"config": {"model": model, "protocol": protocol}}))
        (run / "metrics.json").write_text('{"status": "done"}')

    ask = dict(profile="cpu", train_missing=False, root=tmp_path, models=["esg-abl1", "esg-convnext"])
    finished("esg-convnext")
    finished("esg-abl1", protocol="augment-then-split")         # not the notebooks' protocol
    name, note = X.main_dataset("x-sdd", "elsewhere", **ask)
    assert name == "elsewhere" and "no finished `cpu` runs of esg-abl1 yet" in note
    assert X.main_dataset("x-sdd", "elsewhere", profile="cpu", train_missing=False, root=tmp_path)[0] == "x-sdd"
    finished("esg-abl1")
    assert X.main_dataset("x-sdd", "elsewhere", **ask) == ("x-sdd", "")
    # runs brought back from another machine without their checkpoints cannot feed Grad-CAM
    name, note = X.main_dataset("x-sdd", "elsewhere", **ask, files=("best.pt",))
    assert name == "elsewhere" and "holding best.pt" in note
    (tmp_path / "runs" / "cpu" / "x-sdd" / "esg-abl1" / "s0-leak-free" / "best.pt").write_bytes(b"w")
    assert X.main_dataset("x-sdd", "elsewhere", **ask, files=("best.pt",))[0] == "elsewhere"   # one of two
    # a tuple inside files: any one of them will do (a checkpoint, or Grad-CAM maps saved in its place)
    either = (("best.pt", "gradcam.npz"),)
    name, note = X.main_dataset("x-sdd", "elsewhere", **ask, files=either)
    assert name == "elsewhere" and "runs of esg-convnext holding best.pt or gradcam.npz" in note
    (tmp_path / "runs" / "cpu" / "x-sdd" / "esg-convnext" / "s0-leak-free" / "gradcam.npz").write_bytes(b"m")
    assert X.main_dataset("x-sdd", "elsewhere", **ask, files=either) == ("x-sdd", "")
    assert X.main_dataset("x-sdd", "elsewhere", **ask, files=("best.pt",))[0] == "elsewhere"
    (tmp_path / "runs" / "cpu" / "x-sdd" / "esg-convnext" / "s0-leak-free" / "best.pt").write_bytes(b"w")
    assert X.main_dataset("x-sdd", "elsewhere", **ask, files=("best.pt",)) == ("x-sdd", "")


def _fake(key: str, label: str, seed: int, protocol: str, acc: float) -> RunResult:
    return RunResult(key, label, seed, protocol, "x-sdd", Path("/nonexistent"),
                     {"test": {"acc": acc / 100, "precision": 0.5, "recall": 0.5, "f1": 0.5, "n": 272},
                      "fps": 10.0, "params": 1e6, "steps": 10, "train_seconds": 1.0})


def test_protocol_table_separates_leak_from_augmented_test() -> None:
    exp = Experiment("smoke", "x-sdd", seeds=[0, 1])
    runs = []
    for seed, (lf, gs, ats) in enumerate([(90, 91, 98), (92, 92, 99)]):
        runs += [_fake("esg-convnext", "ESG-ConvNeXt", seed, "leak-free", lf),
                 _fake("esg-convnext", "ESG-ConvNeXt", seed, "augment-then-group-split", gs),
                 _fake("esg-convnext", "ESG-ConvNeXt", seed, "augment-then-split", ats)]
    row = exp.protocol_table(runs).iloc[0]
    assert row["leak-free"] == "91.0 ± 1.4"
    assert row["leak (points)"].startswith("+7.0")
    assert row["augmented test (points)"].startswith("+0.5")
    assert "n=" not in "".join(map(str, row.values))            # every protocol has both seeds

    half = [r for r in runs if not (r.seed == 1 and r.protocol != "leak-free")]   # a plan half-way
    row = exp.protocol_table(half).iloc[0]
    assert (row["leak-free"], row["augment-then-split"]) == ("91.0 ± 1.4 (n=2)", "98.0 (n=1)")
    assert row["leak (points)"] == "+7.0 (n=1)"                  # one paired seed: no interval


def test_figure_title_names_the_seeds_of_the_plotted_runs() -> None:
    exp = Experiment("smoke", "x-sdd", seeds=[0, 1, 2])
    assert exp.title("Fig. 9").endswith("profile smoke, seeds 0,1,2")
    assert exp.title("Fig. 9", "x-sdd").startswith("Fig. 9 — X-SDD, ")                  # the paper's spelling
    assert exp.title("Fig. 9", "my_folder").startswith("Fig. 9 — my_folder, ")           # a folder keeps its name
    runs = [_fake("esg-convnext", "ESG-ConvNeXt", s, "leak-free", 90) for s in (2, 0, 2)]
    assert exp.title("Fig. 9", runs=runs).endswith("seeds 0,2")            # seed 1 not run yet
    assert exp.title("Fig. 10", runs=runs, seeds=[0]).endswith("profile smoke, seed 0")   # one seed shown
    # lines with different seeds: the title says each line's (Fig. 15: 2 models seeds 0-2, 7 seed 0)
    mixed = [_fake(k, k.upper(), s, "leak-free", 90) for k in ("a", "b") for s in (0, 1, 2)] + \
            [_fake(k, k.upper(), 0, "leak-free", 90) for k in "cdefghi"]
    assert exp.title("Fig. 15", runs=mixed).endswith("profile smoke, seeds 0,1,2 for A and B, seed 0 for the other 7")
    assert X.seeds_of_lines(mixed[:3] + mixed[6:7]) == "seeds 0,1,2 for A, seed 0 for C"


def test_committed_figure_titles_state_the_seeds_of_each_line() -> None:
    """Fig. 15 draws MobileNetV3 and ConvNeXtV2 over seeds 0-2 (their committed reruns) and the
    other seven over seed 0: its title says so, as do the end labels; Fig. 11's lines are all seed 0."""
    root = Path(__file__).resolve().parents[1]
    reruns = root / "results" / "cpu" / "reruns" / "x-sdd"
    seeds = {}
    for folder in reruns.glob("*/s*-*"):
        if (folder / "log.jsonl").is_file():
            seeds.setdefault(folder.parent.name, set()).add(int(folder.name[1:].split("-")[0]))
    many = sorted(k for k in X.COMPARISON_MODELS if seeds.get(k, set()) == {0, 1, 2})
    assert many == ["convnextv2", "mobilenetv3"] and all(seeds[k] == {0} for k in X.COMPARISON_MODELS if k not in many)
    assert all(seeds[k] == {0} for k in X.ABLATION_MODELS)
    exp = Experiment("cpu", "x-sdd")
    runs = [_fake(k, X.resolve_model(k, exp.prof).label, s, "leak-free", 90) for k in X.COMPARISON_MODELS
            for s in sorted(seeds[k])]
    said = X.seeds_of_lines(runs)
    assert said == "seeds 0,1,2 for MobileNetV3 and ConvNeXtV2, seed 0 for the other 7"
    ablation = [_fake(k, k, 0, "leak-free", 90) for k in X.ABLATION_MODELS]
    assert X.seeds_of_lines(ablation) == "seed 0"


def test_rerun_note_names_each_machine_once_in_good_english() -> None:
    from types import SimpleNamespace as R

    runs = [R(rerun={"run_id": "a"}, hardware="CPU AMD EPYC, 2 cores, 1 threads"),
            R(rerun={"run_id": "b"}, hardware="CPU AMD EPYC, 2 cores, 1 threads"),
            R(rerun={"run_id": "c"}, hardware="CPU AMD EPYC, 16 cores, 11 threads"), R(rerun=None, hardware="H100")]
    note = X.rerun_note(runs)
    assert note == ("\ndrawn from reruns (same run ids) on CPU AMD EPYC, 16 cores, 11 threads; "
                    "CPU AMD EPYC, 2 cores, 1 thread; the tables keep the records' numbers")
    assert X.rerun_note(runs[3:]) == ""                                   # no rerun among them: no note


def test_reproduce_summary_follows_the_paper_and_names_the_dataset_used(tmp_path: Path) -> None:
    from esg_lib import reproduce

    results = tmp_path / "results" / "smoke"
    results.mkdir(parents=True)
    for name in ("leak_audit_x-sdd", "paired_differences_x-sdd", "table3_x-sdd", "table1_x-sdd", "table2_x-sdd",
                 "protocols_x-sdd", "x-sdd"):
        (results / f"{name}.md").write_text(f"{name} body\n")
    heads = [line for line in reproduce.summary_markdown("smoke", tmp_path).splitlines() if line.startswith("### ")]
    assert heads == ["### table1_x-sdd", "### table2_x-sdd", "### table3_x-sdd", "### paired_differences_x-sdd",
                     "### protocols_x-sdd", "### leak_audit_x-sdd", "### x-sdd"]
    executed = tmp_path / "03.ipynb"
    executed.write_text('{"source": "f\\"**Dataset used: {dataset_title(name)}**\\"", '
                        '"outputs": [{"text/markdown": "**Dataset used: X-SDD** (not the paper\'s NEU-CLS-64)"}]}')
    assert reproduce._dataset_used(executed) == "X-SDD"
    assert reproduce._dataset_used(tmp_path / "missing.ipynb") == ""


def test_paired_differences_table_names_noise() -> None:
    exp = Experiment("smoke", "x-sdd", seeds=[0, 1, 2])
    runs = [_fake("esg-convnext", "ESG-ConvNeXt", s, "leak-free", a) for s, a in enumerate([95, 96, 95.5])]
    runs += [_fake("resnet18", "ResNet18", s, "leak-free", a) for s, a in enumerate([90, 90.5, 90.2])]
    table = exp.paired_differences(runs)
    assert list(table["reference"]) == ["ResNet18"]
    assert table["within noise"].iloc[0] == "no"
    assert table["one test image (points)"].iloc[0] == pytest.approx(100 / 272, abs=0.01)
    runs.append(_fake("densenet121", "DenseNet121", 0, "leak-free", 80))   # one seed: no interval
    row = exp.paired_differences(runs).set_index("reference").loc["DenseNet121"]
    assert (row["95% interval"], row["within noise"]) == ("—", "untested (1 seed)")


@pytest.mark.slow
def test_class_names_and_validation_size_come_from_the_split_without_a_bundle(tmp_path: Path) -> None:
    """What the notebooks' figures need of the data (legend and axis names, the validation part's
    size) is what the first seed's bundle holds, read from the planned split: no image decoded."""
    exp = Experiment("smoke", "x-sdd", device="cpu", root=tmp_path, progress=False)
    names, short, val = exp.class_names(), exp.class_names(short=True), exp.val_size()
    assert not exp._bundles                                    # nothing decoded for them
    bundle = exp.bundle(exp.config("resnet18", exp.seeds[0]))
    assert names == bundle.display_names and "tin grey" in names
    assert short == short_class_names("x-sdd", bundle.class_names) and short[0] == "FRP"
    assert val == len(bundle.val) > 0


def test_tiny_real_experiment_end_to_end(tmp_path: Path) -> None:
    """Two models, one seed, on the smoke profile, written under a temporary root."""
    exp = Experiment("smoke", "x-sdd", seeds=[0], device="cpu", root=tmp_path, progress=False,
                     overrides={"epochs": 1, "fps_iters": 1})
    runs = exp.train(["resnet18", "esg-convnext"])
    assert [r.label for r in runs] == ["ResNet18", "ESG-ConvNeXt"]
    again = exp.train(["resnet18"])  # reused by identity, not retrained
    assert again[0].run_dir == runs[0].run_dir
    reuse_only = Experiment("smoke", "x-sdd", seeds=[0, 1], device="cpu", root=tmp_path, progress=False,
                            overrides={"epochs": 1, "fps_iters": 1}, train_missing=False)
    assert [r.run_dir for r in reuse_only.train(["resnet18", "mobilenetv3"])] == [runs[0].run_dir]
    assert reuse_only.skipped == ["mobilenetv3 seed 0 (leak-free)", "resnet18 seed 1 (leak-free)",
                                  "mobilenetv3 seed 1 (leak-free)"]
    with pytest.raises(RuntimeError, match="no finished smoke runs for vit"):
        reuse_only.train(["vit"])
    assert not (tmp_path / "runs" / "smoke" / "x-sdd" / "vit").exists()
    across = reuse_only.train_protocols(["resnet18"], seeds=[0])   # only leak-free has a finished run
    assert [(r.protocol, r.run_dir) for r in across] == [("leak-free", runs[0].run_dir)]
    assert reuse_only.skipped[-2:] == ["resnet18 seed 0 (augment-then-group-split)",
                                       "resnet18 seed 0 (augment-then-split)"]
    with pytest.raises(RuntimeError, match=r"for vit \(leak-free, augment-then-group-split, augment-then-split\)"):
        reuse_only.train_protocols(["vit"])

    table = exp.side_by_side(runs, table=3)
    assert list(table["model"]) == ["ResNet18", "ESG-ConvNeXt"]
    assert table.loc[1, "Acc paper"] == "90.5" and table.loc[0, "Acc paper"] == "—"
    paths = exp.write_table(table, "table3_test", caption="Table 3 test", runs=runs)
    text = paths[1].read_text()
    assert "profile `smoke`, 1 seed(s) (0)" in text and "Trained on: CPU" in text and "| ESG-ConvNeXt |" in text

    curves = exp.curves(runs)
    assert set(curves) == {"ResNet18", "ESG-ConvNeXt"} and len(curves["ResNet18"][0]) == 1
    cms = exp.confusion_matrices(runs)
    n_test = runs[0].metrics["test"]["n"]
    assert cms["ResNet18"].shape == (7, 7) and cms["ResNet18"].sum() == n_test
    feats = exp.features(runs)
    assert feats["ESG-ConvNeXt"][0].shape == (n_test, 320)

    cams = exp.gradcam(runs, n_images=3, seed=42)
    images = cams.images
    assert images.shape[0] == 3 and images.min() >= 0 and images.max() <= 1
    assert set(cams.cams) == {"ResNet18", "ESG-ConvNeXt"}
    assert all(c.shape == images.shape[:3] for c in cams.cams.values()) and len(cams.truths) == 3
    assert list(cams.truths) == [0, 1, 2]            # one image per class first, in class order
    assert {e.grid for e in cams.explained.values()} == {(2, 2)}   # 32 px, stride 16 (auto stage)
    right = cams.correct()
    assert all(0 <= k <= 3 for k in right.values())
    fig = figures.plot_gradcam(cams, title="t")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert sum(t.startswith(("✓", "✗")) for t in texts) == 2 * 3          # a mark under every map
    assert sum(t.startswith("✓") for t in texts) == sum(right.values())
    assert fig.get_figwidth() <= figures.MAX_WIDTH and "2×2 CAM" in fig.axes[3].get_ylabel()
    assert torch.is_grad_enabled()


def test_a_run_known_only_from_its_committed_record_feeds_the_protocol_table(tmp_path: Path) -> None:
    # A fresh clone has the 78 `cpu` records but none of their run folders: notebook 08 still
    # rebuilds its table from the records (records=True), and nothing else takes a record for a run.
    root = Path(__file__).resolve().parents[1]
    exp = Experiment("cpu", "x-sdd", seeds=[0, 1, 2], device="cpu", root=tmp_path, progress=False,
                     train_missing=False)
    exp_results = root / "results" / "cpu"
    assert not (tmp_path / "results").exists()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "cpu").symlink_to(exp_results, target_is_directory=True)
    with pytest.raises(RuntimeError, match="no finished cpu runs"):
        exp.train_protocols(["convnextv2"], ("leak-free",))
    runs = exp.train_protocols(["convnextv2"], ("leak-free",), records=True)
    assert [r.seed for r in runs] == [0, 1, 2] and all(r.hardware for r in runs)
    for r in runs:
        record = json.loads(r.run_dir.read_text())
        assert r.run_dir.parent.name == "runs" and r.run_dir.name.startswith(f"x-sdd__convnextv2__s{r.seed}-")
        assert r.metrics["test"]["acc"] == record["acc"] and record["protocol"] == "leak-free"
    committed = (exp_results / "protocols_x-sdd.csv").read_text().splitlines()
    row = next(line for line in committed if line.startswith("ConvNeXtV2,"))
    assert row.split(",")[1] == exp.protocol_table(runs).iloc[0]["leak-free"]


# ------------------------------------------------------------------------------ Fig. 12's t-SNE
def _committed_tsne_runs(dataset: str) -> tuple[Experiment, list[RunResult]]:
    """The runs Fig. 12 draws on a fresh clone: each paper model's committed seed-0 rerun."""
    exp = Experiment("cpu", dataset, train_missing=False)
    runs = []
    for key in X.PAPER_MODELS:
        [folder] = sorted((exp.results_dir / "reruns" / dataset / key).glob("s0-*"))
        runs.append(RunResult.from_rerun(key, X.resolve_model(key, exp.prof).label, "leak-free", folder))
    return exp, runs


@pytest.mark.parametrize("dataset", ["x-sdd", "neu-cls-64"])
def test_committed_tsne_is_of_the_committed_features_and_draws_without_tsne(
        dataset: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """results/cpu/tsne/<dataset>.json holds, for each of the paper's 7 models (in its order), the
    SHA-256 of the committed rerun's features the embedding was computed from; they match, so
    drawing Fig. 12 runs no t-SNE (which would give another layout on another processor) and
    rewrites nothing."""
    import sklearn.manifold

    exp, runs = _committed_tsne_runs(dataset)
    csv_path, json_path = X.tsne_files(exp.results_dir, dataset)
    about = json.loads(json_path.read_text())
    assert list(about["models"]) == [r.label for r in runs]                       # the paper's order
    root = Path(__file__).resolve().parents[1]
    for r in runs:
        stored = about["models"][r.label]
        features, labels = r.features()
        assert stored["features"] == (r.run_dir / "test_features.npz").relative_to(root).as_posix()
        assert stored["features_sha256"] == X.features_digest(features, labels), r.label
        assert stored["n"] == len(labels)
    assert about["settings"] == X.TSNE_SETTINGS
    assert about["class_names"] == json.loads((runs[0].run_dir / "config.json").read_text())["display_names"]

    def no_tsne(*args, **kwargs):
        raise AssertionError("t-SNE ran")
    monkeypatch.setattr(figures, "tsne_embedding", no_tsne)
    monkeypatch.setattr(sklearn.manifold, "TSNE", no_tsne)
    before = (csv_path.read_bytes(), json_path.read_bytes())
    embeddings = exp.tsne(runs, about["class_names"])
    assert (csv_path.read_bytes(), json_path.read_bytes()) == before
    assert list(embeddings) == [r.label for r in runs]
    for r in runs:
        xy, y = embeddings[r.label]
        assert xy.shape == (len(r.features()[1]), 2) and (y == r.features()[1]).all()
    figures.set_style()
    figures.save_figure(figures.plot_tsne(embeddings, about["class_names"]), tmp_path, "tsne")


def test_tsne_runs_only_for_changed_features_or_on_request(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    calls = []

    def fake(features, random_state=42, perplexity=30.0):
        calls.append(len(features))
        return np.column_stack([np.arange(len(features)), np.full(len(features), float(len(calls)))])
    monkeypatch.setattr(figures, "tsne_embedding", fake)
    rng = np.random.default_rng(0)
    feats = {"A": (rng.normal(size=(5, 3)), np.arange(5) % 2), "B": (rng.normal(size=(6, 3)), np.arange(6) % 2)}
    first = X.tsne_embeddings(feats, tmp_path, "toy", class_names=["x", "y"])
    assert calls == [5, 6] and first["B"][0][0, 1] == 2.0
    again = X.tsne_embeddings(feats, tmp_path, "toy")                           # same features: from the file
    assert calls == [5, 6] and all((again[k][0] == first[k][0]).all() for k in feats)
    assert "no t-SNE ran" in capsys.readouterr().out
    feats["B"] = (feats["B"][0] + 1e-3, feats["B"][1])                          # B's features changed
    X.tsne_embeddings(feats, tmp_path, "toy")
    assert calls == [5, 6, 6]
    X.tsne_embeddings(feats, tmp_path, "toy", recompute=True)                   # on request: all
    assert calls == [5, 6, 6, 5, 6]
    X.tsne_embeddings(feats, tmp_path, "toy", settings={**X.TSNE_SETTINGS, "perplexity": 5.0})
    assert len(calls) == 7                                                       # other settings: all
    about, stored = X.load_tsne(tmp_path, "toy")
    assert about["class_names"] == ["x", "y"] and list(stored) == ["A", "B"]
