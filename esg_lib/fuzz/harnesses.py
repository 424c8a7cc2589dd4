"""The five harnesses of issue 35: what each feeds, through which of the project's entry points, and
what it checks beyond the common rules of :mod:`.core`.

Each harness has ``name``, ``prepare(seeds, sandbox)`` (its seed files, once), ``strategy(sandbox)``
(the Hypothesis strategy of one input), ``run(value, ctx)`` (one input, in ``ctx.target``) and
``check(value, ctx)`` (its own checks after a run that did not raise), and optionally ``close()``.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from esg_lib import store
from esg_lib.data.testing import png_bomb

from .core import Context, HarnessCheckFailed
from .mutate import byte_moves, image_moves, mutated


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink())


# =============================================================================== image decoding
def _image_seeds() -> dict[str, bytes]:
    """Small valid PNG, JPEG and BMP files in the modes Pillow writes, plus a PNG header bomb."""
    import numpy as np
    from PIL import Image, PngImagePlugin

    rng = np.random.default_rng(35)
    out: dict[str, bytes] = {}

    def save(name: str, im: Image.Image, fmt: str, **kw: Any) -> None:
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        out[name] = buf.getvalue()

    rgb = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), "RGB")
    gray = rgb.convert("L")
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "fuzz")
    info.add_text("zComment", "compressed text", zip=True)
    for mode in ("L", "RGB", "RGBA", "P", "LA", "1", "I;16"):
        im = gray.convert("I").point(lambda v: v * 200).convert("I;16") if mode == "I;16" else rgb.convert(mode)
        save(f"{mode.replace(';', '')}.png", im, "PNG")
    save("text.png", rgb, "PNG", pnginfo=info)
    save("optimized.png", rgb.convert("P"), "PNG", optimize=True, transparency=0)
    save("L.jpg", gray, "JPEG", quality=70)
    save("RGB.jpg", rgb, "JPEG", quality=90, subsampling=0)
    save("progressive.jpg", rgb, "JPEG", progressive=True, quality=50)
    save("CMYK.jpg", rgb.convert("CMYK"), "JPEG")
    exif = Image.Exif()
    exif[0x0112] = 6
    save("exif.jpg", rgb, "JPEG", exif=exif.tobytes())
    for mode in ("RGB", "L", "P", "1", "RGBA"):
        save(f"{mode}.bmp", rgb.convert(mode), "BMP")
    out["bomb.png"] = png_bomb()
    return out


class ImageDecoding:
    """Mutated PNG, JPEG and BMP bytes through the project's decoder: ``esg predict``'s
    :func:`esg_lib.engine.inference.load_image` (success, or one UserError naming the file) and the
    reason ``esg data verify`` and training give for a file that fails
    (:func:`esg_lib.data.decode.decode_file` then :func:`esg_lib.data.verify.decode_problem`: one line)."""

    name = "image decoding"

    def prepare(self, seeds: Path, sandbox: Path) -> None:
        self.seeds = _image_seeds()

    def strategy(self, sandbox: Path):
        return st.tuples(mutated(self.seeds, image_moves()), st.sampled_from(["L", "RGB"]),
                         st.sampled_from([8, 32, 64]))

    def run(self, value, ctx: Context) -> None:
        from esg_lib.data.decode import decode_file
        from esg_lib.data.verify import decode_problem
        from esg_lib.engine.inference import load_image

        (seed, data), mode, size = value
        path = ctx.target / ("image" + Path(seed).suffix)
        path.write_bytes(data)
        ctx.names.append(str(path))
        try:
            decode_file(path, 8, "RGB")
        except Exception as exc:  # noqa: BLE001 - what verify and training catch
            why = decode_problem(path, exc)
            if not isinstance(why, str) or "\n" in why or not why:
                raise HarnessCheckFailed(f"decode_problem gave {why!r} for {type(exc).__name__}") from None
        tensor = load_image(path, size, mode)
        if tuple(tensor.shape) != (3, size, size) or str(tensor.dtype) != "torch.uint8":
            raise HarnessCheckFailed(f"load_image returned {tuple(tensor.shape)} {tensor.dtype}")

    def check(self, value, ctx: Context) -> None:
        pass


# =============================================================================== archive extraction
FUZZ_DATASET = "fuzz-set"
CLASSES = ("bad", "good")
TOP, SUBDIR = "fuzz-set-0123abc", "data"


def _dataset_files() -> dict[str, bytes]:
    """``{class/file: bytes}`` of the tiny dataset the archives hold (4 PNGs, 8 x 8)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(7)
    files = {}
    for cls in CLASSES:
        for i in range(2):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L").save(buf, "PNG")
            files[f"{cls}/{i:04d}.png"] = buf.getvalue()
    return files


@dataclass
class Member:
    name: str
    kind: str            # file | dir | symlink | hardlink | fifo | chardev
    data: bytes = b""
    link: str = ""


CONTAINERS = ("zip", "zip-deflated", "tar", "tar.gz", "tar.bz2", "tar.xz")


def _suffix(container: str) -> str:
    return ".zip" if container.startswith("zip") else "." + container


def build_archive(members: list[Member], container: str) -> bytes:
    """The archive bytes of ``members`` (zip links as Unix mode bits in ``external_attr``)."""
    buf = io.BytesIO()
    if container.startswith("zip"):
        method = zipfile.ZIP_DEFLATED if container == "zip-deflated" else zipfile.ZIP_STORED
        with zipfile.ZipFile(buf, "w", method) as zf:
            for m in members:
                name = m.name + ("/" if m.kind == "dir" and not m.name.endswith("/") else "")
                info = zipfile.ZipInfo(name or "x")
                info.compress_type = method
                mode = {"file": 0o100644, "dir": 0o040755, "symlink": 0o120777, "hardlink": 0o100644,
                        "fifo": 0o010644, "chardev": 0o020644}[m.kind]
                info.create_system = 3
                info.external_attr = (mode << 16) | (0x10 if m.kind == "dir" else 0)
                zf.writestr(info, m.link.encode() if m.kind in ("symlink", "hardlink") else m.data)
        return buf.getvalue()
    with tarfile.open(fileobj=buf, mode="w:" + (container.split(".")[1] if "." in container else ""),
                      format=tarfile.GNU_FORMAT) as tf:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.mtime = 0
            info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                         "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE, "chardev": tarfile.CHRTYPE}[m.kind]
            info.mode = 0o755 if m.kind == "dir" else 0o644
            if m.kind == "file":
                info.size = len(m.data)
                tf.addfile(info, io.BytesIO(m.data))
            else:
                info.linkname = m.link
                tf.addfile(info)
    return buf.getvalue()


def tar_set_size(data: bytes, index: int, size: int) -> bytes:
    """The ``index``-th tar header (of an uncompressed tar) made to declare ``size`` bytes, checksum fixed."""
    out, off, i = bytearray(data), 0, 0
    while off + 512 <= len(out) and any(out[off:off + 512]):
        try:
            declared = int(out[off + 124:off + 136].strip(b"\0 ") or b"0", 8)
        except ValueError:
            return bytes(out)
        if i == index:
            out[off + 124:off + 136] = f"{size % 8**11:011o}\0".encode()
            out[off + 148:off + 156] = b" " * 8
            out[off + 148:off + 156] = f"{sum(out[off:off + 512]):06o}\0 ".encode()
            return bytes(out)
        off += 512 + (declared + 511) // 512 * 512
        i += 1
    return bytes(out)


def zip_set_size(data: bytes, index: int, size: int, compressed: bool) -> bytes:
    """The ``index``-th central-directory entry of a zip made to declare ``size`` bytes."""
    out, start = bytearray(data), 0
    for _ in range(index + 1):
        start = out.find(b"PK\x01\x02", start)
        if start < 0:
            return bytes(out)
        start += 4
    pos = start - 4 + (20 if compressed else 24)
    out[pos:pos + 4] = (size % (1 << 32)).to_bytes(4, "little")
    return bytes(out)


class ArchiveExtraction:
    """``esg data fetch`` from a local archive (:func:`esg_lib.data.fetch.fetch_dataset`) of a tiny
    known dataset registered for the run: zip (stored, deflated) and tar (plain, gz, bz2, xz) archives
    built from drawn entries (names with ``..``, absolute paths into the sandbox, drive letters,
    backslashes, control characters, long and deep names; symlinks, hard links, FIFOs, devices;
    duplicated entries; declared sizes that lie; truncation) or byte-mutated valid ones. Checks:
    nothing outside the fetched-data folder, no link and no half-installed copy left in it, and a
    success installs exactly the manifest's files."""

    name = "archive extraction"

    def prepare(self, seeds: Path, sandbox: Path) -> None:
        from esg_lib.data import fetch
        from esg_lib.data.manifest import format_manifest
        from esg_lib.data.registry import DatasetSpec

        self.files = _dataset_files()
        import hashlib
        manifest = format_manifest({rel: hashlib.sha256(b).hexdigest() for rel, b in self.files.items()})

        class FuzzSpec(DatasetSpec):
            def manifest_text(self) -> str:  # noqa: D102 - the tiny dataset's manifest, not a packaged file
                return manifest

        self.spec = FuzzSpec(name=FUZZ_DATASET, title="fuzz", class_table={c: c for c in CLASSES},
                             abbreviations={c: c for c in CLASSES}, url="https://example.invalid/fuzz.zip",
                             archive_subdir=SUBDIR, repo="fuzz/fuzz", commit="0" * 40, license="CC0",
                             citation="none", color_mode="L", extra_files=("LICENSE",))
        self._known = fetch.KNOWN
        fetch.KNOWN[FUZZ_DATASET] = self.spec
        self.valid = self.members()
        self.seed_archives = {f"valid{_suffix(c)}#{c}": build_archive(self.valid, c) for c in CONTAINERS}

    def close(self) -> None:
        self._known.pop(FUZZ_DATASET, None)

    def members(self) -> list[Member]:
        out = [Member(f"{TOP}/", "dir"), Member(f"{TOP}/LICENSE", "file", b"CC0\n")]
        for cls in CLASSES:
            out.append(Member(f"{TOP}/{SUBDIR}/{cls}/", "dir"))
        out += [Member(f"{TOP}/{SUBDIR}/{rel}", "file", data) for rel, data in self.files.items()]
        return out

    def strategy(self, sandbox: Path):
        escape = str(sandbox / "escaped")
        valid_names = [m.name for m in self.valid]
        bad_names = [
            "../escaped", "../../escaped", f"{TOP}/../../escaped", f"{TOP}/{SUBDIR}/good/../../../../escaped",
            escape, escape + "/x.png", "//" + escape.lstrip("/"), "C:/escaped", "C:\\escaped", "..\\escaped",
            f"{TOP}\\..\\..\\escaped", "", ".", "./", "/", f"{TOP}//{SUBDIR}", f"{TOP}/{SUBDIR}/good/" + "a" * 300,
            "/".join(["d"] * 120) + "/x", f"{TOP}/{SUBDIR}/good/x\n.png", f"{TOP}/{SUBDIR}/good/\x00.png",
            f"{TOP}/{SUBDIR}/good/ünï côdé.png", f"{TOP}/{SUBDIR}/good/.hidden.png",
            f"{TOP}/{SUBDIR}/new class/x.png",
            f"{TOP}/{SUBDIR}/good/x.txt", f"{TOP}/{SUBDIR}/good", "__MACOSX/._x", f"{TOP}/{SUBDIR}/good/0000.png/",
        ]
        segment = st.sampled_from(["..", ".", "", TOP, SUBDIR, "good", "bad", "0000.png", "x", "a\\b", "C:", "~"])
        random_name = st.lists(segment, min_size=1, max_size=6).map("/".join)
        names = st.one_of(st.sampled_from(valid_names), st.sampled_from(bad_names), random_name,
                          st.text(max_size=40))
        links = st.sampled_from(["..", "../escaped", escape, "/", ".", f"{TOP}/{SUBDIR}/good/0000.png",
                                 "0000.png", "../" * 8 + "etc", f"{TOP}/LICENSE"])
        contents = st.one_of(st.sampled_from(list(self.files.values())), st.binary(max_size=64),
                             st.sampled_from([b"", b"\0" * 70_000]))
        member = st.builds(Member, names, st.sampled_from(["file", "file", "file", "dir", "symlink", "hardlink",
                                                           "fifo", "chardev"]), contents, links)
        built = st.fixed_dictionaries({
            "container": st.sampled_from(CONTAINERS),
            "drop": st.lists(st.integers(0, 20), max_size=3),
            "rename": st.lists(st.tuples(st.integers(0, 20), names), max_size=2),
            "extra": st.lists(st.tuples(st.integers(0, 20), member), max_size=4),
            "size_lie": st.one_of(st.none(), st.tuples(st.integers(0, 12), st.sampled_from(
                [0, 1, 7, 511, 513, 4096, 10**6, 2**31, 2**32 - 1]), st.booleans())),
            "truncate": st.one_of(st.none(), st.integers(0, 1 << 16)),
            "moves": st.lists(byte_moves(), max_size=2),
        })
        raw = mutated(self.seed_archives, byte_moves(), max_moves=4)
        return st.one_of(built, raw)

    def archive_bytes(self, value) -> tuple[str, bytes]:
        if isinstance(value, tuple):                     # a byte-mutated valid archive
            seed, data = value
            return seed.split("#")[1], data
        members = list(self.valid)
        for i in sorted(set(value["drop"]), reverse=True):
            if i < len(members):
                del members[i]
        for i, name in value["rename"]:
            if members:
                m = members[i % len(members)]
                members[i % len(members)] = Member(name, m.kind, m.data, m.link)
        for i, m in value["extra"]:
            members.insert(i % (len(members) + 1), m)
        container = value["container"]
        try:
            data = build_archive(members, container)
        except (ValueError, OverflowError, UnicodeError, tarfile.TarError):
            data = build_archive(self.valid, container)  # a name the format cannot even store
        if value["size_lie"] is not None:
            index, size, compressed = value["size_lie"]
            data = (tar_set_size(data, index, size) if container == "tar"
                    else zip_set_size(data, index, size, compressed) if container.startswith("zip") else data)
        data = bytearray(data)
        for move in value["moves"]:
            data = move(data, [data])
        if value["truncate"] is not None and data:
            data = data[: value["truncate"] % len(data)]
        return container, bytes(data)

    def run(self, value, ctx: Context) -> None:
        from esg_lib.data.fetch import fetch_dataset

        container, data = self.archive_bytes(value)
        path = ctx.target / ("download" + _suffix(container))
        path.write_bytes(data)
        ctx.names += [path.name, str(path)]
        fetched = ctx.target / "fetched"
        old = os.environ.get("ESG_DATA_DIR")
        os.environ["ESG_DATA_DIR"] = str(fetched)
        try:
            fetch_dataset(FUZZ_DATASET, str(path), progress=False, log=lambda *a, **k: None)
        finally:
            os.environ["ESG_DATA_DIR"] = old or ""
            self._after(ctx)
        installed = fetched / FUZZ_DATASET
        got = {p.relative_to(installed).as_posix() for p in _files_under(installed)}
        want = set(self.files) | {"SOURCE.txt"} | ({"LICENSE"} if (installed / "LICENSE").exists() else set())
        if got != want:
            raise HarnessCheckFailed(f"a successful fetch installed {sorted(got - want)} beyond the manifest"
                                     f" or lacks {sorted(want - got)}")

    def _after(self, ctx: Context) -> None:
        """Whatever happened: no link anywhere in the fetched-data folder, no staging folder left."""
        fetched = ctx.target / "fetched"
        if not fetched.exists():
            return
        links = [str(p) for p in fetched.rglob("*") if p.is_symlink()]
        left = [p.name for p in fetched.iterdir() if p.name.startswith(".fetch-")]
        if links or left:
            raise HarnessCheckFailed(f"left behind: links {links[:3]}, staging folders {left[:3]}")

    def check(self, value, ctx: Context) -> None:
        pass


# =============================================================================== run records + report
RECORD = {
    "run": "s0-0123456789", "run_id": "0123456789abcdef", "profile": "cpu", "dataset": "x-sdd",
    "model": "resnet18", "timm_name": "resnet18", "label": "ResNet18", "seed": 0, "status": "done",
    "protocol": "leak-free", "variant": "abcdef12", "acc": 0.9, "precision": 0.8, "recall": 0.85, "f1": 0.82,
    "loss": 0.3, "test_n": 272, "fps": 100.0, "params": 11_000_000, "steps": 100, "train_seconds": 10.0,
    "hardware": "CPU test x2", "val": {"val_loss": 0.4, "val_acc": 0.8, "val_f1": 0.7},
    "per_class_recall": {"a": 0.9, "b": 0.8}, "gmacs": 0.5, "epochs_done": 15, "epochs": 15,
}

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                         st.floats(allow_nan=True, allow_infinity=True),
                         st.text(max_size=12), st.sampled_from(["../../escaped", "a/b", "", "x" * 300, "cpu", "—"]))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)


@st.composite
def record_edits(draw, base: dict[str, Any] = RECORD) -> dict[str, Any]:
    rec = copy.deepcopy(base)
    rec["seed"] = draw(st.integers(2, 5))
    for key in draw(st.lists(st.sampled_from(sorted(base) + ["extra"]), max_size=5, unique=True)):
        if draw(st.booleans()):
            rec[key] = draw(json_values)
        else:
            rec.pop(key, None)
    return rec


def _json_text(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


class RunRecords:
    """Run records in ``results/<profile>/runs/`` beside two good ones, through ``esg report``'s
    :func:`esg_lib.report.build_report` (load, aggregate, write the tables) and the results block of
    ``esg report --readme`` (:func:`esg_lib.report.results_block`): records with fields of any JSON type
    or missing, NaN and infinities, byte-mutated record text, other JSON, random bytes. Checks: every
    record left out is named in a RecordWarning (never skipped in silence); tables only in the target.
    The good records carry the variant the profile trains now, so that they (and the edited ones that
    keep it) are current and reach every section of the results block, not only the detail tables."""

    name = "run records + report"
    profile = "cpu"

    def prepare(self, seeds: Path, sandbox: Path) -> None:
        from esg_lib.engine.runs import expected_variant

        self.record = {**RECORD, "variant": expected_variant(self.profile, RECORD["model"], RECORD["dataset"],
                                                             RECORD["protocol"])}
        self.good = _json_text(self.record)

    def strategy(self, sandbox: Path):
        content = st.one_of(record_edits(self.record).map(_json_text),
                            mutated({"record": self.good}, byte_moves()).map(lambda t: t[1]),
                            json_values.map(_json_text), st.binary(max_size=64))
        names = st.sampled_from(["x-sdd__vit__s1-fuzz.json", "x-sdd__resnet18__s2-fuzz.json", "odd name ü.json",
                                 "..json", "neu-cls-64__swin-t__s0-fuzz.json"])
        return st.lists(st.tuples(names, content), min_size=1, max_size=3, unique_by=lambda t: t[0])

    def run(self, value, ctx: Context) -> None:
        from esg_lib.report import build_report, results_block

        folder = store.records_dir(store.results_root(ctx.target), self.profile)
        folder.mkdir(parents=True)
        for seed in (0, 1):
            (folder / store.record_name("x-sdd", "resnet18", f"s{seed}-good")).write_bytes(
                _json_text({**self.record, "seed": seed}))
        for name, data in value:
            (folder / name).write_bytes(data)
            ctx.names.append(name)
        ctx.names.append(str(folder))
        build_report(self.profile, store.runs_root(ctx.target), store.results_root(ctx.target))
        block = results_block(self.profile, store.results_root(ctx.target))
        if not isinstance(block, str):
            raise HarnessCheckFailed("results_block returned no text")

    def check(self, value, ctx: Context) -> None:
        folder = store.records_dir(store.results_root(ctx.target), self.profile)
        _, skipped = store.read_records(folder)
        said = " ".join(str(w.message) for w in ctx.warnings if issubclass(w.category, store.RecordWarning))
        silent = [p.name for p, _ in skipped if p.name not in said]
        if silent:
            raise HarnessCheckFailed(f"record(s) skipped in silence: {silent}")


# =============================================================================== checkpoints
python_values = st.one_of(json_scalars, st.lists(json_scalars, max_size=4),
                          st.dictionaries(st.text(max_size=6), json_scalars, max_size=3))
CHECKPOINT_KEYS = ("model", "model_spec", "config", "num_classes", "class_names", "display_names", "mean",
                   "std", "color_mode", "epoch", "params")
# names a checkpoint may give: the seed's own, other real models (a giant one among them), ours
MODEL_NAMES = ("test_efficientnet", "resnet18", "vit_giant_patch14_224", "convnext_xxlarge", "test_vit",
               "esg_convnext_atto", "swin_tiny_patch4_window7_224", "inception_v3")
TIMM_KWARGS = ("drop_path_rate", "img_size", "in_chans", "global_pool", "checkpoint_path", "pretrained",
               "pretrained_cfg_overlay", "features_only", "depths", "num_features", "act_layer")


class Checkpoints:
    """``esg predict`` (:func:`esg_lib.engine.inference.predict_images`) with a checkpoint that is a
    byte-mutated ``best.pt`` of a real (tiny) training run, its zip members mutated and re-zipped
    (``data.pkl``, the tensor storages), or its contents edited (any key removed or set to another
    value: the model description and its timm arguments, the config, classes, normalisation, weights
    of other shapes and dtypes) and saved again. Loading stays ``weights_only``: a pickle that would
    run code is among the seeds, and it must not run (it would write a file outside the target)."""

    name = "checkpoint loading"

    def prepare(self, seeds: Path, sandbox: Path) -> None:
        import torch

        from esg_lib.engine import build_config, fit
        from esg_lib.engine.synthetic import synthetic_bundle
        from esg_lib.data.testing import make_image

        torch.set_num_threads(1)
        bundle = synthetic_bundle(n_train=16, n_val=4, n_test=4, img_size=32, num_classes=3)
        cfg = build_config("smoke", model="test_efficientnet", epochs=1, batch_size=8, progress=False,
                           out=str(store.runs_root(seeds)), fps_iters=1, fps_warmup=0, save_features=False, threads=1)
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            res = fit(cfg, bundle=bundle)
        self.best = (res.run_dir / "best.pt").read_bytes()
        self.contents = torch.load(res.run_dir / "best.pt", weights_only=True)
        self.image = make_image(seeds / "input.png", size=(20, 20), seed=3)
        marker = sandbox / "escaped-by-pickle"

        class RunsCode:
            def __reduce__(self):
                return (exec, (f"open({str(marker)!r}, 'w').write('ran')",))

        buf = io.BytesIO()
        torch.save({**self.contents, "model_spec": RunsCode()}, buf)
        self.seed_files = {"best.pt": self.best, "code.pt": buf.getvalue()}
        with zipfile.ZipFile(io.BytesIO(self.best)) as zf:
            self.members = {i.filename: zf.read(i) for i in zf.infolist()}

    def strategy(self, sandbox: Path):
        import torch

        tensors = st.builds(lambda shape, dtype, fill: torch.full(shape, fill, dtype=dtype),
                            st.lists(st.integers(0, 4), max_size=3).map(tuple),
                            st.sampled_from([torch.float32, torch.float16, torch.int64, torch.bool, torch.uint8]),
                            st.sampled_from([0, 1]))
        keys = list(self.contents)
        top_edit = st.tuples(st.just("top"), st.sampled_from(sorted(set(keys) | set(CHECKPOINT_KEYS))),
                             st.one_of(st.just("<delete>"), python_values, tensors))
        nested_edit = st.tuples(st.sampled_from(["config", "model_spec"]),
                                st.sampled_from(["img_size", "name", "label", "kwargs", "min_input", "model"]),
                                st.one_of(st.just("<delete>"), python_values, st.sampled_from(MODEL_NAMES),
                                          st.integers(-10, 5000)))
        kwargs_edit = st.tuples(st.just("kwargs"), st.sampled_from(TIMM_KWARGS),
                                st.one_of(python_values, st.integers(-10, 5000),
                                          st.just(str(sandbox / "seeds" / "input.png"))))
        weight_edit = st.tuples(st.just("weight"), st.integers(0, 10_000), st.one_of(st.just("<delete>"), tensors))
        edits = st.lists(st.one_of(top_edit, nested_edit, kwargs_edit, weight_edit), min_size=1, max_size=4)
        member_edit = st.tuples(st.sampled_from(sorted(self.members)), st.lists(byte_moves(), min_size=1, max_size=3))
        return st.tuples(st.one_of(mutated(self.seed_files, byte_moves(), max_moves=4).map(lambda t: ("bytes", t)),
                                   edits.map(lambda e: ("edit", e)),
                                   member_edit.map(lambda m: ("member", m))),
                         st.integers(0, 5))

    def checkpoint_bytes(self, value) -> bytes:
        import torch

        kind, what = value
        if kind == "bytes":
            return what[1]
        if kind == "member":
            name, moves = what
            data = bytearray(self.members[name])
            for move in moves:
                data = move(data, [data])
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
                for n, b in self.members.items():
                    zf.writestr(n, bytes(data) if n == name else b)
            return buf.getvalue()
        ck = copy.deepcopy(self.contents)
        for where, key, new in what:
            if where == "top":
                _set(ck, key, new)
            elif where == "weight":
                names = sorted(ck["model"]) if isinstance(ck.get("model"), dict) else []
                if names:
                    _set(ck["model"], names[key % len(names)], new)
            elif where == "kwargs":
                spec = ck.get("model_spec")
                if isinstance(spec, dict):
                    old = spec.get("kwargs") or {}
                    spec["kwargs"] = {**old, key: new} if isinstance(old, dict) else {key: new}
            elif isinstance(ck.get(where), dict):
                _set(ck[where], key, new)
        buf = io.BytesIO()
        torch.save(ck, buf)
        return buf.getvalue()

    def run(self, value, ctx: Context) -> None:
        from esg_lib.engine.inference import predict_images

        what, top = value
        path = ctx.target / "best.pt"
        path.write_bytes(self.checkpoint_bytes(what))
        ctx.names += [str(path), str(self.image)]
        out = predict_images(path, [str(self.image)], top=top, device="cpu")
        if len(out) != 1 or not out[0][1]:
            raise HarnessCheckFailed(f"predict_images returned {out!r}")
        for name, p in out[0][1]:
            if not isinstance(name, str) or not (0.0 <= p <= 1.0 or math.isnan(p)):
                raise HarnessCheckFailed(f"prediction {name!r} {p!r}")

    def check(self, value, ctx: Context) -> None:
        pass


def _set(d: dict, key: str, new: Any) -> None:
    if new == "<delete>" if isinstance(new, str) else False:
        d.pop(key, None)
    else:
        d[key] = new


# =============================================================================== --set values
OVERRIDE_VALUES = ("", "none", "None", "null", "~", "???", "true", "false", "yes", "off", "nan", "inf", "-inf",
                   "1e999", "-1e999", "1e-400", "0x10", "0o7", "0b1", "1_000", "-1", "0", "1", "0.5", "3e-4",
                   "99999999999999999999", "${foo}", "${oc.env:HOME}", "${oc.env:ESG_NOPE}", "${oc.decode:'1'}",
                   "${oc.create:{a:1}}", "${lr}", "${}", "$", "[1,2]", "[]", "{a: 1}", "{}", "'3'", '"3"',
                   "!!python/object:os.system", "!!binary aGk=", "&a 1", "*a", "|", ">", "#c", "1 # c", "\x00",
                   "\t", "\n", "a=b", "=", "cuda:0", "../../escaped", "é", "𝟙", "1\n2", " 3 ", "-", "--", "?", ":",
                   "a: b", "- a", "%", "@x", "`x`", "1,2", "1.0.0", "+1", ".5", "5.", "1e3", "TRUE", "On")


class SetValues:
    """``esg train --set KEY=VALUE`` values: ``esg train``'s own steps before any data work (its
    ``_overrides``, i.e. :func:`esg_lib.engine.config.parse_overrides`, then
    :func:`~esg_lib.engine.config.build_config` with the command's model and seed) on one to three
    items whose keys are config fields, their dashed spellings or unknown names, and whose values are
    YAML and OmegaConf syntax (interpolations, resolvers, lists, maps, tags, anchors), numbers in
    every notation, control characters and random text. A UserError must name one of the keys."""

    name = "--set values"

    def prepare(self, seeds: Path, sandbox: Path) -> None:
        from esg_lib.engine.config import TrainConfig
        import dataclasses

        self.fields = sorted(f.name for f in dataclasses.fields(TrainConfig))

    def strategy(self, sandbox: Path):
        keys = st.one_of(st.sampled_from(self.fields), st.sampled_from(self.fields).map(lambda k: k.replace("_", "-")),
                         st.sampled_from(["", "lr ", " epochs", "LR", "config", "model.name", "a.b", "_FIELDS",
                                          "RUNTIME_FIELDS", "to_dict", "__class__", "profile"]),
                         st.text(max_size=10))
        values = st.one_of(st.sampled_from(OVERRIDE_VALUES), st.integers().map(str),
                           st.floats().map(repr), st.text(max_size=16),
                           st.text(alphabet="${}[]:,.'\"=~?!&*|>-#%@` \t\n0123456789aeflnortux", max_size=12))
        item = st.one_of(st.builds(lambda k, v: f"{k}={v}", keys, values), st.text(max_size=20))
        return st.lists(item, min_size=1, max_size=3)

    def run(self, value, ctx: Context) -> None:
        import argparse

        from esg_lib.commands.train import _overrides
        from esg_lib.engine.config import build_config, get_profile

        for item in value:
            key = item.split("=", 1)[0]
            ctx.names += [item, repr(item), key, repr(key), key.strip(), repr(key.strip()),
                          key.strip().replace("-", "_"), repr(key.strip().replace("-", "_"))]
        # what `esg train --set ...` does before any data work (esg_lib.commands.train.cmd_train)
        args = argparse.Namespace(set=list(value), epochs=None, batch_size=None, img_size=None, lr=None,
                                  max_images=None, device=None, threads=None)
        overrides = _overrides(args)
        if not isinstance(overrides, dict):
            raise HarnessCheckFailed(f"the overrides are {overrides!r}")
        overrides.update(dataset="x-sdd", protocol="leak-free", out="runs", pretrained_file=None)
        build_config(get_profile("smoke"), model="esg_convnext_atto", seed=0, **overrides)

    def check(self, value, ctx: Context) -> None:
        pass


HARNESSES = {h.name: h for h in (ImageDecoding, ArchiveExtraction, RunRecords, Checkpoints, SetValues)}
