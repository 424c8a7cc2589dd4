"""Figures a reader looks at before reading a table, built from the committed run records.

Each plot has two halves: a *frame* function that turns run records (``results/<profile>/runs/*.json``,
one per finished run, see :func:`esg_lib.store.load_records`) into a tidy DataFrame, and a
``plot_*`` function that draws that frame. Neither trains anything, so the figures of a profile can
be rebuilt on a fresh clone from the committed records alone, and the notebooks stay thin
(``09_records_overview`` calls one frame and one plot per figure).

* :func:`plot_accuracy_vs_cost` -- accuracy against our FPS, against GMACs and (the paper's, apart) against its FPS;
* :func:`plot_forest` -- ESG-ConvNeXt minus each model, per-seed dots and the 95 % t interval;
* :func:`plot_ablation` -- Table 2 as per-seed dots with mean ± SD, the paper's values on an axis of their own;
* :func:`plot_recall_heatmap` -- per-class recall, models × classes;
* :func:`stage_table` / :func:`plot_stages` -- the network's stages measured by forward hooks.

Every figure is at most :data:`esg_lib.figures.MAX_WIDTH` (7.1 in) wide. The paper's numbers are
always drawn hollow and labelled "paper"; its models ran at 224 px on an RTX 4090 and ours at the
profile's size on the hardware each record names, so the two are context, never a comparison of
equals.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from esg_lib import figures
from esg_lib.data.registry import comparison_table, dataset_title  # dataset_title: the notebooks call plots'
from esg_lib.figures import MAX_WIDTH, line_styles, ordered_colors

if TYPE_CHECKING:   # the engine imports torch; drawing from records does not need it
    from esg_lib.engine.config import ProfileRef

__all__ = ["FIG14_PANELS", "dataset_title", "sample_grid_rows", "short_class_names", "label_paper_columns",
           "profile_note", "profile_records", "cost_frame", "seed_differences", "ablation_frame", "recall_frame", "stage_table",
           "plot_accuracy_vs_cost", "plot_forest", "plot_ablation", "plot_recall_heatmap", "plot_stages"]

# The paper's Fig. 14 caption, panels (a)-(g): X-SDD's folder names (= the caption's names) in the
# caption's order. Tables and the other figures use the names of the paper's X-SDD text instead
# (``bundle.display_names``, e.g. "tin grey" for "iron sheet ash"); docs/data.md says why.
FIG14_PANELS = ("finishing roll printing", "iron sheet ash", "oxide scale of plate system", "slag inclusion",
                "oxide scale of temperature system", "red iron", "surface scratch")


def sample_grid_rows(bundle) -> tuple[list[int], list[str]]:
    """``(class indices, row labels)`` for a dataset's sample grid: on X-SDD the paper's Fig. 14
    panels (a)-(g) with the caption's names in its order; elsewhere label order and display names."""
    names = list(bundle.class_names)
    if sorted(names) == sorted(FIG14_PANELS):
        return ([names.index(c) for c in FIG14_PANELS],
                [f"({chr(97 + i)}) {c}" for i, c in enumerate(FIG14_PANELS)])
    return list(range(len(names))), list(bundle.display_names)


def short_class_names(dataset: str, class_names: Sequence[str]) -> list[str]:
    """Short axis labels for a dataset's classes (folder names in label order): the paper's
    two-letter codes on NEU-CLS-64, our abbreviations on X-SDD (``esg data info`` lists both);
    the names themselves for a dataset without any."""
    from esg_lib.data.registry import KNOWN

    spec = KNOWN.get(dataset)
    table = dict(spec.abbreviations) if spec is not None and spec.abbreviations else {}
    return [table.get(c, c) for c in class_names]


def label_paper_columns(frame, table: int, dataset: str):
    """Where our ``dataset`` is not the dataset of the paper's Table ``table`` (Table 1 is on
    NEU-CLS-64; a notebook that fell back to X-SDD puts X-SDD runs beside it), rename the paper's
    columns to say whose data they are: ``Acc paper`` → ``Acc paper (NEU-CLS-64)``."""
    from esg_lib.report.frames import paper_table

    theirs = str(paper_table(table)["dataset"].iloc[0])
    if dataset == theirs:
        return frame
    tag = f" ({dataset_title(theirs)})"
    return frame.rename(columns={c: c + tag for c in frame.columns if str(c).endswith(" paper")})


PROFILE_NOTES = {
    "smoke": ("**Profile `smoke`: these numbers test the code, not the paper.** A few steps on a handful "
              "of images (minutes on a CPU); accuracy near chance is expected. Read the `cpu` or "
              "`paper` profile's outputs for results."),
    "cpu": ("**Profile `cpu`:** 64 px images, a few epochs on a 2-core CPU, 3 seeds. Real training on "
            "the real data, at a fraction of the paper's budget (224 px, 100 epochs, RTX 4090): compare "
            "the ranking and the gaps, not the levels. Columns and markers labelled *paper* are the "
            "paper's published numbers, not ours."),
    "paper": ("**Profile `paper`:** the paper's budget (224 px, 100 epochs) on a GPU, on our leak-free "
              "split. Columns labelled *paper* are the paper's published numbers."),
}


def profile_note(profile: ProfileRef) -> str:
    """The Markdown line each notebook shows at its top: what this profile's numbers can tell."""
    from esg_lib.engine.config import profile_name   # here, not on top: the engine imports torch

    name = profile_name(profile)
    return PROFILE_NOTES.get(name, f"Profile `{name}`.")


def profile_records(profile: ProfileRef, root=None, runs=None) -> list[dict[str, Any]]:
    """The run records a profile's record figures are built from: the committed
    ``results/<profile>/runs/*.json`` (current recipe only), with the records of finished run
    folders under ``runs/<profile>`` (or ``runs``) added or replacing them by run id -- built in
    memory (:func:`esg_lib.engine.runs.build_records`), nothing written, so a `smoke` notebook can
    show its fresh runs and a clone without run folders shows the committed ones."""
    from pathlib import Path

    from esg_lib import store
    from esg_lib.engine.runs import build_records, find_runs
    from esg_lib.reproduce import project_root as _project_root

    root = Path(root) if root else _project_root()
    records = {_run_key(r): r for r in store.load_records(profile, store.results_root(root))}
    for r in build_records(find_runs(Path(runs) if runs else store.runs_root(root), profile)):
        records[_run_key(r)] = r
    return store.current_records(records.values())


def _run_key(record: Mapping[str, Any]) -> tuple:
    """What names a run in its committed record and in its folder's fresh one: its run id (or name), row and seed."""
    return (record.get("run_id") or record.get("run") or "", record["dataset"], record["model"], record["seed"])


def _leak_free(records: Iterable[Mapping[str, Any]], dataset: str, keys: Sequence[str]) -> list[Mapping[str, Any]]:
    return [r for r in records if r["dataset"] == dataset and (r.get("protocol") or "leak-free") == "leak-free"
            and r["model"] in keys]


def _in_order(frame, keys: Sequence[str], column: str = "key"):
    rank = {k: i for i, k in enumerate(keys)}
    return frame.assign(_o=frame[column].map(rank)).sort_values(["_o"], kind="stable").drop(columns="_o")


# ------------------------------------------------------------------------------------ frames
def cost_frame(records: Iterable[Mapping[str, Any]], dataset: str, keys: Sequence[str],
               fps: Mapping[str, float] | None = None, metric: str = "acc") -> "pd.DataFrame":  # noqa: F821
    """Per model: our mean ``metric`` (%), its SD, seeds, GMACs and FPS beside the paper's ``metric``
    and FPS (NaN where the paper has no such row). ``fps`` (model key → an ``esg fps`` figure,
    :func:`esg_lib.engine.fps.fps_figures`, or plain images/s) replaces the runs' own FPS, which were
    measured on whatever machine trained each run; a figure also gives ``fps_low``/``fps_high``, the
    range of its timings."""
    import pandas as pd

    from esg_lib.report import frames as E

    frame = E.records_frame(_leak_free(records, dataset, keys))
    if frame.empty:
        return pd.DataFrame(columns=["key", "model", "ours", "sd", "n", "gmacs", "fps", "fps_low", "fps_high",
                                     "paper", "paper_fps"])
    summary = E.summarize(frame)
    paper = E.paper_table(comparison_table(dataset)).set_index("model")
    paper_metric = {"acc": "accuracy"}.get(metric, metric)
    rows = []
    for _, r in summary.iterrows():
        label = E.PAPER_LABELS.get(r["key"])
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
                     target: str = "esg-convnext", metric: str = "acc") -> "pd.DataFrame":  # noqa: F821
    """``target`` minus every other model, one row per (reference, seed) with the paired difference
    (points), plus that reference's mean and 95 % t interval over its paired seeds (the same numbers
    as :func:`esg_lib.experiments.paired_differences`)."""
    import pandas as pd

    from esg_lib.report import frames as E

    frame = E.records_frame(_leak_free(records, dataset, keys))
    mine = frame[frame["key"] == target].set_index("seed")[metric]
    rows = []
    for key in keys:
        if key == target:
            continue
        other = frame[frame["key"] == key].set_index("seed")[metric]
        seeds = sorted(set(mine.index) & set(other.index))
        if not seeds:
            continue
        d = E.paired_difference(mine.loc[seeds].to_numpy(), other.loc[seeds].to_numpy())
        label = frame.loc[frame["key"] == key, "model"].iloc[0]
        for s in seeds:
            rows.append({"key": key, "reference": label, "seed": s, "difference": mine[s] - other[s],
                         "mean": d["mean"], "low": d["low"], "high": d["high"], "n": d["n"]})
    return pd.DataFrame(rows, columns=["key", "reference", "seed", "difference", "mean", "low", "high", "n"])


def ablation_frame(records: Iterable[Mapping[str, Any]], dataset: str,
                   metric: str = "acc") -> "pd.DataFrame":  # noqa: F821
    """Table 2 per seed: row number (1-5), the row's name, seed, our ``metric`` (%) and the paper's
    (its Table 2 is on NEU-CLS-64)."""
    import pandas as pd

    from esg_lib.report import frames as E

    frame = E.records_frame(_leak_free(records, dataset, E.ABLATION_MODELS))
    paper = E.paper_table(2).set_index("row")
    paper_metric = {"acc": "accuracy"}.get(metric, metric)
    rows = []
    for i, key in enumerate(E.ABLATION_MODELS, start=1):
        for _, r in frame[frame["key"] == key].iterrows():
            rows.append({"row": i, "name": paper.loc[i, "model"], "seed": r["seed"], "ours": r[metric],
                         "paper": paper.loc[i, paper_metric]})
    return pd.DataFrame(rows, columns=["row", "name", "seed", "ours", "paper"])


def recall_frame(records: Iterable[Mapping[str, Any]], dataset: str, keys: Sequence[str],
                 class_names: Mapping[str, str] | None = None) -> "pd.DataFrame":  # noqa: F821
    """Per-class test recall (%, mean over seeds): one row per model (its label), one column per
    class (renamed by ``class_names``: folder name → display name). A ``n`` column gives the seeds."""
    import pandas as pd

    recs = [r for r in _leak_free(records, dataset, keys) if r.get("per_class_recall")]
    rows = []
    for key in keys:
        mine = [r for r in recs if r["model"] == key]
        if not mine:
            continue
        values = pd.DataFrame([r["per_class_recall"] for r in mine]).mean() * 100
        rows.append({"model": mine[0].get("label") or key, "n": len(mine), **values.to_dict()})
    out = pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame()
    return out.rename(columns=dict(class_names or {}))


def stage_table(model: "torch.nn.Module", sizes: Sequence[int] = (64, 224)) -> "pd.DataFrame":  # noqa: F821
    """The network's stem and stages measured by forward hooks on ``model.stem`` and each of
    ``model.stages`` (ESG-ConvNeXt, ConvNeXtV2): blocks per stage, output channels and the output
    feature-map size for each input size in ``sizes`` -- nothing typed by hand."""
    import pandas as pd
    import torch

    parts = [("stem", model.stem)] + [(f"stage {i + 1}", s) for i, s in enumerate(model.stages)]
    shapes: dict[int, dict[str, tuple[int, ...]]] = {}
    for size in sizes:
        seen: dict[str, tuple[int, ...]] = {}
        hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: seen.__setitem__(name, tuple(out.shape)))
                 for name, m in parts]
        try:
            was = model.training
            model.eval()
            with torch.no_grad():
                model(torch.zeros(1, getattr(model, "in_chans", 3), size, size))
            model.train(was)
        finally:
            for h in hooks:
                h.remove()
        shapes[size] = seen
    rows = []
    for name, module in parts:
        blocks = getattr(module, "blocks", None)
        first = shapes[sizes[0]][name]
        row = {"part": name, "blocks": len(blocks) if blocks is not None else 0, "channels": first[1],
               "params (M)": round(sum(p.numel() for p in module.parameters()) / 1e6, 3)}
        for size in sizes:
            shape = shapes[size][name]
            row[f"map @ {size} px"] = f"{shape[2]}×{shape[3]}"
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------ plots
def _paper_note(ax, text: str) -> None:
    ax.text(0, -0.2, text, transform=ax.transAxes, fontsize=6.5, color="0.3", va="top")


def plot_accuracy_vs_cost(frame, title: str = "", metric_label: str = "test accuracy (%)",
                          paper_label: str | None = None, highlight: str = "esg-convnext",
                          ours_speed: str = "ours: `esg fps`", paper_speed: str = "RTX 4090, 224 px") -> plt.Figure:
    """Three panels from a :func:`cost_frame`, one shared accuracy axis: our ``metric`` against our
    FPS (``ours_speed`` says where and how it was measured; the bar is the range of its timings) and
    against GMACs, and the paper's against the paper's FPS (``paper_speed``: its GPU and size;
    ``paper_label``: which of its tables, by default the one :func:`cost_frame` read) --
    never two machines' FPS on one axis. Ours filled (error bar ±1 SD over seeds), the paper's
    hollow, each model in one colour and marker throughout; ``highlight`` (a model key) is the black
    star."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(1, 3, figsize=(MAX_WIDTH, 3.7), sharey=True)
    styles = line_styles(len(frame))
    keys = list(frame["key"])
    if highlight in keys:   # same rule as esg_lib.figures.plot_curves: the highlighted model is black
        styles = figures.highlight_style(styles, keys.index(highlight))
    for (_, r), style in zip(frame.iterrows(), styles):
        c, m = style["color"], style["marker"]
        size = 9 if r["key"] == highlight else 6
        yerr = r["sd"] if r["sd"] == r["sd"] else None
        if r["fps"] == r["fps"]:
            low, high = r.get("fps_low", math.nan), r.get("fps_high", math.nan)
            xerr = [[r["fps"] - low], [high - r["fps"]]] if low == low and high == high else None
            axes[0].errorbar(r["fps"], r["ours"], xerr=xerr, yerr=yerr, fmt=m, color=c, ms=size, capsize=2, lw=0.8,
                             label=r["model"], zorder=3)
        if r["gmacs"] == r["gmacs"]:
            axes[1].errorbar(r["gmacs"], r["ours"], yerr=yerr, fmt=m, color=c, ms=size, capsize=2, lw=0.8, zorder=3)
        if r["paper"] == r["paper"] and r["paper_fps"] == r["paper_fps"]:
            axes[2].plot(r["paper_fps"], r["paper"], m, mfc="none", mec=c, ms=size, mew=1.2, zorder=2)
    paper_label = paper_label or frame.attrs.get("paper", "its tables")
    panels = (("ours: speed", f"images/s — {ours_speed}"),
              ("ours: size", "GMACs per image at our input size (the paper gives none)"),
              (f"the paper: speed ({paper_label})", f"images/s — the paper's FPS ({paper_speed}); not ours"))
    for ax, (head, xlabel) in zip(axes, panels):
        ax.set_title(figures.fit_lines(head, 8, 2.1, weight="bold"), fontsize=8)
        ax.set_xlabel(figures.fit_lines(xlabel, 7, 2.1), fontsize=7)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(labelsize=7)
        ax.margins(x=0.12, y=0.1)   # no marker cut at a panel's edge
    axes[0].set_ylabel(metric_label, fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    handles += [Line2D([], [], marker="o", color="0.2", ls="", label="ours (filled, ±1 SD; FPS: range of timings)"),
                Line2D([], [], marker="o", mfc="none", mec="0.2", ls="", label="the paper (hollow)")]
    fig.legend(handles, [h.get_label() for h in handles], loc="lower center", ncol=4, fontsize=6.5,
               frameon=False, bbox_to_anchor=(0.5, 0.0))
    figures.fit_suptitle(fig, title, 9)
    fig.tight_layout(rect=(0, 0.17, 1, 1), w_pad=0.8)
    return fig


def plot_forest(frames: Mapping[str, "pd.DataFrame"], title: str = "", metric_label: str = "accuracy",  # noqa: F821
                target_label: str = "ESG-ConvNeXt") -> plt.Figure:
    """Forest plot, one panel per dataset (``frames[name]`` from :func:`seed_differences`): each
    reference a row, the per-seed paired differences as dots, the mean as a diamond with its 95 %
    t interval. Right of 0: ESG-ConvNeXt better. An interval that crosses 0 cannot tell the two
    apart at this many seeds."""
    names = [n for n, f in frames.items() if not f.empty]
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(MAX_WIDTH, 3.8), squeeze=False)
    same_rows = len({tuple(dict.fromkeys(frames[n]["reference"])) for n in names}) == 1
    for k, (ax, name) in enumerate(zip(axes[0], names)):
        frame = frames[name]
        refs = list(dict.fromkeys(frame["reference"]))
        for i, ref in enumerate(refs):
            part = frame[frame["reference"] == ref]
            y = len(refs) - 1 - i
            row = part.iloc[0]
            within = row["low"] <= 0 <= row["high"] if row["n"] > 1 else None
            color = "0.45" if within in (True, None) else ("#0173b2" if row["mean"] > 0 else "#d55e00")
            if row["n"] > 1:
                ax.plot([row["low"], row["high"]], [y, y], color=color, lw=2.2, solid_capstyle="butt")
            ax.plot(row["mean"], y, "D", color=color, ms=6, zorder=3)
            jitter = np.linspace(-0.12, 0.12, len(part)) if len(part) > 1 else [0.0]
            ax.scatter(part["difference"], y + np.asarray(jitter), s=12, color="0.15", zorder=4, lw=0)
        ax.axvline(0, color="0.2", lw=0.8)
        # the same models in every panel: name them once, on the left, so the figure fits the print width
        ax.set_yticks(range(len(refs)), list(reversed(refs)) if k == 0 or not same_rows else [], fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
        seeds = int(frame["n"].max())
        ax.set_title(f"{name}", fontsize=8)
        ax.set_xlabel(f"{target_label} − model, {metric_label} (points)", fontsize=7)
        ax.text(0.99, 0.01, f"{seeds} paired seeds", transform=ax.transAxes, ha="right", va="bottom",
                fontsize=6.5, color="0.35")
    figures.fit_suptitle(fig, title, 8)
    fig.text(0.5, 0.005, "dots: one seed's paired difference (same split for both models); diamond: mean; "
             "bar: 95 % t interval.\nBlue: ESG-ConvNeXt better, vermilion: worse, grey: the interval contains 0 "
             "(not told apart at this many seeds).", ha="center", va="bottom", fontsize=6.5, color="0.3")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def plot_ablation(frame, title: str = "", metric_label: str = "test accuracy (%)",
                  paper_label: str = "the paper's Table 2: NEU-CLS-64, 224 px", ours_label: str = "ours") -> plt.Figure:
    """Table 2 from an :func:`ablation_frame`, rows 1 (top) → 5: on the left our seeds as dots and
    mean ± 1 SD as a bar (written beside it), in :func:`~esg_lib.figures.row_colors` (row 5, the full
    network, black); on the right, on an axis of its own, the paper's values as hollow diamonds --
    another dataset and size (``paper_label``), never on ours. The legend sits under the panels."""
    from matplotlib.lines import Line2D

    from esg_lib.figures import row_colors

    rows = sorted(frame["row"].unique())
    names = {r: frame.loc[frame["row"] == r, "name"].iloc[0] for r in rows}
    colors = dict(zip(rows, row_colors(len(rows))))
    fig, (ax, paper_ax) = plt.subplots(1, 2, figsize=(MAX_WIDTH, 0.5 * len(rows) + 1.7), sharey=True,
                                       gridspec_kw={"width_ratios": [3.2, 1.0]})
    right = []
    for i, r in enumerate(rows):
        part = frame[frame["row"] == r]
        y = len(rows) - 1 - i
        mean, sd = part["ours"].mean(), part["ours"].std(ddof=1)
        c = colors[r]
        if sd == sd:
            ax.plot([mean - sd, mean + sd], [y, y], color=c, lw=2.5, alpha=0.55, solid_capstyle="butt")
        ax.plot(mean, y, "|", color=c, ms=14, mew=2.5)
        ax.scatter(part["ours"], np.full(len(part), y) + np.linspace(-0.12, 0.12, len(part)), s=16, color=c,
                   edgecolor="0.1", lw=0.4, zorder=3)
        end = max(mean + (sd if sd == sd else 0), part["ours"].max())
        right.append(end)
        ax.annotate(f"{mean:.1f} ± {sd:.1f}" if sd == sd else f"{mean:.1f}", (end, y), xytext=(6, 0),
                    textcoords="offset points", va="center", fontsize=6.5, color="0.2")
        value = part["paper"].iloc[0]
        paper_ax.plot(value, y, "D", mfc="none", mec="0.1", ms=6, mew=1.2)
        paper_ax.annotate(f"{value:.1f}", (value, y), xytext=(0, 7), textcoords="offset points", ha="center",
                          fontsize=6.5, color="0.2")
    stats = frame.groupby("row")["ours"].agg(["mean", "std", "min"])
    low = min(stats["min"].min(), (stats["mean"] - stats["std"].fillna(0)).min())
    ax.set_xlim(max(0.0, low - 4), max(right) + 12)   # room for the mean ± SD written beside each bar
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_yticks([len(rows) - 1 - i for i in range(len(rows))], [f"{r}  {names[r]}" for r in rows], fontsize=7)
    ax.set_xlabel(metric_label, fontsize=8)
    ax.set_title(ours_label, fontsize=8)
    values = frame.groupby("row")["paper"].first()
    paper_ax.set_xlim(values.min() - 1.5, values.max() + 1.5)
    paper_ax.set_xlabel(f"{metric_label}, not ours", fontsize=7)
    paper_ax.set_title(figures.fit_lines(paper_label, 8, 1.5), fontsize=8)
    paper_ax.set_facecolor("0.96")
    for a in (ax, paper_ax):
        a.tick_params(axis="x", labelsize=7)
        a.tick_params(axis="y", length=0)
    handles = [Line2D([], [], marker="o", color="0.4", ls="", label=f"ours: one seed (n = {frame.groupby('row').size().max()})"),
               Line2D([], [], color="0.4", lw=2.5, label="ours: mean ± 1 SD"),
               Line2D([], [], marker="D", mfc="none", mec="0.1", ls="", label=paper_label)]
    fig.legend(handles=handles, fontsize=6.5, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 0.0))
    if title:
        fig.suptitle(figures.fit_lines(title, 9, weight="bold"), fontsize=9, fontweight="bold")
    fig.tight_layout(rect=(0, 0.07, 1, 1), w_pad=0.6)
    return fig


def plot_recall_heatmap(frame, title: str = "", short_names: Mapping[str, str] | None = None) -> plt.Figure:
    """Per-class recall from a :func:`recall_frame`: models down, classes across, the value written
    in every cell, one sequential colour scale 0-100 % (a weak class reads as a pale column)."""
    import seaborn as sns

    values = frame.drop(columns=["n"], errors="ignore")
    columns = [short_names.get(c, c) for c in values.columns] if short_names else list(values.columns)
    fig, ax = plt.subplots(figsize=(min(MAX_WIDTH, 2.6 + 0.62 * values.shape[1]), 0.32 * len(values) + 1.7))
    sns.heatmap(values.to_numpy(dtype=float), annot=True, fmt=".0f", cmap="viridis", vmin=0, vmax=100, ax=ax,
                xticklabels=columns, yticklabels=[f"{m} (n={n})" for m, n in zip(values.index, frame["n"])]
                if "n" in frame else list(values.index), annot_kws={"fontsize": 6.5},
                cbar_kws={"label": "recall (%)", "shrink": 0.8}, linewidths=0.4, linecolor="white")
    ax.tick_params(labelsize=7, length=0)
    ax.set_xticklabels(ax.get_xticklabels(), rotation=30, ha="right")
    ax.figure.axes[-1].tick_params(labelsize=6)
    ax.figure.axes[-1].yaxis.label.set_size(7)
    figures.title_and_layout(ax, title, fontsize=9)
    return fig


def plot_stages(tables: Mapping[str, "pd.DataFrame"], title: str = "") -> plt.Figure:  # noqa: F821
    """The stage tables of one or more networks (:func:`stage_table`) as a diagram: one box per part
    (stem, stages 1-4, ordered colours), labelled with its blocks, channels, parameters and the
    output feature-map size at each input size."""
    fig, axes = plt.subplots(len(tables), 1, figsize=(MAX_WIDTH, 1.45 * len(tables) + 0.35), squeeze=False)
    for ax, (name, table) in zip(axes[:, 0], tables.items()):
        sizes = [c for c in table.columns if c.startswith("map @")]
        colors = ordered_colors(len(table))
        x = 0.0
        for (_, row), color in zip(table.iterrows(), colors):
            ax.add_patch(plt.Rectangle((x, 0.02), 1.6, 0.96, color=color, alpha=0.9, lw=0))
            dark = 0.2126 * color[0] + 0.7152 * color[1] + 0.0722 * color[2] < 0.45
            text = "\n".join([f"{row['part']}: " + (f"{row['blocks']} blocks" if row["blocks"] else "4×4/4 conv"),
                              f"{row['channels']} channels, {row['params (M)']:.2f} M",
                              *[f"{row[c]} at {c.split('@ ')[1]}" for c in sizes]])
            ax.text(x + 0.8, 0.5, text, ha="center", va="center", fontsize=6.5,
                    color="white" if dark else "black")
            if x:
                ax.annotate("", xy=(x, 0.5), xytext=(x - 0.25, 0.5), arrowprops=dict(arrowstyle="->", lw=0.8))
            x += 1.85
        ax.set_xlim(-0.05, x)
        ax.set_ylim(0, 1)
        ax.axis("off")
        ax.set_title(name, fontsize=8, loc="left")
    figures.fit_suptitle(fig, title, 9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------- Fig. 13
def plot_gradcam(cams, title: str) -> plt.Figure:
    """Fig. 13 from an :class:`esg_lib.experiments.CamSet`: the maps with each panel's predicted class
    (✓/✗), each row's CAM grid, a colour bar, and a caption counting the right predictions per model
    and keying the short class codes."""
    n = len(cams.images)
    right = ", ".join(f"{label} {k}/{n}" for label, k in cams.correct().items())
    key = "; ".join(f"{a} = {b}" for a, b in zip(cams.short_names, cams.class_names) if a != b)
    caption = (f"Under each map: the class the model predicted (✓ right, ✗ wrong), which the map explains. "
               f"Right on these {n} images: {right}.\nBright = more weight; a map is its row's CAM grid upsampled "
               f"to the image." + (f"\n{key}" if key else ""))
    return figures.plot_cam_grid(
        cams.images, cams.cams, [cams.short_names[int(t)] for t in cams.truths], title=title,
        predictions={label: e.predictions for label, e in cams.explained.items()}, truths=cams.truths,
        class_names=cams.short_names, grids={label: e.grid for label, e in cams.explained.items()},
        caption=caption)
