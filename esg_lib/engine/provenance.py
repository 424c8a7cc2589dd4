"""Provenance of a run: the code's commit, the package versions and the machine it ran on.

Recorded in every run's ``meta.json`` and, condensed to one hardware line, in its committed record;
never part of the run identity (:mod:`.runs`), so a finished run is reused after unrelated commits
and on other machines. :func:`machine_kind` and :func:`machine_name` read those lines back: the
queue's time estimates and ``esg verify``'s same-machine test use them.
"""
from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import torch

ROOT = Path(__file__).resolve().parents[2]


def git_commit() -> dict[str, Any]:
    """The checkout's commit and whether tracked files differ from it. A copy of the code without its
    ``.git`` (rsynced to a batch or GPU machine) names its commit in ``$ESG_SOURCE_COMMIT`` instead;
    ``dirty`` is then unknown (None) and ``source`` says where the commit came from."""
    def git(*args: str, timeout: float = 10) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD") or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    if commit:
        # `git status` may run the notebooks' clean filter (nbstripout) over racily clean files: slow
        # on a busy machine, so it gets longer, and a status that still fails leaves `dirty` unknown
        try:
            return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no",
                                                        timeout=120))}
        except (OSError, subprocess.SubprocessError):
            return {"commit": commit, "dirty": None}
    given = os.environ.get("ESG_SOURCE_COMMIT", "").strip()
    if given:
        return {"commit": given, "dirty": None, "source": "ESG_SOURCE_COMMIT"}
    return {"commit": None, "dirty": None}


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in ("torch", "torchvision", "timm", "scikit-learn", "numpy", "esg-lib"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def cpu_model() -> str | None:
    """The processor's model name (``"AMD EPYC"``, ``"Intel(R) Xeon(R) ..."``): Linux's /proc/cpuinfo,
    else what :func:`platform.processor` says (empty on most Linux systems, hence the file)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return platform.processor() or None


def hardware(device: Any = None) -> dict[str, Any]:
    """The machine of a run (its meta.json). ``cpu_model`` was added on 2026-11-29: CPU training is
    bit-identical only on the same processor model, and records made before name the architecture
    (``x86_64``) only."""
    info = {"platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor() or None, "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    if device is not None and str(device).startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def hardware_text(meta: Mapping[str, Any]) -> str:
    """``"CPU AMD EPYC, 2 cores, 2 threads"`` or ``"NVIDIA H100 x1"`` from a run's meta.json (runs
    recorded before the CPU model was: ``"CPU x86_64, 2 cores, 2 threads"``)."""
    hw = meta.get("hardware") or {}
    if str(meta.get("device", "cpu")).startswith("cuda"):
        return f"{hw.get('gpu', 'GPU')} x{meta.get('world_size', 1)}"
    name = hw.get("cpu_model") or hw.get("processor") or hw.get("machine") or "?"
    return f"CPU {name}, {hw.get('cpu_count', '?')} cores, {meta.get('threads', '?')} threads"


def names_cpu_model(hardware: str | None) -> bool:
    """Whether a CPU record's hardware text names a processor model, not only an architecture
    (records made before 2026-11-29 say ``CPU x86_64``, which any x86 machine matches)."""
    return bool(hardware) and hardware.startswith("CPU") and \
        not re.match(r"CPU (x86_64|amd64|aarch64|arm64|i[3-6]86|\?),", hardware)


def machine_kind(hardware: str | None) -> str:
    """``"gpu"`` or ``"cpu"``: of a record's :func:`hardware_text` (a record without one ran on a CPU)."""
    return "cpu" if not hardware or hardware.startswith("CPU") else "gpu"


def this_machine_kind() -> str:
    """:func:`machine_kind` of the machine running this code."""
    return "gpu" if torch.cuda.is_available() else "cpu"


def machine_name(hardware: str | None) -> str:
    """A record's hardware text without its thread count: ``"CPU x86_64, 2 cores"``,
    ``"NVIDIA H100 80GB HBM3 x1"`` (threads vary between runs of one machine)."""
    text = hardware or "unknown"
    return text.rsplit(", ", 1)[0] if text.startswith("CPU") and text.endswith("threads") else text
