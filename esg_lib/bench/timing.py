"""Timing helpers shared by the model benchmark and the module profile: a wall-clock timer that
synchronises CUDA, summary statistics (median and spread) and the environment record."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import time
from typing import Any, Callable, Sequence

import torch

__all__ = ["sync", "time_call", "summarize", "environment", "cpu_model"]


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_call(fn: Callable[[], Any], device: torch.device | str = "cpu", iters: int = 1) -> float:
    """Wall-clock seconds of ``iters`` calls of ``fn`` (CUDA synchronised before and after), per call."""
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - start) / iters


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Median and spread of repeated measurements: min, max and the relative spread (max-min)/median."""
    vals = sorted(float(v) for v in values)
    med = statistics.median(vals)
    return {"median": med, "min": vals[0], "max": vals[-1], "n": len(vals),
            "rel_spread": (vals[-1] - vals[0]) / med if med else 0.0}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """What a reader needs to compare numbers: versions, CPU, threads, device, load."""
    import timm

    import esg_lib

    env: dict[str, Any] = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "esg_lib": esg_lib.__version__,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "threads": threads if threads is not None else torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "device": device,
    }
    try:
        env["loadavg_start"] = list(os.getloadavg())
    except OSError:
        env["loadavg_start"] = None
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
    return env
