"""``verify_dataset``: per-class counts, twins, skipped files and, for a known dataset, the manifest check."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from .dataset import ResolvedDataset, manifest_diff, resolve_dataset
from .decode import decode_file
from .folder import FolderScan, scan_folder
from .manifest import ManifestDiff


@dataclass
class VerifyReport:
    dataset: ResolvedDataset
    scan: FolderScan
    diff: ManifestDiff | None  # None for a dataset without a committed manifest
    undecodable: list[str] = field(default_factory=list)  # filled when decoding was checked

    @property
    def ok(self) -> bool:
        return (self.diff is None or self.diff.ok) and not self.undecodable

    def render(self) -> str:
        d, scan = self.dataset, self.scan
        lines = [f"{d.name}: {d.root} ({d.origin})"]
        if self.diff is not None:
            lines.append(self.diff.table())
        else:
            counts = scan.counts()
            width = max(len(c) for c in scan.class_names)
            lines += [f"{c:<{width}}  {counts[c]:>6}" for c in scan.class_names]
            lines.append(f"{'total':<{width}}  {sum(counts.values()):>6}")
        twins = scan.twins()
        if twins:
            lines.append(f"byte-identical groups: {len(twins)} (kept on one side of every split), e.g. "
                         + " = ".join(twins[0]))
        lines += [f"note: {n}" for n in scan.notes]
        if self.undecodable:
            lines += [f"cannot decode: {u}" for u in self.undecodable]
        if self.diff is not None and not self.diff.ok:
            lines.append(f"DIFFERS from the committed manifest: {self.diff.summary(limit=20)}")
        elif self.undecodable:
            lines.append(f"FAILED: {len(self.undecodable)} file(s) cannot be decoded")
        else:
            what = "matches the committed manifest" if self.diff is not None else "no manifest to compare with"
            lines.append(f"OK: {len(scan.records)} images, {len(scan.class_names)} classes ({what})")
        return "\n".join(lines)


def verify_dataset(dataset: str | os.PathLike, *, decode: bool = False) -> VerifyReport:
    """Check a dataset on disk; never raises for a content mismatch (the report says what differs)."""
    resolved = resolve_dataset(dataset, fetch=False)
    scan = scan_folder(resolved.root, warn=False)
    diff = manifest_diff(resolved.spec, scan) if resolved.spec is not None else None
    bad: list[str] = []
    if decode:
        for r in scan.records:
            try:
                decode_file(r.path, 8, "RGB")
            except Exception as exc:  # noqa: BLE001
                bad.append(f"{r.rel} ({type(exc).__name__}: {exc})")
    return VerifyReport(resolved, scan, diff, bad)


__all__ = ["VerifyReport", "verify_dataset"]
