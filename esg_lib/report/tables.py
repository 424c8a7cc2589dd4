"""The per-dataset result tables of ``esg report``: ``results/<profile>/<table>.csv`` and ``.md``,
one row per model (and config variant), mean ± std over seeds of the committed run records; and the
profiles' model table kept in the README.

The records are read through the results store (:mod:`esg_lib.store`: ``results/<profile>/runs/*.json``,
written by :func:`esg_lib.engine.runs.export_run_metrics`), so a fresh clone without ``runs/`` rebuilds
every table from the committed records alone. A record file that cannot be used is never skipped in
silence: :func:`~esg_lib.store.load_records` checks every field's type
(:func:`~esg_lib.store.record_problem`), names each bad file in a :class:`~esg_lib.store.RecordWarning`
and says how many were skipped.
Tables are written to a temporary file and ``os.replace``-d (never half-written).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from esg_lib import metrics as M
from esg_lib import store
from esg_lib.engine.config import ABLATION, COMPARISON, ProfileRef, get_profile, profile_name
from esg_lib.engine.fps import fps_figures, fps_note, load_fps
from esg_lib.engine.models import resolve_model
from esg_lib.engine.provenance import machine_name
from esg_lib.engine.runs import export_run_metrics, find_runs
from esg_lib.engine.runtime import atomic_write
from esg_lib.markdown import markdown_rows
# the records are the store's: re-exported here, where the report has always offered them
from esg_lib.store import RecordWarning, load_records, read_records, record_problem, skipped_message  # noqa: F401
from esg_lib.store import slug, table_name

__all__ = ["load_records", "read_records", "record_problem", "RecordWarning", "aggregate_records", "write_tables",
           "table_markdown", "format_cell", "build_report", "model_table_markdown"]

SEED_VALUES = (*M.METRIC_KEYS, "fps", "train_seconds")
# Speed depends on the machine, the metrics do not: a row whose seeds ran on several machines has no mean.
MACHINE_BOUND = ("fps", "train_seconds")


def _order(key: str) -> tuple[int, str]:
    rank = {k: i for i, k in enumerate((*COMPARISON, *ABLATION))}
    return (rank.get(key, len(rank)), key)


def aggregate_records(records: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """``{table: [row per model]}`` with mean ± std across seeds of the test metrics.

    One table per (dataset, protocol) (:func:`~esg_lib.store.table_name`); one row per model
    and config variant (runs trained with other settings, e.g. ``--set epochs=3``, never average with
    the profile's). Mean and sample std (ddof=1; 0 for one seed) skip missing values. A row whose
    seeds ran on different machines has no FPS or training-seconds mean (NaN): those depend on the
    machine, the metrics do not; its ``hardware`` names every machine.
    """
    records = list(records)
    if not records:
        return {}
    frame = pd.DataFrame({
        "table": [table_name(r["dataset"], r.get("protocol", "leak-free")) for r in records],
        "model": [r["model"] for r in records],
        "variant": [r.get("variant") or "" for r in records],
        "machine": [machine_name(r.get("hardware")) for r in records],
        **{k: [math.nan if r.get(k) is None else float(r[k]) for r in records] for k in SEED_VALUES},
    })
    grouped = frame.groupby(["table", "model", "variant"], sort=False, dropna=False)
    stats = grouped[list(SEED_VALUES)].agg(["mean", "std", "count"])
    n_variants = frame.groupby(["table", "model"], sort=False)["variant"].nunique(dropna=False)
    tables: dict[str, list[dict[str, Any]]] = {}
    for key in sorted(grouped.indices, key=lambda k: (k[0], _order(k[1]), k[2])):
        table, model, variant = key
        where = grouped.indices[key]
        rows = [records[i] for i in where]
        machines = sorted(set(frame["machine"].iloc[where]))
        first = rows[0]
        label = first.get("label") or model
        if n_variants[(table, model)] > 1:
            label = f"{label} [{variant}]"
        row: dict[str, Any] = {"model": model, "label": label, "variant": variant,
                               "timm_name": first.get("timm_name"), "params": first.get("params"),
                               "steps": first.get("steps"),
                               "seeds": " ".join(str(r["seed"]) for r in sorted(rows, key=lambda r: r["seed"])),
                               "n": len(rows), "hardware": "; ".join(machines)}
        for k in SEED_VALUES:
            mean, std, n = (float(stats.loc[key, (k, s)]) for s in ("mean", "std", "count"))
            if n == 1:
                std = 0.0
            if len(machines) > 1 and k in MACHINE_BOUND:
                mean = std = math.nan
            row[f"{k}_mean"], row[f"{k}_std"] = mean, std
        tables.setdefault(table, []).append(row)
    return tables


def write_tables(tables: Mapping[str, list[dict[str, Any]]], results: Path, profile: ProfileRef,
                 speed: Mapping[str, Any] | None = None) -> list[Path]:
    """``results/<profile>/<dataset>.csv`` (raw numbers: the runs' own FPS among them) and ``.md``
    (percent, mean ± std; FPS from ``speed``, the profile's ``fps.json``, when measured)."""
    results.mkdir(parents=True, exist_ok=True)
    written = []
    for dataset, rows in tables.items():
        csv_path, md_path = results / f"{slug(dataset)}.csv", results / f"{slug(dataset)}.md"
        fields = list(rows[0].keys())
        with atomic_write(csv_path, "w", newline="") as fh:  # whole or not at all, like the records
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            for r in rows:
                w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        markdown = table_markdown(dataset, rows, profile, speed)
        with atomic_write(md_path) as fh:
            fh.write(markdown)
        written += [csv_path, md_path]
    return written


def format_cell(row: Mapping[str, Any], key: str) -> str:
    """``97.5 ± 0.3``: a metric of an aggregated row in percent (no ± for one seed)."""
    return M.format_mean_std(row[f"{key}_mean"], row[f"{key}_std"], row["n"])


def table_markdown(table: str, rows: list[dict[str, Any]], profile: ProfileRef,
                   speed: Mapping[str, Any] | None = None) -> str:
    """One aggregated table as Markdown (percent, mean ± std over seeds). With ``speed`` (the
    profile's ``fps.json``), the FPS column is ``esg fps``'s one figure per network
    (:func:`~esg_lib.engine.fps.fps_figures`), the same as in every other table; without it, the
    runs' own FPS."""
    name = profile_name(profile)
    figures = fps_figures(speed)
    header = ["Model", "timm", "Params (M)", "Acc", "Pre", "Rec", "F1", "FPS", "Steps", "Train s", "Seeds",
              "Hardware"]
    cells = []
    for r in rows:
        if figures:
            fps = figures[r["model"]].text if r["model"] in figures else "—"
        else:
            fps = "—" if r.get("fps_mean") != r.get("fps_mean") else f"{r['fps_mean']:.1f}"
        secs = ("—" if r.get("train_seconds_mean") != r.get("train_seconds_mean")
                else f"{r['train_seconds_mean']:.0f}")
        params = f"{r['params'] / 1e6:.2f}" if r.get("params") else "—"
        cells.append([r["label"], r["timm_name"], params, *(format_cell(r, k) for k in M.METRIC_KEYS), fps,
                      r["steps"], secs, r["seeds"], r.get("hardware") or "—"])
    if figures:
        note = (f"{fps_note(speed)}; not the training hardware named in the last column. Training seconds are "
                "the runs' own, on the hardware named, and left out (—) for a row whose seeds ran on different "
                "machines.")
    else:
        note = ("FPS: batch 1, protocol in docs/training.md (\"FPS protocol\"); FPS and training seconds are the "
                "runs' own, on the hardware named, and left out (—) for a row whose seeds ran on different machines.")
    return (f"# {table} — profile `{name}` (test set; mean ± std over seeds, %)\n\n"
            + markdown_rows(header, cells) + "\n\n"
            f"Macro-averaged precision/recall/F1 (scikit-learn). {note} Rebuild: `esg report --profile {name}`.\n")


def build_report(profile: ProfileRef, runs: str | Path = "runs", results: str | Path = "results") -> list[Path]:
    """Rebuild every table in ``results/<profile>/`` without training.

    Finished run folders under ``runs/<profile>`` are exported to ``results/<profile>/runs/*.json``
    first; the tables are then built from those per-run files, so they can be rebuilt from the
    committed per-run metrics alone (a fresh clone without ``runs/``).
    """
    prof = get_profile(profile)
    res = store.profile_dir(results, prof)
    export_run_metrics(find_runs(runs, prof), res)
    records = load_records(prof, results)
    return write_tables(aggregate_records(records), res, prof, load_fps(prof, results)) if records else []


def model_table_markdown(profile: ProfileRef) -> str:
    """The profile's model table as Markdown (kept in README.md; a test checks they agree)."""
    prof = get_profile(profile)
    d = prof.defaults
    rows = []
    for key in (*COMPARISON, *ABLATION):
        spec = resolve_model(key, prof) if prof.models[key].param_match_of else prof.models[key]
        kw = ", ".join(f"{k}={v}" for k, v in spec.kwargs.items()) or "—"
        recipe = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in spec.recipe.items()) or "profile's"
        rows.append([f"`{key}`", spec.label, f"`{spec.name}`", kw, recipe, spec.note or "—"])
    head = (f"**{prof.name}** — {prof.description}. img_size {d['img_size']}, batch {d['batch_size']}, "
            f"epochs {d['epochs']}, lr {d['lr']:g}, warm-up {d['warmup_epochs']} epoch(s), "
            f"max_images {d['max_images']}, augment_copies {d['augment_copies']}, seeds "
            f"{' '.join(map(str, prof.seeds))}")
    for dataset, fields in prof.dataset_defaults.items():
        head += f"; on {dataset}: " + ", ".join(f"{k} {v}" for k, v in fields.items())
    header = ["key", "paper row", "timm model", "kwargs", "recipe (tuned)", "notes"]
    return head + "\n\n" + markdown_rows(header, rows)
