"""Engine unit tests: metrics, aggregation, config, run identity, model table, weight decay, tables."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from esg_lib import metrics as M
from esg_lib import report as REP
from esg_lib.errors import UserError
from esg_lib.engine import config as C
from esg_lib.engine import models as EM
from esg_lib.engine import provenance as P
from esg_lib.engine import runs as R


# ----------------------------------------------------------------------------------- metrics
def test_metrics_match_hand_computed_values():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 0]
    m = M.classification_metrics(y_true, y_pred, 3)
    # precision per class: 1/2, 2/3, 1/1; recall: 1/2, 2/2, 1/2; F1: 1/2, 4/5, 2/3
    assert m["acc"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert m["recall"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert m["f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert M.confusion(y_true, y_pred, 3).tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    rep = M.per_class_report(y_true, y_pred, ["a", "b", "c"])
    assert rep["b"]["precision"] == pytest.approx(2 / 3) and rep["c"]["support"] == 2


def test_macro_metrics_count_a_class_that_never_occurs_as_zero():
    m = M.classification_metrics([0, 1], [0, 1], num_classes=4)
    assert m["acc"] == 1.0
    assert m["precision"] == pytest.approx(0.5) and m["f1"] == pytest.approx(0.5)


def test_mean_std_across_seeds():
    mean, std, n = M.mean_std([0.90, 0.92, 0.94])
    assert (mean, n) == (pytest.approx(0.92), 3)
    assert std == pytest.approx(0.02)  # sample std (ddof=1)
    assert M.format_mean_std(mean, std, n) == "92.0 ± 2.0"
    assert M.mean_std([0.5]) == (0.5, 0.0, 1) and M.format_mean_std(0.5, 0.0, 1) == "50.0"
    assert M.mean_std([float("nan"), None, 0.4])[2] == 1
    assert M.format_mean_std(*M.mean_std([])) == "—"


def test_aggregate_records_groups_by_dataset_and_model():
    recs = [dict(dataset="x-sdd", model=m, seed=s, label=m, timm_name=m, params=1, steps=10,
                 acc=a, precision=a, recall=a, f1=a, fps=10.0, train_seconds=1.0)
            for m, s, a in [("resnet18", 0, 0.8), ("resnet18", 1, 0.9), ("swin-t", 0, 0.7)]]
    tables = REP.aggregate_records(recs)
    rows = {r["model"]: r for r in tables["x-sdd"]}
    assert [r["model"] for r in tables["x-sdd"]] == ["swin-t", "resnet18"]  # paper order
    assert rows["resnet18"]["acc_mean"] == pytest.approx(0.85)
    assert rows["resnet18"]["acc_std"] == pytest.approx(math.sqrt(0.005))
    assert rows["resnet18"]["seeds"] == "0 1" and rows["swin-t"]["n"] == 1


def test_a_row_trained_on_two_machines_keeps_its_metrics_but_not_its_speed():
    base = dict(dataset="x-sdd", model="resnet18", label="ResNet18", timm_name="resnet18", params=1, steps=10,
                precision=0.5, recall=0.5, f1=0.5)
    cpu = [dict(base, seed=s, acc=0.8, fps=10.0, train_seconds=600.0, hardware=f"CPU x86_64, 2 cores, {t} threads")
           for s, t in ((0, 1), (1, 2))]
    gpu = dict(base, seed=2, acc=0.9, fps=300.0, train_seconds=40.0, hardware="NVIDIA H100 80GB HBM3 x1")
    one = REP.aggregate_records(cpu)["x-sdd"][0]                 # thread counts differ: still one machine
    assert one["hardware"] == "CPU x86_64, 2 cores" and one["fps_mean"] == 10.0
    mixed = REP.aggregate_records([*cpu, gpu])["x-sdd"][0]
    assert mixed["acc_mean"] == pytest.approx(0.8333333) and mixed["n"] == 3
    assert math.isnan(mixed["fps_mean"]) and math.isnan(mixed["train_seconds_mean"])
    assert mixed["hardware"] == "CPU x86_64, 2 cores; NVIDIA H100 80GB HBM3 x1"
    line = REP.table_markdown("x-sdd", [mixed], "cpu").splitlines()[4]
    assert line.endswith("| 10 | — | 0 1 2 | CPU x86_64, 2 cores; NVIDIA H100 80GB HBM3 x1 |")


def test_aggregate_records_separates_protocols_and_config_variants():
    base = dict(dataset="x-sdd", model="resnet18", label="ResNet18", timm_name="resnet18", params=1, steps=10,
                precision=0.5, recall=0.5, f1=0.5, fps=1.0, train_seconds=1.0)
    recs = [dict(base, seed=0, acc=0.8, protocol="leak-free", variant="a"),
            dict(base, seed=1, acc=0.9, protocol="leak-free", variant="a"),
            dict(base, seed=0, acc=0.99, protocol="augment-then-split", variant="a"),
            dict(base, seed=0, acc=0.5, protocol="leak-free", variant="b")]
    tables = REP.aggregate_records(recs)
    assert set(tables) == {"x-sdd", "x-sdd__augment-then-split"}
    assert tables["x-sdd__augment-then-split"][0]["acc_mean"] == pytest.approx(0.99)
    rows = {r["variant"]: r for r in tables["x-sdd"]}
    assert rows["a"]["acc_mean"] == pytest.approx(0.85) and rows["a"]["n"] == 2
    assert rows["b"]["label"] == "ResNet18 [b]" and rows["b"]["n"] == 1


# ----------------------------------------------------------------------------------- config
def test_profiles_and_overrides():
    smoke = C.build_config("smoke")
    assert smoke.img_size == 32 and smoke.max_images == 100 and smoke.epochs <= 2
    paper = C.build_config("paper", lr=3e-4)
    assert (paper.img_size, paper.batch_size, paper.epochs, paper.lr) == (224, 64, 100, 3e-4)
    assert C.get_profile("paper").seeds == (0, 1, 2, 3, 4) and len(C.get_profile("smoke").seeds) == 2
    assert C.parse_overrides(["lr=1e-3", "max_images=none", "amp=false", "epochs=3"]) == \
        {"lr": 1e-3, "max_images": None, "amp": False, "epochs": 3}
    for bad in (["nope=1"], ["epochs=x"], ["epochs"]):
        with pytest.raises(C.ConfigError):
            C.parse_overrides(bad)
    with pytest.raises(UserError, match="unknown profile"):
        C.build_config("laptop")
    with pytest.raises(UserError, match="unknown config field"):
        C.build_config("smoke", learning_rate=1)
    with pytest.raises(UserError):
        C.build_config("smoke", epochs=0)


class _CountingProfiles(dict):
    """``PROFILES`` that records every name looked up in it (``get_profile``'s one dictionary access)."""

    def __init__(self, profiles):
        super().__init__(profiles)
        self.looked_up: list[str] = []

    def __getitem__(self, name):
        self.looked_up.append(name)
        return super().__getitem__(name)


def test_a_resolved_profile_is_passed_down_and_never_looked_up_again(monkeypatch, tmp_path):
    """Issue 19: the entry points resolve the profile once; every function below takes the
    :class:`Profile` and reads its name, so a whole plan status, queue listing, README block and
    config build do no name lookup at all, and give what the same calls with the name give."""
    from esg_lib.engine import plan as PL
    from esg_lib.engine import tuning as T
    from esg_lib.experiments import Experiment

    results = Path(__file__).resolve().parents[1] / "results"

    def run(profile):
        cfgs = [C.build_config(profile, model=m, seed=s) for m in ("esg-convnext", "resnet18") for s in (0, 1)]
        return {"configs": cfgs,
                "ids": [R.run_hash(C.identity_fields(c)) for c in cfgs],
                "variant": PL.expected_variant(profile, "esg-convnext", "x-sdd", "leak-free"),
                "status": PL.status_markdown(profile, results, out=None),
                "pending": [(st.name, m, s) for st, m, s in PL.pending(profile, None, results, tmp_path)],
                "ready": T.recipe_ready(profile, "resnet18", results),
                "readme": REP.results_block(profile, results),
                "experiment": Experiment(profile, root=tmp_path).config("resnet18", 0)}

    counting = _CountingProfiles(C.PROFILES)
    monkeypatch.setattr(C, "PROFILES", counting)
    cpu = C.get_profile("cpu")
    assert counting.looked_up == ["cpu"]
    counting.looked_up.clear()
    with_object = run(cpu)
    assert counting.looked_up == []                  # resolved once, above
    with_name = run("cpu")
    assert counting.looked_up                        # the counter does see lookups by name
    assert with_object == with_name                  # same configs, run ids, tables and README block
    assert {c.profile for c in with_object["configs"]} == {"cpu"}   # records hold the name
    assert C.get_profile(cpu) is cpu
    # an experiment profile reads its base profile's runs for time estimates: one lookup, of the base
    gap = C.get_profile("cpu-gap")
    counting.looked_up.clear()
    PL.status(gap, results, out=None)
    assert counting.looked_up == ["cpu"]
    with pytest.raises(UserError, match="unknown profile 'laptop'"):
        C.get_profile("laptop")


def test_run_identity_ignores_runtime_fields_and_the_git_commit():
    spec = C.ModelSpec("ResNet18", "resnet18")
    data = {"content_sha256": "abc", "seed": 0}
    base = C.build_config("smoke", model="resnet18")
    h = R.run_hash(R.run_identity(base, spec, data))
    same = C.build_config("smoke", model="resnet18", threads=1, out="elsewhere", progress=False)
    assert R.run_hash(R.run_identity(same, spec, data)) == h
    for changed in (dict(seed=1), dict(lr=5e-4), dict(epochs=1), dict(protocol="augment-then-split")):
        cfg = C.build_config("smoke", model="resnet18", **changed)
        assert R.run_hash(R.run_identity(cfg, spec, data)) != h, changed
    assert R.run_hash(R.run_identity(base, spec, {**data, "content_sha256": "abd"})) != h
    assert "commit" not in json.dumps(R.run_identity(base, spec, data))


def test_threads_default_to_the_cores_a_process_may_run_on(monkeypatch):
    """Pinned to one core of two (``taskset``, a test worker of ``make test``), a run takes one thread,
    not two competing for that core; a distributed run shares them; ``threads`` wins."""
    import os

    from esg_lib.engine import runtime as RT

    before = torch.get_num_threads()
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {1}, raising=False)
    one, two = RT.Dist(1, 0, 0, False), RT.Dist(2, 0, 0, False)
    try:
        assert RT.available_cores() == 1 and RT.setup_threads(None, one) == 1 == torch.get_num_threads()
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
        assert RT.setup_threads(None, one) == 4 and RT.setup_threads(None, two) == 2
        assert RT.setup_threads(3, two) == 3
        monkeypatch.delattr(os, "sched_getaffinity")        # macOS, Windows: every core
        assert RT.available_cores() == 2
    finally:
        torch.set_num_threads(before)


def test_config_groups_cover_every_field_and_the_runtime_group_is_what_the_identity_leaves_out():
    """``TrainConfig`` read in typed groups: every field belongs to one (the seed to two: split and
    initialisation), the runtime group is exactly ``RUNTIME_FIELDS``, and ``cfg.data`` is the data
    layer's own ``DataConfig`` with the config's values."""
    from esg_lib.data import DataConfig

    fields = {f.name for f in dataclasses.fields(C.TrainConfig)}
    groups = {name: set(members) for name, members in C.GROUPS.items()}
    assert set().union(*groups.values()) == fields
    assert groups["runtime"] == C.TrainConfig.RUNTIME_FIELDS
    overlaps = {(a, b): groups[a] & groups[b] for a in groups for b in groups if a < b}
    assert {k: v for k, v in overlaps.items() if v} == {("data", "run"): {"seed"}}
    cfg = C.build_config("cpu", seed=2, img_size=48, lr=5e-4, threads=1)
    assert isinstance(cfg.data, DataConfig)
    assert (cfg.data.seed, cfg.data.img_size, cfg.data.dataset) == (2, 48, "x-sdd")
    assert cfg.optim.lr == 5e-4 and cfg.runtime.threads == 1
    # the identity: every field but the runtime ones, and the later fields only when switched on
    assert set(C.identity_fields(cfg)) == fields - groups["runtime"] - set(C.LATER_FIELDS)


def test_set_overrides_are_typed_by_the_dataclass():
    assert C.parse_overrides(["grad_clip=1", "compile=yes", "device=cuda:1", "max-steps=null"]) == \
        {"grad_clip": 1.0, "compile": True, "device": "cuda:1", "max_steps": None}
    for bad, words in ((["amp=maybe"], "amp"), (["epochs=2.5"], "epochs"), (["out=none"], "out")):
        with pytest.raises(C.ConfigError, match=words):
            C.parse_overrides(bad)


def test_git_commit_of_a_copy_without_git_comes_from_the_environment(tmp_path, monkeypatch):
    assert P.git_commit()["commit"]                       # this checkout has its .git
    monkeypatch.setattr(P, "ROOT", tmp_path)              # an rsynced copy: no .git above it
    monkeypatch.delenv("ESG_SOURCE_COMMIT", raising=False)
    assert P.git_commit() == {"commit": None, "dirty": None}
    monkeypatch.setenv("ESG_SOURCE_COMMIT", "0123abc")
    assert P.git_commit() == {"commit": "0123abc", "dirty": None, "source": "ESG_SOURCE_COMMIT"}


# ----------------------------------------------------------------------------------- models
def test_model_table_resolution():
    assert EM.resolve_model("swin-t", "cpu").kwargs == {"img_size": 64, "window_size": 4}
    assert EM.resolve_model("vit", "smoke").kwargs == {"img_size": 32, "patch_size": 8}
    assert EM.resolve_model("convnextv2", "cpu").name == "convnextv2_atto"
    assert EM.resolve_model("resnet18", "paper").name == "resnet18"
    assert EM.resolve_model("convnextv2_femto", "smoke").name == "convnextv2_femto"  # any timm name
    with pytest.raises(UserError, match="unknown model"):
        EM.resolve_model("resnet-nineteen", "smoke")
    assert EM.model_keys(["all"], "cpu") == list(C.COMPARISON)
    assert EM.model_keys(["resnet18", "ablation"], "cpu")[1:] == list(C.ABLATION)


def test_param_matched_convnextv2_is_the_closest_size():
    esg = C.get_profile("cpu").models["esg-convnext"].name
    matched = EM.resolve_model("convnextv2-param", "cpu").name
    target = EM.count_params(esg)
    gaps = {f"convnextv2_{s}": abs(EM.count_params(f"convnextv2_{s}") - target)
            for s in EM.CONVNEXTV2_SIZES}
    assert matched == min(gaps, key=gaps.get)
    assert EM.count_params(matched) > EM.count_params("convnextv2_atto")


def test_inception_gets_inputs_upsampled_to_75px():
    spec = EM.resolve_model("inceptionv3", "smoke")
    model = EM.build_model(spec, num_classes=5, img_size=32).eval()
    assert isinstance(model, EM.MinInputSize)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_head(model.forward_features(x), pre_logits=True)
    assert logits.shape == (2, 5) and feats.shape == (2, model.num_features)
    assert not isinstance(EM.build_model(spec, 5, img_size=224), EM.MinInputSize)


def test_pretrained_file_loads_local_weights(tmp_path):
    spec = C.ModelSpec("ResNet18", "resnet18")
    src = EM.build_model(spec, num_classes=3, img_size=32)
    path = tmp_path / "w.pth"
    torch.save(src.state_dict(), path)
    loaded = EM.build_model(spec, num_classes=3, img_size=32, pretrained_file=str(path))
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(UserError, match="not found"):
        EM.build_model(spec, 3, 32, pretrained_file=str(tmp_path / "missing.pth"))


def test_no_weight_decay_on_norms_biases_and_grn():
    from esg_lib.engine.train import build_optimizer

    model = EM.build_model(C.ModelSpec("c", "convnextv2_atto"), 3, 32)
    names = set(EM.no_weight_decay_names(model))
    params = dict(model.named_parameters())
    assert any("grn" in n for n in names) and "stem.1.weight" in names  # stem norm
    assert "stem.0.weight" not in names and "stages.0.blocks.0.conv_dw.weight" not in names
    assert all(n.endswith(".bias") is False or n in names for n in params)
    opt = build_optimizer(model, C.build_config("smoke", model="convnextv2_atto"))
    by_id = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert type(opt).__name__ == "AdamW"
    assert by_id[id(params["stages.0.blocks.0.mlp.grn.weight"])] == 0.0
    assert by_id[id(params["stages.0.blocks.0.conv_dw.weight"])] == pytest.approx(0.05)


# ----------------------------------------------------------------------------------- tables
def test_report_rebuilds_tables_from_committed_per_run_metrics(tmp_path):
    per_run = tmp_path / "results" / "cpu" / "runs"
    per_run.mkdir(parents=True)
    for seed, acc in [(0, 0.90), (1, 0.94)]:
        rec = dict(run=f"s{seed}-x", dataset="x-sdd", model="resnet18", seed=seed, label="ResNet18",
                   timm_name="resnet18", params=11_000_000, steps=885, acc=acc, precision=acc,
                   recall=acc, f1=acc, fps=100.0, train_seconds=60.0)
        (per_run / f"x-sdd__resnet18__s{seed}-x.json").write_text(json.dumps(rec))
    written = REP.build_report("cpu", runs=tmp_path / "no-runs", results=tmp_path / "results")
    assert sorted(p.name for p in written) == ["x-sdd.csv", "x-sdd.md"]
    md = (tmp_path / "results" / "cpu" / "x-sdd.md").read_text()
    assert "| ResNet18 | resnet18 | 11.00 | 92.0 ± 2.8 |" in md


def test_timm_name_of_a_table_row_is_that_row():
    assert C.build_config("cpu", model="esg_convnext_atto").model == "esg-convnext"
    assert C.build_config("cpu", model="vit_tiny_patch16_224").model == "vit"
    assert C.build_config("cpu", model="convnextv2_pico").model == "convnextv2_pico"
    assert EM.model_keys(["esg_convnext_atto", "esg-convnext"], "cpu") == ["esg-convnext"]


def test_docs_show_the_current_model_tables():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()   # moved from the README
    for profile in C.PROFILES:
        if profile in C.BASE_PROFILE:      # the same table as its base profile, under another name
            base = C.PROFILES[C.BASE_PROFILE[profile]]
            assert C.PROFILES[profile].models == base.models and C.PROFILES[profile].seeds == base.seeds
            assert f"`{profile}`" in doc, f"docs/training.md does not mention the {profile} profile"
            continue
        assert REP.model_table_markdown(profile) in doc, f"docs/training.md: {profile} model table is stale"


def test_readme_results_block_is_what_esg_report_produces():
    """The `cpu` results block (docs/results.md, where `esg report --readme` writes it) equals the tables
    rebuilt from the committed per-run metrics."""
    root = Path(__file__).resolve().parents[1]
    readme = (root / "docs" / "results.md").read_text()
    begin, end = REP.README_BEGIN.format(profile="cpu"), REP.README_END.format(profile="cpu")
    block = readme.split(begin, 1)[1].split(end, 1)[0].strip()
    assert block == REP.readme_results("cpu", root / "results")


def test_update_readme_rewrites_only_its_block(tmp_path):
    recs = tmp_path / "results" / "cpu" / "runs"
    recs.mkdir(parents=True)
    (recs / "x.json").write_text(json.dumps(dict(dataset="x-sdd", model="resnet18", label="ResNet18",
                                                 timm_name="resnet18", seed=0, params=11e6, steps=5, acc=0.9,
                                                 precision=0.8, recall=0.7, f1=0.75, fps=10.0,
                                                 train_seconds=3.0, protocol="leak-free", variant="v")))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{REP.README_BEGIN.format(profile='cpu')}\nold\n{REP.README_END.format(profile='cpu')}\nend\n")
    assert REP.update_readme("cpu", readme, tmp_path / "results") is True
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("end\n") and "old" not in text
    assert "| ResNet18 | resnet18 | 11.00 | 90.0 |" in text
    assert REP.update_readme("cpu", readme, tmp_path / "results") is False


def test_the_reruns_table_lists_each_kept_rerun_with_what_it_can_draw(tmp_path):
    from esg_lib.report.readme import reruns_section

    assert reruns_section("cpu", tmp_path) == ""

    def rerun(dataset: str, model: str, label: str, run: str, acc: float, std, files=()) -> None:
        folder = tmp_path / "cpu" / "reruns" / dataset / model / run
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"config": {"dataset": dataset, "model": model, "seed": 0},
                                                        "model_spec": {"label": label}}))
        (folder / "rerun.json").write_text(json.dumps({"differences": {"acc": acc}, "seed_std": std,
                                                       "record_hardware": "NVIDIA H100 x1",
                                                       "hardware": "CPU AMD EPYC, 2 cores, 1 threads"}))
        for name in files:
            (folder / name).write_bytes(b"x")

    rerun("neu-cls-64", "esg-convnext", "ESG-ConvNeXt", "s0-aaa", -0.011, 0.02, ("log.jsonl", "gradcam.npz"))
    rerun("x-sdd", "resnet18", "ResNet18", "s0-bbb", 0.0, None, ("log.jsonl", "test_confusion.csv"))
    rerun("x-sdd", "esg-convnext", "ESG-ConvNeXt", "s0-ccc", 0.0037, 0.0056, ("test_features.npz",))
    rows = [line for line in reruns_section("cpu", tmp_path).splitlines() if line.startswith("| ")][1:]
    assert rows == [   # X-SDD first, then the comparison's model order
        "| x-sdd | ESG-ConvNeXt | 0 | s0-ccc | +0.37 | 0.66 | NVIDIA H100 x1 | CPU AMD EPYC, 2 cores, 1 threads | t-SNE |",
        "| x-sdd | ResNet18 | 0 | s0-bbb | 0.00 | — | NVIDIA H100 x1 | CPU AMD EPYC, 2 cores, 1 threads | curves, confusion |",
        "| neu-cls-64 | ESG-ConvNeXt | 0 | s0-aaa | −1.10 | 0.55 | NVIDIA H100 x1 | CPU AMD EPYC, 2 cores, 1 threads "
        "| curves, Grad-CAM |"]


def test_reading_says_a_single_paired_seed_cannot_be_told_from_noise():
    from esg_lib.report import readme as A

    def rec(model, seed, acc):
        return {"model": model, "seed": seed, "dataset": "x-sdd", "protocol": "leak-free", "acc": acc}

    records = [rec("esg-convnext", 0, 0.83), rec("esg-convnext", 1, 0.84), rec("esg-convnext", 2, 0.83),
               rec("densenet121", 0, 0.96),
               rec("resnet18", 0, 0.88), rec("resnet18", 1, 0.89), rec("resnet18", 2, 0.885)]
    lines = A.verdict_section(records).splitlines()
    dense = next(ln for ln in lines if ln.startswith("- vs densenet121"))
    assert "-13.0 points accuracy over 1 paired seed(s) — one paired seed, no interval yet: not yet tested against noise." in dense
    resnet = next(ln for ln in lines if ln.startswith("- vs resnet18"))
    assert "over 3 paired seed(s), 95 % interval" in resnet
    # the untested single-seed comparison is not counted in the Holm family
    assert "ESG-ConvNeXt worse, beyond noise after Holm's correction for 1 comparison (p = " in resnet
