"""Training and evaluation engine: profiles, model factory, ``fit``, evaluation and the run store.

The tables over seeds are built above it, by :mod:`esg_lib.report` (``build_report``).

Notebook use::

    from esg_lib.engine import build_config, fit
    result = fit(build_config("cpu", model="swin-t", seed=0))
    result.metrics["test"]["f1"]
"""
from __future__ import annotations

from .config import PROFILES, TrainConfig, build_config
from .inference import evaluate_checkpoint, predict_images
from .train import FitResult, TrainingDiverged, fit

__all__ = ["PROFILES", "TrainConfig", "build_config", "fit", "FitResult", "TrainingDiverged",
           "evaluate_checkpoint", "predict_images"]
