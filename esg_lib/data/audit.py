"""Leak audit: how many evaluation images also feed training, by source content.

A test item "leaks" when its source image, or a byte-identical twin of it, also feeds training (as
itself or as an augmented copy). Split rows carry the sha256 of the *source* file, so one set lookup
covers both cases. Expected: 0 for ``leak-free`` and ``augment-then-group-split``, most of the test
set for ``augment-then-split`` (the paper's inferred protocol).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping, Union


@dataclass(frozen=True)
class LeakReport:
    test_items: int
    test_leaked: int  # test items whose source content also feeds training
    val_items: int
    val_leaked: int  # validation items whose source content also feeds training
    val_test_shared: int  # test items whose source content is also in validation
    train_items: int

    @property
    def test_leak_fraction(self) -> float:
        return self.test_leaked / self.test_items if self.test_items else 0.0

    @property
    def clean(self) -> bool:
        return self.test_leaked == 0 and self.val_leaked == 0 and self.val_test_shared == 0

    def as_dict(self) -> dict:
        return {**asdict(self), "test_leak_fraction": round(self.test_leak_fraction, 6)}


RowsLike = Union[Iterable[Mapping[str, str]], str, Path, object]


def leak_audit(rows: RowsLike) -> LeakReport:
    """Count leaks in split rows, a :class:`DataBundle`, a :class:`SplitPlan` or a split manifest path."""
    if isinstance(rows, (str, Path)):
        from .dataset import read_split_manifest

        rows = read_split_manifest(rows)
    elif hasattr(rows, "split_rows"):
        rows = rows.split_rows
    elif hasattr(rows, "rows") and callable(rows.rows):
        rows = rows.rows()
    by_split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for r in rows:
        by_split.setdefault(r["split"], []).append(r["sha256"])
    train, val = set(by_split["train"]), set(by_split["val"])
    return LeakReport(
        test_items=len(by_split["test"]),
        test_leaked=sum(s in train for s in by_split["test"]),
        val_items=len(by_split["val"]),
        val_leaked=sum(s in train for s in by_split["val"]),
        val_test_shared=sum(s in val for s in by_split["test"]),
        train_items=len(by_split["train"]),
    )
