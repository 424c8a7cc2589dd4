"""Counts, manifests, leak-free splits, protocols and the leak audit (no image is decoded here)."""
from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from esg_lib.data import (KNOWN, PROTOCOLS, DataError, embedded_dir, leak_audit, plan_data, scan_folder)
from esg_lib.data.folder import ImageRecord
from esg_lib.data.manifest import class_counts, parse_manifest
from esg_lib.data.split import allocate, plan_split, stratified_subset

X_SDD_COUNTS = {"slag inclusion": 238, "red iron": 397, "iron sheet ash": 122, "surface scratch": 134,
                "oxide scale of plate system": 63, "finishing roll printing": 203,
                "oxide scale of temperature system": 203}
NEU_COUNTS = {"cr": 1210, "gg": 296, "in": 775, "pa": 1148, "ps": 797, "rp": 200, "rs": 1589, "sc": 773,
              "sp": 438}
X_SDD_MANIFEST_SHA = "465f3a0aa7c56ac59067ad7ad42ab4f7cc7337874a0ae80af6014002422bc0dd"
NEU_MANIFEST_SHA = "5ff20728c1d6759d06777462f32e2bcbf2339d49344042d2d65d015e9e6c27a9"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("ESG_DATA_DIR", str(tmp_path / "fetched"))
    monkeypatch.setenv("ESG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ESG_NEU_CLS_64", raising=False)


@pytest.fixture(scope="module")
def xsdd_plans():
    """One plan per protocol and seed for the embedded X-SDD (hashing only: fast)."""
    return {(p, s): plan_data("x-sdd", protocol=p, seed=s) for p in PROTOCOLS for s in (0, 1)}


def _sources(plan, split):
    return {plan.records[it.record].sha256 for it in plan.items if it.split == split}


# ------------------------------------------------------------------ manifests and counts
def test_committed_manifests_are_the_published_ones():
    for name, sha in (("x-sdd", X_SDD_MANIFEST_SHA), ("neu-cls-64", NEU_MANIFEST_SHA)):
        text = KNOWN[name].manifest_text()
        assert hashlib.sha256(text.encode()).hexdigest() == sha
    assert dict(class_counts(parse_manifest(KNOWN["x-sdd"].manifest_text()))) == X_SDD_COUNTS
    assert dict(class_counts(parse_manifest(KNOWN["neu-cls-64"].manifest_text()))) == NEU_COUNTS
    assert sum(NEU_COUNTS.values()) == 7226


def test_embedded_x_sdd_counts_and_twins():
    scan = scan_folder(embedded_dir())
    assert dict(scan.counts()) == X_SDD_COUNTS
    assert scan.content_sha256() == X_SDD_MANIFEST_SHA
    twins = scan.twins()
    assert len(twins) == 9 and all(len(g) == 2 for g in twins)
    assert all(r.startswith("red iron/") for g in twins for r in g)
    assert ["red iron/2207.jpg", "red iron/2212.jpg"] in twins
    assert (embedded_dir() / "LICENSE").is_file() and (embedded_dir() / "NOTICE").is_file()


def test_class_names_tables():
    x = KNOWN["x-sdd"]
    assert x.class_names == sorted(X_SDD_COUNTS)
    assert x.class_table["red iron"] == "red tin"
    assert x.class_table["iron sheet ash"] == "tin grey"
    neu = KNOWN["neu-cls-64"].class_table
    assert neu == {"cr": "cracks", "gg": "pits", "in": "inclusion", "pa": "patches", "ps": "pitting surface",
                   "rp": "rust", "rs": "scale", "sc": "scratches", "sp": "oil stains"}


# ------------------------------------------------------------------ leak-free split
@pytest.mark.parametrize("protocol", ["leak-free", "augment-then-group-split"])
def test_splits_disjoint_by_content_and_twins_together(xsdd_plans, protocol):
    plan = xsdd_plans[(protocol, 0)]
    train, val, test = (_sources(plan, s) for s in ("train", "val", "test"))
    assert not (train & test) and not (train & val) and not (val & test)
    side = {}
    for it in plan.items:
        side.setdefault(plan.records[it.record].rel, set()).add(it.split)
    for a, b in plan.scan.twins():
        assert side[a] == side[b] and len(side[a]) == 1


def test_stratified_within_one_image_per_class(xsdd_plans):
    plan = xsdd_plans[("leak-free", 0)]
    originals = [it for it in plan.items if it.copy == 0]
    per = Counter((plan.records[it.record].class_name, it.split) for it in originals)
    for cls, n in X_SDD_COUNTS.items():
        n_test = per[(cls, "test")]
        n_val = per[(cls, "val")]
        assert abs(n_test - 0.2 * n) <= 1, (cls, n_test)
        assert abs(n_val - 0.1 * (n - n_test)) <= 1, (cls, n_val)
        assert per[(cls, "train")] + n_val + n_test == n


def test_same_seed_same_split_other_seed_other_split(xsdd_plans):
    again = plan_data("x-sdd", protocol="leak-free", seed=0)
    assert again.rows() == xsdd_plans[("leak-free", 0)].rows()
    t0 = _sources(xsdd_plans[("leak-free", 0)], "test")
    t1 = _sources(xsdd_plans[("leak-free", 1)], "test")
    assert t0 != t1 and len(t0 ^ t1) > 100


def test_group_split_uses_the_leak_free_source_split(xsdd_plans):
    for seed in (0, 1):
        for split in ("train", "val", "test"):
            assert (_sources(xsdd_plans[("leak-free", seed)], split)
                    == _sources(xsdd_plans[("augment-then-group-split", seed)], split))


def test_validation_never_overlaps_test(xsdd_plans):
    for (protocol, seed), plan in xsdd_plans.items():
        val = {(it.record, it.copy) for it in plan.items if it.split == "val"}
        test = {(it.record, it.copy) for it in plan.items if it.split == "test"}
        assert val and test and not (val & test)
        if protocol != "augment-then-split":
            assert not (_sources(plan, "val") & _sources(plan, "test"))


# ------------------------------------------------------------------ protocols and the leak audit
def test_protocol_sizes(xsdd_plans):
    for protocol in ("augment-then-split", "augment-then-group-split"):
        assert len(xsdd_plans[(protocol, 0)].items) == 5440  # the paper's X-SDD x4
    lf = xsdd_plans[("leak-free", 0)]
    n = Counter(it.split for it in lf.items if it.copy == 0)
    assert n["train"] + n["val"] + n["test"] == 1360
    assert Counter(it.split for it in lf.items) == {"train": 4 * n["train"], "val": n["val"], "test": n["test"]}


def test_leak_audit_per_protocol(xsdd_plans):
    for seed in (0, 1):
        assert leak_audit(xsdd_plans[("leak-free", seed)]).clean
        assert leak_audit(xsdd_plans[("augment-then-group-split", seed)]).test_leaked == 0
        leaky = leak_audit(xsdd_plans[("augment-then-split", seed)])
        assert leaky.test_leaked > 0.5 * leaky.test_items  # ~98 %: almost every test photo is also trained on


def test_leak_audit_catches_a_twin_across_splits():
    rows = [{"split": "train", "sha256": "a"}, {"split": "test", "sha256": "a"}, {"split": "test", "sha256": "b"}]
    assert leak_audit(rows).test_leaked == 1


def test_bad_split_arguments():
    with pytest.raises(DataError, match="unknown protocol"):
        plan_data("x-sdd", protocol="split-then-hope")
    with pytest.raises(DataError, match="test_fraction"):
        plan_data("x-sdd", test_fraction=1.2)
    with pytest.raises(DataError, match="seed"):
        plan_data("x-sdd", seed=-1)
    with pytest.raises(DataError, match="max_images"):
        plan_data("x-sdd", max_images=3)


# ------------------------------------------------------------------ the allocator and subsets
def _records(counts, twins_per_class=0):
    out = []
    for label, (cls, n) in enumerate(counts.items()):
        for i in range(n):
            sha = f"{cls}-{i // 2 if i < 2 * twins_per_class else i + 10_000}"
            out.append(ImageRecord(f"{cls}/{i}.png", None, label, cls, sha))
    return out


def test_allocate_hits_targets_with_pairs():
    groups = {f"g{i}": ("a", 2 if i < 10 else 1) for i in range(40)}  # 50 items
    chosen = allocate(groups, 0.2, seed=3, purpose="test")
    assert sum(groups[g][1] for g in chosen) == 10


def test_split_of_synthetic_records_is_exact_and_keeps_twins():
    records = _records({"a": 50, "b": 31, "c": 7}, twins_per_class=3)
    items = plan_split(records, seed=5)
    where = {}
    for it in items:
        where.setdefault(records[it.record].sha256, set()).add(it.split)
    assert all(len(s) == 1 for s in where.values())
    per = Counter((records[it.record].class_name, it.split) for it in items if it.copy == 0)
    for cls, n in {"a": 50, "b": 31, "c": 7}.items():
        assert abs(per[(cls, "test")] - 0.2 * n) <= 1


def test_stratified_subset_is_seed_free_and_keeps_twins():
    scan = scan_folder(embedded_dir())
    idx = stratified_subset(scan.records, 100)
    chosen = [scan.records[i] for i in idx]
    counts = Counter(r.class_name for r in chosen)
    assert sum(counts.values()) == 100 and set(counts) == set(X_SDD_COUNTS) and min(counts.values()) >= 5
    shas = {r.sha256 for r in chosen}
    assert all(r.sha256 not in shas for r in scan.records if r not in chosen)  # twins come together
    assert idx == stratified_subset(scan.records, 100)


# ------------------------------------------------------------------ NEU-CLS-64 from ../shared
def test_neu_counts_twins_and_split(shared_datasets, monkeypatch):
    monkeypatch.setenv("ESG_NEU_CLS_64", str(shared_datasets / "neu-cls-64"))
    plan = plan_data("neu-cls-64", protocol="augment-then-split", seed=0)
    assert plan.dataset.origin == "$ESG_NEU_CLS_64"
    assert dict(plan.scan.counts()) == NEU_COUNTS
    assert len(plan.items) == 28904  # the paper's NEU-CLS-64 x4
    assert leak_audit(plan).test_leaked > 0
    twins = plan.scan.twins()
    assert len(twins) == 7 and ["pa/371.jpg", "pa/387.jpg"] in twins
    lf = plan_data("neu-cls-64", seed=0)
    assert leak_audit(lf).clean
    side = {lf.records[it.record].rel: it.split for it in lf.items}
    assert all(side[a] == side[b] for a, b in twins)
