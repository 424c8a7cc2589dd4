"""Bad inputs end in one clear line naming the file, never a traceback; nothing is left half-written.

The promises and which test covers each are listed in docs/reliability.md. Everything here uses tiny
hand-made files (a few kB) and no training: the whole file runs in seconds.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import zipfile
from pathlib import Path

import pytest
import torch

from esg_lib.cli import main
from esg_lib.data.testing import make_folder_dataset, make_image, png_bomb

RECORD = {  # a committed run record's fields that the tables read (values as esg report writes them)
    "run": "s0-0123456789", "run_id": "0123456789abcdef", "profile": "cpu", "dataset": "x-sdd",
    "model": "resnet18", "timm_name": "resnet18", "label": "ResNet18", "seed": 0, "status": "done",
    "protocol": "leak-free", "variant": "abcdef12", "acc": 0.9, "precision": 0.8, "recall": 0.85, "f1": 0.82,
    "loss": 0.3, "test_n": 272, "fps": 100.0, "params": 11_000_000, "steps": 100, "train_seconds": 10.0,
    "hardware": "CPU test x2",
}


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


# ----------------------------------------------------------------------------------- run records
def _records_folder(results: Path, profile: str = "cpu") -> Path:
    folder = results / profile / "runs"
    folder.mkdir(parents=True)
    (folder / "x-sdd__resnet18__s0-0123456789.json").write_text(json.dumps(RECORD))
    return folder


@pytest.mark.parametrize("content, why", [
    (b'{"model": "resnet18", "acc": 0.9', "not valid JSON"),
    (b"", "an empty file"),
    (b"\x89PNG\r\n\x1a\n\x00\xff", "not valid JSON"),
    (b"[1, 2, 3]", "holds a JSON list"),
    (b"{}", "an empty record"),
    (json.dumps({**RECORD, "model": None}).encode(), "'model' is missing"),
    (json.dumps({**RECORD, "seed": "zero"}).encode(), "'seed' is missing or not an integer"),
    (json.dumps({**RECORD, "acc": "high"}).encode(), "'acc' is not a number"),
])
def test_a_corrupt_record_is_named_and_counted_never_skipped_in_silence(tmp_path, content, why):
    from esg_lib.report import load_records
    from esg_lib.report.tables import RecordWarning

    folder = _records_folder(tmp_path)
    (folder / "x-sdd__vit__s1-broken.json").write_bytes(content)
    with pytest.warns(RecordWarning) as caught:
        records = load_records("cpu", tmp_path)
    assert [r["model"] for r in records] == ["resnet18"]
    message = str(caught[0].message)
    assert "skipped 1 of 2 run record(s)" in message and "x-sdd__vit__s1-broken.json" in message
    assert why in message and "using the other 1" in message


def test_esg_report_says_how_many_records_it_skipped(tmp_path, capsys):
    from esg_lib.report.tables import RecordWarning

    folder = _records_folder(tmp_path / "results")
    (folder / "x-sdd__vit__s1-broken.json").write_text('{"truncated": ')
    with pytest.warns(RecordWarning, match=r"skipped 1 of 2 .*x-sdd__vit__s1-broken\.json: not valid JSON"):
        code = main(["report", "--profile", "cpu", "--out", str(tmp_path / "runs"),
                     "--results", str(tmp_path / "results")])
    assert code == 0
    table = (tmp_path / "results" / "cpu" / "x-sdd.csv").read_text()
    assert "resnet18" in table and "vit" not in table      # built from the good record alone


# ----------------------------------------------------------------------------------- checkpoints
class _RunsCode:
    """Pickles into a call of ``exec``: what an untrusted checkpoint could hide."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def _bad_checkpoints(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the one error line must say)."""
    good = tmp / "good.pt"
    torch.save({"model": {"w": torch.zeros(64)}, "model_spec": {"name": "resnet18"}}, good)
    whole = good.read_bytes()
    files = {
        "random bytes": (os.urandom(4096), "not a PyTorch checkpoint"),
        "truncated": (whole[: len(whole) // 2], "truncated or damaged"),
        "empty": (b"", "empty (0 bytes)"),
        "text": (b"hello\n", "not a PyTorch checkpoint"),
    }
    out = {}
    for name, (data, why) in files.items():
        path = tmp / f"{name.replace(' ', '-')}.pt"
        path.write_bytes(data)
        out[name] = (path, why)
    torch.save([1, 2, 3], tmp / "list.pt")
    out["wrong type (a list)"] = (tmp / "list.pt", "holds a list, not the contents of an esg training checkpoint")
    torch.save({"model": {}, "epoch": 3}, tmp / "partial.pt")
    out["dict without the run's description"] = (tmp / "partial.pt", "not an esg training checkpoint (no model_spec")
    run = {"model": {}, "model_spec": {"label": "x", "name": "no_such_model"}, "config": {"img_size": 32},
           "num_classes": 2, "class_names": ["a", "b"], "mean": [0.5], "std": [0.5]}
    torch.save(run, tmp / "damaged.pt")
    out["damaged model description"] = (tmp / "damaged.pt", "its model description is damaged")
    torch.save({**run, "class_names": [], "config": {}}, tmp / "no-classes.pt")
    out["damaged run description"] = (tmp / "no-classes.pt", "its description of the run is damaged (class_names")
    torch.save({**run, "model_spec": {"label": "x", "name": "resnet18", "kwargs": {"checkpoint_path": "/etc/passwd"}}},
               tmp / "reads-a-file.pt")
    out["timm argument that reads a file"] = (tmp / "reads-a-file.pt", "model argument 'checkpoint_path' is not one")
    torch.save({**run, "model_spec": {"label": "x", "name": "vit_giant_patch14_224"}}, tmp / "giant.pt")
    out["a giant model named by a small file"] = (tmp / "giant.pt", "is larger than the weights it holds (0 values)")
    torch.save({"model": _RunsCode(tmp / "marker")}, tmp / "code.pt")
    out["pickle that runs code"] = (tmp / "code.pt", "refuses to load such objects")
    return out


def test_a_checkpoint_that_fails_to_load_is_one_line_in_our_words(tmp_path, capsys):
    bad = _bad_checkpoints(tmp_path)
    for name, (path, why) in bad.items():
        for argv in (["predict", "--checkpoint", str(path), str(tmp_path / "a.png")],
                     ["evaluate", "--checkpoint", str(path)]):
            line = _one_line_error(capsys, main(argv))
            assert line.startswith(f"esg {argv[0]}: error: cannot read checkpoint {path}: "), (name, line)
            assert why in line, (name, line)
            assert "weights_only" not in line and "trust" not in line, (name, line)   # never PyTorch's advice
    assert not (tmp_path / "marker").exists()          # loading stays weights_only: the code never ran


def test_checkpoints_still_load_with_weights_only(monkeypatch, tmp_path):
    from esg_lib.engine import runtime

    seen = []
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(runtime.torch, "load", spy)
    runtime.save_checkpoint(tmp_path / "last.pt", {"w": torch.ones(3)})
    assert torch.equal(runtime.load_checkpoint(tmp_path / "last.pt")["w"], torch.ones(3))
    assert seen == [True]


# ----------------------------------------------------------------------------------- nothing half-written
@contextlib.contextmanager
def file_size_limit(limit: int):
    """Writes past ``limit`` bytes fail with EFBIG, as on a full disk (RLIMIT_FSIZE; Linux/macOS)."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)


def _only(folder: Path, *names: str) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)   # no temporary file left behind


def test_a_failed_checkpoint_save_leaves_the_previous_one_whole(tmp_path):
    from esg_lib.engine.runtime import load_checkpoint, save_checkpoint

    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1, "w": torch.zeros(8)})
    before = path.read_bytes()
    with file_size_limit(64 * 1024), pytest.raises(Exception):
        save_checkpoint(path, {"epoch": 2, "w": torch.zeros(256 * 1024)})   # 1 MB: the "disk" fills up
    assert path.read_bytes() == before and load_checkpoint(path)["epoch"] == 1
    _only(tmp_path, "last.pt")


def test_checkpoint_bytes_are_those_of_a_direct_save(tmp_path):
    from esg_lib.engine.runtime import save_checkpoint

    payload = {"epoch": 1, "w": torch.arange(10.0)}
    (tmp_path / "direct").mkdir()
    torch.save(payload, tmp_path / "direct" / "best.pt")
    save_checkpoint(tmp_path / "best.pt", payload)
    assert (tmp_path / "best.pt").read_bytes() == (tmp_path / "direct" / "best.pt").read_bytes()


def test_a_failed_record_write_leaves_the_previous_one_whole(tmp_path):
    from esg_lib.engine.runs import read_json, write_json

    path = tmp_path / "metrics.json"
    write_json(path, {"status": "done"})
    before = path.read_text()
    assert before == json.dumps({"status": "done"}, indent=1)            # same text as before the change
    with file_size_limit(4096), pytest.raises(OSError):
        write_json(path, {"status": "done", "log": ["x" * 100] * 1000})
    assert path.read_text() == before and read_json(path) == {"status": "done"}
    _only(tmp_path, "metrics.json")


def test_a_failed_table_write_leaves_the_previous_tables_whole(tmp_path):
    from esg_lib.report import aggregate_records, write_tables

    write_tables(aggregate_records([RECORD]), tmp_path, "cpu")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(before) == ["x-sdd.csv", "x-sdd.md"]
    many = [{**copy.deepcopy(RECORD), "model": f"model-{i:03d}", "label": f"Model {i}"} for i in range(200)]
    with file_size_limit(4096), pytest.raises(OSError):
        write_tables(aggregate_records(many), tmp_path, "cpu")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


# ----------------------------------------------------------------------------------- fuzz harnesses (short)
# The short version of `make fuzz` (esg_lib.fuzz; docs/reliability.md): each harness with a few hundred
# inputs, derandomized (the same inputs every run), failing at the first crash with Hypothesis's shrunk
# example. Two harnesses still find crashes in files outside this change (config.py's parse_overrides, and
# the records that report/tables.py and engine/plan.py accept); they are strict xfails, so the fix flips them.
FUZZ_SHORT = {"image decoding": 300, "archive extraction": 200, "run records + report": 150,
              "checkpoint loading": 150, "--set values": 300}
# harness -> why it still crashes (a strict expected failure); empty: none does. The records harness
# crashed until esg_lib.store.record_problem checked every field's type (issue 36).
FUZZ_KNOWN_CRASHES: dict[str, str] = {}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(reason=FUZZ_KNOWN_CRASHES[n], raises=AssertionError, strict=True))
    if n in FUZZ_KNOWN_CRASHES else n for n in FUZZ_SHORT])
def test_fuzz_harness_short_run_finds_no_crash(name):
    pytest.importorskip("hypothesis")
    from esg_lib.fuzz import HARNESSES, run_harness

    threads = torch.get_num_threads()                   # restored after: the checkpoint seeds come from fit
    try:
        tally = run_harness(HARNESSES[name](), FUZZ_SHORT[name], derandomize=True, raise_on_crash=True)
    finally:
        torch.set_num_threads(threads)
    assert tally.inputs >= FUZZ_SHORT[name] and not tally.crashes
    assert tally.success                                # some inputs get through: they are not all junk
    if name != "run records + report":                  # (a bad record is a warning there, never an error)
        assert tally.user_error


def test_predict_names_a_decompression_bomb_in_one_line(tmp_path, capsys):
    from esg_lib.engine.inference import load_image
    from esg_lib.errors import UserError

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb())
    with pytest.raises(UserError, match=rf"cannot read image {bomb}: decompression bomb, refused without decoding"):
        load_image(bomb, 32)                                # was: Pillow's DecompressionBombError, a traceback


def _tiny_dataset_archive(tmp_path: Path, members: dict[str, bytes]) -> Path:
    archive = tmp_path / "mine.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return archive


def test_fetch_errors_name_the_archive_in_one_line(tmp_path):
    from esg_lib.data import fetch
    from esg_lib.data.errors import DataError

    png = make_image(tmp_path / "x.png", size=(8, 8), seed=99).read_bytes()
    one_class = _tiny_dataset_archive(tmp_path, {"top/X-SDD/datas/red iron/1.png": png})
    with pytest.raises(DataError) as caught:
        fetch.fetch_dataset("x-sdd", one_class, log=lambda m: None)
    assert "mine.zip" in str(caught.value) and ".fetch-" not in str(caught.value)   # not the staging folder
    pngs = {f"top/X-SDD/datas/{c}/1.png": make_image(tmp_path / f"{i}.png", size=(8, 8), seed=i).read_bytes()
            for i, c in enumerate(fetch.KNOWN["x-sdd"].class_table)}
    newline = _tiny_dataset_archive(tmp_path, {**pngs, "top/X-SDD/datas/red iron/odd\nname.png": png})
    with pytest.raises(DataError) as caught:
        fetch.fetch_dataset("x-sdd", newline, log=lambda m: None)
    assert "\n" not in str(caught.value) and "mine.zip" in str(caught.value)
    from esg_lib.data.manifest import compare
    summary = compare({"a/1.png": "0" * 64}, {"a/1.png": "0" * 64, "a/odd\nname.png": "1" * 64}).summary()
    assert summary == "1 extra ('a/odd\\nname.png')"                    # shown escaped, on one line


@pytest.mark.parametrize("field, option", [("model", "--model"), ("seed", "--seeds"), ("profile", "--profile"),
                                           ("dataset", "--dataset")])
def test_set_of_a_field_with_its_own_option_is_one_line(field, option, capsys, tmp_path):
    code = main(["train", "--set", f"{field}=1", "--out", str(tmp_path)])
    assert _one_line_error(capsys, code).endswith(f"--set {field}: use {option} instead")


@pytest.mark.parametrize("container", ["zip", "tar.gz"])
def test_a_fetched_copy_holds_exactly_the_files_it_verified(tmp_path, monkeypatch, container):
    pytest.importorskip("hypothesis")
    from esg_lib.data.fetch import fetch_dataset
    from esg_lib.fuzz.harnesses import FUZZ_DATASET, SUBDIR, TOP, ArchiveExtraction, Member, build_archive

    harness = ArchiveExtraction()
    harness.prepare(tmp_path, tmp_path)                 # registers a tiny known dataset (4 PNGs) for the test
    try:
        hidden = [Member(f"{TOP}/{SUBDIR}/good/.hidden.png", "file", b"not verified"),
                  Member(f"{TOP}/{SUBDIR}/bad/__MACOSX/", "dir"),
                  Member(f"{TOP}/{SUBDIR}/bad/__MACOSX/._0.png", "file", b"x")]
        archive = tmp_path / f"mine.{container}"
        archive.write_bytes(build_archive(harness.valid + hidden, container))
        monkeypatch.setenv("ESG_DATA_DIR", str(tmp_path / "fetched"))
        target = fetch_dataset(FUZZ_DATASET, archive, log=lambda m: None)
    finally:
        harness.close()
    # was: the hidden files were installed too (the manifest check skips them, so they were never verified)
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()) == \
        ["LICENSE", "SOURCE.txt", "bad/0000.png", "bad/0001.png", "good/0000.png", "good/0001.png"]
