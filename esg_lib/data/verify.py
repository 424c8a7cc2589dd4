"""``verify_dataset``: per-class counts, twins, skipped files, undecodable images and, for a known
dataset, the manifest check.

With ``decode=True`` (what ``esg data verify`` runs) every distinct file is decoded by the training
path's own decoder (:func:`esg_lib.data.decode.decode_file`), so a folder that verifies is a folder
that trains; each file that fails is named with the reason (:func:`decode_problem`): an empty file, a
file that is not an image (a text file named ``.png``), truncated or corrupt image data, or a
decompression bomb that Pillow refuses to expand.
"""
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
    undecodable: list[str] = field(default_factory=list)  # "rel: why", filled when decoding was checked
    decoded: bool = False  # whether every file was decoded (else only listed and hashed)

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
        lines += [f"cannot decode: {u}" for u in self.undecodable]
        if self.diff is not None and not self.diff.ok:
            lines.append(f"DIFFERS from the committed manifest: {self.diff.summary(limit=20)}")
        elif self.undecodable:
            lines.append(f"FAILED: {len(self.undecodable)} of {len(scan.records)} file(s) cannot be decoded")
        else:
            what = "matches the committed manifest" if self.diff is not None else "no manifest to compare with"
            what += "; every image decodes" if self.decoded else "; images not decoded"
            lines.append(f"OK: {len(scan.records)} images, {len(scan.class_names)} classes ({what})")
        return "\n".join(lines)


def decode_problem(path: str | os.PathLike, exc: BaseException) -> str:
    """Why ``path`` could not be decoded, in one short phrase (``exc`` is what decoding raised)."""
    from PIL import Image, UnidentifiedImageError

    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as os_exc:
        return f"cannot be read ({os_exc.strerror or type(os_exc).__name__})"
    detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    if size == 0:
        return "empty file (0 bytes)"
    if isinstance(exc, Image.DecompressionBombError):
        return f"decompression bomb, refused without decoding: {detail}"
    if isinstance(exc, UnidentifiedImageError):
        return f"not an image Pillow can read; it starts with {head!r}"
    if isinstance(exc, (OSError, SyntaxError, ValueError, EOFError)):
        return f"truncated or corrupt image data ({type(exc).__name__}: {detail})"
    return f"{type(exc).__name__}: {detail}"


def verify_dataset(dataset: str | os.PathLike, *, decode: bool = False) -> VerifyReport:
    """Check a dataset on disk; never raises for a content mismatch or a bad file (the report says
    what differs and which files cannot be decoded). ``decode`` decodes every distinct file (byte-
    identical copies once), as training would."""
    resolved = resolve_dataset(dataset, fetch=False)
    scan = scan_folder(resolved.root, warn=False)
    diff = manifest_diff(resolved.spec, scan) if resolved.spec is not None else None
    bad: list[str] = []
    if decode:
        why_by_sha: dict[str, str | None] = {}
        for r in scan.records:
            if r.sha256 not in why_by_sha:
                try:
                    decode_file(r.path, 8, "RGB")
                    why_by_sha[r.sha256] = None
                except Exception as exc:  # noqa: BLE001 - Pillow raises many types for broken files
                    why_by_sha[r.sha256] = decode_problem(r.path, exc)
            if why_by_sha[r.sha256] is not None:
                bad.append(f"{r.rel}: {why_by_sha[r.sha256]}")
    return VerifyReport(resolved, scan, diff, bad, decoded=decode)


__all__ = ["VerifyReport", "verify_dataset", "decode_problem"]
