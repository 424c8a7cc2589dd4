"""The tidy frames the record figures draw (:mod:`esg_lib.figures.summaries`), built from run records.

Each record figure has two halves: a frame function here that turns run records
(``results/<profile>/runs/*.json``, one per finished run, see :func:`esg_lib.store.load_records`) into
a tidy DataFrame, and a ``plot_*`` function in :mod:`esg_lib.figures` that draws that frame. Neither
trains anything, so the figures of a profile can be rebuilt on a fresh clone from the committed
records alone, and the notebooks stay thin (``09_records_overview`` calls one frame and one plot per
figure):

* :func:`profile_records` -- the records themselves: committed, plus any finished run folders here;
* :func:`cost_frame` -- accuracy, GMACs and FPS per model beside the paper's (``plot_accuracy_vs_cost``);
* :func:`seed_differences` -- ESG-ConvNeXt minus each model, per seed (``plot_forest``);
* :func:`ablation_frame` -- Table 2 per seed beside the paper's values (``plot_ablation``);
* :func:`recall_frame` -- per-class recall, models × classes (``plot_recall_heatmap``).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from esg_lib import store
from esg_lib.data.registry import comparison_table, dataset_title
from esg_lib.engine.config import ProfileRef
from esg_lib.engine.runs import build_records, find_runs

from .frames import ABLATION_MODELS, PAPER_LABELS, paired_difference, paper_table, records_frame, select_records, summarize

__all__ = ["profile_records", "cost_frame", "seed_differences", "ablation_frame", "recall_frame"]


def profile_records(profile: ProfileRef, root: str | Path, runs: str | Path | None = None) -> list[dict[str, Any]]:
    """The run records a profile's record figures are built from: the committed
    ``<root>/results/<profile>/runs/*.json`` (current recipe only), with the records of finished run
    folders under ``runs/<profile>`` (or ``runs``) added or replacing them by run id -- built in
    memory (:func:`esg_lib.engine.runs.build_records`), nothing written, so a `smoke` notebook can
    show its fresh runs and a clone without run folders shows the committed ones. ``root`` is the
    project root the notebook writes under (``Experiment.root``)."""
    root = Path(root)
    records = {_run_key(r): r for r in store.load_records(profile, store.results_root(root))}
    for r in build_records(find_runs(Path(runs) if runs else store.runs_root(root), profile)):
        records[_run_key(r)] = r
    return store.current_records(records.values())


def _run_key(record: Mapping[str, Any]) -> tuple:
    """What names a run in its committed record and in its folder's fresh one: its run id (or name), row and seed."""
    return (record.get("run_id") or record.get("run") or "", record["dataset"], record["model"], record["seed"])


def _in_order(frame: pd.DataFrame, keys: Sequence[str], column: str = "key") -> pd.DataFrame:
    """``frame`` with its rows in the order of ``keys`` (the caller's display order, not the records')."""
    rank = {k: i for i, k in enumerate(keys)}
    return frame.assign(_o=frame[column].map(rank)).sort_values(["_o"], kind="stable").drop(columns="_o")



def cost_frame(records: Iterable[Mapping[str, Any]], dataset: str, keys: Sequence[str],
               fps: Mapping[str, float] | None = None, metric: str = "acc") -> pd.DataFrame:
    """Per model: our mean ``metric`` (%), its SD, seeds, GMACs and FPS beside the paper's ``metric``
    and FPS (NaN where the paper has no such row). ``fps`` (model key → an ``esg fps`` figure,
    :func:`esg_lib.engine.fps.fps_figures`, or plain images/s) replaces the runs' own FPS, which were
    measured on whatever machine trained each run; a figure also gives ``fps_low``/``fps_high``, the
    range of its timings."""
    frame = records_frame(select_records(records, dataset, models=keys))
    if frame.empty:
        return pd.DataFrame(columns=["key", "model", "ours", "sd", "n", "gmacs", "fps", "fps_low", "fps_high",
                                     "paper", "paper_fps"])
    summary = summarize(frame)
    paper = paper_table(comparison_table(dataset)).set_index("model")
    paper_metric = {"acc": "accuracy"}.get(metric, metric)
    rows = []
    for _, r in summary.iterrows():
        label = PAPER_LABELS.get(r["key"])
        known = label in paper.index
        speed = (fps or {}).get(r["key"], r["fps_mean"])
        low, high = (speed.low, speed.high) if hasattr(speed, "low") else (math.nan, math.nan)
        rows.append({"key": r["key"], "model": r["model"], "ours": r[f"{metric}_mean"], "sd": r[f"{metric}_std"],
                     "n": int(r["n"]), "gmacs": r["gmacs_mean"], "fps": float(speed), "fps_low": low,
                     "fps_high": high, "paper": paper.loc[label, paper_metric] if known else math.nan,
                     "paper_fps": paper.loc[label, "fps"] if known else math.nan})
    out = _in_order(pd.DataFrame(rows), keys).reset_index(drop=True)
    out.attrs["paper"] = f"its Table {comparison_table(dataset)}: {dataset_title(str(paper['dataset'].iloc[0]))}"
    return out


def seed_differences(records: Iterable[Mapping[str, Any]], dataset: str, keys: Sequence[str],
                     target: str = "esg-convnext", metric: str = "acc") -> pd.DataFrame:
    """``target`` minus every other model, one row per (reference, seed) with the paired difference
    (points), plus that reference's mean and 95 % t interval over its paired seeds (the same numbers
    as :func:`~.frames.paired_differences`)."""
    frame = records_frame(select_records(records, dataset, models=keys))
    mine = frame[frame["key"] == target].set_index("seed")[metric]
    rows = []
    for key in keys:
        if key == target:
            continue
        other = frame[frame["key"] == key].set_index("seed")[metric]
        seeds = sorted(set(mine.index) & set(other.index))
        if not seeds:
            continue
        d = paired_difference(mine.loc[seeds].to_numpy(), other.loc[seeds].to_numpy())
        label = frame.loc[frame["key"] == key, "model"].iloc[0]
        for s in seeds:
            rows.append({"key": key, "reference": label, "seed": s, "difference": mine[s] - other[s],
                         "mean": d["mean"], "low": d["low"], "high": d["high"], "n": d["n"]})
    return pd.DataFrame(rows, columns=["key", "reference", "seed", "difference", "mean", "low", "high", "n"])


def ablation_frame(records: Iterable[Mapping[str, Any]], dataset: str,
                   metric: str = "acc") -> pd.DataFrame:
    """Table 2 per seed: row number (1-5), the row's name, seed, our ``metric`` (%) and the paper's
    (its Table 2 is on NEU-CLS-64)."""
    frame = records_frame(select_records(records, dataset, models=ABLATION_MODELS))
    paper = paper_table(2).set_index("row")
    paper_metric = {"acc": "accuracy"}.get(metric, metric)
    rows = []
    for i, key in enumerate(ABLATION_MODELS, start=1):
        for _, r in frame[frame["key"] == key].iterrows():
            rows.append({"row": i, "name": paper.loc[i, "model"], "seed": r["seed"], "ours": r[metric],
                         "paper": paper.loc[i, paper_metric]})
    return pd.DataFrame(rows, columns=["row", "name", "seed", "ours", "paper"])


def recall_frame(records: Iterable[Mapping[str, Any]], dataset: str, keys: Sequence[str],
                 class_names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Per-class test recall (%, mean over seeds): one row per model (its label), one column per
    class (renamed by ``class_names``: folder name → display name). A ``n`` column gives the seeds."""
    recs = [r for r in select_records(records, dataset, models=keys) if r.get("per_class_recall")]
    rows = []
    for key in keys:
        mine = [r for r in recs if r["model"] == key]
        if not mine:
            continue
        values = pd.DataFrame([r["per_class_recall"] for r in mine]).mean() * 100
        rows.append({"model": mine[0].get("label") or key, "n": len(mine), **values.to_dict()})
    out = pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame()
    return out.rename(columns=dict(class_names or {}))

