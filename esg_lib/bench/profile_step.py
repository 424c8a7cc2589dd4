"""Where one training step's time goes, by operator (``esg benchmark --profile-step``).

Runs a few untimed warm-up steps, then ``steps`` training steps (forward, cross-entropy, backward,
``AdamW.step()``) of one model under ``torch.profiler`` (CPU activities), and groups the self time of
every ATen operator into the families the issue asks about: convolution forward and backward
(depthwise apart from dense), BatchNorm, GroupNorm/LayerNorm, PReLU, the elementwise chains of
SimAM/GRN/GAM gates, copies and layout changes, the optimizer. Self time (not total) so nested calls
are not counted twice. Optionally compiled: then inductor's fused kernels show up as their own rows.
"""
from __future__ import annotations

import contextlib
import re
from typing import Any, Callable, ContextManager

import torch

from esg_lib.markdown import markdown_rows

__all__ = ["training_step", "profile_training_step", "operator_family", "format_profile"]

# First match wins: (family, regular expression on the ATen/autograd op name).
_FAMILIES: tuple[tuple[str, str], ...] = (
    ("depthwise conv backward", r"^__depthwise__backward$"),
    ("depthwise conv forward", r"^__depthwise__forward$"),
    ("conv backward (dense)", r"convolution_backward|mkldnn_convolution_backward|slow_conv2d_backward"
                              r"|thnn_conv2d_backward|conv_depthwise2d_backward"),
    ("conv forward (dense)", r"mkldnn_convolution|_slow_conv2d_forward|thnn_conv2d|_convolution|conv2d|conv1d"
                             r"|^aten::convolution$"),
    ("matmul / linear", r"^aten::(addmm|mm|bmm|matmul|linear)$"),
    ("BatchNorm", r"batch_norm"),
    ("GroupNorm / LayerNorm", r"group_norm|layer_norm"),
    ("PReLU", r"prelu"),
    ("activations (GELU, ReLU, sigmoid)", r"gelu|relu|sigmoid|silu|hardswish|hardsigmoid|threshold"),
    ("reductions (sum, mean, var, norm)", r"^aten::(sum|mean|var|var_mean|norm|linalg_vector_norm|amax|std)"),
    ("elementwise (mul, add, div, sub, pow, sqrt...)",
     r"^aten::(mul|add|div|sub|pow|sqrt|rsqrt|reciprocal|addcmul|addcdiv|neg|exp|where|clamp|lerp|maximum|"
     r"fill|zero|square|abs|sign)_?$"),
    ("copies and layout (copy_, contiguous, cat, pad)", r"copy|contiguous|clone|cat|constant_pad|to_copy|_to_dense"
                                                        r"|permute|transpose|as_strided|empty|resize|fill_"),
    ("pooling", r"pool"),
    ("loss", r"cross_entropy|log_softmax|nll_loss"),
    ("optimizer (AdamW)", r"_foreach|adam|Optimizer"),
    ("compiled kernels (inductor)", r"^(Torch-Compiled Region|CompiledFunction|kernel|cpp_fused|graph_)"),
)


def operator_family(name: str, depthwise: bool = False) -> str:
    """The family an operator name belongs to (``depthwise`` marks a convolution whose input shapes say
    ``groups == channels``)."""
    if depthwise:
        name = "__depthwise__backward" if "backward" in name else "__depthwise__forward"
    for family, pattern in _FAMILIES:
        if re.search(pattern, name):
            return family
    return "other"


def _is_depthwise_conv(name: str, shapes: list[Any]) -> bool:
    """A convolution's recorded input shapes: (input, weight, ...) forward, (grad_out, input, weight, ...)
    backward. Depthwise when the weight has one input channel and as many filters as input channels."""
    if "conv" not in name or not shapes:
        return False
    w_index = 2 if "backward" in name else 1
    try:
        x, w = shapes[w_index - 1], shapes[w_index]
    except IndexError:
        return False
    return len(w) >= 3 and len(x) >= 3 and w[1] == 1 and w[0] == x[1] and x[1] > 1


def _inside_optimizer(event: Any) -> bool:
    while event is not None:
        if event.name.startswith("Optimizer."):
            return True
        event = event.cpu_parent
    return False


def training_step(model_name: str, img_size: int, batch_size: int, num_classes: int = 9,
                  compile: bool = False,
                  optimizer_phase: Callable[[], ContextManager[Any]] = contextlib.nullcontext) -> Callable[[], None]:
    """One training step of a freshly built, seeded model on a fixed random batch, as a callable:
    forward, cross-entropy, backward, then ``AdamW.step()`` inside ``optimizer_phase()`` (a profiler
    can tell the optimizer's operators from the model's there)."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model(model_name, num_classes=num_classes).train()
    fwd = torch.compile(model) if compile else model
    x = torch.randn(batch_size, 3, img_size, img_size)
    y = torch.randint(0, num_classes, (batch_size,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(fwd(x), y).backward()
        with optimizer_phase():
            optimizer.step()

    return step


def profile_training_step(model_name: str, img_size: int = 64, batch_size: int = 64, steps: int = 3,
                          warmup: int = 2, compile: bool = False, num_classes: int = 9) -> dict[str, Any]:
    """Profile ``steps`` training steps; returns per-operator and per-family self CPU milliseconds per step."""
    from torch.profiler import ProfilerActivity, profile

    step = training_step(model_name, img_size, batch_size, num_classes, compile=compile)
    for _ in range(max(warmup, 1)):
        step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    ops: dict[str, float] = {}
    families: dict[str, float] = {}
    for event in prof.events():
        self_ms = event.self_cpu_time_total / 1e3 / steps
        if self_ms <= 0:
            continue
        if _inside_optimizer(event):  # AdamW's sqrt/lerp/copy_ are the optimizer's, not the model's
            fam, key = "optimizer (AdamW)", f"AdamW: {event.name}"
        else:
            fam = operator_family(event.name, _is_depthwise_conv(event.name, list(event.input_shapes or [])))
            key = event.name
        ops[key] = ops.get(key, 0.0) + self_ms
        families[fam] = families.get(fam, 0.0) + self_ms
    total = sum(families.values())
    return {"model": model_name, "img_size": img_size, "batch_size": batch_size, "steps": steps,
            "compile": compile, "threads": torch.get_num_threads(), "step_self_ms": total,
            "families_ms": dict(sorted(families.items(), key=lambda kv: -kv[1])),
            "operators_ms": dict(sorted(ops.items(), key=lambda kv: -kv[1])[:25])}


def format_profile(result: dict[str, Any], top: int = 15) -> str:
    total = result["step_self_ms"] or 1.0
    family = (f"family ({result['model']}, {result['img_size']} px, batch {result['batch_size']}, "
              f"{'compiled' if result['compile'] else 'eager'}, {result['threads']} thread(s))")
    families = markdown_rows([family, "ms / step", "share"],
                             ([fam, f"{ms:.1f}", f"{ms / total:.0%}"] for fam, ms in result["families_ms"].items()),
                             align="lrr")
    operators = markdown_rows(["operator (self time)", "ms / step", "share"],
                              ([f"`{op}`", f"{ms:.1f}", f"{ms / total:.0%}"]
                               for op, ms in list(result["operators_ms"].items())[:top]), align="lrr")
    return families + "\n\n" + operators
