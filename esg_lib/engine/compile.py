"""``torch.compile`` for training, with a clear error where it cannot work (``--set compile=true``).

Inductor's CPU backend writes C++ and builds it with the machine's C++ compiler (``$CXX``, else
``g++``/``c++``); without one the first step would fail deep inside inductor, so
:func:`compile_model` checks first and raises a :class:`~esg_lib.errors.UserError`. A compiled model
wraps the same module (same parameters and state-dict keys): a compiled run shares its eager twin's
run identity, and its numbers are equal within float tolerance, not bit-identical. The measurements
live in :mod:`esg_lib.bench.compiled`.
"""
from __future__ import annotations

import os
import shutil

import torch
from torch import nn

from esg_lib.errors import UserError

__all__ = ["cxx_compiler", "compile_model"]


def cxx_compiler() -> str | None:
    """Path of the C++ compiler inductor would use, or None."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def compile_model(model: nn.Module, device: str | torch.device = "cpu") -> nn.Module:
    """``torch.compile(model)`` (inductor); on CPU, first checks that a C++ compiler exists."""
    if torch.device(device).type == "cpu" and cxx_compiler() is None:
        raise UserError("torch.compile on CPU needs a C++ compiler (g++ or $CXX), none found: install one "
                        "(Debian/Ubuntu: apt-get install g++) or train without compile (the default)")
    return torch.compile(model)
