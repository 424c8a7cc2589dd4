"""Recipe tuning on the validation part, with the same budget for ESG-ConvNeXt and its references.

Why: a comparison is only fair when every model gets a recipe that suits it. The paper gives one
recipe (AdamW, lr 1e-4) for all models; on 2 cores with 915 optimiser steps that recipe may favour
some families and starve others, so the models we compare most closely -- ESG-ConvNeXt, the plain
ResNet18 reference and ConvNeXtV2 (its backbone) -- each get the *same* list of candidate recipes
(:data:`CANDIDATES`), trained on seed 0's split and judged on its validation part only (the test part
is scored by :func:`esg_lib.engine.train.fit` as always, but it is never read here). The winner
(highest best-epoch validation F1, then accuracy, then the earlier candidate) becomes the row's
``recipe`` in the profile's model table (:mod:`esg_lib.engine.config`); a test checks that the
committed recipe is the winner of the committed tuning records.

Tuning runs live under ``<out>/tuning/`` so they never mix with the result tables; their small
validation records go to ``results/<profile>/tuning/runs/*.json`` and the table to
``results/<profile>/tuning.md``. A production run whose identity equals a tuning run (the winner,
seed 0) is copied from there instead of being trained again (:func:`adopt_tuning_run`).

Every candidate names every tuned field (:data:`TUNED_FIELDS`), so a candidate means the same thing
whatever recipe the table holds at the time.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from esg_lib import store
from esg_lib.markdown import markdown_rows

from .config import (COMPARISON, CPU2_FAMILY, CPU2_RECIPES, SEARCH_MODELS, SHARED_RECIPE, ConfigError,
                     ProfileRef, TrainConfig, build_config, get_profile, profile_name)

TUNED_FIELDS: tuple[str, ...] = ("lr", "online_augment", "label_smoothing")
# ESG-ConvNeXt and its two closest references first, then the paper's other baselines: every
# comparison row gets the same tuning budget (the param-matched ConvNeXtV2 and the ablation rows
# share their partner's recipe, see config._table).
_TUNED_FIRST = ("esg-convnext", "resnet18", "convnextv2")
TUNED_MODELS: tuple[str, ...] = _TUNED_FIRST + tuple(k for k in COMPARISON
                                                     if k not in _TUNED_FIRST and k not in SHARED_RECIPE)
# Profiles whose production runs wait for their row's tuning (esg queue skips them until then).
TUNING_REQUIRED: dict[str, tuple[str, ...]] = {"cpu": TUNED_MODELS}
TUNING_SEED = 0
# Profiles whose rows take their recipe from the Optuna search instead of this grid.
SEARCHED_PROFILES: tuple[str, ...] = ("cpu2",)


def _candidate(name: str, lr: float, online_augment: bool, label_smoothing: float) -> dict[str, Any]:
    return {"name": name, "fields": {"lr": lr, "online_augment": online_augment,
                                     "label_smoothing": label_smoothing}}


# Same list for every tuned model (the equal tuning budget). The first is the profile's own recipe
# (the paper's lr 1e-4, no online augmentation, no label smoothing).
CANDIDATES: dict[str, tuple[dict[str, Any], ...]] = {
    "cpu": (
        _candidate("paper: lr 1e-4", 1e-4, False, 0.0),
        _candidate("lr 1e-3", 1e-3, False, 0.0),
        _candidate("lr 1e-3 + online aug + LS 0.1", 1e-3, True, 0.1),
        _candidate("lr 3e-4 + online aug + LS 0.1", 3e-4, True, 0.1),
    ),
    "smoke": (
        _candidate("profile: lr 1e-3", 1e-3, False, 0.0),
        _candidate("lr 3e-3 + online aug + LS 0.1", 3e-3, True, 0.1),
    ),
}


def candidates(profile: ProfileRef) -> tuple[dict[str, Any], ...]:
    name = get_profile(profile).name
    try:
        return CANDIDATES[name]
    except KeyError:
        raise ConfigError(f"no tuning candidates for profile {name!r} "
                          f"(tuned profiles: {', '.join(CANDIDATES)})") from None


def tuning_out(out: str | Path) -> str:
    """Where tuning runs train (:func:`esg_lib.store.tuning_runs_root`): apart from the result runs."""
    return str(store.tuning_runs_root(out))


def candidate_config(profile: ProfileRef, model: str, candidate: Mapping[str, Any], out: str | Path = "runs",
                     seed: int = TUNING_SEED, **overrides: Any) -> TrainConfig:
    """The config of one tuning run: the profile, the candidate's fields, leak-free X-SDD split."""
    return build_config(profile, model=model, seed=seed, out=tuning_out(out),
                        **{**overrides, **candidate["fields"]})


def tuning_record(folder: Path, model: str, candidate: Mapping[str, Any]) -> dict[str, Any]:
    """Validation-only summary of a finished tuning run (test metrics are deliberately left out)."""
    import json

    from . import runs as R

    met = R.read_json(folder / "metrics.json") or {}
    log = [json.loads(line) for line in open(folder / "log.jsonl")] if (folder / "log.jsonl").is_file() else []
    best = met.get("val_best") or {}
    return {"model": model, "candidate": candidate["name"], **candidate["fields"],
            "run": folder.name, "seed": R.run_config(folder).get("seed"),
            "val_acc": best.get("val_acc"), "val_f1": best.get("val_f1"), "val_loss": best.get("val_loss"),
            "best_epoch": met.get("best_epoch"), "epochs": len(log),
            "last_val_acc": log[-1]["val_acc"] if log else None,
            "last_train_acc": log[-1]["train_acc"] if log else None,
            "val_n": (met.get("split_sizes") or {}).get("val"),
            "train_seconds": met.get("train_seconds"), "wall_seconds": met.get("wall_seconds"),
            "git": (R.read_json(folder / "meta.json") or {}).get("git")}


def run_tuning(profile: ProfileRef, models: Sequence[str] = TUNED_MODELS, out: str | Path = "runs",
               results: str | Path = "results", force: bool = False,
               **overrides: Any) -> list[dict[str, Any]]:
    """Train every (model, candidate) pair that is not finished yet; write the records and table."""
    from . import runs as R
    from .train import TrainingDiverged, fit, prepare_bundle

    prof = get_profile(profile)
    cands = candidates(prof)
    bundle = None
    records = []
    for model in models:
        for cand in cands:
            cfg = candidate_config(prof, model, cand, out, **overrides)
            bundle = bundle or prepare_bundle(cfg)   # fit() switches online augmentation per config
            print(f"tuning {model} | {cand['name']}")
            try:
                res = fit(cfg, bundle=bundle, force=force)
            except TrainingDiverged as exc:
                print(f"  diverged: {exc}")
                continue
            except R.RunBusy as exc:
                print(f"  skipped: {exc}")
                continue
            rec = tuning_record(Path(res.run_dir), model, cand)
            records.append(rec)
            path = store.tuning_record_path(results, prof, model, cand["name"])
            path.parent.mkdir(parents=True, exist_ok=True)
            R.write_json(path, rec)
    write_tuning_table(prof, results)
    return records


def load_records(profile: ProfileRef, results: str | Path = "results") -> list[dict[str, Any]]:
    """The tuning records of a profile (:func:`esg_lib.store.tuning_records_dir`), in file-name order."""
    from . import runs as R

    d = store.tuning_records_dir(results, profile)
    return [r for r in (R.read_json(p) for p in sorted(d.glob("*.json"))) if r] if d.is_dir() else []


def _rank(rec: Mapping[str, Any], order: int) -> tuple[float, float, int]:
    return (rec.get("val_f1") or 0.0, rec.get("val_acc") or 0.0, -order)


def winners(profile: ProfileRef, records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{model: winning candidate}`` for models whose every candidate has a record."""
    cands = candidates(profile)
    names = [c["name"] for c in cands]
    by_model: dict[str, dict[str, Mapping[str, Any]]] = {}
    for r in records:
        by_model.setdefault(r["model"], {})[r["candidate"]] = r
    out = {}
    for model, recs in by_model.items():
        if all(n in recs for n in names):
            best = max(names, key=lambda n: _rank(recs[n], names.index(n)))
            out[model] = next(c for c in cands if c["name"] == best)
    return out


def tuning_table_markdown(profile: ProfileRef, records: Sequence[Mapping[str, Any]]) -> str:
    """Validation results of the tuning runs: one row per (model, candidate), winner in bold."""
    if not records:
        name = profile_name(profile)
        return f"No `{name}` tuning runs are committed yet (`esg tune --profile {name}`)."
    prof = get_profile(profile)
    won = winners(prof, records)
    names = [c["name"] for c in candidates(prof)]
    cells = []
    rows = sorted(records, key=lambda r: (TUNED_MODELS.index(r["model"]) if r["model"] in TUNED_MODELS
                                          else len(TUNED_MODELS), r["model"],
                                          names.index(r["candidate"]) if r["candidate"] in names else 99))
    for r in rows:
        mark = "**" if won.get(r["model"], {}).get("name") == r["candidate"] else ""
        pct = lambda v: "—" if v is None else f"{100 * v:.1f}"  # noqa: E731
        secs = "—" if r.get("train_seconds") is None else f"{r['train_seconds']:.0f}"
        cells.append([r["model"], f"{mark}{r['candidate']}{mark}", pct(r.get("val_acc")), pct(r.get("val_f1")),
                      f"{r.get('best_epoch')}/{r.get('epochs')}", pct(r.get("last_train_acc")), secs])
    n = {r.get("val_n") for r in records} - {None}
    lines = [markdown_rows(["Model", "Candidate recipe", "Val acc", "Val F1", "Best epoch", "Last train acc",
                            "Train s"], cells)]
    lines += ["", f"Seed {TUNING_SEED}'s split, validation part ({', '.join(map(str, sorted(n))) or '?'} "
              "images; one image is "
              + (f"≈ {100 / min(n):.1f} points" if n else "one image") +
              "). Bold: the winner (best validation F1, then accuracy), which the profile's model table uses (a test checks). "
              f"Rebuild: `esg tune --profile {prof.name} --report`."]
    return "\n".join(lines)


def write_tuning_table(profile: ProfileRef, results: str | Path = "results") -> Path:
    prof = get_profile(profile)
    path = store.profile_dir(results, prof) / "tuning.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# Recipe tuning — profile `{prof.name}` (validation only)\n\n"
                    + tuning_table_markdown(prof, load_records(prof, results)) + "\n")
    return path


def recipe_ready(profile: ProfileRef, model: str, results: str | Path = "results") -> tuple[bool, str]:
    """Whether production runs of ``model`` may start: its row (or the row whose recipe it shares)
    needs no tuning in this profile, or its tuning is finished and the table holds the winner."""
    if profile_name(profile) in SEARCHED_PROFILES:
        return searched_recipe_ready(profile, model)
    key = SHARED_RECIPE.get(model, model)
    if key not in TUNING_REQUIRED.get(profile_name(profile), ()):
        return True, ""
    prof = get_profile(profile)
    won = winners(prof, load_records(prof, results)).get(key)
    if won is None:
        return False, f"the tuning of {key} is not finished (esg tune --profile {prof.name} --model {key})"
    cfg = build_config(prof, model=key)
    have = {f: getattr(cfg, f) for f in TUNED_FIELDS}
    if have != won["fields"]:
        return False, (f"the {prof.name} model table's recipe for {key} ({have}) is not the tuning winner "
                       f"{won['name']!r} ({won['fields']}): update the profile's recipes")
    return True, ""


def searched_recipe_ready(profile: ProfileRef, model: str) -> tuple[bool, str]:
    """For a profile whose recipes come from :mod:`.search` (`cpu2`): ready when the row's recipe,
    or its family's (:data:`~.config.CPU2_FAMILY`), is in :data:`~.config.CPU2_RECIPES`."""
    key = CPU2_FAMILY.get(model, model)
    if key in CPU2_RECIPES:
        return True, ""
    name = profile_name(profile)
    if key in SEARCH_MODELS:
        return False, (f"the search of {key} is not finished (esg search --profile {name}; its winner then goes "
                       f"into CPU2_RECIPES)")
    return False, f"{model} has no searched recipe yet (no {name} search covers it)"


# Where runs that may equal a production run live, under the run folder root: the `cpu` grid's tuning
# runs and the `cpu2` search's trials (the winner's trial is the production seed-0 run).
ADOPTABLE = ("tuning", "search")


def adopt_tuning_run(cfg: TrainConfig, run_folder: Path) -> bool:
    """Copy a finished tuning run or search trial with the same identity into ``run_folder`` (saves
    retraining the winner's seed-0 run). Returns whether a run was adopted."""
    from . import runs as R

    if R.is_finished(run_folder):
        return False
    rel = run_folder.relative_to(cfg.out)
    source = next((Path(cfg.out) / sub / rel for sub in ADOPTABLE if R.is_finished(Path(cfg.out) / sub / rel)),
                  None)
    if source is None:
        return False
    if run_folder.exists():
        shutil.rmtree(run_folder)
    run_folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, run_folder)
    return True
