"""Helpers for tests (this project's and the engine's): tiny synthetic datasets, a local HTTP server,
and hand-made archives (truncated, corrupt, malicious). Not used by the library itself."""
from __future__ import annotations

import contextlib
import functools
import http.server
import io
import tarfile
import threading
import zipfile
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np


def make_image(path: str | Path, *, size: tuple[int, int] = (16, 16), mode: str = "RGB", seed: int = 0) -> Path:
    """Write a random image (distinct content per seed); the format follows the file extension."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16))
    else:
        bands = {"L": 1, "RGB": 3, "RGBA": 4, "LA": 2}[mode]
        arr = rng.integers(0, 256, (h, w, bands), dtype=np.uint8)
        img = Image.fromarray(arr[..., 0] if bands == 1 else arr, mode=mode)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def make_folder_dataset(
    root: str | Path,
    counts: Mapping[str, int],
    *,
    size: int | tuple[int, int] = 16,
    mode: str = "RGB",
    ext: str = ".png",
    seed: int = 0,
) -> Path:
    """``root/<class>/<i><ext>`` with ``counts[class]`` distinct random images per class."""
    root = Path(root)
    wh = (size, size) if isinstance(size, int) else size
    n = 0
    for cls, k in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(k):
            make_image(root / cls / f"{i:04d}{ext}", size=wh, mode=mode, seed=seed * 100_003 + n)
            n += 1
    return root


def zip_folder(folder: str | Path, archive: str | Path, *, prefix: str = "",
               extra: Sequence[tuple[str, bytes]] = ()) -> Path:
    """Zip ``folder`` (stored, not compressed: fast) with entries under ``prefix``, plus extra entries."""
    folder, archive = Path(folder), Path(archive)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, prefix + p.relative_to(folder).as_posix())
        for name, data in extra:
            zf.writestr(name, data)
    return archive


def zip_with_symlink(archive: str | Path, link_name: str, target: str) -> Path:
    """A zip whose entry ``link_name`` is a symlink to ``target`` (Unix mode bits in external_attr)."""
    info = zipfile.ZipInfo(link_name)
    info.create_system = 3
    info.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("top/ok.txt", b"fine")
        zf.writestr(info, target)
    return Path(archive)


def tar_with_member(archive: str | Path, name: str, *, symlink_to: str | None = None) -> Path:
    """A .tar.gz with one regular file, or a symlink when ``symlink_to`` is given."""
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo(name)
        if symlink_to is not None:
            info.type = tarfile.SYMTYPE
            info.linkname = symlink_to
            tf.addfile(info)
        else:
            data = b"payload"
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return Path(archive)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; ``/truncated/<file>`` announces the full length but sends half, then hangs up."""

    requests_seen: list[str]

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.requests_seen.append(self.path)
        if self.path.startswith("/truncated/"):
            path = Path(self.directory) / self.path[len("/truncated/"):]
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@contextlib.contextmanager
def serve_directory(folder: str | Path) -> Iterator[tuple[str, list[str]]]:
    """Serve ``folder`` on 127.0.0.1 (a free port) in a thread; yields (base URL, list of paths requested)."""
    seen: list[str] = []
    handler = functools.partial(type("H", (_Handler,), {"requests_seen": seen}), directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A 1 kB PNG that declares 400 million pixels (over twice Pillow's MAX_IMAGE_PIXELS)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\0" * (width + 1) * 8, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
