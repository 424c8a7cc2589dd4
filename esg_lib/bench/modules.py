"""Per-module profile of one ESG block at each stage's real shape (``esg benchmark --modules``).

For every stage of a size (atto at 64 px: widths 40/80/160/320 at 16/8/4/2 px), one
:class:`~esg_lib.models.esg_convnext.ESGBlock` is built at that width and each of its parts is timed
on a tensor of the shape and layout it really sees inside the network, forward (``inference_mode``,
eval) and forward + backward (train mode, input gradient included, as inside a network):

* the attention modules (ELA on NCHW; SimAM on the MLP's NHWC 4C tensor and after the inverted
  branch on NCHW; GAM with its channel gate on NHWC and spatial gate on NCHW, as the block calls it),
  the channels-last PReLU and GRN of the MLP;
* the residual branch, the inverted-residual branch, the ESG core (the ConvNeXtV2 block with its
  three attentions) and the plain ConvNeXtV2 block at the same width, and the whole ESG block.

Each optimized module is timed beside its literal reference (:mod:`esg_lib.models.reference`, the
equations with their loops) and beside the code as first written (:mod:`esg_lib.bench.original`),
so the table shows both the speedup over the equations and what the optimisations saved.
Measurements are interleaved (every variant once per round) and repeated; medians are reported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from esg_lib.markdown import markdown_rows
from esg_lib.models.esg_convnext import SIZES, AttentionConvNeXtBlock, ESGBlock
from esg_lib.models.reference import ela_literal, gam_literal, simam_literal

from . import original
from .timing import summarize, sync, time_call

__all__ = ["ModuleCase", "build_cases", "profile_modules", "format_modules", "explain_ratio", "SPEEDUP_TARGET"]

SPEEDUP_TARGET = 1.5  # issue 7: every optimized module >= 1.5x its literal reference

Fn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class ModuleCase:
    """One timed part of a block: the optimized call, and optionally its literal reference and its
    first-written version, all on the same input."""
    name: str
    stage: int
    shape: tuple[int, ...]
    layout: str
    make_input: Callable[[], torch.Tensor]
    fn: Fn
    modules: list[nn.Module]
    reference: Fn | None = None
    original: Fn | None = None
    ref_batch: int | None = None  # literal timed on this many samples and scaled (its loops are per sample)
    times: dict[str, list[float]] = field(default_factory=dict)

    def variants(self) -> dict[str, Fn]:
        out = {"optimized": self.fn}
        if self.original is not None:
            out["original"] = self.original
        if self.reference is not None:
            out["reference"] = self.reference
        return out


def _randomise(module: nn.Module) -> nn.Module:
    """Non-trivial norm affines and GRN parameters (GRN starts at zero, which would skip its work
    in no kernel but make gradients trivially zero)."""
    g = torch.Generator().manual_seed(0)
    for name, p in module.named_parameters():
        if any(k in name for k in ("norm", "bn", "grn")):
            with torch.no_grad():
                p.copy_(torch.rand(p.shape, generator=g) * 0.5 + (0.75 if name.endswith("weight") else -0.25))
    return module


def build_cases(size: str = "atto", img_size: int = 64, batch_size: int = 64, stages: Sequence[int] | None = None,
                ref_batch: int = 8, channels_last_block: bool = True) -> list[ModuleCase]:
    """The timed parts of one ESG block per stage, at the shapes of ``size`` at ``img_size`` px."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    dims = SIZES[size]["dims"]
    cases: list[ModuleCase] = []
    for s, dim in enumerate(dims):
        if stages is not None and s not in stages:
            continue
        side = max(img_size // (4 * 2 ** s), 1)
        torch.manual_seed(s)
        block = _randomise(ESGBlock(dim, act="prelu"))
        plain = _randomise(AttentionConvNeXtBlock(dim, act="gelu", attention=()))
        core, mlp = block.core, block.core.mlp
        b, hid = batch_size, mlp.fc1.out_features
        nchw = (b, dim, side, side)
        hidden_nhwc = (b, side, side, hid)
        nhwc = (b, side, side, dim)

        def randn(shape: tuple[int, ...], seed: int = s) -> Callable[[], torch.Tensor]:
            return lambda: torch.randn(shape, generator=torch.Generator().manual_seed(seed))

        def ref_slice(fn: Fn) -> Fn:
            return lambda x: fn(x[:ref_batch])

        gam = core.gam
        ela = core.ela
        lam = mlp.simam.lam

        def gam_block(x: torch.Tensor, gam=gam) -> torch.Tensor:  # as ESGBlock calls it: NHWC then NCHW
            return gam.apply_spatial(gam.apply_channel(x).permute(0, 3, 1, 2))

        def gam_ref(x: torch.Tensor, gam=gam) -> torch.Tensor:
            return gam_literal(gam, x.permute(0, 3, 1, 2))

        def simam_hidden_ref(x: torch.Tensor, lam=lam) -> torch.Tensor:
            return simam_literal(x[:ref_batch].permute(0, 3, 1, 2), lam)

        prelu = mlp.act
        grn = mlp.grn
        ref_b = min(ref_batch, b)
        cases += [
            ModuleCase("ELA", s, nchw, "NCHW", randn(nchw), ela, [ela],
                       reference=lambda x, m=ela: ela_literal(m, x),
                       original=lambda x, m=ela: original.ela_original(m, x)),
            ModuleCase("SimAM (MLP)", s, hidden_nhwc, "NHWC", randn(hidden_nhwc), mlp.simam, [],
                       reference=simam_hidden_ref, ref_batch=ref_b,
                       original=lambda x, lam=lam: original.simam_original(x, (1, 2), lam)),
            ModuleCase("SimAM (inverted)", s, nchw, "NCHW", randn(nchw), block.inverted.simam, [],
                       reference=ref_slice(lambda x, lam=lam: simam_literal(x, lam)), ref_batch=ref_b,
                       original=lambda x, lam=lam: original.simam_original(x, (2, 3), lam)),
            ModuleCase("GAM", s, nhwc, "NHWC->NCHW", randn(nhwc), gam_block, [gam], reference=gam_ref),
            ModuleCase("PReLU (MLP)", s, hidden_nhwc, "NHWC", randn(hidden_nhwc), prelu, [prelu],
                       original=lambda x, m=prelu: original.prelu_channels_last_original(m.weight, x)),
            ModuleCase("GRN (MLP)", s, hidden_nhwc, "NHWC", randn(hidden_nhwc), grn, [grn],
                       original=lambda x, m=grn: original.grn_original(m, x)),
            ModuleCase("residual branch", s, nchw, "NCHW", randn(nchw), block.residual, [block.residual]),
            ModuleCase("inverted branch", s, nchw, "NCHW", randn(nchw), block.inverted, [block.inverted]),
            ModuleCase("ESG core", s, nchw, "NCHW", randn(nchw), core, [core]),
            ModuleCase("ConvNeXtV2 block", s, nchw, "NCHW", randn(nchw), plain, [plain]),
            ModuleCase("ESG block", s, nchw, "NCHW", randn(nchw), block, [block]),
        ]
        if channels_last_block:
            block_cl = _randomise(ESGBlock(dim, act="prelu")).to(memory_format=torch.channels_last)
            plain_cl = _randomise(AttentionConvNeXtBlock(dim, act="gelu", attention=())).to(
                memory_format=torch.channels_last)

            def cl_input(shape=nchw, seed=s) -> torch.Tensor:
                return randn(shape, seed)().contiguous(memory_format=torch.channels_last)

            cases += [
                ModuleCase("ConvNeXtV2 block, channels_last", s, nchw, "NCHW (channels_last)", cl_input,
                           plain_cl, [plain_cl]),
                ModuleCase("ESG block, channels_last", s, nchw, "NCHW (channels_last)", cl_input,
                           block_cl, [block_cl]),
            ]
    return cases


def _time_variant(fn: Fn, modules: list[nn.Module], x: torch.Tensor, grad: torch.Tensor, backward: bool,
                  device: torch.device, warmup: int = 1) -> float:
    params = [p for m in modules for p in m.parameters()]
    for p in params:
        p.grad = None
    if not backward:
        for m in modules:
            m.eval()
        with torch.inference_mode():
            for _ in range(warmup):  # untimed: the allocator and caches settle for this shape
                fn(x)
            return time_call(lambda: fn(x), device)
    for m in modules:
        m.train()
    xg = x.detach().requires_grad_(True)

    def step() -> None:
        out = fn(xg)
        out.backward(grad[: out.shape[0]] if out.shape == grad[: out.shape[0]].shape else torch.ones_like(out))

    for _ in range(warmup):
        step()
    return time_call(step, device)


def profile_modules(cases: list[ModuleCase], repeats: int = 3, warmup: int = 1, device: str = "cpu",
                    log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Time every case's variants, forward and forward+backward, interleaved over ``repeats`` rounds;
    each measurement follows ``warmup`` untimed calls of the same variant."""
    dev = torch.device(device)
    prepared = []
    for case in cases:
        x = case.make_input().to(dev)
        if case.layout.endswith("(channels_last)"):
            x = x.contiguous(memory_format=torch.channels_last)
        for m in case.modules:
            m.to(dev)
        with torch.no_grad():
            out = case.fn(x)
        grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(dev)
        if out.is_contiguous(memory_format=torch.channels_last) and out.ndim == 4 and not out.is_contiguous():
            grad = grad.contiguous(memory_format=torch.channels_last)
        prepared.append((case, x, grad))
    keys = [(case, variant, backward) for case, _, _ in prepared for variant in case.variants()
            for backward in (False, True)]
    for case, _, _ in prepared:
        case.times = {f"{v}_{'fwdbwd' if b else 'fwd'}": [] for v in case.variants() for b in (False, True)}
    inputs = {id(case): (x, grad) for case, x, grad in prepared}
    for r in range(repeats):
        for case, variant, backward in keys:
            x, grad = inputs[id(case)]
            fn = case.variants()[variant]
            t = _time_variant(fn, case.modules, x, grad, backward, dev, warmup)
            if variant == "reference" and case.ref_batch:
                t *= x.shape[0] / case.ref_batch
            case.times[f"{variant}_{'fwdbwd' if backward else 'fwd'}"].append(t)
        if log:
            log(f"  modules: round {r + 1}/{repeats} done")
    sync(dev)
    return [_record(case) for case in cases]


def _record(case: ModuleCase) -> dict[str, Any]:
    rec: dict[str, Any] = {"module": case.name, "stage": case.stage, "shape": list(case.shape),
                           "layout": case.layout}
    for key, vals in case.times.items():
        st = summarize(vals)
        rec[f"{key}_ms"] = st["median"] * 1e3
        rec[f"{key}_ms_min"] = st["min"] * 1e3
        rec[f"{key}_ms_max"] = st["max"] * 1e3
    for mode in ("fwd", "fwdbwd"):
        opt = rec[f"optimized_{mode}_ms"]
        for other in ("reference", "original"):
            if f"{other}_{mode}_ms" in rec:
                rec[f"speedup_vs_{other}_{mode}"] = rec[f"{other}_{mode}_ms"] / opt if opt > 0 else math.inf
    if case.ref_batch:
        rec["reference_timed_on_batch"] = case.ref_batch
    return rec


def _fmt_ms(rec: dict[str, Any], key: str) -> str:
    if f"{key}_ms" not in rec:
        return ""
    return f"{rec[f'{key}_ms']:.2f}"


def _fmt_x(rec: dict[str, Any], key: str) -> str:
    return f"{rec[key]:.1f}x" if key in rec else ""


def format_modules(records: list[dict[str, Any]]) -> str:
    """Markdown table: one row per stage and module, medians in ms."""
    cells = []
    for r in records:
        orig = (f"{_fmt_ms(r, 'original_fwd')} / {_fmt_ms(r, 'original_fwdbwd')}"
                if "original_fwd_ms" in r else "")
        ref = (f"{_fmt_ms(r, 'reference_fwd')} / {_fmt_ms(r, 'reference_fwdbwd')}"
               if "reference_fwd_ms" in r else "")
        if ref and r.get("reference_timed_on_batch"):
            ref += f" (b={r['reference_timed_on_batch']}, scaled)"
        sp_o = " / ".join(s for s in (_fmt_x(r, "speedup_vs_original_fwd"), _fmt_x(r, "speedup_vs_original_fwdbwd")) if s)
        sp_r = " / ".join(s for s in (_fmt_x(r, "speedup_vs_reference_fwd"), _fmt_x(r, "speedup_vs_reference_fwdbwd")) if s)
        shape = "x".join(str(v) for v in r["shape"])
        cells.append([r["stage"], r["module"], f"{shape} {r['layout']}", _fmt_ms(r, "optimized_fwd"),
                      _fmt_ms(r, "optimized_fwdbwd"), orig, sp_o, ref, sp_r])
    return markdown_rows(["stage", "module", "input", "fwd ms", "fwd+bwd ms", "original fwd / fwd+bwd ms",
                          "speedup vs original", "literal ref fwd / fwd+bwd ms", "speedup vs literal"],
                         cells, align="rllrrrrrr")


def explain_ratio(records: list[dict[str, Any]], size: str = "atto") -> dict[str, Any]:
    """Depth-weighted block times (the stages' blocks dominate both networks): the ConvNeXtV2 / ESG
    block-time ratio predicts the models' throughput ratio, and the ESG block's time splits into
    the ConvNeXtV2 work, the attentions and the two branches."""
    depths = SIZES[size]["depths"]
    by = {(r["stage"], r["module"]): r for r in records}
    out: dict[str, Any] = {}
    for mode in ("fwd", "fwdbwd"):
        key = f"optimized_{mode}_ms"

        def total(name: str) -> float:
            return sum(depths[s] * by[(s, name)][key] for s in range(len(depths)) if (s, name) in by)

        esg, plain = total("ESG block"), total("ConvNeXtV2 block")
        if not esg:
            continue
        parts = {
            "residual branch": total("residual branch"),
            "inverted branch (incl. its SimAM)": total("inverted branch"),
            "ELA": total("ELA"),
            "SimAM (MLP)": total("SimAM (MLP)"),
            "GAM": total("GAM"),
        }
        parts["rest of the core (ConvNeXtV2 work, PReLU, sums)"] = esg - sum(parts.values())
        out[mode] = {
            "esg_blocks_ms": esg, "convnextv2_blocks_ms": plain, "predicted_ratio": plain / esg,
            "shares": {k: v / esg for k, v in parts.items()},
        }
        cl_esg, cl_plain = total("ESG block, channels_last"), total("ConvNeXtV2 block, channels_last")
        if cl_esg:
            out[mode].update(esg_blocks_channels_last_ms=cl_esg, convnextv2_blocks_channels_last_ms=cl_plain,
                             channels_last_speedup_esg=esg / cl_esg,
                             channels_last_speedup_convnextv2=plain / cl_plain if cl_plain else None)
    return out


def module_targets(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Target check: every module that has a literal reference is >= SPEEDUP_TARGET x faster."""
    rows = []
    for r in records:
        for mode in ("fwd", "fwdbwd"):
            key = f"speedup_vs_reference_{mode}"
            if key in r:
                rows.append({"module": r["module"], "stage": r["stage"], "mode": mode, "speedup": r[key],
                             "met": r[key] >= SPEEDUP_TARGET})
    return rows
