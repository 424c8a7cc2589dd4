"""Data: the embedded X-SDD, NEU-CLS-64 and any folder dataset; verified, split without leaks, augmented.

Entry point for the engine::

    from esg_lib.data import prepare_data
    bundle = prepare_data("x-sdd", img_size=64, seed=0, protocol="leak-free")
    bundle.train[0]  # (normalised float32 3xHxW, label)

See the README's "Data" section for where data lives, the protocols, the class-name tables and the augmentation.
"""
from __future__ import annotations

from .audit import LeakReport, leak_audit
from .augment import BRIGHTNESS, NOISE_SIGMA, OFFLINE_OPS, ROTATION_ANGLES, augmentation_params
from .dataset import (DataBundle, DataConfig, ResolvedDataset, SplitPlan, TensorImageDataset, channel_stats, load_dataset,
                      plan_data, prepare_data, read_split_manifest, resolve_dataset, write_split_manifest)
from .errors import (CorruptImageError, DataError, DatasetLayoutError, DatasetNotFoundError, DataWarning,
                     DownloadError, ManifestMismatchError, UnsafeArchiveError)
from .fetch import fetch_dataset, safe_extract
from .folder import FolderScan, ImageRecord, scan_folder
from .registry import KNOWN, NEU_CLASSES, X_SDD_CLASSES, DatasetSpec, cache_dir, embedded_dir, fetched_dir
from .split import PROTOCOLS, SPLITS, plan_split
from .verify import VerifyReport, verify_dataset

__all__ = [
    "prepare_data", "plan_data", "DataConfig", "DataBundle", "TensorImageDataset", "SplitPlan", "ResolvedDataset",
    "resolve_dataset", "load_dataset", "channel_stats", "read_split_manifest", "write_split_manifest",
    "leak_audit", "LeakReport", "fetch_dataset", "safe_extract", "scan_folder", "FolderScan", "ImageRecord",
    "verify_dataset", "VerifyReport", "plan_split", "PROTOCOLS", "SPLITS",
    "KNOWN", "DatasetSpec", "X_SDD_CLASSES", "NEU_CLASSES", "embedded_dir", "fetched_dir", "cache_dir",
    "augmentation_params", "OFFLINE_OPS", "ROTATION_ANGLES", "NOISE_SIGMA", "BRIGHTNESS",
    "DataError", "DatasetNotFoundError", "DatasetLayoutError", "ManifestMismatchError", "CorruptImageError",
    "UnsafeArchiveError", "DownloadError", "DataWarning",
]
