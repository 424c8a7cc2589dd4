"""The experiment plan of a profile: which runs make up its results, in which order, how far along.

The plan is data (:data:`PLANS`): a list of stages, each one dataset, one split protocol, some
model-table rows and the profile's seeds. ``esg queue --profile cpu`` trains what is missing, stage
by stage and seed-major inside a stage (one decoded split per seed), resuming unfinished runs from
their last epoch; it can be stopped at any time and started again in a later session. The order puts
first what the comparison needs most: ESG-ConvNeXt and its references on X-SDD for every seed.

Progress is read from the runs' own records: a (stage, model, seed) is *done* when a committed
per-run record (``results/<profile>/runs/*.json``) has the same dataset, protocol, model, seed and
config variant as the profile would train now; *started* when a run folder with those fields holds
logged epochs. Time spent is the runs' own seconds (:func:`record_seconds`: wall clock, or the summed training
seconds of a run that was resumed; for unfinished
runs, the training seconds of their last logged epoch).

Time left is a planning estimate (:func:`typical_run_seconds`) from finished runs of the same kind
of machine (:func:`~.provenance.machine_kind`); how it is built: docs/training.md ("The experiment plan").
"""
from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from esg_lib import store
from esg_lib.markdown import markdown_rows

from . import provenance as P
from . import runs as R
from .config import (ABLATION, COMPARISON, BASE_PROFILE, ConfigError, ProfileRef, TrainConfig, build_config,
                     get_profile)
from .runs import expected_variant  # noqa: F401  (re-exported: the plan's rows are where it is asked)


@dataclass(frozen=True)
class Stage:
    """One block of the plan: ``models`` × the profile's seeds on one dataset and split protocol.

    ``overrides`` are config fields that this stage changes for every model (an experiment arm, e.g.
    ``epochs=60``); they are part of each run's identity, so its runs never mix with the profile's.
    ``arm`` is that arm's name as reports and figures print it; a stage with overrides must have one,
    so that an arm changing any field (learning rate, recipe, size, steps) is named by its plan, not
    guessed by the report from the fields it happens to know."""

    name: str
    dataset: str
    protocol: str
    models: tuple[str, ...]
    purpose: str = ""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    arm: str = ""

    def __post_init__(self) -> None:
        if self.overrides and not self.arm:
            raise ConfigError(f"stage {self.name!r} changes {sorted(self.overrides)} but names no arm")


REFERENCES = ("esg-convnext", "resnet18", "convnextv2", "convnextv2-param")
OTHER_BASELINES = tuple(k for k in COMPARISON if k not in REFERENCES)
LEAK_MODELS = ("esg-convnext", "convnextv2")

_FULL_PLAN = (
    Stage("X-SDD comparison: ESG-ConvNeXt and references", "x-sdd", "leak-free", REFERENCES,
          "Table 3 rows that the statistics compare (ESG vs ResNet18 and both ConvNeXtV2)"),
    Stage("X-SDD comparison: the paper's other baselines", "x-sdd", "leak-free", OTHER_BASELINES,
          "the rest of Table 3"),
    Stage("X-SDD leak: augment-then-split", "x-sdd", "augment-then-split", LEAK_MODELS,
          "what augmenting before splitting adds (near-copies across train/test)"),
    Stage("X-SDD leak: augment-then-group-split", "x-sdd", "augment-then-group-split", LEAK_MODELS,
          "augmented test set without the leak: separates the two effects"),
    Stage("X-SDD ablation (Table 2 rows 1-4)", "x-sdd", "leak-free", ABLATION[:4],
          "row 5 is the full network: its runs are the first stage's ESG-ConvNeXt runs"),
    Stage("NEU-CLS-64: ESG-ConvNeXt and ConvNeXtV2", "neu-cls-64", "leak-free",
          ("esg-convnext", "convnextv2", "convnextv2-param"), "Table 1 rows on the second dataset"),
    Stage("NEU-CLS-64: other models", "neu-cls-64", "leak-free",
          ("resnet18", *OTHER_BASELINES), "the rest of Table 1, as time allows"),
)

PIVOTAL = ("resnet18", "densenet121", "esg-convnext")

# Issue 18's arms, in the order they decide most. Same seeds, hence the same leak-free splits, as the
# `cpu` runs, so that every run pairs per seed with its 15-epoch, 64-px partner. 60 epochs are 4× the
# optimiser steps (≈3660); the warm-up grows alike (1 → 4 epochs). 128 px is X-SDD's native size.
_GAP_PLAN = (
    Stage("Steps: 60 epochs, pivotal rows", "x-sdd", "leak-free", PIVOTAL,
          "4x the optimiser steps (3660), same recipes: does ESG's gap to ResNet18 close?",
          {"epochs": 60, "warmup_epochs": 4}, arm="60 epochs, 64 px"),
    Stage("Resolution: 128 px, pivotal rows", "x-sdd", "leak-free", PIVOTAL,
          "X-SDD's native size at the 15-epoch budget: GAM's 7x7 gate sees a 4x4 last stage, not 2x2",
          {"img_size": 128}, arm="15 epochs, 128 px"),
    Stage("Steps: 60 epochs, ConvNeXtV2-atto", "x-sdd", "leak-free", ("convnextv2",),
          "the backbone alone at 4x the steps", {"epochs": 60, "warmup_epochs": 4}, arm="60 epochs, 64 px"),
    Stage("Resolution: 128 px, ConvNeXtV2-atto", "x-sdd", "leak-free", ("convnextv2",),
          "the backbone alone at 128 px", {"img_size": 128}, arm="15 epochs, 128 px"),
)

# Issue 33's comparison again, in the order the issue fixes: the five pivotal rows first (ESG-ConvNeXt,
# ablation row 4 = everything but PReLU, ResNet18, DenseNet121, ConvNeXtV2-atto), then the rest of
# Table 3, then ablation rows 1-3. Every row trains on its search winner's recipe (config.CPU2_RECIPES),
# so a row waits in the queue until its search (or its family's) is finished.
CPU2_PIVOTAL = ("esg-convnext", "esg-abl4", "resnet18", "densenet121", "convnextv2")
_CPU2_PLAN = (
    Stage("X-SDD pivotal rows (searched recipes)", "x-sdd", "leak-free", CPU2_PIVOTAL,
          "ESG-ConvNeXt against ResNet18 and DenseNet121, PReLU's effect (row 5 vs row 4), the backbone"),
    Stage("X-SDD: the rest of Table 3", "x-sdd", "leak-free",
          tuple(k for k in COMPARISON if k not in CPU2_PIVOTAL), "the paper's other baselines"),
    Stage("X-SDD ablation (Table 2 rows 1-3)", "x-sdd", "leak-free", ABLATION[:3],
          "the attention's effect (row 4 vs row 3) and the earlier rows"),
)

PLANS: dict[str, tuple[Stage, ...]] = {
    "cpu": _FULL_PLAN,
    "cpu-gap": _GAP_PLAN,
    "cpu2": _CPU2_PLAN,
    "paper": _FULL_PLAN,
    "smoke": (Stage("smoke: ESG-ConvNeXt and ResNet18", "x-sdd", "leak-free", ("esg-convnext", "resnet18")),),
}


def plan(profile: ProfileRef) -> tuple[Stage, ...]:
    name = get_profile(profile).name
    try:
        return PLANS[name]
    except KeyError:
        raise ConfigError(f"no experiment plan for profile {name!r}") from None


def stage_scale(profile: ProfileRef, stage: Stage) -> float:
    """How much longer one run of ``stage`` takes than the profile's own run on its dataset: the
    stage's epochs and pixels over the profile's (a time-left estimate, nothing more)."""
    if not stage.overrides:
        return 1.0
    prof = get_profile(profile)
    base = build_config(prof, dataset=stage.dataset)
    now = build_config(prof, dataset=stage.dataset, **dict(stage.overrides))
    return (now.epochs / base.epochs) * (now.img_size / base.img_size) ** 2


def _key(dataset: str, protocol: str, model: str, seed: int, variant: str) -> tuple:
    return (dataset, protocol or "leak-free", model, int(seed), variant)


def _run_progress(out: str | Path, profile: ProfileRef) -> dict[tuple, dict[str, Any]]:
    """Unfinished run folders: key → epochs logged and training seconds so far."""
    found: dict[tuple, dict[str, Any]] = {}
    for folder in R.find_runs(out, profile):
        cfg = R.run_config(folder)
        log = folder / "log.jsonl"
        if not log.is_file() or R.is_finished(folder):
            continue
        lines = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
        if not lines:
            continue
        key = _key(cfg.get("dataset"), cfg.get("protocol"), cfg.get("model"), cfg.get("seed"),
                   R.config_variant(cfg))
        found[key] = {"epochs": len(lines), "seconds": lines[-1].get("train_seconds", 0.0)}
    return found


def record_seconds(rec: Mapping[str, Any]) -> float:
    """Seconds a finished run cost. A record's ``wall_seconds`` covers only the process that finished
    the run, while ``train_seconds`` adds up the training epochs of every process that worked on it: a
    run resumed after a stop has ``train_seconds > wall_seconds``. The larger of the two is the
    better estimate either way (an uninterrupted run's wall time adds evaluation to its training)."""
    return max(float(rec.get("wall_seconds") or 0.0), float(rec.get("train_seconds") or 0.0))


def typical_run_seconds(profile: ProfileRef, records: Sequence[dict[str, Any]],
                        tuning_records: Sequence[dict[str, Any]],
                        kind: str = "cpu") -> dict[tuple[str, str], float]:
    """``(dataset, model) → seconds`` one more run of that row is expected to take on a ``kind``
    machine (module docstring); pairs without any evidence are absent."""
    runs: dict[tuple[str, str], list[float]] = {}
    for r in records:
        if P.machine_kind(r.get("hardware")) == kind:
            runs.setdefault((r["dataset"], r["model"]), []).append(record_seconds(r))
    tuning: dict[str, list[float]] = {}
    for r in tuning_records:
        if P.machine_kind(r.get("hardware")) != kind:
            continue
        tuning.setdefault(r["model"], []).append(float(r.get("train_seconds") or 0.0))
    typical = {k: statistics.median(v) for k, v in runs.items()}
    for model, v in tuning.items():
        typical.setdefault((TrainConfig.dataset, model), statistics.median(v))
    prof = get_profile(profile)
    stages = plan(prof)
    for stage in stages:
        for model in (m for m in stage.models if m in ABLATION):
            if (stage.dataset, model) not in typical and (stage.dataset, "esg-convnext") in typical:
                typical[stage.dataset, model] = typical[stage.dataset, "esg-convnext"]
    for stage in stages:
        for model in stage.models:
            seen = [(d, t) for (d, m), t in typical.items() if m == model and d != stage.dataset]
            if (stage.dataset, model) not in typical and seen:
                dataset, seconds = seen[0]
                typical[stage.dataset, model] = (seconds * _work(prof, stage.dataset)
                                                 / _work(prof, dataset))
    return typical


def _work(profile: ProfileRef, dataset: str) -> float:
    """What a run's time grows with: the dataset's images times the profile's epochs on it."""
    return _images(dataset) * build_config(profile, dataset=dataset).epochs


def _images(dataset: str) -> int:
    """Images of a known dataset, from its committed content manifest."""
    from esg_lib.data.manifest import parse_manifest
    from esg_lib.data.registry import KNOWN

    return len(parse_manifest(KNOWN[dataset].manifest_text()))


def status(profile: ProfileRef, results: str | Path = "results",
           out: str | Path | None = "runs") -> list[dict[str, Any]]:
    """One row per stage: runs planned / done / started, hours spent, what is missing, the estimated
    hours left and how many missing runs have no estimate. ``out=None`` reads only the committed
    records (no run folders: what the README shows)."""
    from .tuning import load_records as load_tuning_records

    prof = get_profile(profile)
    records = _records(prof, results)
    done = {_key(r["dataset"], r.get("protocol"), r["model"], r["seed"], r.get("variant", "")): r
            for r in records}
    running = _run_progress(out, prof) if out is not None else {}
    # an experiment profile's time estimates come from its base profile's finished runs
    base = get_profile(BASE_PROFILE[prof.name]) if prof.name in BASE_PROFILE else prof
    evidence = records if base.name == prof.name else _records(base, results)
    typical = typical_run_seconds(base, evidence, load_tuning_records(base, results), P.this_machine_kind())
    seeds = prof.seeds
    rows = []
    for stage in plan(prof):
        n_done, started, seconds, missing, left, unknown = 0, 0, 0.0, [], 0.0, 0
        machines: dict[str, list[float]] = {}
        scale = stage_scale(prof, stage)
        for model in stage.models:
            variant = expected_variant(prof, model, stage.dataset, stage.protocol, stage.overrides)
            for seed in seeds:
                key = _key(stage.dataset, stage.protocol, model, seed, variant)
                if key in done:
                    n_done += 1
                    spent = record_seconds(done[key])
                    seconds += spent
                    machines.setdefault(P.machine_name(done[key].get("hardware")), []).append(spent)
                    continue
                missing.append(f"{model}/s{seed}")
                so_far = float(running[key]["seconds"] or 0.0) if key in running else 0.0
                started += key in running
                seconds += so_far
                if (stage.dataset, model) in typical:
                    left += max(typical[stage.dataset, model] * scale - so_far, 0.0)
                else:
                    unknown += 1
        rows.append({"stage": stage.name, "dataset": stage.dataset, "protocol": stage.protocol,
                     "planned": len(stage.models) * len(seeds), "done": n_done, "started": started,
                     "hours": seconds / 3600.0, "missing": missing, "hours_left": left / 3600.0,
                     "unestimated": unknown,
                     "machines": {m: (len(v), sum(v) / 3600.0) for m, v in sorted(machines.items())}})
    return rows


def _records(profile: ProfileRef, results: str | Path) -> list[dict[str, Any]]:
    """The committed, usable per-run records of a profile (:func:`esg_lib.store.load_records`: an
    unusable one is named in a warning, never counted)."""
    return store.load_records(profile, results)


def _machines_text(machines: dict[str, tuple[int, float]]) -> str:
    return "; ".join(f"{m}: {n} ({h:.2f} h)" for m, (n, h) in machines.items()) or "—"


def _compact(missing: Sequence[str]) -> str:
    """``["a/s0", "a/s1", "b/s2"]`` → ``"a (s0 s1), b (s2)"``."""
    by: dict[str, list[str]] = {}
    for item in missing:
        model, seed = item.rsplit("/", 1)
        by.setdefault(model, []).append(seed)
    return ", ".join(f"{m} ({' '.join(s)})" for m, s in by.items()) or "—"


def status_markdown(profile: ProfileRef, results: str | Path = "results", out: str | Path | None = "runs") -> str:
    rows = status(profile, results, out)
    cells = []
    every: dict[str, tuple[int, float]] = {}
    for r in rows:
        part = f" (+{r['started']} started)" if r["started"] else ""
        cells.append([r["stage"], f"{r['done']}/{r['planned']}{part}", f"{r['hours']:.2f}",
                      _hours_left(r["hours_left"], r["unestimated"]), _compact(r["missing"]),
                      _machines_text(r["machines"])])
        for m, (n, h) in r["machines"].items():
            n_all, h_all = every.get(m, (0, 0.0))
            every[m] = (n_all + n, h_all + h)
    total_done = sum(r["done"] for r in rows)
    total = sum(r["planned"] for r in rows)
    hours = sum(r["hours"] for r in rows)
    left = _hours_left(sum(r["hours_left"] for r in rows), sum(r["unestimated"] for r in rows))
    cells.append(["**all**", f"**{total_done}/{total}**", f"**{hours:.2f}**", f"**{left}**", "",
                  _machines_text(dict(sorted(every.items())))])
    return markdown_rows(["Stage", "Runs done", "Hours spent", "Hours left (estimate)", "Still to run",
                          "Done on: runs (hours)"], cells)


def _hours_left(hours: float, unestimated: int) -> str:
    """``"1.50"``; ``"≥ 1.50 (+2 runs without an estimate)"`` when some runs have no evidence yet."""
    if not unestimated:
        return f"{hours:.2f}"
    runs = "run" if unestimated == 1 else "runs"
    return f"≥ {hours:.2f} (+{unestimated} {runs} without an estimate)"


def pending(profile: ProfileRef, stages: Sequence[str] | None = None, results: str | Path = "results",
            out: str | Path = "runs", models: Sequence[str] | None = None) -> list[tuple[Stage, str, int]]:
    """(stage, model, seed) still to train, in queue order (stage, then seed, then model);
    ``stages`` / ``models`` keep only stages whose name contains one of the texts / those models."""
    prof = get_profile(profile)
    rows = {r["stage"]: set(r["missing"]) for r in status(prof, results, out)}
    chosen = [s for s in plan(prof) if not stages or any(t.lower() in s.name.lower() for t in stages)]
    if stages and not chosen:
        raise ConfigError(f"no stage matches {', '.join(stages)} (stages: "
                          f"{'; '.join(s.name for s in plan(prof))})")
    todo = []
    for stage in chosen:
        for seed in prof.seeds:
            for model in stage.models:
                if f"{model}/s{seed}" in rows[stage.name] and (not models or model in models):
                    todo.append((stage, model, seed))
    return todo


def run_queue(profile: ProfileRef, stages: Sequence[str] | None = None, out: str | Path = "runs",
              results: str | Path = "results", limit: int | None = None,
              models: Sequence[str] | None = None, **overrides: Any) -> list[dict[str, Any]]:
    """Train the pending runs of the plan in order; after each run, export its record to
    ``results/<profile>/runs/`` (so that a session that ends mid-queue loses at most the run in
    progress, which resumes from its last epoch next time; ``esg queue`` then rebuilds the tables
    through :mod:`esg_lib.report`, which the engine does not import). A stage whose dataset is
    unavailable, and a model whose recipe tuning is not finished
    (:func:`esg_lib.engine.tuning.recipe_ready`), are skipped with a message. A run another process is training (its :class:`~.runs.RunLock` is held) is skipped,
    so several queues can share one plan (two terminals, two GPUs). ``limit`` stops after that many
    runs."""
    from esg_lib.errors import UserError

    from .train import TrainingDiverged, fit, matching_bundle, planned_run_dir, prepare_bundle
    from .tuning import adopt_tuning_run, recipe_ready

    prof = get_profile(profile)
    todo = pending(prof, stages, results, out, models)
    print(f"{len(todo)} run(s) pending for profile {prof.name!r}")
    done: list[dict[str, Any]] = []
    bundle, bundle_key, unavailable, not_ready = None, None, set(), set()
    for i, (stage, model, seed) in enumerate(todo):
        if limit is not None and len(done) >= limit:
            break
        if stage.dataset in unavailable or model in not_ready:
            continue
        ready, why = recipe_ready(prof, model, results)
        if not ready:
            print(f"skipping {model}: {why}", file=sys.stderr)
            not_ready.add(model)
            continue
        cfg = build_config(prof, model=model, seed=seed, dataset=stage.dataset,
                           protocol=stage.protocol, out=str(out), **{**stage.overrides, **overrides})
        key = (stage.dataset, stage.protocol, seed, cfg.img_size)
        print(f"[{i + 1}/{len(todo)}] {stage.name}: {model} seed {seed}", flush=True)
        try:
            if key != bundle_key:
                bundle, bundle_key = None, None          # free the previous split first
                bundle, bundle_key = prepare_bundle(cfg), key
        except UserError as exc:
            print(f"skipping {stage.dataset}: {exc}", file=sys.stderr)
            unavailable.add(stage.dataset)
            continue
        bundle_now = matching_bundle(cfg, bundle)
        folder = planned_run_dir(cfg, bundle_now)
        if adopt_tuning_run(cfg, folder):
            print(f"adopted the identical tuning run into {folder}")
        try:
            res = fit(cfg, bundle=bundle_now)
        except (TrainingDiverged, R.RunBusy) as exc:   # a busy run is another queue's: go on
            print(f"skipping {model} seed {seed}: {exc}", file=sys.stderr)
            continue
        done.append({"stage": stage.name, "model": model, "seed": seed, "folder": str(res.run_dir)})
        R.export_run_metrics(R.find_runs(out, prof), store.profile_dir(results, prof))
    return done
