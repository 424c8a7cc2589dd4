"""``torch.compile`` for CPU training and inference, with a clear error where it cannot work.

Inductor's CPU backend writes C++ and builds it with the machine's C++ compiler (``$CXX``, else
``g++``/``c++``), on the first call of each new input shape: minutes for ESG-ConvNeXt on 2 cores
(docs/performance.md measures it). Without a compiler the first step would fail deep inside inductor;
:func:`compile_model` checks first and raises a :class:`~esg_lib.errors.UserError` instead. ``make
install`` warns when no compiler is found (eager training does not need one).

A compiled model is the same module (same parameters, same state-dict keys: ``torch.compile`` wraps,
it does not rewrite), so a compiled run shares its eager twin's run identity (``compile`` is a
runtime field of :class:`~esg_lib.engine.config.TrainConfig`). Its numbers are equal within float
tolerance, not bit-identical: fused kernels sum in another order.
"""
from __future__ import annotations

import os
import shutil

import torch
from torch import nn

from esg_lib.engine.compile import compile_model, cxx_compiler  # noqa: F401  (re-exported)

__all__ = ["cxx_compiler", "compile_model", "measure_compile"]


def measure_compile(model_name: str = "esg_convnext_atto", img_size: int = 64, batch_size: int = 64,
                    steps: int = 3, num_classes: int = 9) -> dict[str, float]:
    """Seconds per training step (forward, cross-entropy, backward, AdamW) eager, then the compile +
    first compiled step, then compiled and eager again (eager twice: the load may drift). One process,
    one model (the compiled module wraps the eager one). ``python -m esg_lib.bench.compiled``."""
    import time

    import timm

    torch.manual_seed(0)
    model = timm.create_model(model_name, num_classes=num_classes).train()
    x, y = torch.randn(batch_size, 3, img_size, img_size), torch.randint(0, num_classes, (batch_size,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(net: nn.Module) -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()

    def per_step(net: nn.Module, n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            step(net)
        return (time.perf_counter() - t0) / n

    per_step(model, 2)  # warm-up
    out = {"eager_step_s": per_step(model, steps)}
    compiled = compile_model(model)
    out["compile_and_first_step_s"] = per_step(compiled, 1)
    out["second_compiled_step_s"] = per_step(compiled, 1)
    out["compiled_step_s"] = per_step(compiled, steps)
    out["eager_step_again_s"] = per_step(model, steps)
    eager = (out["eager_step_s"] + out["eager_step_again_s"]) / 2
    saved = eager - out["compiled_step_s"]
    out["speedup"] = eager / out["compiled_step_s"]
    out["break_even_steps"] = out["compile_and_first_step_s"] / saved if saved > 0 else float("inf")
    out["threads"] = torch.get_num_threads()
    return out


if __name__ == "__main__":
    import json
    import sys

    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else torch.get_num_threads())
    print(json.dumps(measure_compile(), indent=1))
