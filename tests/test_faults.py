"""Faults a run must survive (issue 35 s.2-4): a kill at chosen points, a full disk, two processes on one run.

Every test drives real ``esg train`` / ``esg report`` processes (``python -m esg_lib``) on a tiny
folder dataset (3 classes x 12 images, 16 px, the smoke profile at 32 px, timm's ``test_convnext``
with 0.2 M parameters, 3 epochs of 3 steps, 1 thread), and pauses them where they must be killed with
``ESG_PAUSE_AT`` (esg_lib/engine/runtime.py: ``checkpoint`` = the new checkpoint is written to its
temporary file, not yet renamed; ``write`` = a JSON file, record or table is handed to its temporary
file, not yet renamed) or, mid-epoch, with ``train.STEP_HOOK``. Each ``esg`` process takes about
10 s (mostly imports), hence the ``slow`` marks. What is promised: docs/reliability.md.
"""
from __future__ import annotations

import csv
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from esg_lib.data.testing import make_folder_dataset

pytestmark = pytest.mark.slow

MODEL = "test_convnext"
TIMING_KEYS = {"epoch_seconds", "train_seconds", "data_seconds", "data_wait_fraction"}
# record fields that depend on the clock or the process, not on the training
RECORD_CLOCK = {"train_seconds", "wall_seconds", "finished", "command", "fps", "fps_protocol", "hardware", "git"}
PAUSED = "esg: paused at"
MID_EPOCH = ("import sys\n"
             "from esg_lib.engine import runtime, train\n"
             "train.STEP_HOOK = lambda step: runtime.pause_point('step', str(step))\n"
             "from esg_lib.cli import main\n"
             "sys.exit(main(sys.argv[1:]))\n")


# ----------------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults")
    make_folder_dataset(root / "ds", {"a": 12, "b": 12, "c": 12}, size=16)
    return root


def _env(base: Path, pause: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ESG_PAUSE_AT"}
    env.update(ESG_CACHE_DIR=str(base / "cache"), ESG_DATA_DIR=str(base / "fetched"), OMP_NUM_THREADS="1",
               PYTHONUNBUFFERED="1")
    if pause:
        env["ESG_PAUSE_AT"] = pause
    return env


def _train_argv(base: Path, out: Path, results: Path) -> list[str]:
    return ["train", "--dataset", str(base / "ds"), "--model", MODEL, "--threads", "1", "--no-progress",
            "--out", str(out), "--results", str(results), "--set", "epochs=3"]


def esg(base: Path, argv: list[str], pause: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "esg_lib", *argv], env=_env(base, pause), capture_output=True,
                          text=True, timeout=timeout)


def start_and_pause(base: Path, argv: list[str], pause: str, *, mid_epoch: bool = False,
                    timeout: float = 300) -> subprocess.Popen:
    """Start ``esg ARGV`` with ``ESG_PAUSE_AT=pause`` and return once it says it paused there."""
    cmd = [sys.executable, "-c", MID_EPOCH, *argv] if mid_epoch else [sys.executable, "-m", "esg_lib", *argv]
    proc = subprocess.Popen(cmd, env=_env(base, pause), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 1.0)
        if ready:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            seen.append(line)
            if line.startswith(PAUSED):
                return proc
    proc.kill()
    proc.wait()
    raise AssertionError(f"never paused at {pause}: exit {proc.returncode}, stderr:\n{''.join(seen)[-3000:]}")


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def run_dir(out: Path) -> Path:
    (folder,) = {p.parent for p in out.rglob("config.json")}
    return folder


def _is_temporary(p: Path) -> bool:
    return p.name.endswith(".tmp") or ".tmp-" in p.name


def assert_nothing_half_written(*roots: Path) -> None:
    """Every checkpoint loads, every JSON file parses, every table is whole: only the temporary files
    of the write a kill interrupted may be incomplete (their targets are whole)."""
    for root in roots:
        for p in sorted(root.rglob("*")):
            if not p.is_file() or _is_temporary(p):
                continue
            if p.suffix == ".pt":
                ck = torch.load(p, map_location="cpu", weights_only=True)
                assert isinstance(ck, dict) and "model" in ck, p
            elif p.suffix == ".json":
                json.loads(p.read_text())
            elif p.suffix == ".jsonl":
                for line in p.read_text().splitlines():
                    json.loads(line)
            elif p.suffix == ".csv":
                rows = list(csv.reader(p.open()))
                assert rows and all(len(r) == len(rows[0]) for r in rows), p
            elif p.suffix == ".md":
                assert p.read_text().rstrip().endswith("`."), p      # a table page ends with its rebuild line


def outcome(out: Path, results: Path) -> dict:
    """What a finished run must reproduce bit for bit: test metrics, best epoch, the epoch log without
    its clock, the weights of best.pt and last.pt, the optimiser state, the record and the table's metrics."""
    folder = run_dir(out)
    metrics = json.loads((folder / "metrics.json").read_text())
    best = torch.load(folder / "best.pt", weights_only=True)
    last = torch.load(folder / "last.pt", weights_only=True)
    (record_path,) = (results / "smoke" / "runs").glob("*.json")
    record = {k: v for k, v in json.loads(record_path.read_text()).items() if k not in RECORD_CLOCK}
    table = [{k: v for k, v in row.items() if k.split("_")[0] in ("acc", "precision", "recall", "f1", "model", "seeds")}
             for row in csv.DictReader((results / "smoke" / "ds.csv").open())]
    log = [{k: v for k, v in json.loads(ln).items() if k not in TIMING_KEYS}
           for ln in (folder / "log.jsonl").read_text().splitlines()]
    return {"run": folder.name, "status": metrics["status"], "test": metrics["test"], "steps": metrics["steps"],
            "best_epoch": metrics["best_epoch"], "val_best": metrics["val_best"], "log": log,
            "best": {k: v.tolist() for k, v in best["model"].items()},
            "last": {k: v.tolist() for k, v in last["model"].items()},
            "optimizer": repr(last["optimizer"]["state"]), "record": record, "table": table}


@pytest.fixture(scope="module")
def reference(base) -> dict:
    """The uninterrupted run."""
    done = esg(base, _train_argv(base, base / "ref-runs", base / "ref-results"))
    assert done.returncode == 0, done.stderr[-3000:]
    return outcome(base / "ref-runs", base / "ref-results")


def _epoch(path: Path) -> int:
    return torch.load(path, weights_only=True)["epoch"]


# ----------------------------------------------------------------------------------- s.2: kills
def test_killed_at_every_point_then_resumed_ends_bit_identical(base, reference):
    """One run killed five times with SIGKILL, each time resumed by the same command: mid-epoch, while
    last.pt is written, while metrics.json is written, while the run's record is written, while a
    table is written; after each kill nothing is half-written, and the end is the uninterrupted run's."""
    out, results = base / "kill-runs", base / "kill-results"
    argv = _train_argv(base, out, results)

    kill(start_and_pause(base, argv, "step:5", mid_epoch=True))          # step 5 of 9: inside epoch 2
    folder = run_dir(out)
    assert _epoch(folder / "last.pt") == 0 and len((folder / "log.jsonl").read_text().splitlines()) == 1
    assert not (folder / "metrics.json").exists()
    assert_nothing_half_written(out, results)

    kill(start_and_pause(base, argv, "checkpoint:last.pt"))             # resumed: epoch 2's last.pt, not yet renamed
    assert _epoch(folder / "last.pt") == 0                              # the previous one, whole
    assert any(p.name.startswith("last.tmp-") for p in folder.iterdir())
    assert_nothing_half_written(out, results)

    kill(start_and_pause(base, argv, "write:metrics.json"))             # all 3 epochs done, test scored
    assert _epoch(folder / "last.pt") == 2 and not (folder / "metrics.json").exists()
    assert_nothing_half_written(out, results)

    kill(start_and_pause(base, argv, "write:ds__*.json"))               # esg train's report: the record
    assert json.loads((folder / "metrics.json").read_text())["status"] == "done"
    assert not list((results / "smoke" / "runs").glob("*.json"))
    assert_nothing_half_written(out, results)

    kill(start_and_pause(base, argv, "write:ds.md"))                    # the record is whole, ds.csv too
    assert len(list((results / "smoke" / "runs").glob("*.json"))) == 1 and (results / "smoke" / "ds.csv").exists()
    assert not (results / "smoke" / "ds.md").exists()
    assert_nothing_half_written(out, results)

    done = esg(base, argv)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "reusing finished run" in done.stdout
    assert outcome(out, results) == reference

    tables = {p.name: p.read_bytes() for p in (results / "smoke").glob("ds.*")}
    kill(start_and_pause(base, ["report", "--profile", "smoke", "--out", str(out), "--results", str(results)],
                         "write:ds.csv"))                              # a rebuild killed mid-table
    assert {p.name: p.read_bytes() for p in (results / "smoke").glob("ds.*")} == tables
    assert_nothing_half_written(out, results)


# ----------------------------------------------------------------------------------- s.3: a full disk
@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of 8 MB (root and mount(8) needed; skipped with the reason otherwise), unmounted after."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a full-disk test needs root to mount a tmpfs")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _resize(mnt: Path, size: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mnt)], check=True, capture_output=True)


def _fill(mnt: Path, leave: int = 0) -> Path:
    """Fill the file system up to ``leave`` bytes free with a ballast file."""
    ballast = mnt / "ballast"
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize - leave
    with open(ballast, "wb") as fh:
        try:
            fh.write(b"\0" * max(free, 0))
            fh.flush()
        except OSError:
            pass
    return ballast


def _one_error_line(stderr: str, command: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [ln for ln in stderr.splitlines() if ln.startswith(f"esg {command}: error:")]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def test_a_full_disk_stops_training_with_one_line_keeps_files_whole_and_resumes(base, reference, small_disk):
    out, results = small_disk / "runs", small_disk / "results"
    argv = _train_argv(base, out, results)
    shutil.copytree(base / "ref-results", results)             # records and tables of an earlier run
    earlier = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    ref_dir = run_dir(base / "ref-runs")
    best, last = (ref_dir / "best.pt").stat().st_size, (ref_dir / "last.pt").stat().st_size
    used = sum(len(b) for b in earlier.values())
    # room for epoch 1's files and a new best.pt, not for a second last.pt beside the first
    _resize(small_disk, (used + best + last + last // 2 + 256 * 1024) // 4096 * 4096)

    done = esg(base, argv)
    assert done.returncode == 2
    line = _one_error_line(done.stderr, "train")
    assert "no space left" in line.lower() and "last.pt" in line and "run the same command again" in line, line
    folder = run_dir(out)
    assert _epoch(folder / "last.pt") == 0                     # the previous checkpoint, whole
    assert {p: p.read_bytes() for p in earlier} == earlier       # the earlier records and tables, untouched
    assert_nothing_half_written(out, results)
    assert not [p for p in folder.iterdir() if _is_temporary(p)]  # the failed write removed its temporary file

    _resize(small_disk, 64 * 1024 * 1024)                      # space again: the same command resumes
    done = esg(base, argv)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming" in done.stdout
    got = outcome(out, results)
    assert {k: v for k, v in got.items() if k not in ("record", "table")} == \
        {k: v for k, v in reference.items() if k not in ("record", "table")}

    tables = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    ballast = _fill(small_disk)                                # full again: esg report
    report = ["report", "--profile", "smoke", "--out", str(out), "--results", str(results)]
    done = esg(base, report)
    assert done.returncode == 2
    assert "no space left" in _one_error_line(done.stderr, "report").lower()
    assert {p: p.read_bytes() for p in tables} == tables         # every record and table as it was
    ballast.unlink()
    done = esg(base, report)
    assert done.returncode == 0, done.stderr[-3000:]


# ----------------------------------------------------------------------------------- s.4: two processes
def test_a_second_esg_train_of_a_run_in_training_refuses_with_one_line(base, reference):
    out, results = base / "two-runs", base / "two-results"
    argv = _train_argv(base, out, results)
    first = start_and_pause(base, argv, "checkpoint:last.pt:2")  # trains (epoch 2's last.pt), holds the run's lock
    try:
        second = esg(base, argv)
        assert second.returncode == 2
        assert f"is being trained by pid {first.pid}" in second.stderr
        assert _one_error_line(second.stderr, "train").endswith(
            "1 run(s) not trained here, another process holds them: test_convnext/seed 0")
        folder = run_dir(out)
        assert _epoch(folder / "last.pt") == 0 and (folder.parent / (folder.name + ".lock")).exists()
    finally:
        kill(first)
    third = esg(base, argv)                                     # its holder was killed: the stale lock is taken over
    assert third.returncode == 0, third.stderr[-3000:]
    assert "resuming" in third.stdout
    assert outcome(out, results) == reference


def test_a_run_killed_before_its_first_checkpoint_restarts_with_a_clean_log(base, reference):
    out, results = base / "first-runs", base / "first-results"
    argv = _train_argv(base, out, results)
    kill(start_and_pause(base, argv, "checkpoint:last.pt"))
    assert not (run_dir(out) / "last.pt").exists()
    done = esg(base, argv)
    assert done.returncode == 0, done.stderr[-3000:]
    got = outcome(out, results)
    assert got["test"] == reference["test"] and got["best"] == reference["best"]
    assert got["log"] == reference["log"]       # each epoch once: the first start's line is gone


def test_a_log_line_cut_by_a_kill_is_dropped_on_resume(tmp_path):
    """A kill mid-append leaves half a JSON line; truncating on resume drops it instead of failing."""
    from esg_lib.engine.train import _truncate_log

    log = tmp_path / "log.jsonl"
    log.write_text('{"epoch": 1, "loss": 2.0}\n{"epoch": 2, "loss": 1.5}\n{"epoch": 3, "lo')
    _truncate_log(log, 1)
    assert log.read_text() == '{"epoch": 1, "loss": 2.0}\n{"epoch": 2, "loss": 1.5}\n'
    _truncate_log(log, -1)
    assert log.read_text() == ""


QUEUE = """\
import sys, json
from pathlib import Path
from esg_lib.engine.runs import export_run_metrics, write_json
from esg_lib.report import build_report
runs, results, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
for i in range(8):                         # like esg queue: train (here: write a finished run), export, report
    folder = runs / "smoke" / "ds" / f"m{i:02d}" / f"s{seed}-{i:010d}"
    folder.mkdir(parents=True)
    config = {"model": f"m{i:02d}", "seed": seed, "profile": "smoke", "dataset": "ds", "epochs": 1}
    write_json(folder / "config.json", {"run_id": f"{seed}{i:015d}", "dataset_name": "ds", "config": config,
                                        "model_spec": {"name": "resnet18", "label": f"M{i}"}, "num_classes": 3})
    write_json(folder / "metrics.json", {"status": "done", "test": {"acc": 0.5 + i / 100, "precision": 0.5,
               "recall": 0.5, "f1": 0.5 + seed / 100, "loss": 1.0, "n": 10}, "gmacs": 0.1, "steps": 3})
    export_run_metrics([folder], results / "smoke")
    build_report("smoke", runs, results)
print("done")
"""


def test_two_queues_writing_records_into_one_results_folder_lose_none(tmp_path):
    runs, results = tmp_path / "runs", tmp_path / "results"
    procs = [subprocess.Popen([sys.executable, "-c", QUEUE, str(runs), str(results), str(seed)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
             for seed in (0, 1)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0 and out.strip() == "done", err[-3000:]
    records = sorted((results / "smoke" / "runs").glob("*.json"))
    assert len(records) == 16
    got = {(r["model"], r["seed"]): r["acc"] for r in map(lambda p: json.loads(p.read_text()), records)}
    assert got == {(f"m{i:02d}", s): 0.5 + i / 100 for i in range(8) for s in (0, 1)}
    assert not [p for p in results.rglob("*") if _is_temporary(p)]
    assert_nothing_half_written(results)
    from esg_lib.report import build_report
    build_report("smoke", runs, results)                      # the tables from every record
    rows = list(csv.DictReader((results / "smoke" / "ds.csv").open()))
    assert sorted((r["model"], r["seeds"]) for r in rows) == [(f"m{i:02d}", "0 1") for i in range(8)]
