"""Inference speed of every model-table row, measured in one quiet pass (``esg fps``).

Why a separate pass: the FPS a training run records is measured right after training, with that
run's thread count, possibly while another run trains beside it. Speed depends on the architecture,
the image size, the device and the threads -- not on the trained weights -- so the tables' FPS column
comes from one pass over freshly built models on an otherwise idle machine, same protocol for every
row (:func:`esg_lib.engine.evaluate.measure_fps`: batch 1, warm-up, timed iterations), median of
``repeats`` timings. Written to ``results/<profile>/fps.json`` with the command, commit, date and
hardware.
"""
from __future__ import annotations

import datetime as _dt
import statistics
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from . import provenance as P
from .config import ABLATION, COMPARISON, ProfileRef, get_profile, profile_name


def measure_rows(profile: ProfileRef, keys: Sequence[str] = (*COMPARISON, *ABLATION[:4]), threads: int | None = None,
                 warmup: int = 5, iters: int = 20, repeats: int = 5, num_classes: int = 7,
                 progress: bool = True) -> dict[str, Any]:
    """``{"models": {key: {fps, timm_name, ...}}, "protocol": ..., "hardware": ...}`` on the CPU."""
    from .evaluate import measure_fps
    from .models import build_model, resolve_model

    prof = get_profile(profile)
    img_size = int(prof.defaults["img_size"])
    if threads:
        torch.set_num_threads(threads)
    device = torch.device("cpu")
    models: dict[str, Any] = {}
    for key in keys:
        spec = resolve_model(key, prof)
        torch.manual_seed(0)
        model = build_model(spec, num_classes, img_size)
        with torch.inference_mode():
            times = [measure_fps(model, img_size, device, 1, warmup if i == 0 else 1, iters, amp=False)
                     for i in range(repeats)]
        fps = statistics.median(t["fps"] for t in times)
        models[key] = {"label": spec.label, "timm_name": spec.name, "fps": fps,
                       "fps_all": [t["fps"] for t in times]}
        if progress:
            print(f"{key:18s} {spec.name:30s} {fps:8.1f} images/s", flush=True)
    return {"profile": prof.name, "models": models,
            "protocol": {"img_size": img_size, "batch_size": 1, "warmup": warmup, "iters": iters,
                         "repeats": repeats, "statistic": "median", "threads": torch.get_num_threads(),
                         "device": "cpu", "weights": "random init (speed does not depend on them)"},
            "hardware": P.hardware_text({"hardware": P.hardware(), "threads": torch.get_num_threads(),
                                         "device": "cpu"}),
            "git": P.git_commit(), "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)}


def fps_path(profile: ProfileRef, results: str | Path = "results") -> Path:
    return Path(results) / profile_name(profile) / "fps.json"


def write_fps(profile: ProfileRef, results: str | Path = "results", **kwargs: Any) -> Path:
    from .runs import write_json

    prof = get_profile(profile)
    data = measure_rows(prof, **kwargs)
    path = fps_path(prof, results)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, data)
    return path


def load_fps(profile: ProfileRef, results: str | Path = "results") -> dict[str, Any] | None:
    from .runs import read_json

    return read_json(fps_path(profile, results))
