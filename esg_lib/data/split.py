"""Seeded, stratified, leak-free splits and the three protocols.

What the paper says: "the training and test sets are divided in a ratio of 8:2; the training set is
augmented", yet it reports whole datasets grown x4 (NEU-CLS-64 7226 -> 28904, X-SDD 1360 -> 5440),
which suggests augmenting *before* splitting (copies of one photo on both sides: a leak). No
validation set, no seeds. What we do:

- ``leak-free`` (default): split the source images 8:2 (stratified), carve validation (10 % of train)
  from train, then augment the training part only. Validation and test hold original images.
- ``augment-then-split``: the paper's inferred protocol. Expand every image x(1+copies) first, then
  split the expanded set item by item (stratified). Reproduces the leak on purpose.
- ``augment-then-group-split``: the same source split as ``leak-free`` for that seed, then every part
  is expanded x(1+copies): the paper's augmented test distribution without the leak. Comparing it with
  ``augment-then-split`` isolates the leak's effect; comparing it with ``leak-free`` isolates the
  effect of scoring on augmented copies.

Byte-identical files (X-SDD has 9 pairs, NEU-CLS-64 7) form one group and always land on one side.

Why not sklearn's splitters: ``train_test_split(stratify=...)`` cannot keep groups together and
``StratifiedGroupKFold`` only gives 1/k folds with approximate class balance. With groups of one or two
files, a per-class greedy fill of seeded-shuffled groups hits each class's target count exactly (or
within one image), which is what the tests check. The seed drives everything, so every model in a
comparison gets the very same split for a seed, and other seeds give other splits.
"""
from __future__ import annotations

import math
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Hashable, Mapping, Sequence

import numpy as np

from .errors import DataError
from .folder import ImageRecord

# The protocols, each adding one effect to the one before it: scoring on augmented copies, then the
# leak. The protocol table, the leak audit and every command list them in this order.
PROTOCOLS: tuple[str, ...] = ("leak-free", "augment-then-group-split", "augment-then-split")
SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class PlannedItem:
    """One item of a split: a source image (``record``) and which copy of it (0 = the original)."""

    record: int  # index into the record list the plan was made from
    copy: int
    split: str


def _rng(seed: int, *purpose: str) -> np.random.Generator:
    # crc32 of the purpose and class name keeps streams independent of class order and of each other
    return np.random.default_rng([seed, *(zlib.crc32(p.encode("utf-8")) for p in purpose)])


def _target(fraction: float, n: int) -> int:
    return int(math.floor(fraction * n + 0.5))


def allocate(
    groups: Mapping[Hashable, tuple[str, int]],
    fraction: float,
    seed: int,
    purpose: str,
) -> set:
    """Pick groups holding ``fraction`` of the items of each class.

    ``groups`` maps a group id to ``(class name, number of items)``. Per class, groups are shuffled
    with a seeded generator and taken greedily while they fit the target ``round(fraction * n_c)``;
    with groups of one or two items the result is exact or one item short.
    """
    by_class: dict[str, list[Hashable]] = defaultdict(list)
    for gid, (cls, _) in groups.items():
        by_class[cls].append(gid)
    chosen: set = set()
    for cls in sorted(by_class):
        gids = sorted(by_class[cls], key=str)
        total = sum(groups[g][1] for g in gids)
        target = _target(fraction, total)
        order = _rng(seed, purpose, cls).permutation(len(gids))
        taken = 0
        for i in order:
            if taken >= target:
                break
            size = groups[gids[i]][1]
            if taken + size <= target:
                chosen.add(gids[i])
                taken += size
    return chosen


def stratified_subset(records: Sequence[ImageRecord], max_images: int, min_per_class: int = 5) -> list[int]:
    """Indices of a class-stratified subset of about ``max_images`` source images (twins kept together).

    Each class gets a share proportional to its size (largest remainder), at least ``min_per_class``
    (so the test part of a small subset still sees every class). The subset does not depend on the
    split seed: seeds then vary the split of the same images.
    """
    counts = Counter(r.class_name for r in records)
    classes = sorted(counts)
    if max_images < len(classes):
        raise DataError(f"max_images={max_images} is smaller than the number of classes ({len(classes)})")
    if max_images >= len(records):
        return list(range(len(records)))
    floor_min = {c: min(counts[c], min_per_class) for c in classes}
    budget = max(max_images - sum(floor_min.values()), 0)
    rest = {c: counts[c] - floor_min[c] for c in classes}
    rest_total = sum(rest.values()) or 1
    raw = {c: budget * rest[c] / rest_total for c in classes}
    quota = {c: floor_min[c] + int(raw[c]) for c in classes}
    left = max_images - sum(quota.values())
    for c in sorted(classes, key=lambda c: (-(raw[c] - int(raw[c])), c))[: max(left, 0)]:
        quota[c] += 1
    groups: dict[str, tuple[str, int]] = {}
    members: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        members[r.sha256].append(i)
        groups.setdefault(r.sha256, (r.class_name, 0))
        groups[r.sha256] = (groups[r.sha256][0], groups[r.sha256][1] + 1)
    chosen: list[int] = []
    for c in classes:
        sub = {g: v for g, v in groups.items() if v[0] == c}
        frac = quota[c] / counts[c]
        for g in allocate(sub, frac, 0, "subset"):
            chosen.extend(members[g])
    return sorted(chosen)


def plan_split(
    records: Sequence[ImageRecord],
    *,
    protocol: str = "leak-free",
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    augment_copies: int = 3,
) -> list[PlannedItem]:
    """Assign every source image (and its augmented copies) to train, val or test.

    Returns items sorted by split, then record, then copy. See the module docstring for the protocols.
    """
    check_split_args(protocol, seed, val_fraction, test_fraction, augment_copies)
    copies = range(augment_copies + 1)
    if protocol == "augment-then-split":
        items = {(i, k): (records[i].class_name, 1) for i in range(len(records)) for k in copies}
        test = allocate(items, test_fraction, seed, "test")
        val = allocate({g: v for g, v in items.items() if g not in test}, val_fraction, seed, "val")
        out = [PlannedItem(i, k, "test" if (i, k) in test else "val" if (i, k) in val else "train")
               for (i, k) in items]
    else:
        groups: dict[str, tuple[str, int]] = {}
        for r in records:
            cls, n = groups.get(r.sha256, (r.class_name, 0))
            groups[r.sha256] = (cls, n + 1)
        test = allocate(groups, test_fraction, seed, "test")
        val = allocate({g: v for g, v in groups.items() if g not in test}, val_fraction, seed, "val")
        out = []
        for i, r in enumerate(records):
            split = "test" if r.sha256 in test else "val" if r.sha256 in val else "train"
            expand = protocol == "augment-then-group-split" or split == "train"
            out.extend(PlannedItem(i, k, split) for k in (copies if expand else (0,)))
    order = {s: n for n, s in enumerate(SPLITS)}
    out.sort(key=lambda it: (order[it.split], it.record, it.copy))
    return out


def check_split_args(protocol: str, seed: int, val_fraction: float, test_fraction: float,
                     augment_copies: int) -> None:
    """Raise :class:`DataError` with a one-line reason for any unusable split argument."""
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown protocol {protocol!r}; choose one of: {', '.join(PROTOCOLS)}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if not isinstance(augment_copies, (int, np.integer)) or augment_copies < 0:
        raise DataError(f"augment_copies must be a non-negative integer, got {augment_copies!r}")
