"""Recipe tuning, the experiment plan / queue, and the README results block built from records."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from esg_lib import report as A
from esg_lib.engine import config as C
from esg_lib.engine import plan as P
from esg_lib.engine import provenance
from esg_lib.engine import runs as R
from esg_lib.engine import tuning as T
from esg_lib.engine.train import matching_bundle
from esg_lib.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- recipes
def test_recipe_sits_between_profile_defaults_and_overrides(monkeypatch):
    table = C._table("esg_convnext_atto", 32, "vit_tiny_patch16_224", 8, 4,
                     recipes={"esg-convnext": {"lr": 3e-3, "label_smoothing": 0.1},
                              "convnextv2": {"online_augment": True}})
    monkeypatch.setitem(C.PROFILES, "smoke", dataclasses.replace(C.PROFILES["smoke"], models=table))
    assert C.build_config("smoke", model="esg-convnext").lr == 3e-3
    assert C.build_config("smoke", model="esg-convnext", lr=5e-4).lr == 5e-4      # caller wins
    assert C.build_config("smoke", model="esg-abl2").label_smoothing == 0.1      # ablation shares ESG's
    assert C.build_config("smoke", model="convnextv2-param").online_augment is True
    assert C.build_config("smoke", model="resnet18").lr == C.PROFILES["smoke"].defaults["lr"]
    assert C.build_config("smoke").lr == 3e-3          # the default model is esg_convnext_atto


def test_matching_bundle_switches_online_augmentation_without_copying_images():
    from esg_lib.engine.train import prepare_bundle

    cfg = C.build_config("smoke", model="resnet18")
    b = prepare_bundle(cfg)
    on = matching_bundle(dataclasses.replace(cfg, online_augment=True), b)
    assert on.train.transform is not None and b.train.transform is None
    assert on.train.images is b.train.images and on.test is b.test
    assert on.identity["online_augment"] and not b.identity["online_augment"]
    # the same identity as a bundle prepared with online augmentation from the start
    assert on.identity == prepare_bundle(dataclasses.replace(cfg, online_augment=True)).identity
    off = matching_bundle(cfg, on)
    assert off.train.transform is None and off.identity == b.identity
    with pytest.raises(ValueError, match="img_size"):
        matching_bundle(dataclasses.replace(cfg, img_size=24), b)


# ----------------------------------------------------------------------------- tuning
def _rec(model, cand, f1, acc=0.5):
    return {"model": model, "candidate": cand, "val_f1": f1, "val_acc": acc}


def test_winner_is_best_validation_f1_then_accuracy_then_earlier_candidate():
    names = [c["name"] for c in T.candidates("cpu")]
    recs = [_rec("m", names[0], 0.80), _rec("m", names[1], 0.90, 0.91), _rec("m", names[2], 0.90, 0.93),
            _rec("m", names[3], 0.70)]
    assert T.winners("cpu", recs)["m"]["name"] == names[2]
    tie = [_rec("t", n, 0.5, 0.5) for n in names]
    assert T.winners("cpu", tie)["t"]["name"] == names[0]
    assert "m" not in T.winners("cpu", recs[:3])         # undecided until every candidate ran


def test_every_candidate_names_every_tuned_field():
    for profile, cands in T.CANDIDATES.items():
        assert len({c["name"] for c in cands}) == len(cands)
        for c in cands:
            assert set(c["fields"]) == set(T.TUNED_FIELDS), (profile, c["name"])


def test_committed_recipes_are_the_winners_of_the_committed_tuning_records():
    checked = 0
    for profile in T.CANDIDATES:
        records = T.load_records(profile, ROOT / "results")
        for model, cand in T.winners(profile, records).items():
            cfg = C.build_config(profile, model=model)
            have = {f: getattr(cfg, f) for f in T.TUNED_FIELDS}
            assert have == cand["fields"], f"{profile}/{model}: the table gives {have}, tuning chose {cand}"
            assert T.recipe_ready(profile, model, ROOT / "results") == (True, "")
            checked += 1
    if checked == 0:
        pytest.skip("no finished tuning is committed under results/")


def test_queue_waits_for_a_rows_tuning(tmp_path, monkeypatch):
    monkeypatch.setitem(T.TUNING_REQUIRED, "smoke", ("resnet18", "esg-convnext"))
    ready, why = T.recipe_ready("smoke", "resnet18", tmp_path)
    assert not ready and "esg tune --profile smoke --model resnet18" in why
    assert not T.recipe_ready("smoke", "esg-abl3", tmp_path)[0]          # shares ESG's recipe
    assert T.recipe_ready("smoke", "mobilenetv3", tmp_path) == (True, "")  # not tuned in this profile
    names = [c["name"] for c in T.candidates("smoke")]
    recs = tmp_path / "smoke" / "tuning" / "runs"
    recs.mkdir(parents=True)
    for name, f1 in zip(names, (0.4, 0.6)):             # the second candidate wins ...
        (recs / f"{name[:5]}.json").write_text(json.dumps({"model": "resnet18", "candidate": name,
                                                           "val_f1": f1, "val_acc": f1}))
    ready, why = T.recipe_ready("smoke", "resnet18", tmp_path)
    assert not ready and "not the tuning winner" in why     # ... but the table has the profile's recipe
    done = P.run_queue("smoke", out=tmp_path / "runs", results=tmp_path, models=["resnet18"])
    assert done == [] and not (tmp_path / "runs").exists()


def test_a_profile_can_set_fields_per_dataset_below_the_recipe_and_the_callers_overrides():
    from esg_lib.engine.config import build_config

    assert build_config("cpu", model="esg-convnext", dataset="x-sdd").epochs == 15
    neu = build_config("cpu", model="esg-convnext", dataset="neu-cls-64")
    assert neu.epochs == 4 and neu.lr == 1e-3                 # the row's recipe still applies
    assert build_config("cpu", dataset="neu-cls-64", epochs=7).epochs == 7   # the caller wins
    assert build_config("paper", dataset="neu-cls-64").epochs == 100          # paper: 100 on both
    assert (P.expected_variant("cpu", "esg-convnext", "neu-cls-64", "leak-free")
            != P.expected_variant("cpu", "esg-convnext", "x-sdd", "leak-free"))


def test_time_left_is_estimated_from_the_runs_of_the_same_row_then_its_tuning_then_the_full_model():
    runs = [{"dataset": "x-sdd", "model": "esg-convnext", "wall_seconds": s} for s in (100.0, 300.0, 200.0)]
    runs.append({"dataset": "x-sdd", "model": "resnet18", "wall_seconds": None, "train_seconds": 50.0})
    tuning = [{"model": "resnet18", "train_seconds": 999.0}, {"model": "vit", "train_seconds": 70.0},
              {"model": "vit", "train_seconds": 90.0}]
    gpu = {"dataset": "x-sdd", "model": "esg-convnext", "wall_seconds": 5.0, "hardware": "NVIDIA H100 x1"}
    typical = P.typical_run_seconds("cpu", [*runs, gpu], tuning)
    assert typical["x-sdd", "esg-convnext"] == 200.0          # median of the row's own runs (CPU only)
    assert P.typical_run_seconds("cpu", [gpu], [], kind="gpu")["x-sdd", "esg-convnext"] == 5.0
    assert provenance.machine_kind("CPU x86_64, 2 cores, 1 threads") == "cpu" and provenance.machine_kind("") == "cpu"
    assert typical["x-sdd", "resnet18"] == 50.0               # own runs beat tuning runs
    assert typical["x-sdd", "vit"] == 80.0                    # no runs yet: its tuning runs
    assert typical["x-sdd", "esg-abl2"] == 200.0              # ablation rows: the full network
    assert ("x-sdd", "convnextv2-param") not in typical       # a shared recipe is not a shared cost
    # scaled by images and by the profile's epochs on each dataset (cpu: 4 on NEU-CLS-64, 15 on X-SDD)
    assert typical["neu-cls-64", "esg-convnext"] == pytest.approx(200.0 * (7226 * 4) / (1360 * 15))
    assert P.typical_run_seconds("cpu", [], []) == {}         # no evidence, no estimate
    assert P._hours_left(1.5, 0) == "1.50"
    assert P._hours_left(1.5, 2) == "≥ 1.50 (+2 runs without an estimate)"


# ----------------------------------------------------------------------------- tune + queue
@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Smoke tuning of ResNet18 (2 candidates), then the whole smoke plan through the queue."""
    base = tmp_path_factory.mktemp("pipeline")
    out, results = base / "runs", base / "results"
    runtime = dict(progress=False, fps_iters=1, fps_warmup=0)
    tuned = T.run_tuning("smoke", ("resnet18",), out, results, **runtime)
    before = P.status("smoke", results, out)
    done = P.run_queue("smoke", out=out, results=results, **runtime)
    return {"out": out, "results": results, "tuned": tuned, "before": before, "done": done}


def test_tuning_writes_validation_only_records_and_a_table(pipeline):
    recs = T.load_records("smoke", pipeline["results"])
    assert {r["candidate"] for r in recs} == {c["name"] for c in T.candidates("smoke")}
    for r in recs:
        assert 0 <= r["val_f1"] <= 1 and r["epochs"] == 2 and r["val_n"] > 0
        assert not {"acc", "f1", "test"} & set(r), "tuning records must not carry test metrics"
    table = (pipeline["results"] / "smoke" / "tuning.md").read_text()
    best = T.winners("smoke", recs)["resnet18"]["name"]
    assert f"**{best}**" in table and table.count("**") == 2


def test_queue_trains_the_plan_in_order_and_adopts_the_tuning_run(pipeline):
    assert [(d["model"], d["seed"]) for d in pipeline["done"]] == [
        ("esg-convnext", 0), ("resnet18", 0), ("esg-convnext", 1), ("resnet18", 1)]
    assert pipeline["before"][0]["done"] == 0
    after = P.status("smoke", pipeline["results"], pipeline["out"])
    assert after[0]["done"] == after[0]["planned"] == 4 and after[0]["missing"] == []
    assert after[0]["hours"] > 0
    assert P.pending("smoke", results=pipeline["results"], out=pipeline["out"]) == []
    # resnet18 seed 0 with the profile's recipe is the tuning run of the first candidate: copied
    tuning = next(r for r in pipeline["tuned"] if r["candidate"] == T.candidates("smoke")[0]["name"])
    adopted = Path(next(d["folder"] for d in pipeline["done"] if (d["model"], d["seed"]) == ("resnet18", 0)))
    assert adopted.name == tuning["run"]
    assert (adopted / "log.jsonl").read_text() == (
        pipeline["out"] / "tuning" / adopted.relative_to(pipeline["out"]) / "log.jsonl").read_text()


def test_exported_records_carry_provenance_and_per_class_recall(pipeline):
    recs = A.load_records("smoke", pipeline["results"])
    assert len(recs) == 4
    for r in recs:
        assert r["hardware"].startswith("CPU") and r["finished"] and r["git"] is not None
        assert r["command"] and r["test_n"] > 0
        assert len(r["per_class_recall"]) == 7 and all(0 <= v <= 1 for v in r["per_class_recall"].values())


def test_results_block_is_computed_from_the_records(pipeline):
    from esg_lib.experiments import paired_difference

    recs = A.load_records("smoke", pipeline["results"])
    block = A.readme_results("smoke", pipeline["results"])
    assert "| smoke: ESG-ConvNeXt and ResNet18 | 4/4 |" in block
    assert "ESG-ConvNeXt minus each model, paired per seed (x-sdd, leak-free)" in block
    assert "Per-class recall (x-sdd" in block and "beside the paper's Table 3" in block
    acc = {(r["model"], r["seed"]): 100 * r["acc"] for r in recs}
    d = paired_difference([acc["esg-convnext", 0], acc["esg-convnext", 1]],
                          [acc["resnet18", 0], acc["resnet18", 1]])
    assert f"| ResNet18 | 2 | {round(d['mean'], 2)} | [{d['low']:.2f}, {d['high']:.2f}] |" in block
    esg_mean = (acc["esg-convnext", 0] + acc["esg-convnext", 1]) / 2
    assert f"{'met' if esg_mean >= 94 else 'not met'}: {esg_mean:.1f} % over 2 seed(s)" in block
    assert f"- vs ResNet18: {d['mean']:+.1f} points accuracy over 2 paired seed(s)" in block


def test_status_ignores_records_of_another_recipe(pipeline, tmp_path):
    res = tmp_path / "results" / "smoke" / "runs"
    res.mkdir(parents=True)
    for p in (pipeline["results"] / "smoke" / "runs").glob("*.json"):
        rec = json.loads(p.read_text())
        rec["variant"] = "other"
        (res / p.name).write_text(json.dumps(rec))
    assert P.status("smoke", tmp_path / "results", out=None)[0]["done"] == 0
    assert "paired per seed" not in A.readme_results("smoke", tmp_path / "results")


def test_queue_cli_status_and_list(pipeline, capsys):
    from esg_lib.cli import main

    assert main(["queue", "--profile", "smoke", "--status", "--out", str(pipeline["out"]),
                 "--results", str(pipeline["results"])]) == 0
    table = capsys.readouterr().out
    assert "| **all** | **4/4** |" in table and "| Done on: runs (hours) |" in table
    assert "| **all** |" in table and table.strip().endswith(" h) |")          # hardware, without threads
    assert "threads" not in table.splitlines()[-1]
    assert main(["queue", "--profile", "smoke", "--list", "--out", str(pipeline["out"] / "none"),
                 "--results", str(pipeline["out"] / "none")]) == 0
    assert capsys.readouterr().out.count("seed") == 4
    assert main(["queue", "--profile", "smoke", "--list", "--model", "resnet18", "--out",
                 str(pipeline["out"] / "none"), "--results", str(pipeline["out"] / "none")]) == 0
    assert [line.split("\t")[1] for line in capsys.readouterr().out.splitlines()] == ["resnet18", "resnet18"]


def test_queue_cli_takes_runtime_fields_only(tmp_path, monkeypatch, capsys):
    from esg_lib.cli import main

    seen = {}
    monkeypatch.setattr(P, "run_queue", lambda *a, **kw: seen.update(kw) or [])
    monkeypatch.setattr(P, "status_markdown", lambda *a, **kw: "")
    assert main(["queue", "--profile", "smoke", "--device", "cpu", "--set", "amp=false", "--set",
                 "num_workers=2", "--threads", "1", "--out", str(tmp_path)]) == 0
    assert seen == {"device": "cpu", "amp": False, "num_workers": 2, "threads": 1}
    seen.clear()
    assert main(["queue", "--profile", "smoke", "--set", "lr=0.1", "--out", str(tmp_path)]) == 2
    assert "--set lr: the plan fixes these fields" in capsys.readouterr().err and not seen


def test_fps_pass_feeds_the_tables(pipeline, tmp_path, capsys):
    import shutil

    from esg_lib.cli import main

    results = tmp_path / "results"
    shutil.copytree(pipeline["results"], results)
    assert main(["fps", "--profile", "smoke", "--results", str(results), "--iters", "2",
                 "--repeats", "2"]) == 0
    data = json.loads((results / "smoke" / "fps.json").read_text())
    assert set(data["models"]) >= {"esg-convnext", "resnet18", "convnextv2-param", "esg-abl1"}
    assert all(v["fps"] > 0 and len(v["fps_all"]) == 2 for v in data["models"].values())
    assert data["protocol"]["img_size"] == 32 and data["hardware"].startswith("CPU")
    block = A.readme_results("smoke", results)
    assert "FPS: `esg fps` (" in block
    from esg_lib.engine.fps import fps_figures

    figures = fps_figures(data)   # one figure per network: the median and range of its timings
    assert f"| {figures['resnet18'].text} |" in block
    assert figures["esg-abl1"] is figures[next(k for k, g in data["networks"].items() if "esg-abl1" in g)]


# ----------------------------------------------------------------------------- esg verify
def _copy_results(pipeline, tmp_path):
    import shutil

    dest = tmp_path / "results"
    shutil.copytree(pipeline["results"], dest)
    return dest


def test_verify_reproduces_a_committed_run_exactly_and_catches_a_changed_number(pipeline, tmp_path, capsys,
                                                                                monkeypatch):
    from esg_lib.engine import verify as V

    results = _copy_results(pipeline, tmp_path)
    first = V.run_verify("smoke", 1, results=results, out=tmp_path / "verify")
    assert len(first) == 1 and first[0].exact and first[0].same_hardware and not first[0].failed
    assert "reproduced exactly" in capsys.readouterr().out
    # the same record with a test accuracy nobody can reproduce: a same-hardware failure
    path = results / "smoke" / "runs" / first[0].record
    rec = json.loads(path.read_text())
    path.write_text(json.dumps({**rec, "acc": rec["acc"] + 0.01}))
    changed = V.run_verify("smoke", 1, results=results, out=tmp_path / "verify")[0]
    assert changed.record == first[0].record and changed.failed
    assert round(changed.differences["acc"], 6) == -0.01 and "NOT REPRODUCED" in changed.line()
    # recorded on other hardware: closeness is reported, not judged
    path.write_text(json.dumps({**rec, "acc": rec["acc"] + 0.01, "hardware": "NVIDIA H100 80GB HBM3 x1"}))
    other = V.run_verify("smoke", 1, results=results, out=tmp_path / "verify",
                         match=[first[0].record])[0]
    assert not other.same_hardware and not other.failed and "-1.00 points" in other.line()
    # a record from before CPU models were recorded ("CPU x86_64"): any x86 machine matches its text, so
    # a difference is reported as such, never as a same-hardware failure
    threads = rec["hardware"].rsplit(", ", 1)[1]
    path.write_text(json.dumps({**rec, "acc": rec["acc"] + 0.01, "hardware": f"CPU x86_64, {os.cpu_count()} cores, {threads}"}))
    old = V.run_verify("smoke", 1, results=results, out=tmp_path / "verify", match=[first[0].record])[0]
    assert old.cpu_unknown and not old.same_hardware and not old.failed and "names no CPU model" in old.line()
    # --reuse: the finished rerun under --out is compared as it is, not trained again
    import esg_lib.engine.train as T

    real_fit = T.fit

    def fit_without_force(cfg, force=False, **kwargs):
        assert not force, "--reuse must not retrain a finished run"
        return real_fit(cfg, force=force, **kwargs)

    monkeypatch.setattr(T, "fit", fit_without_force)
    again = V.run_verify("smoke", 1, results=results, out=tmp_path / "verify", match=[first[0].record],
                         reuse=True)[0]
    assert again.run_id_matches and again.differences == old.differences
    assert rec["hardware"].startswith("CPU ") and not rec["hardware"].startswith("CPU x86_64")


def test_verify_keep_commits_a_rerun_that_figures_draw_in_place_of_a_bare_record(pipeline, tmp_path, capsys):
    from esg_lib.engine import verify as V
    from esg_lib.experiments import Experiment, RunResult

    results = _copy_results(pipeline, tmp_path)
    # seed 0: the seed whose reruns also keep their Grad-CAM maps
    verdict = V.run_verify("smoke", 1, results=results, out=tmp_path / "verify", keep=True, match=["__s0-"])[0]
    path = results / "smoke" / "runs" / verdict.record
    rec = json.loads(path.read_text())
    folder = results / "smoke" / "reruns" / rec["dataset"] / rec["model"] / rec["run"]
    about = json.loads((folder / "rerun.json").read_text())
    assert about["record"] == verdict.record and about["run_id"] == rec["run_id"] and about["exact"]
    assert about["hardware"] == verdict.hardware and about["hardware"].startswith("CPU ")
    assert (folder / "log.jsonl").is_file() and (folder / "test_confusion.csv").is_file()
    assert not list(folder.glob("*.pt")), "checkpoints are never kept"
    assert "kept its light files" in capsys.readouterr().out
    # a run known only from its committed record (a fresh clone): the figure draws the rerun instead,
    # and its title says so; a file the rerun lacks (the checkpoint) means no figure at all
    exp = Experiment("smoke", rec["dataset"], root=tmp_path, train_missing=False)
    bare = RunResult.from_record(rec["model"], rec["label"], rec["protocol"], rec, path)
    [shown] = exp.figure_runs([bare], "log.jsonl")
    assert shown.rerun == about and shown.run_dir == folder and shown.seed == rec["seed"]
    assert shown.log() and shown.confusion().sum() == rec["test_n"]
    assert "drawn from reruns (same run ids) on CPU " in exp.title("Fig. X", runs=[shown])
    assert "reruns" not in exp.title("Fig. X", runs=[bare])
    assert exp.figure_runs([bare], "best.pt") == []
    assert "not drawn" in capsys.readouterr().out
    # no checkpoint is kept, but the seed-0 rerun carries Fig. 13's Grad-CAM maps, equal to those of
    # its checkpoint; they are drawn only for the images they were made of
    from esg_lib.engine.gradcam import CAM_IMAGES, CAM_SEED

    assert rec["seed"] == 0 and (folder / "gradcam.npz").is_file()
    [stored] = exp.figure_runs([bare], ("best.pt", "gradcam.npz"))
    assert stored.rerun == about and not (stored.run_dir / "best.pt").exists()
    from_file = exp.gradcam([stored], n_images=CAM_IMAGES, seed=CAM_SEED)
    trained = RunResult(rec["model"], rec["label"], 0, rec["protocol"], rec["dataset"], verdict.run_dir, {})
    from_checkpoint = exp.gradcam([trained], n_images=CAM_IMAGES, seed=CAM_SEED)
    [a], [b] = from_file.explained.values(), from_checkpoint.explained.values()
    assert a.grid == b.grid and list(a.predictions) == list(b.predictions) and len(a.maps) == len(from_file.truths)
    np.testing.assert_allclose(a.maps, b.maps, atol=1e-3)     # float16 on disk
    np.testing.assert_array_equal(from_file.images, from_checkpoint.images)
    with pytest.raises(UserError, match="are of test images"):
        exp.gradcam([stored], n_images=1, seed=CAM_SEED + 1)
    # another record of the same model without a rerun is left out, and said to be
    other = RunResult.from_record(rec["model"], rec["label"], rec["protocol"], {**rec, "seed": 9},
                                  path.with_name(path.name.replace(rec["run"], "s9-0000000000")))
    assert [r.seed for r in exp.figure_runs([bare, other], "log.jsonl")] == [rec["seed"]]
    assert "Left out (no log.jsonl here)" in capsys.readouterr().out
    # a rerun whose run id differs from the record's is another experiment: never kept as its rerun
    assert V.keep_rerun(V.Verdict("x.json", False, True, run_dir=verdict.run_dir), rec, tmp_path / "r") is None


def test_verify_refuses_a_record_its_config_cannot_rebuild(pipeline, tmp_path):
    from esg_lib.cli import main

    results = _copy_results(pipeline, tmp_path)
    for path in (results / "smoke" / "runs").glob("*.json"):
        path.write_text(json.dumps({**json.loads(path.read_text()), "variant": "00000000"}))
    code = main(["verify", "--profile", "smoke", "--results", str(results), "--out", str(tmp_path / "v")])
    assert code == 1


def test_verify_picks_the_cheapest_cpu_records_first():
    from esg_lib.engine import verify as V

    recs = [(Path(f"{n}.json"), {"train_seconds": s, "hardware": h}) for n, s, h in [
        ("gpu", 5, "NVIDIA H100 x1"), ("slow", 900, "CPU x86_64, 2 cores, 1 threads"),
        ("fast", 300, "CPU x86_64, 2 cores, 2 threads")]]
    assert [p.stem for p, _ in V.choose(recs, 3)] == ["fast", "slow", "gpu"]
    assert sorted(p.stem for p, _ in V.choose(recs, 3, seed=1, order="random")) == ["fast", "gpu", "slow"]
    assert V.record_threads("CPU x86_64, 2 cores, 2 threads") == 2 and V.record_threads("NVIDIA H100 x1") is None


def test_hours_spent_count_every_process_of_a_resumed_run():
    # The committed 60-epoch ResNet18 record was stopped and resumed: its wall time covers only the
    # last process, its training seconds all of them. The status table must not report the former.
    rec = json.loads((ROOT / "results/cpu-gap/runs/x-sdd__resnet18__s0-f613523cec.json").read_text())
    assert rec["train_seconds"] > rec["wall_seconds"]
    assert P.record_seconds(rec) == rec["train_seconds"]
    whole = {"wall_seconds": 120.0, "train_seconds": 100.0}   # uninterrupted: wall includes evaluation
    assert P.record_seconds(whole) == 120.0
    row = next(r for r in P.status("cpu-gap", ROOT / "results", out=None) if r["stage"].startswith("Steps: 60 epochs, pivotal"))
    assert row["machines"] and row["hours"] >= rec["train_seconds"] / 3600.0
