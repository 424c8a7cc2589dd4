"""Shared test fixtures. Area-specific fixtures live in the area's own test files."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"
SHARED_DATASETS = SHARED / "datasets"

# Two cores: keep each test process from oversubscribing them.
torch.set_num_threads(int(os.environ.get("ESG_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """``../shared/datasets`` or a skip with the reason (a user's fresh clone has no shared/)."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"{SHARED_DATASETS} is absent (only CI and developer machines have it)")
    return SHARED_DATASETS
