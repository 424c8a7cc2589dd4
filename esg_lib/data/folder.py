"""Reading a folder-per-class dataset: class folders, image files, content hashes.

Layout (the same as torchvision's ``ImageFolder``): ``<root>/<class name>/**/<image>``. Class names come
from the folder names, sorted, and label ``i`` is ``class_names[i]``. Any file with an extension Pillow
can read (JPEG, PNG, BMP, TIFF, ...) is an image; hidden files and other files (a README) inside class
folders are skipped with a note; files directly in ``<root>`` (LICENSE, NOTICE) are not part of any
class and are ignored. Whether an image actually decodes is checked when it is decoded.
"""
from __future__ import annotations

import os
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .errors import DataWarning, DatasetLayoutError, DatasetNotFoundError
from .manifest import format_manifest, sha256_file, sha256_text


@lru_cache(maxsize=1)
def image_extensions() -> frozenset[str]:
    """Lower-case extensions (with the dot) that Pillow can open."""
    from PIL import Image

    Image.init()
    return frozenset(ext.lower() for ext in Image.registered_extensions())


@dataclass(frozen=True)
class ImageRecord:
    """One image file of a dataset."""

    rel: str  # "<class>/<path inside the class folder>", '/'-separated: the manifest key
    path: Path  # absolute path
    label: int
    class_name: str
    sha256: str


@dataclass
class FolderScan:
    """The images of a folder-per-class dataset, in a fixed order (class, then bytewise path)."""

    root: Path
    class_names: list[str]
    records: list[ImageRecord]
    notes: list[str] = field(default_factory=list)  # skipped files, one line each

    def entries(self) -> dict[str, str]:
        """``{rel: sha256}``, the content manifest of what is on disk."""
        return {r.rel: r.sha256 for r in self.records}

    def manifest_text(self) -> str:
        return format_manifest(self.entries())

    def content_sha256(self) -> str:
        """sha256 of the manifest text: equals the committed manifest's own sha256 when all matches."""
        return sha256_text(self.manifest_text())

    def counts(self) -> Counter:
        return Counter(r.class_name for r in self.records)

    def twins(self) -> list[list[str]]:
        """Groups (two or more) of byte-identical files, as ``rel`` paths."""
        by_hash: dict[str, list[str]] = defaultdict(list)
        for r in self.records:
            by_hash[r.sha256].append(r.rel)
        return sorted(g for g in by_hash.values() if len(g) > 1)


def _hidden(name: str) -> bool:
    return name.startswith(".") or name in {"__MACOSX", "Thumbs.db", "desktop.ini"}


def scan_folder(root: str | Path, *, warn: bool = True) -> FolderScan:
    """List and hash the images of a folder-per-class dataset.

    Raises :class:`DatasetNotFoundError` if ``root`` is missing and :class:`DatasetLayoutError` if it
    has no class folders, a single one (often the parent of the real root), or an empty class.
    Skipped files are listed in ``FolderScan.notes`` and, with ``warn``, as a :class:`DataWarning`.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetNotFoundError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise DatasetLayoutError(f"{root} is not a folder (a dataset is a folder with one sub-folder per class)")
    root = root.resolve()
    exts = image_extensions()
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not _hidden(p.name))
    if not class_dirs:
        loose = [p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in exts]
        hint = f" (it holds {len(loose)} images directly: put each class in its own sub-folder)" if loose else ""
        raise DatasetLayoutError(f"no class folders in {root}{hint}")
    if len(class_dirs) == 1:
        only = class_dirs[0]
        has_sub = any(p.is_dir() for p in only.iterdir())
        hint = (f"; it looks like the dataset is one level down: try {only}" if has_sub
                else "; a classifier needs at least two classes")
        raise DatasetLayoutError(f"only one class folder ('{only.name}') in {root}{hint}")

    notes: list[str] = []
    records: list[ImageRecord] = []
    empty: list[str] = []
    for label, cdir in enumerate(class_dirs):
        found: list[tuple[str, Path]] = []
        for dirpath, dirnames, filenames in os.walk(cdir):
            skipped_dirs = sorted(d for d in dirnames if _hidden(d))
            dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
            for d in skipped_dirs:
                notes.append(f"skipped hidden folder {Path(dirpath, d).relative_to(root).as_posix()}/")
            for name in sorted(filenames):
                path = Path(dirpath, name)
                rel = path.relative_to(root).as_posix()
                if _hidden(name):
                    notes.append(f"skipped hidden file {rel}")
                elif path.suffix.lower() not in exts:
                    notes.append(f"skipped non-image file {rel}")
                elif not path.is_file():
                    notes.append(f"skipped {rel}: not a regular file")
                else:
                    found.append((rel, path))
        if not found:
            empty.append(cdir.name)
        found.sort(key=lambda t: t[0].encode("utf-8"))
        for rel, path in found:
            records.append(ImageRecord(rel, path, label, cdir.name, sha256_file(path)))
    if empty:
        raise DatasetLayoutError(
            f"class folder(s) without images in {root}: {', '.join(repr(e) for e in empty)} "
            "(remove them or add images)")
    scan = FolderScan(root, [c.name for c in class_dirs], records, notes)
    if warn and notes:
        warnings.warn(_notes_message(root, notes), DataWarning, stacklevel=2)
    cross = _cross_class_twins(records)
    if cross:
        warnings.warn(
            f"{len(cross)} byte-identical file group(s) span several classes in {root} (label noise), "
            f"e.g. {', '.join(cross[0])}; each group is still kept on one side of every split",
            DataWarning, stacklevel=2)
    return scan


def _notes_message(root: Path, notes: list[str], limit: int = 10) -> str:
    shown = "; ".join(notes[:limit]) + (f"; ... (+{len(notes) - limit} more)" if len(notes) > limit else "")
    return f"{len(notes)} file(s) in {root} are not images and were skipped: {shown}"


def _cross_class_twins(records: list[ImageRecord]) -> list[list[str]]:
    by_hash: dict[str, list[ImageRecord]] = defaultdict(list)
    for r in records:
        by_hash[r.sha256].append(r)
    return [[r.rel for r in g] for g in by_hash.values() if len({r.label for r in g}) > 1]
