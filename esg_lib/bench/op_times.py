"""Where a training step's time goes, timed per ATen operator by wall clock (``esg benchmark --op-times``).

A second route beside :mod:`.profile_step` (``torch.profiler``'s self CPU time): a
``TorchDispatchMode`` times every ATen call of the step with ``time.perf_counter`` around it, as the
training loop feels it (allocation and page faults included, profiler bookkeeping excluded), and
counts each call's multiply-accumulates with the same formulas as ``esg benchmark`` (convolution
backward per group, :func:`esg_lib.models.zoo.flop_counter`). Per family this gives milliseconds,
share of the step and achieved GFLOP/s; beside it, the machine's dense rate measured on a square
matrix product at the same thread count.

What it answers: how much of the step is arithmetic already running near the machine's dense rate
(convolutions, matrix products), and so the most any fusion of the rest could gain:
``step / (convolution + matmul time)``, the bound if every other operator took no time at all.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from esg_lib.markdown import markdown_rows

from .profile_step import operator_family, training_step

__all__ = ["time_training_ops", "dense_rate_gflops", "format_op_times", "DENSE_FAMILIES"]

DENSE_FAMILIES = ("conv forward (dense)", "conv backward (dense)", "depthwise conv forward",
                  "depthwise conv backward", "matmul / linear")


def _groups(name: str, args: tuple[Any, ...]) -> tuple[int, int]:
    """(groups, input channels) of an ``aten.convolution`` / ``convolution_backward`` call."""
    if name == "convolution":
        return int(args[8]), int(args[0].shape[1])
    return int(args[9]), int(args[1].shape[1])


class _OpTimer(TorchDispatchMode):
    def __init__(self, registry: dict[Any, Callable[..., int]]) -> None:
        super().__init__()
        self.registry = registry
        self.ms: dict[str, float] = {}
        self.macs: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.in_optimizer = False

    @contextlib.contextmanager
    def optimizer_phase(self) -> Iterator[None]:
        """Count what runs inside as the optimizer's."""
        self.in_optimizer = True
        try:
            yield
        finally:
            self.in_optimizer = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        t0 = time.perf_counter()
        out = func(*args, **kwargs)
        dt = time.perf_counter() - t0
        packet = func._overloadpacket
        name = packet.__name__
        depthwise = False
        if name in ("convolution", "convolution_backward"):
            groups, channels = _groups(name, args)
            depthwise = groups == channels > 1
        family = "optimizer (AdamW)" if self.in_optimizer else operator_family(f"aten::{name}", depthwise)
        flops = self.registry[packet](*args, **kwargs, out_val=out) if packet in self.registry else 0
        self.ms[family] = self.ms.get(family, 0.0) + dt * 1e3
        self.macs[family] = self.macs.get(family, 0.0) + flops / 2
        self.calls[family] = self.calls.get(family, 0) + 1
        return out


def dense_rate_gflops(n: int = 1024, repeats: int = 5) -> float:
    """GFLOP/s of an ``n x n`` float32 matrix product at the current thread count (best of ``repeats``):
    what this machine's BLAS reaches on ideal dense work."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def time_training_ops(model_name: str, img_size: int = 64, batch_size: int = 64, steps: int = 2,
                      warmup: int = 2, num_classes: int = 9) -> dict[str, Any]:
    """Wall milliseconds and multiply-accumulates per operator family of one eager training step
    (forward, cross-entropy, backward, AdamW), averaged over ``steps``."""
    from esg_lib.models.zoo import flop_counter

    timer = _OpTimer(flop_counter().flop_registry)
    # AdamW's per-parameter mul/lerp/sqrt are the optimizer's, not the model's
    step = training_step(model_name, img_size, batch_size, num_classes, optimizer_phase=timer.optimizer_phase)
    for _ in range(max(warmup, 1)):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    plain_ms = (time.perf_counter() - t0) * 1e3 / steps
    t0 = time.perf_counter()
    with timer:
        for _ in range(steps):
            step()
    timed_ms = (time.perf_counter() - t0) * 1e3 / steps
    families = {fam: {"ms": ms / steps, "gmacs": timer.macs[fam] / steps / 1e9, "calls": timer.calls[fam] // steps}
                for fam, ms in sorted(timer.ms.items(), key=lambda kv: -kv[1])}
    ops_ms = sum(f["ms"] for f in families.values())
    dense_ms = sum(families[f]["ms"] for f in DENSE_FAMILIES if f in families)
    return {"model": model_name, "img_size": img_size, "batch_size": batch_size, "steps": steps,
            "threads": torch.get_num_threads(), "step_ms": plain_ms, "step_ms_timed": timed_ms,
            "ops_ms": ops_ms, "dense_ms": dense_ms, "families": families,
            "dense_rate_gflops": dense_rate_gflops(),
            "fusion_bound": ops_ms / dense_ms if dense_ms else float("inf")}


def format_op_times(result: dict[str, Any]) -> str:
    total = result["ops_ms"] or 1.0
    rate = result["dense_rate_gflops"]
    head = (f"family ({result['model']}, {result['img_size']} px, batch {result['batch_size']}, "
            f"eager, {result['threads']} thread(s))")
    rows = []
    for fam, f in result["families"].items():
        gflops = 2 * f["gmacs"] / (f["ms"] / 1e3) if f["gmacs"] and f["ms"] else None
        rows.append([fam, f["calls"], f"{f['ms']:.1f}", f"{f['ms'] / total:.0%}",
                     "" if gflops is None else f"{gflops:.0f}", "" if gflops is None else f"{gflops / rate:.0%}"])
    table = markdown_rows([head, "calls", "ms / step", "share", "achieved GFLOP/s", "of the dense rate"],
                          rows, align="lrrrrr")
    return (f"{table}\n\nstep {result['step_ms']:.0f} ms untimed, {result['step_ms_timed']:.0f} ms with every "
            f"operator timed (sum of operators {result['ops_ms']:.0f} ms); dense rate "
            f"{rate:.0f} GFLOP/s (1024 x 1024 float32 matrix product, same threads). Convolutions and "
            f"matrix products take {result['dense_ms'] / total:.0%} of the step: if every other operator "
            f"took no time, the step would be at most {result['fusion_bound']:.2f}x faster.")
