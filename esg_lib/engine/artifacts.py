"""The light part of a run folder, committed beside its record so that figures rebuild without training.

A run folder (``runs/<profile>/<dataset>/<model>/<run>/``) holds checkpoints (tens of MB, never
committed) and small files. :func:`export_artifacts` copies the small files that the tables and
figures read into ``results/<profile>/artifacts/<dataset>/<model>/<run>/``, the same layout, so that
a fresh clone can point the notebooks' layer at that folder instead of ``runs/``:

- ``config.json``, ``meta.json``, ``metrics.json``, ``log.jsonl`` (curves), ``fps.json``;
- ``test_predictions.csv`` (with image paths relative to the dataset root), ``test_confusion.csv``,
  ``test_report.json``;
- ``test_features.npz`` in float16 (t-SNE), for the seeds in :data:`FEATURE_SEEDS` only;
- ``gradcam.npz`` (Fig. 13's maps, :mod:`esg_lib.engine.gradcam`) when the run folder has one.

A few hundred kB per run; :func:`artifacts_size` adds them up for the README.

**Reruns.** The 78 ``cpu`` runs of 2026-11 kept no run folder. A later retraining of one of them
(``esg verify --keep``: same run id, another processor, so close but not bit-identical) keeps its light
files apart, under ``results/<profile>/reruns/<dataset>/<model>/<run>/`` with a ``rerun.json`` saying
which record it reruns, on which hardware and by how much its test metrics differ
(:func:`export_rerun`). Tables never read them (a table's numbers are the records'); figures that need
a run's files (curves, confusion matrices, t-SNE features) may, and say so in their titles.
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

# where the copies go is the store's (re-exported for the engine's callers)
from esg_lib.store import RERUN_FILE, artifact_folder, artifacts_dir, rerun_folder, reruns_dir  # noqa: F401

from .config import ProfileRef

CAM_FILE = "gradcam.npz"   # a run's Grad-CAM maps of Fig. 13's images (written by esg_lib.engine.gradcam)
SMALL_FILES = ("config.json", "meta.json", "metrics.json", "log.jsonl", "fps.json", "test_confusion.csv",
               "test_report.json", CAM_FILE)
# The t-SNE figure (Fig. 12) plots one seed per model: its features are committed, the others are not.
FEATURE_SEEDS = (0,)


def _relative_predictions(src: Path, dest: Path) -> None:
    """Copy a predictions CSV with each image path cut to ``<class>/<file>`` (machine-independent)."""
    with open(src, newline="") as fh_in, open(dest, "w", newline="") as fh_out:
        reader, writer = csv.reader(fh_in), csv.writer(fh_out)
        header = next(reader)
        writer.writerow(header)
        at = header.index("path") if "path" in header else None
        for row in reader:
            if at is not None and row[at]:
                row[at] = "/".join(Path(row[at]).parts[-2:])
            writer.writerow(row)


def export_artifacts(folder: Path, profile_results: str | Path, seed: int | None = None) -> Path:
    """Copy a finished run folder's light files to ``results/<profile>/artifacts/...``
    (:func:`artifact_folder`; ``profile_results`` is ``results/<profile>``); returns that folder.
    Features only for the seeds of :data:`FEATURE_SEEDS`."""
    return _copy_light_files(folder, artifact_folder(folder, profile_results), seed)


def export_rerun(folder: Path, profile_results: str | Path, seed: int | None, verdict: Mapping[str, Any]) -> Path:
    """Copy a finished rerun's light files to :func:`rerun_folder` with ``rerun.json`` (``verdict``:
    the record it reruns, the hardware, the metric differences); returns that folder."""
    dest = _copy_light_files(folder, rerun_folder(folder, profile_results), seed)
    (dest / RERUN_FILE).write_text(json.dumps(dict(verdict), indent=2, sort_keys=True) + "\n")
    return dest


def _copy_light_files(folder: Path, dest: Path, seed: int | None) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in SMALL_FILES:
        if (folder / name).is_file():
            shutil.copyfile(folder / name, dest / name)
    if (folder / "test_predictions.csv").is_file():
        _relative_predictions(folder / "test_predictions.csv", dest / "test_predictions.csv")
    features = folder / "test_features.npz"
    if features.is_file() and seed in FEATURE_SEEDS:
        with np.load(features) as data:
            np.savez_compressed(dest / "test_features.npz", features=data["features"].astype(np.float16),
                                labels=data["labels"], preds=data["preds"])
    return dest


def artifacts_size(results: str | Path, profiles: Iterable[ProfileRef]) -> int:
    """Bytes of committed artifacts of these profiles."""
    return sum(p.stat().st_size for prof in profiles for p in artifacts_dir(results, prof).rglob("*") if p.is_file())
