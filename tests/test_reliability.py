"""Bad inputs end in one clear line naming the file, never a traceback; nothing is left half-written.

The promises and which test covers each are listed in docs/reliability.md. Everything here uses tiny
hand-made files (a few kB) and no training: the whole file runs in seconds.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from esg_lib.cli import main
from esg_lib.data.testing import make_folder_dataset, make_image


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("ESG_DATA_DIR", str(tmp_path / "fetched"))
    monkeypatch.setenv("ESG_CACHE_DIR", str(tmp_path / "cache"))


def _one_line_error(capsys, code: int) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


# ----------------------------------------------------------------------------------- esg data verify
def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A 1 kB PNG that declares 400 million pixels (over twice Pillow's MAX_IMAGE_PIXELS)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\0" * (width + 1) * 8, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def bad_image_folder(root: Path) -> Path:
    """Two classes of good images plus the four bad files of issue 35: zero bytes, text named .png,
    a truncated PNG and a decompression bomb."""
    make_folder_dataset(root, {"a": 3, "b": 3})
    (root / "a" / "zero.png").write_bytes(b"")
    (root / "a" / "text.png").write_text("this is not a picture\n")
    whole = make_image(root / "b" / "whole.png", size=(32, 32), seed=7).read_bytes()
    (root / "b" / "cut.png").write_bytes(whole[: len(whole) // 2])
    (root / "b" / "bomb.png").write_bytes(png_bomb())
    return root


def test_data_verify_decodes_every_image_and_names_each_bad_one(tmp_path, capsys):
    root = bad_image_folder(tmp_path / "mine")
    assert main(["data", "verify", str(root)]) == 1          # decoding is the default, not an option
    out = capsys.readouterr().out
    expected = {"a/zero.png": "empty file (0 bytes)", "a/text.png": "not an image Pillow can read",
                "b/cut.png": "truncated or corrupt image data", "b/bomb.png": "decompression bomb"}
    for rel, why in expected.items():
        line = next((ln for ln in out.splitlines() if ln.startswith(f"cannot decode: {rel}: ")), None)
        assert line is not None and why in line, (rel, out)
    assert out.strip().splitlines()[-1] == "FAILED: 4 of 11 file(s) cannot be decoded"
    assert "OK" not in out


def test_data_verify_ok_only_when_everything_decodes(tmp_path, capsys):
    root = make_folder_dataset(tmp_path / "fine", {"a": 2, "b": 2})
    assert main(["data", "verify", str(root)]) == 0
    assert "OK: 4 images, 2 classes (no manifest to compare with; every image decodes)" in capsys.readouterr().out
    bad_image_folder(tmp_path / "bad")
    assert main(["data", "verify", str(tmp_path / "bad"), "--no-decode"]) == 0   # the quick count says so
    assert "images not decoded" in capsys.readouterr().out


def test_data_verify_help_documents_output_and_exit_status(capsys):
    with pytest.raises(SystemExit):
        main(["data", "verify", "--help"])
    out = capsys.readouterr().out
    for text in ("cannot decode: C/F: WHY", "empty file", "decompression bomb", "FAILED: N of M",
                 "exit status:", "0  every image decodes", "1  some file cannot be decoded", "2  bad usage"):
        assert text in out, text
