"""Fetching a known dataset: download (pooch), safe extraction, verification by content, atomic install.

``fetch_dataset("neu-cls-64")`` downloads GitHub's archive of the pinned commit, extracts it into a
temporary folder next to the destination, finds the class folders, checks every file against the
committed content manifest (archives are not byte-stable, their content is), and only then renames the
result to ``<fetched_dir>/<name>``. Any failure removes the temporary folder: nothing half-written is
left, and an existing verified copy is never touched unless ``force=True``. The committed X-SDD under
``data/x-sdd`` is never a destination (fetched data lives in ``data/fetched``).

Extraction refuses the whole archive, before writing anything, if any entry is absolute, contains
``..``, is a symlink or hard link, or is a device/FIFO (zip-slip and friends), or if its entries
declare more bytes than :func:`extraction_limit` allows (a decompression bomb: the datasets here
expand to about their archive's size). A lying header cannot get round the check: :mod:`zipfile`
stops inflating an entry at the size it declares (and then fails its CRC check, so it is refused as
corrupt), and a tar entry's declared size is the number of bytes it writes.
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from .errors import (DataError, DatasetLayoutError, DatasetNotFoundError, DownloadError,
                     ManifestMismatchError, UnsafeArchiveError)
from .folder import _hidden, scan_folder
from .manifest import compare, parse_manifest, sha256_file, shown_name
from .registry import KNOWN, DatasetSpec, embedded_dir, fetched_dir

_URL_SCHEMES = ("http", "https", "ftp", "sftp", "doi")


def is_url(source: str) -> bool:
    return urlparse(str(source)).scheme.lower() in _URL_SCHEMES


def known_spec(name: str) -> DatasetSpec:
    key = normalize_name(name)
    if key not in KNOWN:
        raise DatasetNotFoundError(f"unknown dataset {name!r}; known datasets: {', '.join(KNOWN)}")
    return KNOWN[key]


def normalize_name(name: str) -> str:
    return str(name).strip().lower().replace("_", "-")


# ---------------------------------------------------------------- download
def download(url: str, folder: Path, *, sha256: str | None = None, progress: bool = True) -> Path:
    """Download ``url`` into ``folder`` with pooch (temporary file renamed only when complete).

    A connection that closes before ``Content-Length`` bytes arrived raises :class:`DownloadError`;
    ``sha256`` (optional) checks the archive bytes too.
    """
    import pooch
    import requests

    name = Path(urlparse(url).path).name or "download"
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)  # pooch logs an "unknown hash" hint meant for its own users
    try:
        path = pooch.retrieve(url, known_hash=f"sha256:{sha256}" if sha256 else None, fname=name,
                              path=folder, progressbar=progress)
    except ValueError as exc:  # pooch: hash mismatch
        raise DownloadError(f"checksum mismatch for {url}: {exc}") from None
    except requests.RequestException as exc:
        raise DownloadError(f"download of {url} failed (interrupted or truncated?): {exc}") from None
    except OSError as exc:
        raise DownloadError(f"download of {url} failed: {exc}") from None
    finally:
        logger.setLevel(level)
    return Path(path)


# ---------------------------------------------------------------- extraction
_DRIVE = re.compile(r"^[A-Za-z]:")
MAX_EXTRACTED_BYTES = 4 << 30     # no dataset here comes near: NEU-CLS-64's archive holds 7 MB
MAX_EXPANSION = 100               # declared bytes per archive byte; image archives hold about 1
EXPANSION_FLOOR = 64 << 20        # below this, any ratio is harmless (a small zip of text files)


def extraction_limit(archive_bytes: int) -> int:
    """The most bytes an archive of ``archive_bytes`` may declare: ``MAX_EXPANSION`` times its size,
    at least ``EXPANSION_FLOOR`` and at most ``MAX_EXTRACTED_BYTES``."""
    return min(MAX_EXTRACTED_BYTES, max(EXPANSION_FLOOR, MAX_EXPANSION * archive_bytes))


def _check_declared_size(declared: int, archive: Path) -> None:
    limit = extraction_limit(archive.stat().st_size)
    if declared > limit:
        raise UnsafeArchiveError(f"refusing {archive.name}: its entries declare {declared:,} bytes, more than "
                                 f"{limit:,} for a {archive.stat().st_size:,}-byte archive (a decompression bomb?)")


def _check_name(name: str, archive: Path) -> None:
    norm = name.replace("\\", "/")
    if norm.startswith("/") or _DRIVE.match(norm):
        raise UnsafeArchiveError(f"refusing {archive.name}: entry {name!r} has an absolute path")
    if ".." in norm.split("/"):
        raise UnsafeArchiveError(f"refusing {archive.name}: entry {name!r} points outside the archive (..)")


def safe_extract(archive: str | Path, dest: str | Path) -> None:
    """Extract a zip or tar archive into ``dest`` after checking every entry (see module docstring)."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                for info in infos:
                    _check_name(info.filename, archive)
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise UnsafeArchiveError(f"refusing {archive.name}: entry {info.filename!r} is a symlink")
                    if not (root / info.filename).resolve().is_relative_to(root):
                        raise UnsafeArchiveError(f"refusing {archive.name}: entry {info.filename!r} escapes the target")
                _check_declared_size(sum(info.file_size for info in infos), archive)
                for info in infos:
                    zf.extract(info, dest)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for m in members:
                    _check_name(m.name, archive)
                    if m.issym() or m.islnk():
                        raise UnsafeArchiveError(f"refusing {archive.name}: entry {m.name!r} is a link")
                    if not (m.isfile() or m.isdir()):
                        raise UnsafeArchiveError(f"refusing {archive.name}: entry {m.name!r} is not a file or folder")
                _check_declared_size(sum(m.size for m in members if m.isfile()), archive)
                tf.extractall(dest, members=members, filter="data")
        else:
            raise DownloadError(f"{archive.name} is not a zip or tar archive (truncated or corrupt download?)")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, ValueError) as exc:
        raise DownloadError(f"archive {archive.name} is truncated or corrupt: {exc}") from None
    except OSError as exc:  # zlib errors surface as zlib.error (an Exception), handled below
        raise DownloadError(f"could not extract {archive.name}: {exc}") from None
    except Exception as exc:  # noqa: BLE001
        if isinstance(exc, DataError):
            raise
        raise DownloadError(f"archive {archive.name} is truncated or corrupt: {type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------- locating the class folders
def find_class_root(top: Path, spec: DatasetSpec, max_depth: int = 5) -> Path:
    """The folder under ``top`` whose sub-folders best match ``spec``'s class folders.

    The pinned layout (``<top>/<repo>-<commit>/<archive_subdir>``) is tried first; otherwise the
    shallowest folder with the most matching class folders wins. A partial match is returned (the
    manifest check then says exactly which classes are missing); no match at all is an error.
    """
    expected = set(spec.class_table)
    candidates = [top / spec.archive_subdir, top]
    candidates += [d / spec.archive_subdir for d in sorted(top.iterdir()) if d.is_dir()] if top.is_dir() else []
    for c in candidates:
        if c.is_dir() and {p.name for p in c.iterdir() if p.is_dir()} >= expected:
            return c
    best, best_score, best_depth = None, 0, max_depth + 1
    for dirpath, dirnames, _ in os.walk(top):
        depth = len(Path(dirpath).relative_to(top).parts)
        dirnames[:] = [d for d in sorted(dirnames) if not _hidden(d)] if depth < max_depth else []
        score = len(expected & set(dirnames))
        if score > best_score or (score == best_score and score and depth < best_depth):
            best, best_score, best_depth = Path(dirpath), score, depth
    if best is None:
        found = sorted(p.name for p in top.iterdir() if p.is_dir()) if top.is_dir() else []
        raise DatasetLayoutError(
            f"no folder with the {spec.name} class folders ({', '.join(sorted(expected))}) found in the source"
            + (f"; its top level holds: {', '.join(found[:10])}" if found else ""))
    return best


def verify_against_manifest(class_root: Path, spec: DatasetSpec, *, what: str = "source") -> None:
    """Raise :class:`ManifestMismatchError` saying what is missing, extra or changed."""
    scan = scan_folder(class_root, warn=False)
    diff = compare(parse_manifest(spec.manifest_text()), scan.entries())
    extra_files = [n.split(" ", 3)[-1] for n in scan.notes if "non-image" in n]
    if not diff.ok:
        raise ManifestMismatchError(
            f"{what} does not match the {spec.name} manifest: {diff.summary()}")
    if extra_files:
        raise ManifestMismatchError(
            f"{what} does not match the {spec.name} manifest: {len(extra_files)} extra non-image file(s) "
            f"({', '.join(map(shown_name, extra_files[:5]))})")


# ---------------------------------------------------------------- fetch
def fetch_dataset(
    name: str,
    source: str | os.PathLike | None = None,
    *,
    force: bool = False,
    sha256: str | None = None,
    progress: bool = True,
    log=print,
) -> Path:
    """Bring a known dataset into ``<fetched_dir>/<name>`` and return that folder.

    ``source`` is a URL, a zip/tar file or a folder; default: the spec's environment variable
    (``ESG_NEU_CLS_64`` for NEU-CLS-64) or else the pinned upstream archive. An existing copy that
    still matches the manifest is kept (nothing is downloaded) unless ``force``.
    """
    spec = known_spec(name)
    if source is None and spec.env_var:
        source = os.environ.get(spec.env_var) or None
    source = str(source) if source is not None else spec.url
    base = fetched_dir()
    target = base / spec.name
    if target.resolve() == embedded_dir().resolve():
        raise DataError(f"refusing to fetch into {target}: that is the committed X-SDD; point ESG_DATA_DIR "
                        "at another folder (default: data/fetched)")
    if target.exists() and not force:
        try:
            verify_against_manifest(target, spec, what=f"the existing copy {target}")
        except DataError as exc:
            raise DataError(f"{exc}; rerun with --force to replace it") from None
        log(f"{spec.name}: {target} is already present and matches the manifest (use --force to re-fetch)")
        return target

    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".fetch-{spec.name}-", dir=base))
    try:
        final = staging / "dataset"
        if is_url(source):
            log(f"{spec.name}: downloading {source}")
            archive = download(source, staging / "download", sha256=sha256, progress=progress)
            class_root = _extract(archive, staging, spec)
            _install_tree(class_root, final, spec, copy=False)
        else:
            path = Path(source).expanduser()
            if not path.exists():
                raise DatasetNotFoundError(f"{spec.name} source not found: {path}")
            if path.is_dir():
                class_root = find_class_root(path, spec)
                verify_against_manifest(class_root, spec, what=str(class_root))
                _install_tree(class_root, final, spec, copy=True)
            else:
                if sha256 and sha256_file(path) != sha256:
                    raise DownloadError(f"checksum mismatch for {path}: sha256 is not {sha256}")
                class_root = _extract(path, staging, spec)
                _install_tree(class_root, final, spec, copy=False)
        verify_against_manifest(final, spec, what=f"the assembled copy of {source}")
        (final / "SOURCE.txt").write_text(
            f"dataset: {spec.name}\nsource: {source}\npinned upstream: {spec.url}\n"
            f"manifest: esg_lib/data/{spec.name}.tsv (all files verified)\n"
            f"license: {spec.license}\nfetched: {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}\n",
            encoding="utf-8")
        if target.exists():  # force: swap in the new copy, then drop the old one
            old = staging / "old"
            os.replace(target, old)
        os.replace(final, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"{spec.name}: verified {len(parse_manifest(spec.manifest_text()))} images -> {target}")
    return target


def _extract(archive: Path, staging: Path, spec: DatasetSpec) -> Path:
    extract_dir = staging / "extract"
    safe_extract(archive, extract_dir)
    try:
        class_root = find_class_root(extract_dir, spec)
        verify_against_manifest(class_root, spec, what=f"archive {archive.name}")
    except DataError as exc:   # name the archive, not the staging folder that is about to be removed
        text = str(exc).replace(str(extract_dir), archive.name)
        if archive.name not in text:
            text = f"archive {archive.name}: {text}"
        raise type(exc)(text) from None
    return class_root


def _drop_hidden(folder: Path) -> None:
    """Remove hidden files and folders (``.DS_Store``, ``__MACOSX``, ``.x.png``) under ``folder``: the
    manifest check skips them, so an installed copy holds exactly the files it verified."""
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in [d for d in dirnames if _hidden(d)]:
            shutil.rmtree(Path(dirpath, name))
        dirnames[:] = [d for d in dirnames if not _hidden(d)]
        for name in filenames:
            if _hidden(name):
                Path(dirpath, name).unlink()


def _install_tree(class_root: Path, final: Path, spec: DatasetSpec, *, copy: bool) -> None:
    final.mkdir(parents=True)
    for cls in spec.class_table:
        src = class_root / cls
        if copy:
            shutil.copytree(src, final / cls, ignore=lambda _, names: [n for n in names if _hidden(n)])
        else:
            os.replace(src, final / cls)
            _drop_hidden(final / cls)
    # keep the upstream license next to the data (X-SDD's Apache-2.0 requires it)
    for extra in spec.extra_files:
        for parent in [class_root, *list(class_root.parents)[:3]]:
            if (parent / extra).is_file():
                shutil.copy2(parent / extra, final / extra)
                break
