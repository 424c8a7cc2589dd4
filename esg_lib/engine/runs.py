"""The run store: run identity, run folders, locks, JSON files, listing and the per-run records.

A run is identified by a hash of what determines its result: the resolved model (timm name and
kwargs), the data identity (``bundle.identity``: dataset content hash, protocol, split seed,
sizes, fractions, augmentation), the profile and its training fields, and the seed. The git commit
is recorded in ``meta.json`` but is *not* part of the identity, so a finished run is reused (not
retrained) after unrelated commits; ``--force`` retrains.

Where run folders, records and their copies live is :mod:`esg_lib.store`'s (the one owner of the
layout); a run folder holds::

    config.json   meta.json   log.jsonl   last.pt   best.pt   metrics.json   fps.json
    test_predictions.csv   test_confusion.csv   test_report.json   test_features.npz

A run's record is built from its folder by :func:`build_record` (a pure function: nothing written)
and written by :func:`export_run_metrics`, which also stamps every record of the profile with the
variant the profile trains now (:func:`stamp_records`), so that the report reads whether a record
is current from the record itself.

The tables over seeds are the reporting layer's (:mod:`esg_lib.report`): the engine writes the
per-run records, and never imports the layers above it.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from esg_lib import metrics as M
from esg_lib import store
from esg_lib.errors import UserError
from esg_lib.models.zoo import count_gmacs

from .artifacts import export_artifacts
from .config import ModelSpec, ProfileRef, TrainConfig, build_config, identity_fields, result_fields
from .models import build_model
from .provenance import hardware_text
from .runtime import atomic_write

ROOT = Path(__file__).resolve().parents[2]


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def run_identity(cfg: TrainConfig, spec: ModelSpec, data_identity: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-able payload whose hash names the run."""
    return {
        "model": {"name": spec.name, "kwargs": dict(spec.kwargs), "min_input": spec.min_input},
        "data": dict(data_identity),
        "config": identity_fields(cfg),
        "pretrained_file_size": (os.path.getsize(cfg.pretrained_file)
                                 if cfg.pretrained_file and os.path.isfile(cfg.pretrained_file)
                                 else None),
    }


def run_hash(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()


slug = store.slug               # re-exported: the engine's callers name files with it
table_name = store.table_name   # re-exported: tables are per dataset and split protocol


def run_dir(cfg: TrainConfig, dataset_name: str, run_id: str) -> Path:
    """The run folder of ``cfg`` (:func:`esg_lib.store.run_folder`)."""
    return store.run_folder(cfg.out, cfg.profile, dataset_name, cfg.model, store.run_name(cfg.seed, run_id))


def is_finished(folder: Path) -> bool:
    m = read_json(folder / "metrics.json")
    return bool(m) and m.get("status") == "done"


class RunBusy(UserError):
    """Another live process is training this run (its lock file names the process)."""


class RunLock:
    """Exclusive right to train one run folder, so that parallel ``esg queue`` / ``esg tune`` /
    ``esg train`` processes (two terminals, two GPUs) never write the same checkpoint.

    The lock is a file *beside* the folder (``<folder>.lock``, so ``--force`` may delete the folder
    while holding it) created with ``O_EXCL`` and holding the owner's host, pid and start time. A
    lock left by a process that no longer runs on this host is stale and is taken over; a lock from
    another host is trusted (we cannot see its processes), and the message says how to clear it.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        self.path = folder.with_name(folder.name + ".lock")
        self.held = False

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        owner = {"host": platform.node(), "pid": os.getpid(), "started": now_iso()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = read_json(self.path) or {}
                if holder.get("pid") == os.getpid() and holder.get("host") == platform.node():
                    raise RunBusy(f"{self.path}: this process already trains that run") from None
                if not _is_stale(holder):
                    raise RunBusy(
                        f"run {self.path.with_suffix('')} is being trained by pid {holder.get('pid')} on "
                        f"{holder.get('host')} since {holder.get('started')}; wait for it, or delete "
                        f"{self.path} if that process is gone") from None
                self.path.unlink(missing_ok=True)   # stale: its process died without cleaning up
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(owner, fh)
            self.held = True
            return self
        raise RunBusy(f"could not take {self.path}: other processes keep replacing it")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _is_stale(holder: Mapping[str, Any]) -> bool:
    """A lock whose owner is a dead process on this host (or that is unreadable)."""
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return True
    if holder.get("host") != platform.node():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:       # alive, owned by someone else
        return False
    return False


def now_iso() -> str:
    """The current UTC time, to the second (run metadata and lock files)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as JSON, written whole or not at all (:func:`~.runtime.atomic_write`: a temporary file
    of its own, synced, then ``os.replace``); the text is serialised before the file is touched."""
    text = json.dumps(obj, indent=1, default=str)
    with atomic_write(path) as fh:
        fh.write(text)


# ----------------------------------------------------------------------------------- listing
def find_runs(out: str | Path = "runs", profile: ProfileRef | None = None) -> list[Path]:
    """Run folders (those with a config.json) under ``out`` (optionally one profile)."""
    base = store.run_root(out, profile) if profile else Path(out)
    if not base.is_dir():
        return []
    return sorted(p.parent for p in base.rglob("config.json"))


def config_variant(config: Mapping[str, Any]) -> str:
    """Short hash of the config fields that determine a result, apart from model, seed and protocol:
    runs of one table row must share it (an ``--set epochs=3`` run is another row, not another seed)."""
    keep = {k: v for k, v in result_fields(config).items() if k not in {"model", "seed", "protocol", "dataset"}}
    return run_hash(keep)[:8]


def run_record(folder: Path) -> dict[str, Any]:
    """One flat row describing a run folder: identity, status and test metrics."""
    cfg = read_json(folder / "config.json") or {}
    met = read_json(folder / "metrics.json") or {}
    log = folder / "log.jsonl"
    epochs_logged = sum(1 for _ in open(log)) if log.is_file() else 0
    c = cfg.get("config", {})
    row = {"run": folder.name, "path": str(folder), "run_id": cfg.get("run_id", ""),
           "profile": c.get("profile"), "dataset": cfg.get("dataset_name", c.get("dataset")),
           "model": c.get("model"), "timm_name": cfg.get("model_spec", {}).get("name"),
           "label": cfg.get("model_spec", {}).get("label"), "seed": c.get("seed"),
           "status": met.get("status", "running/killed" if (folder / "last.pt").exists() else "new"),
           "epochs_done": epochs_logged, "epochs": c.get("epochs"),
           "protocol": c.get("protocol", "leak-free"), "variant": config_variant(c)}
    test = met.get("test", {})
    for k in (*M.METRIC_KEYS, "loss"):
        row[k] = test.get(k)
    row["test_n"] = test.get("n")
    for k in ("fps", "params", "steps", "best_epoch", "train_seconds", "wall_seconds"):
        row[k] = met.get(k)
    return row


# ----------------------------------------------------------------------------------- records
_GMACS: dict[str, float] = {}


def run_gmacs(folder: Path) -> float | None:
    """GMACs (multiply-adds, the unit the paper calls GFLOPs) of one forward pass of the run's
    model at the run's image size, counted on a fresh model (cached per model and size)."""
    cfg = read_json(folder / "config.json") or {}
    spec_d, c = cfg.get("model_spec") or {}, cfg.get("config") or {}
    if not spec_d.get("name") or not c.get("img_size"):
        return None
    key = _canonical([spec_d.get("name"), spec_d.get("kwargs"), spec_d.get("min_input"), c["img_size"],
                      cfg.get("num_classes")])
    if key not in _GMACS:
        spec = ModelSpec(spec_d.get("label") or spec_d["name"], spec_d["name"], spec_d.get("kwargs") or {},
                         spec_d.get("min_input"))
        model = build_model(spec, int(cfg.get("num_classes") or 7), int(c["img_size"]))
        _GMACS[key] = count_gmacs(model, int(c["img_size"]))
    return _GMACS[key]


def build_record(folder: Path) -> dict[str, Any] | None:
    """The record of a run folder (what ``results/<profile>/runs/*.json`` holds), built in memory and
    written nowhere; None for a run that is not finished or was cut short by ``max_steps``
    (``--dry-run``, ``--set max_steps=N``): those are checks, not results, so a quick check never
    lands in the committed tables. The GMACs may be counted on a freshly built model (torch)."""
    if not is_finished(folder) or run_config(folder).get("max_steps"):
        return None
    rec = run_record(folder)
    rec.pop("path", None)
    met = read_json(folder / "metrics.json") or {}
    meta = read_json(folder / "meta.json") or {}
    report = (read_json(folder / "test_report.json") or {}).get("per_class", {})
    rec["val"] = met.get("val_best")
    rec["per_class_recall"] = {name: v["recall"] for name, v in report.items()
                               if isinstance(v, dict) and name not in ("macro avg", "weighted avg")}
    rec["fps_protocol"] = met.get("fps_protocol")
    rec["git"] = meta.get("git")
    rec["finished"] = meta.get("finished")
    rec["command"] = meta.get("command")
    rec["hardware"] = hardware_text(meta)
    rec["gmacs"] = met.get("gmacs") or run_gmacs(folder)
    log = folder / "log.jsonl"
    rec["curve"] = M.curve_summary([json.loads(line) for line in log.read_text().splitlines()
                                    if line.strip()] if log.is_file() else [])
    rec["profile_variant"] = _profile_variant(rec, {})
    return rec


def build_records(folders: Iterable[Path]) -> list[dict[str, Any]]:
    """:func:`build_record` of each folder that has one (finished, not cut short), in order."""
    return [rec for rec in map(build_record, folders) if rec is not None]


def export_run_metrics(folders: Iterable[Path], results: Path) -> list[Path]:
    """Write the record of each finished run folder (:func:`build_record`) to ``results/runs/``
    (``results`` is ``results/<profile>``) with its light files (:func:`~.artifacts.export_artifacts`),
    then restamp the profile's records (:func:`stamp_records`); returns the records written."""
    base, profile = Path(results).parent, Path(results).name
    written = []
    for folder in folders:
        rec = build_record(folder)
        if rec is None:
            continue
        path = store.record_path(base, profile, rec["dataset"], rec["model"], rec["run"])
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, rec)
        export_artifacts(folder, results, rec.get("seed"))
        written.append(path)
    stamp_records(base, profile)
    return written


def expected_variant(profile: ProfileRef, model: str, dataset: str, protocol: str,
                     overrides: Mapping[str, Any] | None = None) -> str:
    """The config variant a run of this row would have if trained now (recipe and the stage's
    ``overrides`` included)."""
    cfg = build_config(profile, model=model, dataset=dataset, protocol=protocol, **dict(overrides or {}))
    return config_variant(identity_fields(cfg))


def _profile_variant(record: Mapping[str, Any], cache: dict[tuple, str | None]) -> str | None:
    """The variant the record's profile trains now for the record's row; None when the profile, model
    or dataset is no longer known (such a record is never current)."""
    key = (record.get("profile"), record["model"], record["dataset"], record.get("protocol") or "leak-free")
    if key not in cache:
        try:
            cache[key] = expected_variant(*key)
        except Exception:   # any unknown or odd name: the record is simply not current
            cache[key] = None
    return cache[key]


def stamp_records(results: str | Path, profile: ProfileRef) -> list[Path]:
    """Give every usable record of ``results/<profile>/runs/`` the ``profile_variant`` its profile trains now, so that
    :func:`esg_lib.store.is_current` needs no engine; a record already stamped so is not rewritten
    (committed records stay byte-identical), and unusable ones are left to the report to name."""
    cache: dict[tuple, str | None] = {}
    changed = []
    for path in store.record_files(results, profile):
        rec = read_json(path)
        if store.record_problem(rec) is not None:
            continue
        stamp = _profile_variant(rec, cache)
        if "profile_variant" not in rec or rec["profile_variant"] != stamp:
            rec["profile_variant"] = stamp
            write_json(path, rec)
            changed.append(path)
    return changed


def run_config(folder: Path) -> dict[str, Any]:
    """The training config a run folder was made with (empty if its config.json is missing)."""
    return (read_json(folder / "config.json") or {}).get("config", {})


def spec_dict(spec: ModelSpec) -> dict[str, Any]:
    d = asdict(spec)
    d["kwargs"] = dict(spec.kwargs)
    return d
