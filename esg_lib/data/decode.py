"""Decoding images to 3-channel uint8 tensors at the profile's size, with a content-keyed cache.

What the paper says: images are "resized to 224 x 224" (NEU-CLS-64 is 64 x 64 grayscale, X-SDD mostly
128 x 128 RGB). What we do: every image is decoded with Pillow, converted to the dataset's colour mode
(``L`` for NEU-CLS-64 and X-SDD, whose RGB files are grey in every pixel; the majority mode of the
file headers for a user's folder), resized to
``img_size x img_size`` with bilinear filtering (Pillow's resize is antialiased when shrinking, like
torchvision's ``Resize(antialias=True)``; odd sizes such as X-SDD's 122 x 128 are stretched, not
cropped), and stored as ``(3, H, W)`` uint8 (grayscale repeated on the three channels so that every
model sees 3 channels). Why L for NEU-CLS-64: 7225 of its files are grayscale and one (``sp/64.jpg``) is
an RGB JPEG; decoding all as L keeps that one file like the others.

The cache holds one file per (set of contents, size, mode, decoder version) under
:func:`esg_lib.data.registry.cache_dir`: a 64 px epoch on 2 cores should not wait on JPEG decoding.
It is keyed by file *content* (sha256), so renaming or moving a dataset keeps it valid and changing a
file invalidates it. Written to a temporary file and renamed, so a crash never leaves half a cache.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .errors import DataWarning
from .registry import cache_dir

DECODE_VERSION = 1  # bump when decoding changes, so old caches are not reused
RESAMPLE = "bilinear"
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


@dataclass
class Decoded:
    """Decoded images, one per distinct content."""

    index: dict[str, int]  # sha256 -> row of ``images``
    images: torch.Tensor  # uint8 (N, 3, H, W)
    bad: dict[str, str]  # sha256 -> why it could not be decoded
    color_mode: str  # "L" or "RGB" (the one used)
    from_cache: bool


def _to_8bit(im):
    """Pillow image in an integer/float mode wider than 8 bits -> mode L, scaled to 0..255."""
    from PIL import Image

    arr = np.asarray(im, dtype=np.float64)
    top = 65535.0 if im.mode.startswith("I;16") else max(float(arr.max()), 255.0)
    arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, mode="L")


def decode_file(path: str | Path, img_size: int, color_mode: str) -> np.ndarray:
    """One image file -> uint8 array (3, img_size, img_size). Raises whatever Pillow raises."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode in _GRAY_MODES - {"1", "L", "LA"}:
            im = _to_8bit(im)
        im = im.convert("L" if color_mode == "L" else "RGB")
        if im.size != (img_size, img_size):
            im = im.resize((img_size, img_size), Image.Resampling.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim == 2:
        return np.repeat(arr[None], 3, axis=0)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def majority_color_mode(paths: Sequence[Path]) -> str:
    """"L" if most files are grayscale (read from headers only), else "RGB"."""
    from PIL import Image

    gray = 0
    for p in paths:
        try:
            with Image.open(p) as im:
                gray += im.mode in _GRAY_MODES
        except Exception:  # noqa: BLE001 - reported properly when decoded
            pass
    return "L" if gray * 2 > len(paths) else "RGB"


def _cache_key(shas: Sequence[str], img_size: int, color_mode: str) -> str:
    h = hashlib.sha256(f"esg-decode v{DECODE_VERSION} {RESAMPLE} {img_size} {color_mode}\n".encode())
    for s in shas:
        h.update(s.encode() + b"\n")
    return h.hexdigest()


def decode_images(
    items: Sequence[tuple[str, Path]],
    img_size: int,
    color_mode: str,
    *,
    use_cache: bool = True,
) -> Decoded:
    """Decode ``(sha256, path)`` pairs (one path per distinct content is enough) at ``img_size``.

    ``color_mode`` is "L", "RGB" or "auto" (majority of the files). Files that fail to decode are
    returned in ``Decoded.bad`` (sha256 -> reason); the caller decides whether that is an error.
    """
    if img_size < 1:
        raise ValueError(f"img_size must be positive, got {img_size}")
    first: dict[str, Path] = {}
    for sha, path in items:
        first.setdefault(sha, Path(path))
    shas = sorted(first)
    if color_mode == "auto":
        color_mode = majority_color_mode([first[s] for s in shas])
    if color_mode not in ("L", "RGB"):
        raise ValueError(f"color_mode must be 'L', 'RGB' or 'auto', got {color_mode!r}")
    key = _cache_key(shas, img_size, color_mode)
    cache_file = cache_dir() / f"decoded-{img_size}px-{key[:40]}.pt"
    if use_cache and cache_file.is_file():
        try:
            blob = torch.load(cache_file, map_location="cpu", weights_only=True)
            if blob.get("key") == key and blob["images"].dtype == torch.uint8:
                index = {s: i for i, s in enumerate(blob["sha256"])}
                return Decoded(index, blob["images"], dict(blob["bad"]), color_mode, True)
        except Exception as exc:  # noqa: BLE001 - a damaged cache is rebuilt, never trusted
            warnings.warn(f"ignoring unreadable decode cache {cache_file}: {exc}", DataWarning, stacklevel=2)

    good: list[str] = []
    bad: dict[str, str] = {}
    # filled in place: NEU-CLS-64 at 224 px is 1 GB, a list plus np.stack would need twice that
    images = torch.empty((len(shas), 3, img_size, img_size), dtype=torch.uint8)
    for sha in shas:
        try:
            images[len(good)] = torch.from_numpy(decode_file(first[sha], img_size, color_mode))
            good.append(sha)
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for broken files
            bad[sha] = f"{type(exc).__name__}: {exc}"
    if bad:
        images = images[: len(good)].clone()
    if use_cache:
        _write_cache(cache_file, {"key": key, "sha256": good, "images": images, "bad": sorted(bad.items())})
    return Decoded({s: i for i, s in enumerate(good)}, images, bad, color_mode, False)


def _write_cache(path: Path, blob: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(blob, f)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:  # a read-only cache folder slows things down but breaks nothing
        warnings.warn(f"could not write decode cache {path}: {exc}", DataWarning, stacklevel=3)
