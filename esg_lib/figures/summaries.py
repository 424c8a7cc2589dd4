"""Figures a reader looks at before reading a table: each summarises many runs in one picture.

Each draws a tidy frame that the report layer builds from the committed run records
(:mod:`esg_lib.report.figure_frames`, :mod:`esg_lib.report.gap`) or a notebook's summary; none
reads a file or trains anything, so a profile's figures can be rebuilt on a fresh clone from its
committed records alone.

* :func:`plot_metric_bars` -- grouped bars of a metric (the split protocols, notebook 08);
* :func:`plot_accuracy_vs_cost` -- accuracy against our FPS, against GMACs and (the paper's, apart) against its FPS;
* :func:`plot_forest` -- ESG-ConvNeXt minus each model, per-seed dots and the 95 % t interval;
* :func:`plot_ablation` -- Table 2 as per-seed dots with mean ± SD, the paper's values on an axis of their own;
* :func:`plot_recall_heatmap` -- per-class recall, models × classes;
* :func:`plot_gap` -- the ``cpu-gap`` arms: accuracy against optimiser steps and input size (docs/gap.md).

The paper's numbers are always drawn hollow and labelled "paper"; its models ran at 224 px on an
RTX 4090 and ours at the profile's size on the hardware each record names, so the two are context,
never a comparison of equals.
"""
from __future__ import annotations

import math
import re
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .layout import fit_lines, fit_suptitle, spread, title_and_layout
from .style import MAX_WIDTH, PALETTE, highlight_style, line_styles, row_colors, text_color

__all__ = ["plot_metric_bars", "plot_accuracy_vs_cost", "plot_forest", "plot_ablation", "plot_recall_heatmap",
           "plot_gap"]


def plot_metric_bars(frame, x: str, y: str, hue: str | None = None, err: str | None = None, title: str = "",
                     ylabel: str = "", count: str | None = None) -> plt.Figure:
    """Grouped bars of a metric (e.g. accuracy per protocol and model), ±``err`` error bars when it
    names a column. Categories keep their order of appearance in ``frame``. ``count`` names a
    column of seed counts: a bar resting on fewer seeds than the most any bar has is labelled
    ``(n=K)``, so a half-finished plan is not read as a complete one."""
    xs = list(dict.fromkeys(frame[x]))
    hues = list(dict.fromkeys(frame[hue])) if hue else [None]
    width = 0.8 / len(hues)
    colors = sns.color_palette(PALETTE, n_colors=len(hues))
    most = frame[count].max() if count else None   # the seed count of a complete cell
    fig, ax = plt.subplots(figsize=(min(MAX_WIDTH, max(6.0, 2.6 * len(xs))), 4.2))
    for k, (level, color) in enumerate(zip(hues, colors)):
        part = frame if level is None else frame[frame[hue] == level]
        values = [part.loc[part[x] == v, y].mean() for v in xs]
        errors = [part.loc[part[x] == v, err].mean() for v in xs] if err else None
        positions = np.arange(len(xs)) + (k - (len(hues) - 1) / 2) * width
        bars = ax.bar(positions, values, width, yerr=errors, capsize=3, color=color,
                      label=None if level is None else str(level))
        labels = [f"{v:.1f}" if v == v else "" for v in values]
        if count:
            for i, v in enumerate(xs):
                n = part.loc[part[x] == v, count].sum()
                if labels[i] and n < most:
                    labels[i] += f" (n={int(n)})"
        ax.bar_label(bars, labels=labels, fontsize=7, padding=2)
    # long category names (split protocols) break at their hyphens instead of running into each other
    ax.set_xticks(np.arange(len(xs)), [_wrap_label(str(v)) for v in xs])
    ax.grid(False, axis="x")   # vertical grid lines would cut through the bars
    ax.set(ylabel=ylabel or y, xlabel="")
    if hue:   # one row between title and bars: inside the print width, over no bar
        ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(hues), frameon=False)
    title_and_layout(ax, title, pad=22 if hue else 6)
    return fig


def _wrap_label(text: str, width: int = 16) -> str:
    """``augment-then-group-split`` → ``augment-then-\ngroup-split``: lines of at most ``width``
    characters, broken after a hyphen or at a space."""
    lines, line = [], ""
    for piece in re.split(r"(?<=-)|(?<= )", text):
        if line and len(line) + len(piece) > width:
            lines.append(line.rstrip())
            line = ""
        line += piece
    return "\n".join([*lines, line.rstrip()])


def plot_accuracy_vs_cost(frame, title: str = "", metric_label: str = "test accuracy (%)",
                          paper_label: str | None = None, highlight: str = "esg-convnext",
                          ours_speed: str = "ours: `esg fps`", paper_speed: str = "RTX 4090, 224 px") -> plt.Figure:
    """Three panels from a :func:`~esg_lib.report.figure_frames.cost_frame`, one shared accuracy axis: our ``metric`` against our
    FPS (``ours_speed`` says where and how it was measured; the bar is the range of its timings) and
    against GMACs, and the paper's against the paper's FPS (``paper_speed``: its GPU and size;
    ``paper_label``: which of its tables, by default the one :func:`~esg_lib.report.figure_frames.cost_frame` read) --
    never two machines' FPS on one axis. Ours filled (error bar ±1 SD over seeds), the paper's
    hollow, each model in one colour and marker throughout; ``highlight`` (a model key) is the black
    star."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(1, 3, figsize=(MAX_WIDTH, 3.7), sharey=True)
    styles = line_styles(len(frame))
    keys = list(frame["key"])
    if highlight in keys:   # same rule as plot_curves: the highlighted model is black
        styles = highlight_style(styles, keys.index(highlight))
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
        ax.set_title(fit_lines(head, 8, 2.1, weight="bold"), fontsize=8)
        ax.set_xlabel(fit_lines(xlabel, 7, 2.1), fontsize=7)
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
    fit_suptitle(fig, title, 9)
    fig.tight_layout(rect=(0, 0.17, 1, 1), w_pad=0.8)
    return fig


def plot_forest(frames: Mapping[str, pd.DataFrame], title: str = "", metric_label: str = "accuracy",
                target_label: str = "ESG-ConvNeXt") -> plt.Figure:
    """Forest plot, one panel per dataset (``frames[name]`` from :func:`~esg_lib.report.figure_frames.seed_differences`): each
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
    fit_suptitle(fig, title, 8)
    fig.text(0.5, 0.005, "dots: one seed's paired difference (same split for both models); diamond: mean; "
             "bar: 95 % t interval.\nBlue: ESG-ConvNeXt better, vermilion: worse, grey: the interval contains 0 "
             "(not told apart at this many seeds).", ha="center", va="bottom", fontsize=6.5, color="0.3")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def plot_ablation(frame, title: str = "", metric_label: str = "test accuracy (%)",
                  paper_label: str = "the paper's Table 2: NEU-CLS-64, 224 px", ours_label: str = "ours") -> plt.Figure:
    """Table 2 from an :func:`~esg_lib.report.figure_frames.ablation_frame`, rows 1 (top) → 5: on the left our seeds as dots and
    mean ± 1 SD as a bar (written beside it), in :func:`~esg_lib.figures.row_colors` (row 5, the full
    network, black); on the right, on an axis of its own, the paper's values as hollow diamonds --
    another dataset and size (``paper_label``), never on ours. The legend sits under the panels."""
    from matplotlib.lines import Line2D

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
    paper_ax.set_title(fit_lines(paper_label, 8, 1.5), fontsize=8)
    paper_ax.set_facecolor("0.96")
    for a in (ax, paper_ax):
        a.tick_params(axis="x", labelsize=7)
        a.tick_params(axis="y", length=0)
    handles = [Line2D([], [], marker="o", color="0.4", ls="", label=f"ours: one seed (n = {frame.groupby('row').size().max()})"),
               Line2D([], [], color="0.4", lw=2.5, label="ours: mean ± 1 SD"),
               Line2D([], [], marker="D", mfc="none", mec="0.1", ls="", label=paper_label)]
    fig.legend(handles=handles, fontsize=6.5, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 0.0))
    if title:
        fig.suptitle(fit_lines(title, 9, weight="bold"), fontsize=9, fontweight="bold")
    fig.tight_layout(rect=(0, 0.07, 1, 1), w_pad=0.6)
    return fig


def plot_recall_heatmap(frame, title: str = "", short_names: Mapping[str, str] | None = None) -> plt.Figure:
    """Per-class recall from a :func:`~esg_lib.report.figure_frames.recall_frame`: models down, classes across, the value written
    in every cell, one sequential colour scale 0-100 % (a weak class reads as a pale column)."""
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
    title_and_layout(ax, title, fontsize=9)
    return fig


def plot_gap(panels: Sequence[tuple[str, pd.DataFrame, str]], models: Sequence[str], title: str,
             metric: str = "acc", highlight: str = "esg-convnext") -> plt.Figure:
    """Test ``metric`` against optimiser steps and against input size, per model, one panel per
    ``(x label, runs, x column)`` of ``panels`` (:func:`esg_lib.report.gap.gap_figure` builds them from
    the ``cpu-gap`` arms: the base arm and the arms that change only that panel's x). ``models`` (model
    keys) fixes each model's style and sideways place; ``highlight`` is the black star.

    Every seed a small dot, the mean over a point's seeds a large marker with its ``n=`` written
    beside the panel's markers (left of the first column, right of the last: never on a marker). The
    x axes are categorical (the values present) and the models are nudged apart sideways. A line joins
    two means only when they are over the same seeds; a mean over other seeds stands alone."""
    styles, step = dict(zip(models, highlight_style(line_styles(len(models)), models.index(highlight)))), 0.1
    fig, axes = plt.subplots(1, 2, figsize=(MAX_WIDTH, 4.0), sharey=True)
    for ax, (xlabel, part, x) in zip(axes, panels):
        ticks = sorted(int(v) for v in part[x].unique())
        where = {v: i for i, v in enumerate(ticks)}
        beside: dict[int, list[tuple[float, float, str, str]]] = {}   # column → (x, mean, text, colour)
        for i, key in enumerate(models):
            rows = part[part["key"] == key]
            if rows.empty:
                continue
            st, nudge = styles[key], (i - (len(models) - 1) / 2) * step
            xs = sorted(int(v) for v in rows[x].unique())
            seeds = {v: tuple(sorted(rows.loc[rows[x] == v, "seed"])) for v in xs}
            means = {v: rows.loc[rows[x] == v, metric].mean() for v in xs}
            for a, b in zip(xs[:-1], xs[1:]):   # join two means only over the same seeds
                if seeds[a] == seeds[b]:
                    ax.plot([where[a] + nudge, where[b] + nudge], [means[a], means[b]], color=st["color"],
                            ls=st["ls"], lw=1.4, zorder=2)
            ax.plot([where[v] + nudge for v in xs], [means[v] for v in xs], ls="", color=st["color"],
                    marker=st["marker"], ms=13 if key == highlight else 8, mec="white", mew=0.6, zorder=4,
                    label=rows["model"].iloc[0])
            ax.scatter([where[int(v)] + nudge for v in rows[x]], rows[metric], color=st["color"], s=14,
                       alpha=0.65, zorder=3, edgecolors="none")
            for v in xs:
                beside.setdefault(where[v], []).append((where[v] + nudge, means[v], f"n={len(seeds[v])}",
                                                        st["color"]))
        span = max(part[metric].max() - part[metric].min(), 1.0)
        for column, items in beside.items():
            # outward: left of the first column, right of the others; past any marker of the column
            # that sits on the label's way (a marker and a label high), so no label covers a marker
            side = -1 if column == 0 and len(ticks) > 1 else 1
            ys = spread([m for _, m, _, _ in items], gap=span * 0.055)
            for (xm, mean, text, color), y in zip(items, ys):
                blocking = [x for x, m, _, _ in items if (x - xm) * side >= 0 and abs(m - y) < span * 0.06]
                xt = (max(blocking) if side > 0 else min(blocking)) + side * 0.07
                ax.annotate(text, (xt, y), fontsize=7, color=text_color(color), va="center",
                            ha="left" if side > 0 else "right", fontweight="bold")
        ax.set_xticks(range(len(ticks)), [str(t) for t in ticks])
        ax.set_xlim(-0.6, len(ticks) - 0.4)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, axis="y", alpha=0.3)
        ax.grid(False, axis="x")
    axes[0].set_ylabel(f"test {'accuracy' if metric == 'acc' else metric} (%)", fontsize=8)
    fig.suptitle(fit_lines(title, 9, weight="bold"), fontsize=9, fontweight="bold")
    # one legend row under both panels (inside a panel it covered a model's marker), and what is drawn
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, 0.055))
    fig.text(0.5, 0.005, "large marker: mean over the n seeds written beside it; small dots: single seeds; "
             "a line joins two means only where both are over the same seeds", ha="center", va="bottom",
             fontsize=6.5, color="0.3")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig
