"""`make reproduce PROFILE=cpu` on a fresh clone trains nothing: notebooks that need run folders are
skipped (and say so) when none of the committed runs has one here."""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from esg_lib import reproduce as RP
from esg_lib.errors import UserError


def _root(tmp_path: Path, with_folder: bool) -> Path:
    runs = tmp_path / "results" / "cpu" / "runs"
    runs.mkdir(parents=True)
    (runs / "x-sdd__resnet18__s0-0123456789.json").write_text(json.dumps({"wall_seconds": 7200.0}))
    if with_folder:
        (tmp_path / "results" / "cpu" / "artifacts" / "x-sdd" / "resnet18" / "s0-0123456789").mkdir(parents=True)
    (tmp_path / "notebooks").mkdir()
    return tmp_path


def test_run_notebooks_skip_without_any_run_folder_when_training_nothing(tmp_path, capsys):
    root = _root(tmp_path, with_folder=False)
    assert RP.run_folders("cpu", root) == RP.RunFolders(1, 0, 2.0)
    report = RP.run_notebooks("cpu", ["03_model_comparison.ipynb"], {"train_missing": False}, root=root)
    [res] = report.results
    assert res.ok and res.skipped and not report.failures
    assert "skipped" in capsys.readouterr().out and "skipped" in report.summary()


def test_run_notebooks_do_not_skip_when_a_run_folder_is_here_or_training_is_allowed(tmp_path):
    root = _root(tmp_path, with_folder=True)
    assert RP.run_folders("cpu", root).with_files == 1
    # the source notebook does not exist in this root: it is attempted (and fails), not skipped
    [res] = RP.run_notebooks("cpu", ["03_model_comparison.ipynb"], {"train_missing": False}, root=root).results
    assert not res.skipped and not res.ok and "no such notebook" in res.error
    reran = _root(tmp_path / "r", with_folder=False)   # a committed rerun's light files count too
    (reran / "results" / "cpu" / "reruns" / "x-sdd" / "resnet18" / "s0-0123456789").mkdir(parents=True)
    assert RP.run_folders("cpu", reran) == RP.RunFolders(1, 1, 0.0)
    bare = _root(tmp_path / "b", with_folder=False)
    [res] = RP.run_notebooks("cpu", ["03_model_comparison.ipynb"], {"train_missing": True}, root=bare).results
    assert not res.skipped


def test_make_reproduce_trains_only_when_asked():
    text = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    assert "$(if $(filter missing,$(TRAIN)),--train-missing)" in text
    assert RP.SLOW_PROFILES == {"cpu", "paper"}


def test_notebook_08_runs_from_the_records_and_resumed_runs_count_all_their_hours(tmp_path):
    root = _root(tmp_path, with_folder=False)
    # the protocol notebook needs only test metrics, which the records hold: attempted, not skipped
    [res] = RP.run_notebooks("cpu", ["08_split_protocols.ipynb"], {"train_missing": False}, root=root).results
    assert not res.skipped and "no such notebook" in res.error
    (root / "results" / "cpu" / "runs" / "x-sdd__vit__s1-0123456789.json").write_text(
        json.dumps({"wall_seconds": 1800.0, "train_seconds": 3600.0}))   # stopped once, then resumed
    assert RP.run_folders("cpu", root) == RP.RunFolders(2, 0, 3.0)


def test_the_committed_reruns_match_their_records_and_the_results_page():
    """Each committed rerun (results/cpu/reruns/) has its record's run id, metrics that give its stated
    differences, a confusion matrix that sums to the record's test size, and its row in the results
    page's reruns table. Its Grad-CAM maps, when kept, are of one test image per class in class order,
    and predict what its per-image test predictions say for those images (a second route to the same
    model outputs)."""
    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "results.md").read_text()
    reruns = sorted((root / "results" / "cpu" / "reruns").glob("*/*/*/rerun.json"))
    assert len(reruns) >= 9
    for path in reruns:
        about = json.loads(path.read_text())
        record = json.loads((root / "results" / "cpu" / "runs" / about["record"]).read_text())
        test = json.loads((path.parent / "metrics.json").read_text())["test"]
        config = json.loads((path.parent / "config.json").read_text())
        assert about["run_id"] == record["run_id"] == config["run_id"]
        assert test["acc"] - record["acc"] == about["differences"]["acc"]
        rows = (path.parent / "test_confusion.csv").read_text().splitlines()[1:]
        assert sum(int(v) for row in rows for v in row.split(",")[1:]) == record["test_n"]
        points = 100 * about["differences"]["acc"]
        shown = "0.00" if round(points, 2) == 0 else f"{points:+.2f}".replace("-", "−")
        row = f"| {record['dataset']} | {record['label']} | {record['seed']} | {record['run']} | {shown} |"
        assert row in page, row
        if (path.parent / "gradcam.npz").is_file():
            with np.load(path.parent / "gradcam.npz") as cams:
                picks, cam_predictions = cams["indices"], cams["predictions"]
            with open(path.parent / "test_predictions.csv", newline="") as fh:
                predictions = list(csv.DictReader(fh))
            assert [int(predictions[i]["label"]) for i in picks] == list(range(len(picks)))
            assert [int(predictions[i]["pred"]) for i in picks] == [int(p) for p in cam_predictions], path.parent


def test_reproduce_dataset_option_reaches_each_named_notebook_and_needs_notebooks(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(RP, "project_root", lambda: tmp_path)
    monkeypatch.setattr(RP, "run_notebooks", lambda profile, names, params, *a, **k:
                        calls.append((names, params)) or RP.ReproduceReport(profile))
    parser = argparse.ArgumentParser()
    RP.register(parser.add_subparsers())
    args = parser.parse_args(["reproduce", "--profile", "cpu", "--notebooks", "03", "06", "--dataset", "x-sdd"])
    assert args.func(args) == 0
    [(names, params)] = calls
    assert names == ["03_model_comparison.ipynb", "06_gradcam.ipynb"]
    assert params == {"dataset": "x-sdd", "train_missing": False}
    args = parser.parse_args(["reproduce", "--profile", "cpu", "--dataset", "x-sdd"])
    with pytest.raises(UserError, match="--dataset needs --notebooks"):
        args.func(args)
    assert len(calls) == 1
