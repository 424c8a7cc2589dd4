"""The engine on real X-SDD (embedded in the project) and the ``esg`` engine subcommands:
a smoke run whose loss falls, the paper profile's dry run, evaluate/predict/runs/report, every
error path (one line, exit 2, no traceback) and ``--help`` everywhere."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from esg_lib.cli import main
from esg_lib.engine import build_config, fit

SUBCOMMANDS = ("train", "evaluate", "predict", "runs", "report")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """A smoke-profile ResNet18 run on ~100 X-SDD images (32 px), a few epochs."""
    out = tmp_path_factory.mktemp("runs")
    cfg = build_config("smoke", model="resnet18", epochs=6, lr=3e-3, out=str(out), progress=False,
                       fps_iters=2, fps_warmup=1)
    return fit(cfg)


def test_smoke_run_on_xsdd_ends_with_loss_well_below_its_start(smoke_run):
    log = [json.loads(ln) for ln in (smoke_run.run_dir / "log.jsonl").read_text().splitlines()]
    first, last = log[0]["train_loss"], log[-1]["train_loss"]
    assert len(log) == 6 and first > 1.5          # ~ln(7) = 1.95 at the start
    assert last < 0.6 * first, (first, last)
    assert smoke_run.metrics["dataset"] == "x-sdd" and smoke_run.metrics["test"]["n"] >= 7
    cfg = json.loads((smoke_run.run_dir / "config.json").read_text())
    assert cfg["identity"]["data"]["max_images"] == 100 and len(cfg["class_names"]) == 7


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_paper_profile_dry_run(tmp_path, capsys):
    code, out, err = _run(["train", "--profile", "paper", "--dry-run", "--model", "esg-convnext",
                           "--no-progress", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    run_dir = next(tmp_path.rglob("metrics.json")).parent
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["profile"] == "paper"
    ck = torch.load(run_dir / "last.pt", weights_only=True)
    assert ck["config"]["img_size"] == 224 and ck["config"]["batch_size"] == 2
    assert ck["config"]["lr"] == 1e-4 and ck["config"]["epochs"] == 1
    assert metrics["test"]["n"] > 0 and "tables:" not in out  # a dry run writes no tables


def test_a_run_cut_short_by_max_steps_never_reaches_the_results(tmp_path, capsys):
    code, out, err = _run(["train", "--profile", "smoke", "--model", "resnet18", "--set", "max_steps=1",
                           "--no-progress", "--out", str(tmp_path / "runs"),
                           "--results", str(tmp_path / "results")], capsys)
    assert code == 0, err
    assert next((tmp_path / "runs").rglob("metrics.json")).is_file()       # the run itself finished
    assert not list((tmp_path / "results").rglob("*.json")) and "tables:" not in out


def test_evaluate_predict_runs_report(smoke_run, tmp_path, capsys):
    best = smoke_run.run_dir / "best.pt"
    code, out, err = _run(["evaluate", "--checkpoint", str(best), "--json", "--out",
                           str(tmp_path / "ev")], capsys)
    assert code == 0, err
    got = json.loads(out.strip().splitlines()[-1])
    keys = ("acc", "precision", "recall", "f1", "loss", "n")
    assert {k: got[k] for k in keys} == pytest.approx({k: smoke_run.metrics["test"][k] for k in keys})
    assert (got["dataset"], got["split"]) == ("x-sdd", "test")
    assert (tmp_path / "ev" / "test_features.npz").is_file()

    img = next((Path(__file__).resolve().parents[1] / "data").rglob("*.jpg"))
    code, out, err = _run(["predict", "--checkpoint", str(best), str(img), "--top", "2"], capsys)
    assert code == 0, err
    path, c1, p1, c2, p2 = out.strip().split("\t")
    assert path == str(img) and 0 <= float(p2) <= float(p1) <= 1

    out_dir = str(smoke_run.run_dir.parents[3])
    code, out, err = _run(["runs", "--out", out_dir], capsys)
    assert code == 0 and "resnet18" in out and "done" in out
    results = tmp_path / "results"
    code, out, err = _run(["report", "--profile", "smoke", "--out", out_dir, "--results",
                           str(results)], capsys)
    assert code == 0, err
    assert "ResNet18" in (results / "smoke" / "x-sdd.md").read_text()
    assert len(list((results / "smoke" / "runs").glob("*.json"))) == 1


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "resnet-nineteen"], "unknown model"),
    (["train", "--profile", "laptop"], "unknown profile"),
    (["train", "--dataset", "/nonexistent/folder", "--model", "resnet18"], "nonexistent"),
    (["train", "--set", "epochs=many"], "bad value for epochs"),
    (["train", "--model", "vit_small_patch16_224", "--set", "max_images=21"], "cannot take 32 px"),
    (["train", "--protocol", "sideways", "--model", "resnet18"], "sideways"),
    (["train", "--batch-size", "0"], "batch_size"),
    (["train", "--set", "colour=red"], "unknown config field"),
    (["train", "--pretrained-file", "/nonexistent/w.pth", "--model", "resnet18"], "not found"),
    (["evaluate", "--checkpoint", "/nonexistent/best.pt"], "checkpoint not found"),
    (["predict", "--checkpoint", "/nonexistent/best.pt", "a.png"], "checkpoint not found"),
    (["runs", "--profile", "laptop"], "unknown profile"),
    (["report", "--profile", "laptop"], "unknown profile"),
])
def test_cli_errors_are_one_line_without_traceback(argv, message, capsys, tmp_path):
    code, out, err = _run(argv + (["--out", str(tmp_path)] if argv[0] in ("train",) else []), capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err, err


def test_cli_rejects_unreadable_image_and_non_checkpoint(smoke_run, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_text("not an image")
    best = str(smoke_run.run_dir / "best.pt")
    for argv, message in ((["predict", "--checkpoint", best, str(bad)], "cannot read image"),
                          (["predict", "--checkpoint", best, str(tmp_path / "gone.png")], "image not found"),
                          (["evaluate", "--checkpoint", str(bad)], "cannot read checkpoint")):
        code, out, err = _run(argv, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    code, _, err = _run(["report", "--profile", "cpu", "--out", str(tmp_path / "none"), "--results",
                         str(tmp_path / "none")], capsys)
    assert code == 2 and "no finished runs" in err


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_help_everywhere(sub, capsys):
    with pytest.raises(SystemExit) as exc:
        main([sub, "--help"])
    assert exc.value.code == 0
    assert "usage: esg " + sub in capsys.readouterr().out
