"""Run identities never change: a handful of committed `cpu` runs, rebuilt from their profile, model,
dataset, protocol and seed, hash to the run ids their records (and their folders) carry.

The ids are written here as well as read from the records, so neither a changed record nor a changed
hashing rule can slip through: a refactor of the config, the data identity or the model factory that
moved any of these ids would orphan every committed run. X-SDD only (embedded; NEU-CLS-64 is never
committed), seed 0's leak-free split, decoded once and shared by the four models.
"""
from __future__ import annotations

import json

import pytest

from conftest import PROJECT_ROOT
from esg_lib.engine import runs as R
from esg_lib.engine.config import build_config
from esg_lib.engine.models import resolve_model
from esg_lib.engine.train import matching_bundle, prepare_bundle

# record file name -> its run id (sha256 of the run identity), as committed
KNOWN_RUNS = {
    "x-sdd__resnet18__s0-0b83587ac6.json":
        "0b83587ac628c3f562b11f90657736db931d6b93618b9e157528cf55696e2160",
    "x-sdd__mobilenetv3__s0-e08b35bd00.json":
        "e08b35bd007661411bb7f49d0e37dfd1992b03bfbde5350735b7e0a2685f39a5",
    "x-sdd__esg-abl1__s0-f7cea79f58.json":
        "f7cea79f581cb8e74e1d95a689c5da91599342ed6ed7501cca3ba072b3c1a899",
    "x-sdd__esg-convnext__s0-f04c28eb8b.json":
        "f04c28eb8bc85e2f732cc437994d4116b80d95ec40e555436364bf19f70b81df",
}


@pytest.fixture(scope="module")
def seed0_bundle():
    cfg = build_config("cpu", model="resnet18", seed=0, dataset="x-sdd", protocol="leak-free", progress=False)
    return prepare_bundle(cfg)


@pytest.mark.parametrize("name", sorted(KNOWN_RUNS))
def test_a_committed_run_id_is_rebuilt_from_its_config_and_data(name: str, seed0_bundle) -> None:
    record = json.loads((PROJECT_ROOT / "results" / "cpu" / "runs" / name).read_text())
    assert record["run_id"] == KNOWN_RUNS[name], "the committed record changed"
    assert (record["profile"], record["dataset"], record["protocol"], record["seed"]) == ("cpu", "x-sdd",
                                                                                         "leak-free", 0)
    cfg = build_config(record["profile"], model=record["model"], seed=record["seed"], dataset=record["dataset"],
                       protocol=record["protocol"], progress=False)
    bundle = matching_bundle(cfg, seed0_bundle)          # the row's own online augmentation
    spec = resolve_model(cfg.model, cfg.profile)
    assert R.run_hash(R.run_identity(cfg, spec, bundle.identity)) == KNOWN_RUNS[name]
    assert R.config_variant(cfg.to_dict()) == record["variant"]
