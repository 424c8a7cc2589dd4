"""Run records as pandas frames: seeds summarised per model, our numbers beside the paper's tables,
paired per-seed differences with a t interval (``scipy.stats``) and the split-protocol table.

A *record* is a flat mapping per run (``results/<profile>/runs/*.json``, or what
:class:`esg_lib.experiments.Experiment` builds from a run folder): model key and label, seed,
protocol, dataset, test metrics as fractions, FPS, params, steps, train seconds, GMACs. The same
functions serve the notebooks and the README block (:mod:`esg_lib.report.readme`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from esg_lib.data.registry import dataset_title
from esg_lib.data.split import PROTOCOLS
from esg_lib.engine.config import ABLATION, ESG_CONVNEXT, PAPER_MODELS, REFERENCE_MODELS

__all__ = ["PAPER_MODELS", "COMPARISON_MODELS", "ABLATION_MODELS", "PROTOCOLS", "PAPER_LABELS", "METRICS",
           "paper_table", "select_records", "records_frame", "summarize", "side_by_side", "label_paper_columns",
           "paired_differences", "protocol_table", "paired_difference", "holm"]

# The report's display orders, derived from the model sets (esg_lib.engine.config), never listed again.
# The comparison as the paper's tables show it (its seven models, ESG-ConvNeXt last), then our references:
# the notebooks' tables and figures and the README block follow it.
COMPARISON_MODELS = PAPER_MODELS + REFERENCE_MODELS
# Table 2 rows 1-4, then ESG-ConvNeXt as row 5 (the same network: the ablation shares its runs).
ABLATION_MODELS = ABLATION[:-1] + (ESG_CONVNEXT,)
# Model-table key -> the paper's row label in esg_lib/paper_results.csv.
PAPER_LABELS = {"mobilenetv3": "MobileNetV3", "inceptionv3": "InceptionV3", "convnextv2": "ConvNeXtV2",
                "vit": "ViT", "densenet121": "DenseNet121", "swin-t": "Swin-T", "esg-convnext": "ESG-ConvNeXt",
                "esg-abl1": "ConvNeXt", "esg-abl2": "ConvNeXt + block1", "esg-abl3": "ConvNeXt + block1 + block2",
                "esg-abl4": "ConvNeXt + block1 + block2 + Attention"}
METRICS = ("acc", "precision", "recall", "f1")
PAPER_RESULTS = Path(__file__).resolve().parents[1] / "paper_results.csv"


def paper_table(table: int) -> pd.DataFrame:
    """The paper's Table 1, 2 or 3 from ``esg_lib/paper_results.csv`` (labelled as the paper's)."""
    path = PAPER_RESULTS
    frame = pd.read_csv(path, comment="#")
    frame = frame[frame["table"] == table].drop(columns=["table"]).reset_index(drop=True)
    if frame.empty:
        raise ValueError(f"the paper has no Table {table} in {path.name} (tables 1-3)")
    return frame


def select_records(records: Iterable[Mapping[str, Any]], dataset: str, protocol: str = "leak-free",
                   models: Sequence[str] | None = None) -> list[Mapping[str, Any]]:
    """The records of one dataset and split protocol (a record without one is leak-free), of
    ``models`` only when given: what one table or figure compares."""
    return [r for r in records if r["dataset"] == dataset and (r.get("protocol") or "leak-free") == protocol
            and (models is None or r["model"] in models)]


def records_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per run record (fractions in, percent out): key, model label, seed, protocol,
    dataset, acc/precision/recall/f1 (%), test size, FPS, params (M), steps, train seconds."""
    rows = []
    for r in records:
        rows.append({"key": r["model"], "model": r.get("label") or r["model"], "seed": r["seed"],
                     "protocol": r.get("protocol") or "leak-free", "dataset": r.get("dataset"),
                     **{m: math.nan if r.get(m) is None else 100 * r[m] for m in METRICS},
                     "test_n": r.get("test_n"), "fps": r.get("fps"),
                     "params_m": (r.get("params") or 0) / 1e6, "steps": r.get("steps"),
                     "train_seconds": r.get("train_seconds"),
                     "gmacs": math.nan if r.get("gmacs") is None else r["gmacs"]})
    columns = ["key", "model", "seed", "protocol", "dataset", *METRICS, "test_n", "fps", "params_m",
               "steps", "train_seconds", "gmacs"]
    return pd.DataFrame(rows, columns=columns)


def summarize(frame: pd.DataFrame, by: Sequence[str] = ("key", "model")) -> pd.DataFrame:
    """Mean and std (ddof=1) over seeds per model: columns ``<metric>_mean``, ``<metric>_std``, ``n``."""
    cols = [*METRICS, "fps", "params_m", "steps", "train_seconds", "gmacs"]
    grouped = frame.groupby(list(by), sort=False)
    out = grouped[cols].mean().add_suffix("_mean").join(grouped[list(METRICS)].std(ddof=1).add_suffix("_std"))
    out["n"] = grouped.size()
    return out.reset_index()


def side_by_side(summary: pd.DataFrame, table: int,
                 fps: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Our mean ± std (a :func:`summarize` frame) beside the paper's Table ``table``; the paper's
    columns say so. ``fps`` (model key → :class:`~esg_lib.engine.fps.FpsFigure` from ``esg fps``,
    :func:`~esg_lib.engine.fps.fps_figures`; or plain images/s) replaces the runs' own FPS: a figure
    shows its median and range at the digits its spread allows, ``19 (18–20)``."""
    paper = paper_table(table).set_index("model")
    rows = []
    for _, r in summary.iterrows():
        paper_row = paper.loc[PAPER_LABELS[r["key"]]] if PAPER_LABELS.get(r["key"]) in paper.index else None
        row = {"model": r["model"], "params (M)": round(r["params_m_mean"], 2),
               "GMACs": "—" if r["gmacs_mean"] != r["gmacs_mean"] else f"{r['gmacs_mean']:.3f}",
               "n seeds": int(r["n"])}
        for m, name in zip(METRICS, ("Acc", "Pre", "Rec", "F1")):
            row[f"{name} ours"] = _pm(r[f"{m}_mean"], r[f"{m}_std"])
            paper_key = {"acc": "accuracy"}.get(m, m)
            row[f"{name} paper"] = "—" if paper_row is None else f"{paper_row[paper_key]:.1f}"
        speed = (fps or {}).get(r["key"], r["fps_mean"])
        if hasattr(speed, "text"):
            row["FPS ours (this machine)"] = speed.text
        else:
            row["FPS ours (this machine)"] = f"{speed:.1f}" if speed == speed else "—"
        rows.append(row)
    return pd.DataFrame(rows)


def label_paper_columns(frame: pd.DataFrame, table: int, dataset: str) -> pd.DataFrame:
    """Where our ``dataset`` is not the dataset of the paper's Table ``table`` (Table 1 is on
    NEU-CLS-64; a notebook that fell back to X-SDD puts X-SDD runs beside it), rename the paper's
    columns to say whose data they are: ``Acc paper`` → ``Acc paper (NEU-CLS-64)``."""
    theirs = str(paper_table(table)["dataset"].iloc[0])
    if dataset == theirs:
        return frame
    tag = f" ({dataset_title(theirs)})"
    return frame.rename(columns={c: c + tag for c in frame.columns if str(c).endswith(" paper")})


def paired_differences(frame: pd.DataFrame, target: str = "esg-convnext",
                       metric: str = "acc", alpha: float = 0.05) -> pd.DataFrame:
    """``target`` minus every other model of a :func:`records_frame`: mean paired per-seed difference
    (points) with a 95 % t interval (n - 1 degrees of freedom), whether it is within noise (the
    interval contains 0; "untested" with a single seed, which has no interval), the paired t test's
    two-sided p, and that p after Holm's correction over the *family* of this table's rows (every
    comparison of ``target`` on this dataset and metric): "beyond noise (Holm)" is Holm p < ``alpha``.
    One test image is worth ``100 / test size`` points, shown beside."""
    mine = frame[frame["key"] == target].set_index("seed")[metric]
    sizes = frame["test_n"].dropna()
    test_size = int(sizes.iloc[0]) if len(sizes) else None
    rows = []
    for key, part in frame[frame["key"] != target].groupby("key", sort=False):
        other = part.set_index("seed")[metric]
        seeds = sorted(set(mine.index) & set(other.index))
        if not seeds:
            continue
        d = paired_difference(mine.loc[seeds].to_numpy(), other.loc[seeds].to_numpy())
        rows.append({"reference": part["model"].iloc[0], "seeds": len(seeds),
                     f"{metric} difference (points)": round(d["mean"], 2),
                     "95% interval": "—" if d["low"] != d["low"] else f"[{d['low']:.2f}, {d['high']:.2f}]",
                     "within noise": ("untested (1 seed)" if d["n"] < 2
                                      else "yes" if d["within_noise"] else "no"),
                     "one test image (points)": round(100 / test_size, 2) if test_size else "—",
                     "_p": d["p"]})
    adjusted = holm([r["_p"] for r in rows])
    for row, p_holm in zip(rows, adjusted):
        p = row.pop("_p")
        row["p (paired t)"] = "—" if p != p else f"{p:.3f}"
        row["p (Holm)"] = "—" if p_holm != p_holm else f"{p_holm:.3f}"
        row["beyond noise (Holm)"] = "untested" if p_holm != p_holm else "yes" if p_holm < alpha else "no"
    return pd.DataFrame(rows)


def protocol_table(frame: pd.DataFrame, metric: str = "acc") -> pd.DataFrame:
    """Per model of a :func:`records_frame`: ``metric`` under each protocol (mean ± std), the leak's
    effect (augment-then-split minus augment-then-group-split, paired per seed) and the augmented
    test set's effect (augment-then-group-split minus leak-free). While the protocols of a row have
    different numbers of seeds (a plan half-way), each cell says its own (``n=1``), and each effect
    how many paired seeds it rests on."""
    rows = []
    for key, part in frame.groupby("key", sort=False):
        by = {p: part[part["protocol"] == p].set_index("seed")[metric] for p in PROTOCOLS}
        counts = {len(v) for v in by.values() if len(v)}
        row: dict[str, Any] = {"model": part["model"].iloc[0]}
        for p in PROTOCOLS:
            v = by[p]
            row[p] = _pm(v.mean(), v.std(ddof=1)) if len(v) else "—"
            if len(v) and len(counts) > 1:
                row[p] += f" (n={len(v)})"

        def effect(a: str, b: str) -> str:
            seeds = sorted(set(by[a].index) & set(by[b].index))
            if not seeds:
                return "—"
            d = paired_difference(by[a].loc[seeds].to_numpy(), by[b].loc[seeds].to_numpy())
            ci = "" if d["low"] != d["low"] else f" [{d['low']:+.1f}, {d['high']:+.1f}]"
            return f"{d['mean']:+.1f}{ci}" + (f" (n={len(seeds)})" if len(counts) > 1 else "")

        row["leak (points)"] = effect("augment-then-split", "augment-then-group-split")
        row["augmented test (points)"] = effect("augment-then-group-split", "leak-free")
        rows.append(row)
    return pd.DataFrame(rows)


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Mean of the paired per-seed differences ``a - b`` with a t-based confidence interval.

    Seeds pair runs that share a split, so the split noise cancels. ``within_noise`` is true when
    the interval contains 0; with one pair the interval is undefined (NaN) and ``within_noise`` is
    ``None``: one seed says nothing about noise either way.
    """
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if diff.size == 0:
        raise ValueError("no paired values")
    mean = float(diff.mean())
    if diff.size < 2:
        return {"mean": mean, "low": math.nan, "high": math.nan, "n": 1, "within_noise": None, "p": math.nan}
    sd = float(diff.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, diff.size - 1) * sd / math.sqrt(diff.size))
    if sd > 0:
        p = float(stats.ttest_1samp(diff, 0.0).pvalue)
    else:   # every seed moved by the same amount: no spread to test against
        p = 1.0 if mean == 0 else 0.0
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": int(diff.size),
            "within_noise": bool(mean - half <= 0 <= mean + half), "p": p}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (controls the family-wise error rate).

    The i-th smallest of the m defined p-values is multiplied by m - i (i from 0), made monotone and
    capped at 1; NaN (an untested comparison) stays NaN and is not counted in m. scipy has no Holm
    (``scipy.stats.false_discovery_control`` is Benjamini-Hochberg), and the rule is these four lines.
    """
    ps = [float(p) for p in pvalues]
    tested = sorted((p, i) for i, p in enumerate(ps) if p == p)
    out = [math.nan] * len(ps)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        out[i] = running
    return out


def _pm(mean: float, std: float) -> str:
    if mean != mean:
        return "—"
    return f"{mean:.1f} ± {std:.1f}" if std == std else f"{mean:.1f}"
