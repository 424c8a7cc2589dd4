"""Run identity, run folders, run metadata, listing, aggregation across seeds and result tables.

A run is identified by a hash of what determines its result: the resolved model (timm name and
kwargs), the data identity (``bundle.identity``: dataset content hash, protocol, split seed,
sizes, fractions, augmentation), the profile and its training fields, and the seed. The git commit
is recorded in ``meta.json`` but is *not* part of the identity, so a finished run is reused (not
retrained) after unrelated commits; ``--force`` retrains.

Layout::

    runs/<profile>/<dataset>/<model>/s<seed>-<id10>/
        config.json   meta.json   log.jsonl   last.pt   best.pt   metrics.json   fps.json
        test_predictions.csv   test_confusion.csv   test_report.json   test_features.npz
    results/<profile>/
        runs/<dataset>__<model>__s<seed>-<id10>.json   (per-run metrics: small, committable)
        <dataset>.csv  <dataset>.md                    (mean ± std across seeds per model)
"""
from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Mapping

from esg_lib import metrics as M

from esg_lib.errors import UserError

from .config import ABLATION, COMPARISON, ModelSpec, TrainConfig, get_profile, identity_fields

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


def slug(text: str) -> str:
    text = Path(str(text).rstrip("/\\")).name or str(text)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-").lower() or "x"


def run_dir(cfg: TrainConfig, dataset_name: str, run_id: str) -> Path:
    return Path(cfg.out) / cfg.profile / slug(dataset_name) / slug(cfg.model) / f"s{cfg.seed}-{run_id[:10]}"


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
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------- metadata
def git_commit() -> dict[str, Any]:
    """The checkout's commit and whether tracked files differ from it. A copy of the code without its
    ``.git`` (rsynced to a batch or GPU machine) names its commit in ``$ESG_SOURCE_COMMIT`` instead;
    ``dirty`` is then unknown (None) and ``source`` says where the commit came from."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD") or None
        if commit:
            return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        pass
    given = os.environ.get("ESG_SOURCE_COMMIT", "").strip()
    if given:
        return {"commit": given, "dirty": None, "source": "ESG_SOURCE_COMMIT"}
    return {"commit": None, "dirty": None}


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for name in ("torch", "torchvision", "timm", "scikit-learn", "numpy", "esg-lib"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def hardware(device: Any = None) -> dict[str, Any]:
    import torch

    info = {"platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor() or None, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    if device is not None and str(device).startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def hardware_text(meta: Mapping[str, Any]) -> str:
    """``"CPU x86_64, 2 cores, 2 threads"`` or ``"NVIDIA H100 x1"`` from a run's meta.json."""
    hw = meta.get("hardware") or {}
    if str(meta.get("device", "cpu")).startswith("cuda"):
        return f"{hw.get('gpu', 'GPU')} x{meta.get('world_size', 1)}"
    return (f"CPU {hw.get('processor') or hw.get('machine') or '?'}, {hw.get('cpu_count', '?')} cores, "
            f"{meta.get('threads', '?')} threads")


# ----------------------------------------------------------------------------------- listing
def find_runs(out: str | Path = "runs", profile: str | None = None) -> list[Path]:
    """Run folders (those with a config.json) under ``out`` (optionally one profile)."""
    base = Path(out) / profile if profile else Path(out)
    if not base.is_dir():
        return []
    return sorted(p.parent for p in base.rglob("config.json"))


def config_variant(config: Mapping[str, Any]) -> str:
    """Short hash of the config fields that determine a result, apart from model, seed and protocol:
    runs of one table row must share it (an ``--set epochs=3`` run is another row, not another seed)."""
    keep = {k: v for k, v in config.items()
            if k not in TrainConfig.RUNTIME_FIELDS | {"model", "seed", "protocol", "dataset"}}
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


# ----------------------------------------------------------------------------------- tables
def _order(key: str) -> tuple[int, str]:
    rank = {k: i for i, k in enumerate((*COMPARISON, *ABLATION))}
    return (rank.get(key, len(rank)), key)


_GMACS: dict[str, float] = {}


def run_gmacs(folder: Path) -> float | None:
    """GMACs (multiply-adds, the unit the paper calls GFLOPs) of one forward pass of the run's
    model at the run's image size, counted on a fresh model (cached per model and size)."""
    from .models import build_model

    cfg = read_json(folder / "config.json") or {}
    spec_d, c = cfg.get("model_spec") or {}, cfg.get("config") or {}
    if not spec_d.get("name") or not c.get("img_size"):
        return None
    key = _canonical([spec_d.get("name"), spec_d.get("kwargs"), spec_d.get("min_input"), c["img_size"],
                      cfg.get("num_classes")])
    if key not in _GMACS:
        from esg_lib.models.zoo import count_gmacs

        spec = ModelSpec(spec_d.get("label") or spec_d["name"], spec_d["name"], spec_d.get("kwargs") or {},
                         spec_d.get("min_input"))
        model = build_model(spec, int(cfg.get("num_classes") or 7), int(c["img_size"]))
        _GMACS[key] = count_gmacs(model, int(c["img_size"]))
    return _GMACS[key]


def export_run_metrics(folders: Iterable[Path], results: Path) -> list[Path]:
    """Copy each finished run's metrics into ``results/runs/`` (small JSON files to commit).

    Runs cut short by ``max_steps`` (``--dry-run``, ``--set max_steps=N``) are checks, not results:
    they are never exported, so a quick check cannot land in the committed tables."""
    dest = results / "runs"
    written = []
    for folder in folders:
        if not is_finished(folder) or run_config(folder).get("max_steps"):
            continue
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
        dest.mkdir(parents=True, exist_ok=True)
        path = dest / f"{slug(rec['dataset'])}__{slug(rec['model'])}__{rec['run']}.json"
        write_json(path, rec)
        written.append(path)
    return written


def run_config(folder: Path) -> dict[str, Any]:
    """The training config a run folder was made with (empty if its config.json is missing)."""
    return (read_json(folder / "config.json") or {}).get("config", {})


def table_name(dataset: str, protocol: str = "leak-free") -> str:
    """Tables are per dataset and split protocol: ``x-sdd``, ``x-sdd__augment-then-split``."""
    return dataset if protocol in (None, "leak-free") else f"{dataset}__{protocol}"


def machine_kind(hardware: str | None) -> str:
    """``"gpu"`` or ``"cpu"``: of a record's :func:`hardware_text` (a record without one ran on a CPU)."""
    return "cpu" if not hardware or hardware.startswith("CPU") else "gpu"


def this_machine_kind() -> str:
    """:func:`machine_kind` of the machine running this code."""
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def machine_name(hardware: str | None) -> str:
    """A record's hardware text without its thread count: ``"CPU x86_64, 2 cores"``,
    ``"NVIDIA H100 80GB HBM3 x1"`` (threads vary between runs of one machine)."""
    text = hardware or "unknown"
    return text.rsplit(", ", 1)[0] if text.startswith("CPU") and text.endswith("threads") else text


def aggregate_records(records: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """``{table: [row per model]}`` with mean ± std across seeds of the test metrics.

    One table per (dataset, protocol) (:func:`table_name`); one row per model and config variant
    (runs trained with other settings, e.g. ``--set epochs=3``, never average with the profile's).
    A row whose seeds ran on different machines has no FPS or training-seconds mean (NaN): those
    depend on the machine, the metrics do not; its ``hardware`` names every machine.
    """
    groups: dict[tuple[str, str, str, str], list[Mapping[str, Any]]] = {}
    for r in records:
        key = (table_name(r["dataset"], r.get("protocol", "leak-free")), r["model"], r.get("variant", ""))
        groups.setdefault(key, []).append(r)
    variants: dict[tuple[str, str], int] = {}
    for table, model, _ in groups:
        variants[(table, model)] = variants.get((table, model), 0) + 1
    tables: dict[str, list[dict[str, Any]]] = {}
    for (table, model, variant), rows in sorted(groups.items(), key=lambda kv: (kv[0][0], _order(kv[0][1]), kv[0][2])):
        machines = sorted({machine_name(r.get("hardware")) for r in rows})
        agg = M.aggregate(rows, (*M.METRIC_KEYS, "fps", "train_seconds"))
        if len(machines) > 1:
            for k in ("fps", "train_seconds"):
                agg[k] = (math.nan, math.nan, agg[k][2])
        first = rows[0]
        label = first.get("label") or model
        if variants[(table, model)] > 1:
            label = f"{label} [{variant}]"
        row: dict[str, Any] = {"model": model, "label": label, "variant": variant,
                               "timm_name": first.get("timm_name"), "params": first.get("params"),
                               "steps": first.get("steps"),
                               "seeds": " ".join(str(r["seed"]) for r in sorted(rows, key=lambda r: r["seed"])),
                               "n": len(rows), "hardware": "; ".join(machines)}
        for k, (mean, std, n) in agg.items():
            row[f"{k}_mean"], row[f"{k}_std"] = mean, std
        tables.setdefault(table, []).append(row)
    return tables


def write_tables(tables: Mapping[str, list[dict[str, Any]]], results: Path, profile: str) -> list[Path]:
    """``results/<profile>/<dataset>.csv`` (raw numbers) and ``.md`` (percent, mean ± std)."""
    results.mkdir(parents=True, exist_ok=True)
    written = []
    for dataset, rows in tables.items():
        csv_path, md_path = results / f"{slug(dataset)}.csv", results / f"{slug(dataset)}.md"
        fields = list(rows[0].keys())
        with open(csv_path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            for r in rows:
                w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        md_path.write_text(table_markdown(dataset, rows, profile))
        written += [csv_path, md_path]
    return written


def table_markdown(table: str, rows: list[dict[str, Any]], profile: str) -> str:
    """One aggregated table as Markdown (percent, mean ± std over seeds)."""
    lines = [f"# {table} — profile `{profile}` (test set; mean ± std over seeds, %)", "",
             "| Model | timm | Params (M) | Acc | Pre | Rec | F1 | FPS | Steps | Train s | Seeds | Hardware |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [format_cell(r, k) for k in M.METRIC_KEYS]
        fps = "—" if r.get("fps_mean") != r.get("fps_mean") else f"{r['fps_mean']:.1f}"
        secs = "—" if r.get("train_seconds_mean") != r.get("train_seconds_mean") else f"{r['train_seconds_mean']:.0f}"
        params = f"{r['params'] / 1e6:.2f}" if r.get("params") else "—"
        lines.append(f"| {r['label']} | {r['timm_name']} | {params} | {' | '.join(cells)} | {fps} "
                     f"| {r['steps']} | {secs} | {r['seeds']} | {r.get('hardware') or '—'} |")
    lines += ["", "Macro-averaged precision/recall/F1 (scikit-learn). FPS: see the README "
              "(protocol); FPS and training seconds are the runs' own, on the hardware named, and "
              "left out (—) for a row whose seeds ran on different machines. Rebuild: `esg report "
              f"--profile {profile}`.", ""]
    return "\n".join(lines)


README_BEGIN = "<!-- results:{profile}:begin (generated by `esg report --profile {profile} --readme`) -->"
README_END = "<!-- results:{profile}:end -->"


def readme_results(profile: str, results: str | Path = "results") -> str:
    """The README's results block for a profile, rebuilt from the committed per-run metrics
    ``results/<profile>/runs/*.json`` and tuning records (a test checks the README matches); see
    :mod:`esg_lib.engine.analysis`."""
    from .analysis import results_block

    return results_block(profile, results)


def update_readme(profile: str, readme: str | Path, results: str | Path = "results") -> bool:
    """Rewrite the README's results block for ``profile``; returns whether the file changed."""
    path = Path(readme)
    text = path.read_text()
    begin, end = README_BEGIN.format(profile=profile), README_END.format(profile=profile)
    if begin not in text or end not in text:
        raise UserError(f"{path} has no results block for {profile!r} ({begin} ... {end})")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    new = f"{head}{begin}\n{readme_results(profile, results)}\n{end}{tail}"
    if new != text:
        path.write_text(new)
    return new != text


def format_cell(row: Mapping[str, Any], key: str) -> str:
    return M.format_mean_std(row[f"{key}_mean"], row[f"{key}_std"], row["n"])


def build_report(profile: str, runs: str | Path = "runs", results: str | Path = "results") -> list[Path]:
    """Rebuild every table in ``results/<profile>/`` without training.

    Finished run folders under ``runs/<profile>`` are exported to ``results/<profile>/runs/*.json``
    first; the tables are then built from those per-run files, so they can be rebuilt from the
    committed per-run metrics alone (a fresh clone without ``runs/``).
    """
    get_profile(profile)
    res = Path(results) / profile
    export_run_metrics(find_runs(runs, profile), res)
    records = [r for r in (read_json(p) for p in sorted((res / "runs").glob("*.json"))) if r]
    return write_tables(aggregate_records(records), res, profile) if records else []


def spec_dict(spec: ModelSpec) -> dict[str, Any]:
    d = asdict(spec)
    d["kwargs"] = dict(spec.kwargs)
    return d
