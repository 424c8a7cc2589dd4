"""The download path against a local HTTP server, and every bad archive leaves nothing behind."""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from esg_lib.data import (DataError, DatasetLayoutError, DatasetNotFoundError, DownloadError, ManifestMismatchError,
                          UnsafeArchiveError, embedded_dir, fetch_dataset, plan_data, resolve_dataset,
                          safe_extract, verify_dataset)
from esg_lib.data.testing import (serve_directory, tar_with_member, zip_folder, zip_with_symlink)

X_ZIP = "X-SDD-A-New-benchmark-adf8808.zip"
NEU_ZIP = "NEU_XAI-e913e46.zip"
X_ZIP_SHA = "f81a20dfc8b8bc724087a10856612198f86c73a6f52618b1ad6fc680dcc5b5b6"
KNOWN_X_SDD_SHA = "465f3a0aa7c56ac59067ad7ad42ab4f7cc7337874a0ae80af6014002422bc0dd"
TOP = "X-SDD-A-New-benchmark-adf880814dbd365c73fc3643019272b5637fecc2/"


@pytest.fixture(autouse=True)
def fetched(monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("ESG_DATA_DIR", str(tmp_path / "fetched"))
    monkeypatch.setenv("ESG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ESG_NEU_CLS_64", raising=False)
    return tmp_path / "fetched"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Serves ../shared/datasets/*.zip plus archives the tests build in ``folder``."""
    from conftest import SHARED_DATASETS

    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"{SHARED_DATASETS} is absent (only CI and developer machines have it)")
    folder = tmp_path_factory.mktemp("served")
    for name in (X_ZIP, NEU_ZIP):
        (folder / name).symlink_to(SHARED_DATASETS / name)
    with serve_directory(folder) as (url, seen):
        yield url, folder, seen


@pytest.fixture(scope="module")
def xsdd_bad_zips(tmp_path_factory):
    """X-SDD-shaped archives with one changed, one missing, one extra file, a renamed class."""
    tmp = tmp_path_factory.mktemp("bad-zips")
    out = {}
    for kind in ("changed", "missing", "extra", "renamed"):
        tree = tmp / kind / "X-SDD" / "datas"
        shutil.copytree(embedded_dir(), tree, ignore=shutil.ignore_patterns("LICENSE", "NOTICE", "*.txt"))
        if kind == "changed":
            (tree / "red iron" / "2207.jpg").write_bytes(b"\xff\xd8 not the upstream bytes")
        elif kind == "missing":
            (tree / "slag inclusion" / "1001.jpg").unlink()
        elif kind == "extra":
            shutil.copy(tree / "red iron" / "2212.jpg", tree / "red iron" / "extra.jpg")
        else:
            (tree / "surface scratch").rename(tree / "scratches")
        out[kind] = zip_folder(tmp / kind, tmp / f"{kind}.zip", prefix=TOP)
    return out


def assert_nothing_left(fetched: Path) -> None:
    leftovers = sorted(p.name for p in fetched.iterdir()) if fetched.exists() else []
    assert leftovers == [], f"half-written data left behind: {leftovers}"


# ------------------------------------------------------------------ the real archives, served locally
def test_fetch_x_sdd_from_a_local_server(server, fetched):
    url, _, seen = server
    before = verify_dataset("x-sdd")
    target = fetch_dataset("x-sdd", f"{url}/{X_ZIP}", sha256=X_ZIP_SHA, progress=False, log=lambda m: None)
    assert target == fetched / "x-sdd" and target != embedded_dir()
    assert (target / "LICENSE").is_file() and (target / "SOURCE.txt").is_file()
    assert [p.name for p in fetched.iterdir()] == ["x-sdd"]  # no temporary files left
    assert verify_dataset("x-sdd").dataset.root == embedded_dir()  # the embedded copy still wins and is intact
    assert verify_dataset("x-sdd").ok and before.ok
    assert verify_dataset(target).scan.content_sha256() == before.scan.content_sha256()
    n = len(seen)
    fetch_dataset("x-sdd", f"{url}/{X_ZIP}", progress=False, log=lambda m: None)  # present: no download
    assert len(seen) == n


def test_fetch_neu_from_a_local_server_then_use_it(server, fetched):
    url, _, _ = server
    target = fetch_dataset("neu-cls-64", f"{url}/{NEU_ZIP}", progress=False, log=lambda m: None)
    assert sorted(p.name for p in target.iterdir() if p.is_dir()) == ["cr", "gg", "in", "pa", "ps", "rp", "rs",
                                                                       "sc", "sp"]
    resolved = resolve_dataset("neu-cls-64")
    assert resolved.origin == "fetched" and resolved.root == target
    assert verify_dataset("neu-cls-64").ok


def test_env_var_with_a_url_fetches_once(server, fetched, monkeypatch):
    url, _, seen = server
    monkeypatch.setenv("ESG_NEU_CLS_64", f"{url}/{NEU_ZIP}")
    n = len(seen)
    with pytest.raises(DatasetNotFoundError, match="not fetched yet"):
        verify_dataset("neu-cls-64")  # verify and list never download
    assert len(seen) == n
    assert resolve_dataset("neu-cls-64").root == fetched / "neu-cls-64"
    assert resolve_dataset("neu-cls-64").root == fetched / "neu-cls-64"
    assert len(seen) == n + 1


def test_truncated_download(server, fetched):
    url, _, _ = server
    with pytest.raises(DownloadError, match="truncated|interrupted|corrupt"):
        fetch_dataset("x-sdd", f"{url}/truncated/{X_ZIP}", progress=False, log=lambda m: None)
    assert_nothing_left(fetched)


def test_missing_url_and_archive_checksum_mismatch(server, fetched):
    url, _, _ = server
    with pytest.raises(DownloadError):
        fetch_dataset("x-sdd", f"{url}/nope.zip", progress=False, log=lambda m: None)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch_dataset("x-sdd", f"{url}/{X_ZIP}", sha256="0" * 64, progress=False, log=lambda m: None)
    assert_nothing_left(fetched)


@pytest.mark.parametrize("kind,match", [
    ("changed", r"1 changed \(red iron/2207\.jpg\)"),
    ("missing", r"1 missing \(slag inclusion/1001\.jpg\)"),
    ("extra", r"1 extra \(red iron/extra\.jpg\)"),
    ("renamed", r"missing class folders: surface scratch"),
])
def test_content_mismatch_is_precise_and_leaves_nothing(xsdd_bad_zips, fetched, kind, match):
    with pytest.raises(ManifestMismatchError, match=match):
        fetch_dataset("x-sdd", xsdd_bad_zips[kind], log=lambda m: None)
    assert_nothing_left(fetched)


def test_failed_force_refetch_keeps_the_good_copy(server, xsdd_bad_zips, fetched):
    url, _, _ = server
    good = fetch_dataset("x-sdd", f"{url}/{X_ZIP}", progress=False, log=lambda m: None)
    with pytest.raises(ManifestMismatchError):
        fetch_dataset("x-sdd", xsdd_bad_zips["changed"], force=True, log=lambda m: None)
    assert sorted(p.name for p in fetched.iterdir()) == ["x-sdd"]
    assert verify_dataset(good).scan.content_sha256() == verify_dataset("x-sdd").scan.content_sha256()


# ------------------------------------------------------------------ local sources
def test_fetch_from_a_folder_and_env_var_folder(shared_datasets, fetched, monkeypatch):
    target = fetch_dataset("x-sdd", shared_datasets / "x-sdd", log=lambda m: None)
    assert (target / "LICENSE").is_file() and verify_dataset(target).scan.content_sha256() == \
        verify_dataset("x-sdd").scan.content_sha256()
    monkeypatch.setenv("ESG_NEU_CLS_64", str(shared_datasets / "neu-cls-64"))
    resolved = resolve_dataset("neu-cls-64")
    assert resolved.origin == "$ESG_NEU_CLS_64" and resolved.root.name == "NEU-CLS-64"
    assert not (fetched / "neu-cls-64").exists()  # a folder is used in place, not copied


def test_env_var_with_a_zip(shared_datasets, fetched, monkeypatch):
    monkeypatch.setenv("ESG_NEU_CLS_64", str(shared_datasets / NEU_ZIP))
    plan = plan_data("neu-cls-64", max_images=50)
    assert plan.dataset.root == fetched / "neu-cls-64" and len(plan.records) == 50


def test_missing_source_and_missing_known_dataset(tmp_path, fetched, monkeypatch):
    with pytest.raises(DatasetNotFoundError, match="not found"):
        fetch_dataset("neu-cls-64", tmp_path / "nowhere.zip", log=lambda m: None)
    with pytest.raises(DatasetNotFoundError, match="esg data fetch neu-cls-64"):
        resolve_dataset("neu-cls-64")
    monkeypatch.setenv("ESG_NEU_CLS_64", str(tmp_path / "typo"))
    with pytest.raises(DatasetNotFoundError, match="ESG_NEU_CLS_64"):
        resolve_dataset("neu-cls-64")
    with pytest.raises(DatasetNotFoundError, match="unknown dataset"):
        fetch_dataset("imagenet", log=lambda m: None)
    assert_nothing_left(fetched)


def test_never_fetches_over_the_embedded_copy(shared_datasets, monkeypatch):
    monkeypatch.setenv("ESG_DATA_DIR", str(embedded_dir().parent))
    with pytest.raises(DataError, match="committed X-SDD"):
        fetch_dataset("x-sdd", shared_datasets / "x-sdd", force=True, log=lambda m: None)
    assert verify_dataset(embedded_dir()).scan.content_sha256() == KNOWN_X_SDD_SHA


def test_wrong_class_names_in_a_source_folder(tmp_path, fetched):
    src = tmp_path / "mine"
    for c in ("cracks", "pits"):
        (src / c).mkdir(parents=True)
        (src / c / "1.jpg").write_bytes(b"x")
    with pytest.raises(DatasetLayoutError, match="cr, gg, in"):
        fetch_dataset("neu-cls-64", src, log=lambda m: None)
    assert_nothing_left(fetched)


def test_corrupt_and_non_archives(tmp_path, fetched):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 this is not really a zip" * 10)
    with pytest.raises(DownloadError, match="not a zip or tar|corrupt"):
        fetch_dataset("x-sdd", junk, log=lambda m: None)
    # a member whose bytes were damaged after zipping: CRC check fails during extraction
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("top/X-SDD/datas/red iron/1.jpg", b"A" * 4000)
    data = bytearray(good.read_bytes())
    data[data.find(b"A" * 100) + 50] ^= 0xFF
    bad = tmp_path / "crc.zip"
    bad.write_bytes(bytes(data))
    with pytest.raises(DownloadError, match="corrupt"):
        fetch_dataset("x-sdd", bad, log=lambda m: None)
    assert_nothing_left(fetched)


# ------------------------------------------------------------------ malicious archives
@pytest.mark.parametrize("entry", ["../evil.txt", "top/../../evil.txt", "/tmp/esg-evil.txt", "C:/evil.txt",
                                   "top\\..\\..\\evil.txt"])
def test_zip_slip_entries_are_refused(tmp_path, fetched, entry):
    archive = tmp_path / "slip.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("top/fine.txt", b"ok")
        zf.writestr(zipfile.ZipInfo(entry), b"pwned")
    with pytest.raises(UnsafeArchiveError, match="refusing slip.zip"):
        fetch_dataset("x-sdd", archive, log=lambda m: None)
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/esg-evil.txt").exists()
    assert_nothing_left(fetched)


def test_symlink_entries_are_refused(tmp_path, fetched):
    archive = zip_with_symlink(tmp_path / "link.zip", "top/X-SDD/datas", "/etc")
    with pytest.raises(UnsafeArchiveError, match="symlink"):
        fetch_dataset("x-sdd", archive, log=lambda m: None)
    assert_nothing_left(fetched)
    dest = tmp_path / "out"
    for tar in (tar_with_member(tmp_path / "l.tar.gz", "top/link", symlink_to="/etc/passwd"),
                tar_with_member(tmp_path / "s.tar.gz", "../../evil.txt")):
        with pytest.raises(UnsafeArchiveError):
            safe_extract(tar, dest)
    assert list(dest.iterdir()) == [] and not (tmp_path / "evil.txt").exists()


def test_tar_archives_work(tmp_path):
    archive = tar_with_member(tmp_path / "ok.tar.gz", "top/file.txt")
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "top" / "file.txt").read_bytes() == b"payload"


# ------------------------------------------------------------------ decompression bombs
def _zeros_zip(path: Path, names: list[str], size: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in names:
            zf.writestr(name, bytes(size))
    return path


def test_archives_declaring_more_than_the_limit_are_refused_before_writing(tmp_path, fetched, monkeypatch):
    """A zip or tar whose entries declare far more bytes than the archive holds is refused with one
    line naming it, before any entry is written (the floor is lowered so the bombs stay small)."""
    import tarfile

    from esg_lib.data import fetch as F

    monkeypatch.setattr(F, "EXPANSION_FLOOR", 1 << 20)
    bomb = _zeros_zip(tmp_path / "bomb.zip", ["top/a.bin", "top/b.bin"], 2 << 20)
    assert F.extraction_limit(bomb.stat().st_size) == 1 << 20
    with pytest.raises(UnsafeArchiveError, match=r"refusing bomb.zip: its entries declare 4,194,304 bytes"):
        fetch_dataset("x-sdd", bomb, log=lambda m: None)
    assert_nothing_left(fetched)
    tar = tmp_path / "bomb.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        src = tmp_path / "zeros.bin"
        src.write_bytes(bytes(3 << 20))
        tf.add(src, arcname="top/zeros.bin")
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="declare 3,145,728 bytes"):
        safe_extract(tar, dest)
    assert list(dest.iterdir()) == []
    # the same archives under the real limits: a few MB is no bomb
    monkeypatch.undo()
    safe_extract(tar, dest)
    assert (dest / "top" / "zeros.bin").stat().st_size == 3 << 20


def test_a_zip_entry_that_lies_about_its_size_writes_no_more_than_it_declares(tmp_path):
    """Shrinking an entry's declared size (in both headers) cannot smuggle bytes past the limit:
    zipfile stops at the declared size and the CRC check refuses the entry as corrupt."""
    import struct

    data = bytearray(_zeros_zip(tmp_path / "honest.zip", ["top/a.bin"], 1 << 20).read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):   # local and central headers
        at = data.index(signature) + offset
        data[at:at + 4] = struct.pack("<I", 10)
    liar = tmp_path / "liar.zip"
    liar.write_bytes(bytes(data))
    assert zipfile.ZipFile(liar).infolist()[0].file_size == 10
    dest = tmp_path / "out"
    with pytest.raises(DownloadError, match="liar.zip is truncated or corrupt: Bad CRC"):
        safe_extract(liar, dest)
    written = dest / "top" / "a.bin"
    assert not written.exists() or written.stat().st_size <= 10
