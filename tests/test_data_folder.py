"""Bring-your-own folders: formats, modes, odd sizes, skipped files and every bad input's clear error."""
from __future__ import annotations

import shutil
import warnings

import pytest
import torch

from esg_lib.data import (CorruptImageError, DatasetLayoutError, DatasetNotFoundError, DataWarning,
                          ManifestMismatchError, prepare_data, scan_folder, verify_dataset)
from esg_lib.data.decode import decode_file
from esg_lib.data.testing import make_folder_dataset, make_image


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("ESG_DATA_DIR", str(tmp_path / "fetched"))
    monkeypatch.setenv("ESG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ESG_NEU_CLS_64", raising=False)


def _small(tmp_path, counts=None, **kw):
    return make_folder_dataset(tmp_path / "ds", counts or {"alpha": 12, "beta": 10, "gamma": 8}, **kw)


def test_mixed_formats_modes_and_sizes_decode_to_3_channels(tmp_path):
    root = tmp_path / "mixed"
    specs = [(".bmp", "L", (20, 16)), (".tif", "L", (16, 16)), (".png", "RGBA", (13, 17)),
             (".jpg", "L", (30, 30)), (".png", "I;16", (16, 12)), (".gif", "L", (16, 16))]
    for cls in ("a", "b"):
        for i, (ext, mode, size) in enumerate(specs * 2):
            make_image(root / cls / f"{i}{ext}", size=size, mode=mode, seed=ord(cls) * 100 + i)
    bundle = prepare_data(root, img_size=16, augment_copies=1, val_fraction=0.0, test_fraction=0.25)
    assert bundle.class_names == ["a", "b"] and bundle.display_names == ["a", "b"]
    for part in (bundle.train, bundle.test):
        assert part.images.dtype == torch.uint8 and part.images.shape[1:] == (3, 16, 16)
    assert (len(bundle.train), len(bundle.test)) == (2 * 18, 6)  # 6 test images, train doubled
    assert bundle.identity["decode"]["color_mode"] == "L"  # most files are grayscale


def test_grayscale_and_rgb_files_become_consistent_3_channel_tensors(tmp_path):
    gray = make_image(tmp_path / "g.png", mode="L", size=(10, 10), seed=1)
    rgb = make_image(tmp_path / "c.jpg", mode="RGB", size=(130, 128), seed=2)
    for path in (gray, rgb):
        arr = decode_file(path, 24, "L")
        assert arr.shape == (3, 24, 24) and (arr[0] == arr[1]).all() and (arr[1] == arr[2]).all()
    assert decode_file(rgb, 24, "RGB").shape == (3, 24, 24)


def test_hidden_and_non_image_files_are_skipped_with_a_note(tmp_path):
    root = _small(tmp_path)
    (root / "alpha" / "README.txt").write_text("not an image")
    (root / "beta" / ".DS_Store").write_bytes(b"\0\0")
    (root / "LICENSE").write_text("top-level files are not class members")
    with pytest.warns(DataWarning, match="README.txt"):
        bundle = prepare_data(root, img_size=8, augment_copies=0)
    assert any("README.txt" in n for n in bundle.notes) and any(".DS_Store" in n for n in bundle.notes)
    assert sum(len(p) for p in (bundle.train, bundle.val, bundle.test)) == 30


def test_missing_folder_and_unknown_name(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="no-such-folder"):
        prepare_data(tmp_path / "no-such-folder")
    with pytest.raises(DatasetNotFoundError, match="known name"):
        prepare_data("imagenet")


def test_empty_class_is_an_error_naming_it(tmp_path):
    root = _small(tmp_path)
    (root / "delta").mkdir()
    (root / "delta" / "notes.md").write_text("no images here")
    with pytest.raises(DatasetLayoutError, match="'delta'"):
        prepare_data(root, img_size=8)


def test_parent_folder_and_loose_images_get_a_hint(tmp_path):
    root = _small(tmp_path)
    with pytest.raises(DatasetLayoutError, match="one level down"):
        scan_folder(tmp_path)  # the folder holding "ds"
    loose = tmp_path / "loose"
    make_image(loose / "x.png")
    with pytest.raises(DatasetLayoutError, match="own sub-folder"):
        scan_folder(loose)
    assert root.is_dir()


def test_corrupt_file_is_named_or_skipped_with_a_warning(tmp_path):
    root = _small(tmp_path)
    (root / "beta" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    good = (root / "gamma" / "0000.png").read_bytes()
    (root / "gamma" / "cut.png").write_bytes(good[: len(good) // 2])  # truncated PNG
    with pytest.raises(CorruptImageError, match=r"beta/broken\.jpg") as err:
        prepare_data(root, img_size=8)
    assert "gamma/cut.png" in str(err.value) and "skip_bad_files" in str(err.value)
    with pytest.warns(DataWarning, match=r"beta/broken\.jpg"):
        bundle = prepare_data(root, img_size=8, skip_bad_files=True)
    assert sorted(bundle.identity["skipped_files"]) == ["beta/broken.jpg", "gamma/cut.png"]
    paths = bundle.train.paths + bundle.val.paths + bundle.test.paths
    assert not any(p.endswith(("broken.jpg", "cut.png")) for p in paths)
    # the cache remembers bad files: a second run reports them again, never silently
    with pytest.raises(CorruptImageError, match="broken"):
        prepare_data(root, img_size=8)


def test_a_class_with_only_bad_files_is_an_error_even_when_skipping(tmp_path):
    root = _small(tmp_path, {"a": 6, "b": 6})
    (root / "c").mkdir()
    (root / "c" / "x.png").write_bytes(b"garbage")
    with pytest.warns(DataWarning), pytest.raises(DatasetLayoutError, match="class"):
        prepare_data(root, img_size=8, skip_bad_files=True)


def test_verify_reports_missing_extra_and_changed_files(tmp_path, monkeypatch):
    import esg_lib.data.dataset as ds

    copy = tmp_path / "x-sdd"
    shutil.copytree(ds.embedded_dir(), copy)
    monkeypatch.setattr(ds, "embedded_dir", lambda: copy)
    assert verify_dataset("x-sdd").ok
    (copy / "red iron" / "2207.jpg").unlink()
    shutil.copy(copy / "red iron" / "2212.jpg", copy / "red iron" / "9999.jpg")
    (copy / "iron sheet ash" / "3001.jpg").write_bytes(b"changed")
    report = verify_dataset("x-sdd")
    assert not report.ok
    assert report.diff.missing == ["red iron/2207.jpg"]
    assert report.diff.extra == ["red iron/9999.jpg"]
    assert report.diff.changed == ["iron sheet ash/3001.jpg"]
    text = report.render()
    assert "DIFFERS" in text and "red iron/2207.jpg" in text
    with pytest.raises(ManifestMismatchError, match="1 missing"):
        prepare_data("x-sdd", img_size=8)
    (copy / "surface scratch").rename(copy / "scratches")
    with pytest.raises(ManifestMismatchError, match="unexpected class folders: scratches"):
        prepare_data("x-sdd", img_size=8)


def test_wrong_class_names_for_a_known_dataset(tmp_path, monkeypatch):
    root = _small(tmp_path)
    monkeypatch.setenv("ESG_NEU_CLS_64", str(root))
    with pytest.raises(DatasetLayoutError, match="class folders"):
        prepare_data("neu-cls-64", img_size=8)


def test_user_copy_of_a_known_dataset_gets_the_paper_names(tmp_path):
    root = make_folder_dataset(tmp_path / "neu", {c: 6 for c in ("cr", "gg", "in", "pa", "ps", "rp", "rs", "sc", "sp")},
                               mode="L", ext=".jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bundle = prepare_data(root, img_size=8, augment_copies=0)
    assert bundle.display_names[-1] == "oil stains" and bundle.identity["known_dataset"] is False
