"""``esg benchmark``: the model benchmark end to end on tiny settings, the module profile on tiny
shapes, the ratio/target logic on made-up records. Never checks a timing against a threshold."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from esg_lib.bench import modules as M
from esg_lib.bench import throughput as T
from esg_lib.cli import main

REQUIRED = {"model", "img_size", "batch_size", "mode", "img_per_s", "gflops", "params_m", "peak_mem_mb"}


def test_benchmark_cli_end_to_end_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    rc = main(["benchmark", "--models", "esg_convnext_atto", "convnextv2_atto", "--img-size", "32",
               "--batch-size", "2", "--repeats", "1", "--warmup", "1", "--threads", "1", "--min-time", "0",
               "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert set(data) >= {"records", "ratios", "environment", "targets"}
    recs = data["records"]
    assert {(r["model"], r["mode"]) for r in recs} == {(m, mode) for m in ("esg_convnext_atto", "convnextv2_atto")
                                                      for mode in ("infer", "train")}
    for r in recs:
        assert REQUIRED <= set(r)
        assert r["img_size"] == 32 and r["batch_size"] == 2
        assert r["img_per_s"] > 0 and r["img_per_s_min"] <= r["img_per_s"] <= r["img_per_s_max"]
        assert r["gflops"] > 0 and r["params_m"] > 0 and r["achieved_gflop_per_s"] > 0
        assert r["peak_mem_mb"] is None or r["peak_mem_mb"] >= 0
    by = {(r["model"], r["mode"]): r for r in recs}
    esg, cnx = by[("esg_convnext_atto", "train")], by[("convnextv2_atto", "train")]
    assert esg["params_m"] == pytest.approx(23.02, abs=0.05) and cnx["params_m"] == pytest.approx(3.39, abs=0.02)
    assert esg["gflops"] > 5 * cnx["gflops"]  # ESG's extra work at any size
    # a training step counts forward + backward, a depthwise backward per group: ~3 x forward, not 6 x
    assert 2.85 * esg["gflops"] < esg["gmacs_per_img"] <= 3 * esg["gflops"]
    assert by[("esg_convnext_atto", "infer")]["gmacs_per_img"] == esg["gflops"]
    modes = {q["mode"] for q in data["ratios"]}
    assert modes == {"infer", "train"}
    for q in data["ratios"]:
        assert q["paper_ratio"] == pytest.approx(6 / 42) and q["throughput_ratio"] > 0
    env = data["environment"]
    assert env["threads"] == 1 and env["device"] == "cpu" and env["torch"] and env["timm"]
    printed = capsys.readouterr().out
    assert "| `esg_convnext_atto` eager, tuned malloc | 32 | 2 | infer |" in printed and "0.143" in printed
    assert {r["malloc"] for r in recs} == {"tuned"}   # the default: as training runs on a CPU


def test_benchmark_rejects_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["benchmark", "--models", "no_such_model", "--repeats", "1"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["benchmark", "--batch-size", "1"]) == 2
    assert main(["benchmark", "--img-size", "16"]) == 2


def _rec(model: str, mode: str, rates: list[float], gflops: float, gmacs: float) -> dict:
    med = sorted(rates)[len(rates) // 2]
    return {"model": model, "img_size": 64, "batch_size": 64, "mode": mode, "img_per_s": med,
            "img_per_s_all": rates, "gflops": gflops, "gmacs_per_img": gmacs,
            "achieved_gflop_per_s": 2 * gmacs * med}


def test_ratios_are_paired_per_round_and_targets_check_efficiency() -> None:
    records = [_rec("esg_convnext_atto", "infer", [10, 20, 30], 0.3, 0.3),
               _rec("convnextv2_atto", "infer", [100, 100, 100], 0.045, 0.045),
               _rec("resnet18", "infer", [50, 50, 50], 0.15, 0.15)]
    (q,) = T.ratios(records)
    assert q["mode"] == "infer" and q["throughput_ratio"] == pytest.approx(0.2)
    assert q["ratio_min"] == pytest.approx(0.1) and q["ratio_max"] == pytest.approx(0.3)
    assert q["gmacs_ratio_inverse"] == pytest.approx(0.15)
    rows = T.targets(records)
    eff = [t for t in rows if "dense-work" in t["target"]]
    assert len(eff) == 1 and eff[0]["value"] == pytest.approx(0.8) and eff[0]["met"]
    assert T.format_targets(rows).count("MET") == 2


def test_compile_both_pairs_each_compiled_worker_with_its_eager_twin_per_round() -> None:
    """``--compile both``: the speed-up is compiled / eager of the same model in the same rounds (median of
    the per-round ratios), ESG is paired with a compiled ResNet18 for the efficiency target, and the
    1.5x training target reads the ESG training row only."""
    def rec(model, mode, rates, compiled, gmacs=0.3):
        return {**_rec(model, mode, rates, gmacs, gmacs), "compile": compiled, "first_steps_s": 60.0}

    records = [rec("esg_convnext_atto", "train", [10, 10, 12], False),
               rec("esg_convnext_atto", "train", [20, 14, 24], True),
               rec("resnet18", "train", [40, 40, 40], False, 0.15),
               rec("resnet18", "train", [80, 80, 80], True, 0.15)]
    by_model = {q["model"]: q for q in T.speedups(records)}
    assert by_model["esg_convnext_atto"]["speedup"] == pytest.approx(2.0)      # 2.0, 1.4, 2.0 -> median
    assert by_model["esg_convnext_atto"]["speedup_min"] == pytest.approx(1.4)
    assert by_model["esg_convnext_atto"]["variant"] == "compiled" and by_model["resnet18"]["base"] == "eager"
    assert by_model["resnet18"]["speedup"] == pytest.approx(2.0)
    rows = T.targets(records)
    eff = {t["target"]: t["value"] for t in rows if "dense-work" in t["target"]}
    assert len(eff) == 2   # eager with eager, compiled with compiled, never mixed
    assert [v for k, v in eff.items() if "both compiled" in k] == [pytest.approx(2 * 0.3 * 20 / (2 * 0.15 * 80))]
    (target,) = [t for t in rows if ">= 1.5 x" in t["target"]]
    assert target["value"] == pytest.approx(2.0) and target["met"]
    assert "| 2.00 | 1.40-2.00 |" in T.format_speedups(T.speedups(records))


def test_malloc_both_pairs_every_variant_with_plain_eager_and_default_malloc() -> None:
    """``--malloc both --compile both``: four workers per model; each of the three faster variants is
    paired with eager + glibc's default malloc, never with another variant."""
    def rec(rates, compiled, malloc):
        return {**_rec("esg_convnext_atto", "train", rates, 0.3, 0.9), "compile": compiled, "malloc": malloc,
                "first_steps_s": 1.0}

    records = [rec([10, 10, 10], False, "default"), rec([12, 11, 13], False, "tuned"),
               rec([11, 11, 11], True, "default"), rec([16, 15, 14], True, "tuned")]
    got = {q["variant"]: q for q in T.speedups(records)}
    assert set(got) == {"eager, tuned malloc", "compiled", "compiled, tuned malloc"}
    assert all(q["base"] == "eager" for q in got.values())
    assert got["eager, tuned malloc"]["speedup"] == pytest.approx(1.2)
    assert got["compiled, tuned malloc"]["speedup"] == pytest.approx(1.5)
    met = {t["target"]: t["met"] for t in T.targets(records) if ">= 1.5 x" in t["target"]}
    assert sum(met.values()) == 1 and len(met) == 3
    # without a default-malloc worker, the base is eager with the variant's own malloc
    only_tuned = [r for r in records if r["malloc"] == "tuned"]
    (q,) = T.speedups(only_tuned)
    assert q["base"] == "eager, tuned malloc" and q["speedup"] == pytest.approx(16 / 12)   # 16/12, 15/11, 14/13


def test_tuned_malloc_stops_page_faults_on_reused_activation_memory() -> None:
    """The mechanism, counted rather than timed: with glibc's defaults every tensor above 32 MiB (here
    64 MB, a 224-px activation's size) is a fresh mmap that page-faults in anew each time; after
    ``tune_malloc`` freed blocks are reused and a steady loop faults (almost) never."""
    import subprocess
    import sys

    code = """
import resource, sys, torch
from esg_lib.engine.runtime import tune_malloc
torch.set_num_threads(1)
took = tune_malloc() if sys.argv[1] == "tuned" else None
a, b = torch.randn(64, 256, 32, 32), torch.randn(64, 256, 32, 32)
def body():
    c = a * b
    d = c + a
    del c, d
for _ in range(3):
    body()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    body()
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""
    if not sys.platform.startswith("linux"):
        pytest.skip("tune_malloc is glibc-only")
    out = {m: subprocess.run([sys.executable, "-c", code, m], capture_output=True, text=True, check=True)
           .stdout.split() for m in ("default", "tuned")}
    assert out["tuned"][0] == "True"
    assert int(out["default"][1]) > 100_000        # 40 new 64 MB tensors: one fault per 4 KiB page
    assert int(out["tuned"][1]) < 1_000


def test_tune_malloc_is_a_runtime_field_that_changes_no_result() -> None:
    """Same run identity with and without, and the same training step to the last bit."""
    import subprocess
    import sys

    from esg_lib.engine import runs as R
    from esg_lib.engine.config import TrainConfig, build_config

    assert "tune_malloc" in TrainConfig.RUNTIME_FIELDS and TrainConfig().tune_malloc is True
    assert R.config_variant(build_config("smoke").to_dict()) == \
        R.config_variant(build_config("smoke", tune_malloc=False).to_dict())

    code = """
import hashlib, sys, timm, torch, esg_lib
from esg_lib.engine.runtime import tune_malloc
torch.set_num_threads(1)
if sys.argv[1] == "tuned":
    assert tune_malloc()
torch.manual_seed(0)
model = timm.create_model("esg_convnext_atto", num_classes=3)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
for _ in range(2):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
print(hashlib.sha256(torch.cat([p.detach().flatten() for p in model.parameters()]).numpy().tobytes()).hexdigest())
"""
    if not sys.platform.startswith("linux"):
        pytest.skip("tune_malloc is glibc-only")
    digests = {m: subprocess.run([sys.executable, "-c", code, m], capture_output=True, text=True, check=True)
               .stdout.split()[-1] for m in ("default", "tuned")}
    assert digests["default"] == digests["tuned"]


def test_family_matching_ignores_ablation_rows() -> None:
    assert T._family("esg_convnext_atto") == ("esg_convnext", "atto")
    assert T._family("esg_convnext_atto_abl3") is None
    assert T._family("resnet18") is None


def test_module_profile_runs_on_tiny_shapes() -> None:
    cases = M.build_cases("atto", img_size=32, batch_size=2, stages=[0, 3], ref_batch=1)
    names = {c.name for c in cases}
    assert {"ELA", "SimAM (MLP)", "SimAM (inverted)", "GAM", "residual branch", "inverted branch", "ESG core",
            "ConvNeXtV2 block", "ESG block"} <= names
    records = M.profile_modules(cases, repeats=1, warmup=1)
    assert len(records) == len(cases)
    for r in records:
        assert r["optimized_fwd_ms"] > 0 and r["optimized_fwdbwd_ms"] > 0
    ela = next(r for r in records if r["module"] == "ELA" and r["stage"] == 0)
    assert ela["shape"] == [2, 40, 8, 8] and ela["speedup_vs_reference_fwd"] > 0
    assert "speedup_vs_original_fwdbwd" in ela
    simam_mlp = next(r for r in records if r["module"] == "SimAM (MLP)" and r["stage"] == 3)
    assert simam_mlp["shape"] == [2, 1, 1, 1280] and simam_mlp["reference_timed_on_batch"] == 1
    table = M.format_modules(records)
    assert "| 0 | ELA | 2x40x8x8 NCHW |" in table
    explanation = M.explain_ratio(records)
    assert 0 < explanation["fwd"]["predicted_ratio"] < 1.5
    assert {t["module"] for t in M.module_targets(records)} == {"ELA", "SimAM (MLP)", "SimAM (inverted)", "GAM"}


def test_module_profile_cli(tmp_path: Path) -> None:
    out = tmp_path / "modules.json"
    rc = main(["benchmark", "--modules", "--img-size", "32", "--batch-size", "2", "--repeats", "1",
               "--ref-batch", "1", "--threads", "1", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert set(data) >= {"modules", "explanation", "targets", "environment"}
    assert {r["stage"] for r in data["modules"]} == {0, 1, 2, 3}


def test_module_entry_point_runs_inference_only_at_batch_one(tmp_path: Path) -> None:
    from esg_lib.bench.__main__ import main as bench_main

    out = tmp_path / "b1.json"
    assert bench_main(["--models", "resnet18", "--img-size", "32", "--batch-size", "1", "--modes", "infer",
                       "--repeats", "2", "--threads", "1", "--min-time", "0.05", "--json", str(out)]) == 0
    recs = json.loads(out.read_text())["records"]
    assert [(r["model"], r["mode"], r["batch_size"]) for r in recs] == [("resnet18", "infer", 1)]
    assert len(recs[0]["img_per_s_all"]) == 2
    assert bench_main(["--batch-size", "1"]) == 2  # training at batch 1 is refused


@pytest.mark.slow
def test_compiled_model_equals_eager_within_float_tolerance() -> None:
    """torch.compile (inductor, CPU) on a tiny ESG-ConvNeXt: same state-dict keys, forward and every
    parameter gradient equal to eager's within float tolerance (not bit-identical: fused kernels sum in
    another order). Skipped without a C++ compiler. Slow-ish: inductor compiles forward and backward."""
    import timm
    import torch

    from esg_lib.bench.compiled import compile_model, cxx_compiler

    if cxx_compiler() is None:
        pytest.skip("no C++ compiler: inductor cannot build its CPU kernels")
    torch.manual_seed(0)
    model = timm.create_model("esg_convnext_atto", depths=(1, 1), dims=(16, 32), num_classes=3).train()
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 2])
    compiled = compile_model(model)
    assert list(compiled.state_dict()) == [f"_orig_mod.{k}" for k in model.state_dict()]

    def grads(net: torch.nn.Module) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        out = net(x)
        torch.nn.functional.cross_entropy(out, y).backward()
        return out.detach(), [p.grad.clone() for p in model.parameters()]

    eager_out, eager_grads = grads(model)
    comp_out, comp_grads = grads(compiled)
    torch.testing.assert_close(comp_out, eager_out, rtol=1e-4, atol=1e-5)
    for g_comp, g_eager in zip(comp_grads, eager_grads):
        torch.testing.assert_close(g_comp, g_eager, rtol=1e-3, atol=1e-5)


def test_compile_is_a_runtime_field_that_keeps_the_run_identity() -> None:
    from esg_lib.engine import runs as R
    from esg_lib.engine.config import TrainConfig, build_config

    assert "compile" in TrainConfig.RUNTIME_FIELDS and TrainConfig().compile is False
    eager, compiled = build_config("smoke"), build_config("smoke", compile=True)
    assert R.config_variant(eager.to_dict()) == R.config_variant(compiled.to_dict())


def test_op_times_counts_the_same_work_as_the_benchmark_and_bounds_fusion(capsys: pytest.CaptureFixture[str]) -> None:
    """``--op-times``: the multiply-adds summed over its families equal the benchmark's training count
    (same formulas, per-group convolution backward), depthwise convolutions are told apart, and the
    fusion bound is the step over its dense part."""
    import timm
    import torch

    from esg_lib.bench.op_times import DENSE_FAMILIES, time_training_ops
    from esg_lib.models.zoo import count_training_gmacs

    torch.set_num_threads(1)
    res = time_training_ops("esg_convnext_atto", img_size=32, batch_size=2, steps=1, warmup=1)
    fams = res["families"]
    assert {"conv forward (dense)", "conv backward (dense)", "depthwise conv backward"} <= set(fams)
    counted = sum(f["gmacs"] for f in fams.values())
    expected = count_training_gmacs(timm.create_model("esg_convnext_atto", num_classes=9), 32, batch_size=2) * 2
    assert counted == pytest.approx(expected, rel=1e-6)
    assert all(fams[f]["gmacs"] == 0 for f in fams if f not in DENSE_FAMILIES)
    assert res["fusion_bound"] == pytest.approx(res["ops_ms"] / res["dense_ms"]) and res["fusion_bound"] > 1
    assert main(["benchmark", "--op-times", "--models", "resnet18", "--img-size", "32", "--batch-size", "2",
                 "--repeats", "1", "--threads", "1"]) == 0
    assert "at most" in capsys.readouterr().out
