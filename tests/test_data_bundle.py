"""prepare_data's output: tensors, normalisation, identity, split manifest, cache, augmentation."""
from __future__ import annotations

import json

import pytest
import torch

import esg_lib.data.decode as decode_mod
from esg_lib.data import (DataWarning, channel_stats, leak_audit, prepare_data, read_split_manifest)
from esg_lib.data.testing import make_folder_dataset


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("data-bundle")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ESG_DATA_DIR", str(tmp / "fetched"))
        mp.setenv("ESG_CACHE_DIR", str(tmp / "cache"))
        mp.delenv("ESG_NEU_CLS_64", raising=False)
        yield tmp


@pytest.fixture(scope="module")
def bundle(env):
    return prepare_data("x-sdd", img_size=32, seed=0, max_images=140)


def test_contract_shapes_and_types(bundle):
    assert bundle.dataset_name == "x-sdd" and len(bundle.class_names) == 7
    assert bundle.display_names[bundle.class_names.index("red iron")] == "red tin"
    for part in (bundle.train, bundle.val, bundle.test):
        assert part.images.dtype == torch.uint8 and part.images.shape[1:] == (3, 32, 32)
        assert part.labels.dtype == torch.int64 and len(part.labels) == len(part.images) == len(part.paths)
        x, y = part[0]
        assert x.dtype == torch.float32 and x.shape == (3, 32, 32) and isinstance(y, int)
        assert torch.allclose(part.normalize(part.images[:1])[0], x)
        assert torch.allclose(part.denormalize(x), part.images[0].float() / 255, atol=1e-6)
    assert set(bundle.test.labels.tolist()) == set(range(7))
    counts = torch.bincount(bundle.train.labels, minlength=7)
    assert (counts > 0).all()


def test_normalisation_statistics_come_from_train_only(bundle):
    mean, std = channel_stats(bundle.train.images)
    assert bundle.mean == mean and bundle.std == std
    assert bundle.identity["normalization"]["mean"] == list(mean)
    everything = torch.cat([bundle.train.images, bundle.val.images, bundle.test.images])
    assert channel_stats(everything)[0] != mean  # test images did not contribute
    assert torch.equal(bundle.test.mean.flatten(), torch.tensor(mean, dtype=torch.float32))


def test_identity_is_json_and_deterministic(bundle, env):
    text = json.dumps(bundle.identity, sort_keys=True)
    again = prepare_data("x-sdd", img_size=32, seed=0, max_images=140)
    assert json.dumps(again.identity, sort_keys=True) == text
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(again, part).images, getattr(bundle, part).images)
    other = prepare_data("x-sdd", img_size=32, seed=1, max_images=140)
    assert other.identity["split_sha256"] != bundle.identity["split_sha256"]
    assert bundle.identity["content_sha256"] == "465f3a0aa7c56ac59067ad7ad42ab4f7cc7337874a0ae80af6014002422bc0dd"


def test_split_does_not_depend_on_img_size(bundle, env):
    bigger = prepare_data("x-sdd", img_size=40, seed=0, max_images=140)
    assert bigger.split_rows == bundle.split_rows


def test_split_rows_and_manifest(bundle, tmp_path):
    rows = bundle.split_rows
    assert len(rows) == sum(len(p) for p in (bundle.train, bundle.val, bundle.test))
    assert set(rows[0]) == {"path", "class", "split", "sha256", "source"}
    train_rows = [r for r in rows if r["split"] == "train"]
    assert [r["source"] for r in train_rows[:4]] == ["original", "aug1:rotate", "aug2:noise", "aug3:brightness"]
    assert bundle.train.paths[1] == bundle.train.paths[0] == str(bundle.root / train_rows[0]["path"])
    path = bundle.write_split_manifest(tmp_path / "split.tsv")
    assert read_split_manifest(path) == [{k: str(v) for k, v in r.items()} for r in rows]
    assert leak_audit(path) == leak_audit(bundle) and leak_audit(bundle).clean


def test_offline_copies_are_the_documented_transforms(bundle):
    imgs, copies = bundle.train.images, bundle.train.copies
    assert copies[:4] == [0, 1, 2, 3]
    orig, rot, noisy, bright = (imgs[i].int() for i in range(4))
    assert any(torch.equal(rot, torch.rot90(orig, k, dims=(1, 2))) for k in (1, 2, 3))
    diff = (noisy - orig).float()
    assert 0 < diff.abs().mean() < 30 and torch.equal(noisy[0], noisy[1])  # grey stays grey
    ratio = bright.float().sum() / orig.float().sum()
    assert 0.65 < ratio < 1.35 and not torch.equal(bright, orig)
    assert all(c == 0 for c in bundle.test.copies) and all(c == 0 for c in bundle.val.copies)


def test_augmentation_is_deterministic_per_seed(env):
    a = prepare_data("x-sdd", img_size=32, seed=3, max_images=70, protocol="augment-then-group-split")
    b = prepare_data("x-sdd", img_size=32, seed=3, max_images=70, protocol="augment-then-group-split")
    c = prepare_data("x-sdd", img_size=32, seed=4, max_images=70, protocol="augment-then-group-split")
    assert torch.equal(a.test.images, b.test.images)
    # the same source's copies differ between seeds (the noise copy is always different)
    noise_a = {(a.test.sha256s[i]): a.test.images[i] for i in range(len(a.test)) if a.test.copies[i] == 2}
    noise_c = {(c.train.sha256s[i]): c.train.images[i] for i in range(len(c.train)) if c.train.copies[i] == 2}
    shared = set(noise_a) & set(noise_c)
    assert shared and all(not torch.equal(noise_a[s], noise_c[s]) for s in shared)
    assert leak_audit(a).test_leaked == 0 and len(a.test) % 4 == 0


def test_online_augmentation_only_on_train(env):
    b = prepare_data("x-sdd", img_size=32, seed=0, max_images=70, online_augment=True, augment_copies=0)
    assert b.train.transform is not None and b.val.transform is None and b.test.transform is None
    torch.manual_seed(0)
    draws = [b.train[0][0] for _ in range(6)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    assert b.identity["online_augment"]["hflip_p"] == 0.5


def test_decoding_is_cached_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("ESG_CACHE_DIR", str(tmp_path / "cache"))
    root = make_folder_dataset(tmp_path / "ds", {"a": 6, "b": 6})
    first = prepare_data(root, img_size=8, augment_copies=0)
    assert list((tmp_path / "cache").glob("decoded-8px-*.pt"))
    calls = []
    real = decode_mod.decode_file
    monkeypatch.setattr(decode_mod, "decode_file", lambda *a: calls.append(a) or real(*a))
    second = prepare_data(root, img_size=8, augment_copies=0)
    assert calls == [] and torch.equal(first.test.images, second.test.images)
    moved = root.rename(tmp_path / "renamed")  # content-keyed: moving the folder keeps the cache
    prepare_data(moved, img_size=8, augment_copies=0)
    assert calls == []
    from esg_lib.data.testing import make_image

    make_image(moved / "a" / "0000.png", seed=999)  # new content -> decoded again
    prepare_data(moved, img_size=8, augment_copies=0)
    assert calls


def test_unreadable_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("ESG_CACHE_DIR", str(tmp_path / "cache"))
    root = make_folder_dataset(tmp_path / "ds", {"a": 5, "b": 5})
    prepare_data(root, img_size=8, augment_copies=0)
    (cache,) = (tmp_path / "cache").glob("decoded-*.pt")
    cache.write_bytes(b"junk")
    with pytest.warns(DataWarning, match="unreadable decode cache"):
        prepare_data(root, img_size=8, augment_copies=0)


def test_neu_decodes_grey_including_the_rgb_file(shared_datasets, monkeypatch, tmp_path):
    monkeypatch.setenv("ESG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ESG_NEU_CLS_64", str(shared_datasets / "neu-cls-64" / "NEU-CLS-64"))
    b = prepare_data("neu-cls-64", img_size=32, max_images=120, augment_copies=1)
    assert b.display_names == ["cracks", "pits", "inclusion", "patches", "pitting surface", "rust",
                               "scale", "scratches", "oil stains"]
    for part in (b.train, b.test):
        assert (part.images[:, 0] == part.images[:, 1]).all() and (part.images[:, 1] == part.images[:, 2]).all()
    from esg_lib.data.decode import decode_file

    arr = decode_file(shared_datasets / "neu-cls-64" / "NEU-CLS-64" / "sp" / "64.jpg", 64, "L")
    assert arr.shape == (3, 64, 64) and (arr[0] == arr[2]).all()
