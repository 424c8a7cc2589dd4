"""Why ESG-ConvNeXt trails ResNet18 and DenseNet121: the ``cpu-gap`` arms beside their ``cpu`` partners.

Each arm of the ``cpu-gap`` plan (:data:`esg_lib.engine.plan.PLANS`) changes one thing — 4× the
optimiser steps (60 epochs), or 128 px inputs — and keeps the rest of the ``cpu`` profile: recipes,
seeds and therefore the leak-free X-SDD splits. A ``cpu-gap`` run therefore pairs, seed by seed,
with the ``cpu`` run of the same model (the *base* arm: 15 epochs, 64 px), and paired differences
cancel the split noise. This module turns the committed records of both profiles into

- one frame of runs with their arm (:func:`arm_frame`),
- each model's gain from the base to every arm (:func:`gains`),
- ESG-ConvNeXt minus ResNet18 and minus DenseNet121 in every arm (:func:`gaps`),
- a Markdown report (``results/cpu-gap/gap_x-sdd.md``, :func:`write_gap_report`) and
- a figure of test accuracy against optimiser steps and input size, per model, with per-seed dots
  (:func:`gap_figure`, drawn by :func:`esg_lib.figures.plot_gap`).

An arm is data: its plan stage carries its name (``Stage.arm``) and the config fields it changes
(``Stage.overrides``); the tables print that name, and the figure puts an arm on the axis of the one
field it changes (steps or size) and leaves arms of other fields (a learning rate, a recipe) to the
tables. A record belongs to an arm when its config variant is the one that arm's stage would train
now: a run of another recipe is left out rather than mislabelled.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import pandas as pd

from esg_lib import store
from esg_lib.engine.config import BASE_PROFILE, ProfileRef, get_profile
from esg_lib.engine.plan import PIVOTAL, expected_variant, plan
from esg_lib.engine.runtime import atomic_write
from esg_lib.markdown import markdown_table, replace_block

from .frames import paired_difference, records_frame
from .tables import load_records

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["BASE_ARM", "arm_frame", "gains", "gaps", "reading", "gap_markdown", "write_gap_report",
           "update_gap_block", "gap_figure"]

BASE_ARM = "15 epochs, 64 px"
DATASET, PROTOCOL = "x-sdd", "leak-free"
MODELS = (*PIVOTAL, "convnextv2")


def arm_frame(profile: ProfileRef = "cpu-gap", results: str | Path = "results") -> pd.DataFrame:
    """The runs of every arm (the base profile's own runs as :data:`BASE_ARM`): a
    :func:`~.frames.records_frame` with columns added from each arm's plan stage
    (:class:`~esg_lib.engine.plan.Stage`): ``arm`` (its name), ``changes`` (the frozenset of config
    fields it changes; empty for the base), ``arm_rank`` (its place in the plan, the base 0),
    ``epochs`` and ``img_size``."""
    from esg_lib.engine.config import build_config

    prof = get_profile(profile)
    base = get_profile(BASE_PROFILE[prof.name])
    default = build_config(base, dataset=DATASET)
    arm_stages = [s for s in plan(prof) if s.dataset == DATASET and s.protocol == PROTOCOL]
    ranks = {BASE_ARM: 0, **{a: i + 1 for i, a in enumerate(dict.fromkeys(s.arm for s in arm_stages))}}
    wanted: dict[tuple[str, str, str], dict[str, Any]] = {}   # (profile, model, variant) → arm columns
    for model in MODELS:
        wanted[base.name, model, expected_variant(base, model, DATASET, PROTOCOL)] = dict(
            arm=BASE_ARM, changes=frozenset(), arm_rank=0, epochs=default.epochs, img_size=default.img_size)
    for stage in arm_stages:
        cfg = build_config(prof, dataset=DATASET, **dict(stage.overrides))
        columns = dict(arm=stage.arm, changes=frozenset(stage.overrides), arm_rank=ranks[stage.arm],
                       epochs=cfg.epochs, img_size=cfg.img_size)
        for model in stage.models:
            wanted[prof.name, model, expected_variant(prof, model, DATASET, PROTOCOL, stage.overrides)] = columns
    keep, arms = [], []
    for arm_profile in (base, prof):
        for rec in load_records(arm_profile, results):
            key = (arm_profile.name, rec["model"], rec.get("variant"))
            if rec.get("dataset") == DATASET and rec.get("protocol", PROTOCOL) == PROTOCOL and key in wanted:
                keep.append(rec)
                arms.append(wanted[key])
    frame = records_frame(keep)
    for column in ("arm", "changes", "arm_rank", "epochs", "img_size"):
        frame[column] = [a[column] for a in arms]
    return frame


def _arms(frame: pd.DataFrame) -> list[str]:
    """The arms present, the base first, then by steps and size, then in plan order."""
    present = frame.drop_duplicates("arm").sort_values(["epochs", "img_size", "arm_rank"], kind="stable")
    names = present["arm"].tolist()
    return [BASE_ARM, *[a for a in names if a != BASE_ARM]] if BASE_ARM in names else names


def _arm_changing(frame: pd.DataFrame, fields: set[str]) -> pd.DataFrame:
    """The base arm's runs and those of every arm that changes only some of ``fields``."""
    return frame[frame["changes"].map(lambda changed: changed <= fields).astype(bool)]


def _first_arm_changing(frame: pd.DataFrame, field_name: str) -> str | None:
    names = [a for a in _arms(frame) if field_name in frame.loc[frame["arm"] == a, "changes"].iloc[0]]
    return names[0] if names else None


def _paired(a: pd.Series, b: pd.Series) -> dict[str, Any]:
    seeds = sorted(set(a.index) & set(b.index))
    if not seeds:
        return {}
    d = paired_difference(a.loc[seeds].to_numpy(), b.loc[seeds].to_numpy())
    interval = "—" if d["low"] != d["low"] else f"[{d['low']:+.1f}, {d['high']:+.1f}]"
    noise = "untested (1 seed)" if d["n"] < 2 else "within noise" if d["within_noise"] else "interval excludes 0"
    return {"seeds": " ".join(str(s) for s in seeds), "difference (points)": f"{d['mean']:+.1f}",
            "95% interval": interval, "reading": noise, "_mean": d["mean"], "_low": d["low"],
            "_high": d["high"], "_n": d["n"]}


def _by_seed(frame: pd.DataFrame, arm: str, key: str, metric: str) -> pd.Series:
    part = frame[(frame["arm"] == arm) & (frame["key"] == key)]
    return part.set_index("seed")[metric]


def gains(frame: pd.DataFrame, metric: str = "acc") -> pd.DataFrame:
    """Per model and arm: the arm minus the base arm, paired per seed (points, 95 % t interval)."""
    rows = []
    for arm in _arms(frame)[1:]:
        for key in MODELS:
            d = _paired(_by_seed(frame, arm, key, metric), _by_seed(frame, BASE_ARM, key, metric))
            if d:
                label = frame.loc[frame["key"] == key, "model"].iloc[0]
                rows.append({"arm": arm, "model": label, **d})
    return pd.DataFrame(rows)


def gaps(frame: pd.DataFrame, metric: str = "acc", target: str = "esg-convnext",
         references: Sequence[str] = ("resnet18", "densenet121")) -> pd.DataFrame:
    """Per arm: ``target`` minus each reference, paired per seed (points, 95 % t interval)."""
    rows = []
    for arm in _arms(frame):
        for ref in references:
            d = _paired(_by_seed(frame, arm, target, metric), _by_seed(frame, arm, ref, metric))
            if d:
                label = frame.loc[frame["key"] == ref, "model"].iloc[0]
                rows.append({"arm": arm, "ESG-ConvNeXt minus": label, **d})
    return pd.DataFrame(rows)


def _summary(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    rows = []
    for arm in _arms(frame):
        for key in MODELS:
            part = frame[(frame["arm"] == arm) & (frame["key"] == key)].sort_values("seed")
            if part.empty:
                continue
            v = part[metric]
            mean_std = f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if len(v) > 1 else f"{v.mean():.1f}"
            rows.append({"arm": arm, "model": part["model"].iloc[0], "steps": int(part["steps"].iloc[0]),
                         f"{metric} (%)": mean_std, "seeds": " ".join(str(s) for s in part["seed"])})
    return pd.DataFrame(rows)


def _markdown(frame: pd.DataFrame) -> str:
    shown = frame[[c for c in frame.columns if not c.startswith("_")]]
    return markdown_table(shown) if len(shown) else "(no runs yet)"


def _said(d: Mapping[str, Any] | None) -> str:
    if not d:
        return "not measured yet"
    seeds = d["seeds"].split()
    if len(seeds) < 2:   # one pair: a difference, but no interval and no verdict on noise yet
        return f"{d['difference (points)']} (seed {seeds[0]} only: no interval yet)"
    return f"{d['difference (points)']} {d['95% interval']} ({d['reading']}, {len(seeds)} seeds)"


def _find(table: pd.DataFrame, **where: str) -> dict[str, Any] | None:
    if table.empty:
        return None
    mask = pd.Series(True, index=table.index)
    for col, value in where.items():
        mask &= table[col] == value
    return table[mask].iloc[0].to_dict() if mask.any() else None


def reading(frame: pd.DataFrame, metric: str = "acc") -> list[str]:
    """One line per candidate reason for the gap, each a paired difference with its 95 % interval
    (or "not measured yet"), computed from the records; reasons that cannot be tested here say so."""
    g, gp = gains(frame, metric), gaps(frame, metric)
    lines = []
    for changed, reason in (("epochs", "**Optimiser steps** (915 → 3660, same recipes)"),
                            ("img_size", "**Input size** (64 → 128 px, 915 steps)")):
        arm = _first_arm_changing(frame, changed)
        gain = {m: _said(_find(g, arm=arm, model=m)) for m in ("ESG-ConvNeXt", "ResNet18", "DenseNet121")}
        lines.append(f"- {reason}: gain ESG-ConvNeXt {gain['ESG-ConvNeXt']}; ResNet18 {gain['ResNet18']}; "
                     f"DenseNet121 {gain['DenseNet121']}. ESG-ConvNeXt minus ResNet18 there: "
                     f"{_said(_find(gp, arm=arm, **{'ESG-ConvNeXt minus': 'ResNet18'}))} "
                     f"(at the base: {_said(_find(gp, arm=BASE_ARM, **{'ESG-ConvNeXt minus': 'ResNet18'}))}).")
    lines += ["- **Recipe** (stochastic depth, random erasing, mixup/cutmix, EMA; RandAugment): not measured yet. "
              "The pieces are config fields built from timm's own (docs/training.md, \"Stronger regularisation\"); "
              "the candidate recipes that combine them are not trained yet (issue 18, arm 2).",
              "- **ImageNet pre-training**: cannot be tested here — no weights can be fetched on this machine.",
              "- **Random initialisation and architecture family** (BatchNorm CNNs learn faster from scratch on a "
              "few thousand images than LayerNorm ConvNeXts): not tested as an arm; consistent with the ablation, "
              "where ESG's BatchNorm branches bring its big step over ConvNeXtV2.",
              "- **Split**: every model here trains and tests on the same leak-free splits, so the split "
              "cannot reorder them; what augmenting before splitting adds is measured in the `cpu` results "
              "(leak protocols table)."]
    return lines


def gap_markdown(profile: ProfileRef = "cpu-gap", results: str | Path = "results", metric: str = "acc",
                 frame: pd.DataFrame | None = None) -> str:
    """The report: every arm's runs, each model's gain over the base arm, and ESG-ConvNeXt's gap to
    ResNet18 and DenseNet121 in every arm (X-SDD leak-free, test set). ``frame``: an
    :func:`arm_frame` already read from ``results``."""
    prof = get_profile(profile)
    frame = arm_frame(prof, results) if frame is None else frame
    name, base = prof.name, BASE_PROFILE[prof.name]
    return "\n".join([
        f"# Why ESG-ConvNeXt trails ResNet18 — profile `{name}` beside `{base}` (X-SDD leak-free, "
        f"test {metric}, %)", "",
        f"Arms: `{base}` runs ({BASE_ARM}, 915 optimiser steps) and the `{name}` stages, each changing "
        "one thing. Seeds pair runs that share a split; intervals are 95 % t intervals of the per-seed "
        "differences; \"within noise\" means the interval contains 0 and \"interval excludes 0\" the "
        "opposite, before any correction for multiple comparisons. Rebuild: "
        f"`esg report --profile {name}`.", "",
        "## Reading: each candidate reason, measured", "", *reading(frame, metric), "",
        "## Runs per arm", "", _markdown(_summary(frame, metric)), "",
        "## Each model's gain over the base arm (arm minus base, paired per seed)", "",
        _markdown(gains(frame, metric)), "",
        "## ESG-ConvNeXt minus ResNet18 and DenseNet121, per arm", "", _markdown(gaps(frame, metric)), ""])


GAP_BEGIN = "<!-- gap:{profile}:begin (generated by `esg report --profile {profile} --readme`) -->"
GAP_END = "<!-- gap:{profile}:end -->"


def update_gap_block(profile: ProfileRef, page: str | Path, results: str | Path = "results") -> bool:
    """Rewrite the generated reading (:func:`reading`) between the page's gap markers; returns
    whether the page changed."""
    prof = get_profile(profile)
    return replace_block(page, GAP_BEGIN.format(profile=prof.name), GAP_END.format(profile=prof.name),
                         "\n".join(reading(arm_frame(prof, results))))


def write_gap_report(profile: ProfileRef = "cpu-gap", results: str | Path = "results",
                     figures: str | Path | None = "figures") -> list[Path]:
    """``results/<profile>/gap_x-sdd.md`` and ``.csv`` (one row per run), and, with ``figures``,
    ``figures/<profile>/gap_x-sdd.png|pdf``."""
    prof = get_profile(profile)
    out = store.profile_dir(results, prof)
    out.mkdir(parents=True, exist_ok=True)
    frame = arm_frame(prof, results)
    md, csv = out / f"gap_{DATASET}.md", out / f"gap_{DATASET}.csv"
    markdown = gap_markdown(prof, results, frame=frame)
    with atomic_write(md) as fh:  # whole or not at all (a temporary file, then os.replace)
        fh.write(markdown)
    cols = ["arm", "key", "model", "seed", "epochs", "img_size", "steps", "acc", "f1", "train_seconds"]
    with atomic_write(csv, "w", newline="") as fh:
        frame.sort_values(["epochs", "img_size", "key", "seed"])[cols].to_csv(fh, index=False, float_format="%.6g")
    written = [md, csv]
    if figures is not None and len(frame):
        import matplotlib   # only when a figure is written: the tables need none

        from esg_lib.figures import save_figure, set_style

        with matplotlib.rc_context():   # the notebooks' style (150 dpi, fonts), then the caller's back
            set_style()
            written += save_figure(gap_figure(frame), Path(figures) / prof.name, f"gap_{DATASET}")
    return written


def _gap_panels(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame, str]]:
    """(x label, runs, x column) of the gap figure's two panels: steps at the base size, size at the
    base steps, each with the base arm and the arms that change only that x."""
    base = frame[frame["arm"] == BASE_ARM]
    base_size = int(base["img_size"].iloc[0]) if len(base) else 64
    base_steps = int(base["steps"].iloc[0]) if len(base) else None
    return [(f"optimiser steps ({base_size} px)", _arm_changing(frame, {"epochs", "warmup_epochs"}), "steps"),
            (f"input size, px ({base_steps} steps)" if base_steps else "input size, px",
             _arm_changing(frame, {"img_size"}), "img_size")]


def gap_figure(frame: pd.DataFrame, metric: str = "acc") -> Figure:
    """The gap figure of an :func:`arm_frame`: its two panels (:func:`_gap_panels`), the models in
    :data:`MODELS` order and a title naming the profiles and seeds, drawn by
    :func:`esg_lib.figures.plot_gap`. A panel holds the base and the arms that change only its x: an
    arm of other fields (a learning rate, say) is on no axis here, only in the report's tables."""
    from esg_lib.figures import plot_gap   # matplotlib only when a figure is drawn, not for the tables

    seeds = ",".join(str(s) for s in sorted(frame["seed"].unique()))
    title = ("Why ESG-ConvNeXt trails ResNet18: test accuracy against optimiser steps and input size — "
             f"X-SDD leak-free, profiles {BASE_PROFILE.get('cpu-gap', 'cpu')} and cpu-gap, seeds {seeds}")
    return plot_gap(_gap_panels(frame), MODELS, title, metric=metric, highlight="esg-convnext")
