"""Content manifests: one line per image, ``<class>/<file>\\t<sha256>``, sorted bytewise.

Datasets are verified by content, not by archive checksum: GitHub does not promise byte-stable
archives, but it does serve the same files. A manifest's own sha256 is the dataset's content identity
(it goes into :attr:`DataBundle.identity`).
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_manifest(text: str) -> dict[str, str]:
    """``{"<class>/<file>": sha256}`` from manifest text; raises ValueError on a malformed line."""
    entries: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        rel, sep, digest = line.rpartition("\t")
        if not sep or "/" not in rel or len(digest) != 64:
            raise ValueError(f"manifest line {lineno} is not '<class>/<file>\\t<sha256>': {line!r}")
        entries[rel] = digest
    return entries


def format_manifest(entries: Mapping[str, str]) -> str:
    """Manifest text for ``{rel: sha256}``: sorted bytewise (like ``LC_ALL=C sort``), one per line."""
    rels = sorted(entries, key=lambda r: r.encode("utf-8"))
    return "".join(f"{r}\t{entries[r]}\n" for r in rels)


def shown_name(rel: str) -> str:
    """A file or folder name as a one-line message shows it: as is, or quoted with escapes when it
    holds a newline or another control character (an archive entry may hold any)."""
    return rel if rel.isprintable() else repr(rel)


def class_counts(rels: Iterable[str]) -> Counter:
    return Counter(r.split("/", 1)[0] for r in rels)


@dataclass
class ManifestDiff:
    """What differs between a folder and its manifest."""

    missing: list[str] = field(default_factory=list)  # in the manifest, not on disk
    extra: list[str] = field(default_factory=list)  # on disk, not in the manifest
    changed: list[str] = field(default_factory=list)  # on disk with other content
    expected_counts: Counter = field(default_factory=Counter)
    found_counts: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.changed)

    def summary(self, limit: int = 5) -> str:
        """One line: counts of each kind and the first few paths of each."""
        if self.ok:
            return "OK"
        parts = []
        for label, items in (("missing", self.missing), ("extra", self.extra), ("changed", self.changed)):
            if items:
                shown = ", ".join(shown_name(i) for i in items[:limit]) + (
                    f", ... (+{len(items) - limit})" if len(items) > limit else "")
                parts.append(f"{len(items)} {label} ({shown})")
        missing_classes = sorted(set(self.expected_counts) - set(self.found_counts))
        extra_classes = sorted(set(self.found_counts) - set(self.expected_counts))
        if missing_classes:
            parts.insert(0, f"missing class folders: {', '.join(map(shown_name, missing_classes))}")
        if extra_classes:
            parts.insert(0, f"unexpected class folders: {', '.join(map(shown_name, extra_classes))}")
        return "; ".join(parts)

    def table(self) -> str:
        """Per-class counts, expected vs found, one class per line."""
        classes = sorted(set(self.expected_counts) | set(self.found_counts))
        width = max([len(c) for c in classes] + [5])
        lines = [f"{'class':<{width}}  expected  found"]
        for c in classes:
            e, f = self.expected_counts.get(c, 0), self.found_counts.get(c, 0)
            lines.append(f"{c:<{width}}  {e:>8}  {f:>5}" + ("" if e == f else "  <-- differs"))
        lines.append(f"{'total':<{width}}  {sum(self.expected_counts.values()):>8}  "
                     f"{sum(self.found_counts.values()):>5}")
        return "\n".join(lines)


def compare(expected: Mapping[str, str], found: Mapping[str, str]) -> ManifestDiff:
    """Compare ``{rel: sha256}`` maps (expected from a manifest, found from disk)."""
    diff = ManifestDiff(expected_counts=class_counts(expected), found_counts=class_counts(found))
    key = lambda r: r.encode("utf-8")  # noqa: E731
    diff.missing = sorted(set(expected) - set(found), key=key)
    diff.extra = sorted(set(found) - set(expected), key=key)
    diff.changed = sorted((r for r in expected.keys() & found.keys() if expected[r] != found[r]), key=key)
    return diff
