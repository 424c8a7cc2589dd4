"""Recipe search with Optuna: one study per model, the same space and budget for every model (issue 33).

Why: the `cpu` tuning grid (:mod:`.tuning`) had four candidates, and six of its eight winners sat on
its edge (lr 1e-3). Its models ended either under-trained (ESG-ConvNeXt) or memorising (ResNet18,
DenseNet121, ConvNeXtV2). This module searches a wider space with a library instead of a hand loop:

- **Sampler**: Optuna's TPE (multivariate, grouped for the conditional stochastic-depth parameter),
  after :data:`STARTUP_TRIALS` random trials. Its seed is the number of trials drawn so far
  (:func:`drawn_trials`), so every model's random start is the same list of recipes, and a resumed
  search does not replay the random draws of the trials it already has.
- **Pruner**: successive halving on optimiser steps (:data:`PRUNER`): rungs at
  :data:`MIN_RESOURCE_STEPS` and 3x that. It is consulted only once :data:`STARTUP_TRIALS` trials of
  the model are finished (Optuna's halving promotes only the best of the first two trials at a rung;
  with 109 validation images that is a coin toss).
- **Storage**: one Optuna journal file per model, ``results/<profile>/search/<model>.journal``,
  committed. A stopped search resumes: a trial left RUNNING by a killed process is marked FAIL and
  its parameters are enqueued again; the retry has the same run identity, so training resumes from
  the run folder's ``last.pt`` and the epochs already logged are reported to the pruner again.
- **Objective** (validation only; a trial's run never predicts its test part, ``score_test`` off):
  the mean validation accuracy over the last :data:`SCORE_EPOCHS` epochs (the part is
  109 images, 0.9 points each; one epoch's accuracy is too noisy to rank recipes). The pruner sees
  the same running mean after each epoch, at the trial's optimiser step.
- **Budget**: every searched model gets the same number of trials (:data:`DEFAULT_TRIALS`) and the
  same steps per trial (one of :data:`STEP_BUDGETS`, searched); trials are taken round-robin over
  the models, so a search stopped at any point has spent about the same on each.
- **Start**: each study first holds the model's `cpu` recipe as trial 0, adopted from the committed
  seed-0 rerun's log (same configuration, same split; marked ``adopted_from``), so the search
  starts from the old winner and can only add to it.

The space (:func:`suggest_recipe`): peak learning rate 3e-5..1e-2 (log; the old grid spanned
1e-4..1e-3), weight decay 1e-3..0.3 (log), warm-up fraction 0..0.2 of the steps (cosine decay after
it; timm's schedulers offer no one-cycle), the data mode -- the paper's offline x4 copies, online
augmentation only (flips, right-angle rotations, brightness, noise; ``augment_copies=0``, epochs x4
so the optimiser steps are the same), or both -- label smoothing, mixup or CutMix, random erasing,
stochastic depth (where the model has it: not DenseNet121 or InceptionV3), EMA, random-resized crop
(a random zoom and translation; :data:`CROP_CHOICES`), RandAugment (:data:`RAND_AUGMENT_CHOICES`) and
the step budget. The crop and RandAugment joined the space after the first trials: a trial that
lacks them ran with both off. Not searched: one-cycle schedules (timm has none).

A winner is the COMPLETE trial with the highest objective; its fields become the row's recipe in the
`cpu2` profile (:data:`~.config.CPU2_RECIPES`; a test checks that table against the committed
studies). Commands: ``esg search --profile cpu2`` (resumable), ``esg search --report``.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from esg_lib import store
from esg_lib.errors import UserError
from esg_lib.metrics import curve_verdict
from esg_lib.markdown import markdown_rows

from .config import SEARCH_MODELS, ProfileRef, TrainConfig, build_config, get_profile, profile_name

SEARCH_SEED = 0                      # seed 0's split; its test part is never read
SCORE_EPOCHS = 3
STARTUP_TRIALS = 4                   # random trials before TPE, and finished trials before pruning
DEFAULT_TRIALS = 10                  # per model, the adopted `cpu` recipe included
MIN_RESOURCE_STEPS = 305             # 5 epochs of the x4 training set (61 steps each)
REDUCTION_FACTOR = 3
# Optimiser steps per trial: 10, 15 and 20 epochs of the x4 training set at batch 64 (each well inside
# the one-hour rule for a run: an ESG-ConvNeXt epoch took about a minute at 2 threads on an idle 2-core VM).
STEP_BUDGETS: tuple[int, ...] = (610, 915, 1220)
DATA_MODES: dict[str, dict[str, Any]] = {
    "offline x4": {"augment_copies": 3, "online_augment": False},
    "online": {"augment_copies": 0, "online_augment": True},
    "offline x4 + online": {"augment_copies": 3, "online_augment": True},
}
MIXES: dict[str, dict[str, float]] = {"none": {"mixup_alpha": 0.0, "cutmix_alpha": 0.0},
                                      "mixup 0.2": {"mixup_alpha": 0.2, "cutmix_alpha": 0.0},
                                      "cutmix 1.0": {"mixup_alpha": 0.0, "cutmix_alpha": 1.0}}
EMA_CHOICES: dict[str, float | None] = {"off": None, "0.99": 0.99, "0.998": 0.998}
# Online geometric and photometric augmentation beyond flips and right angles (esg_lib.data.augment):
# RandomResizedCrop's smallest area scale (0 = off) and RandAugment's operations per image (0 = off).
# Added after the first trials had run; a trial without these parameters ran with both off.
CROP_CHOICES: tuple[float, ...] = (0.0, 0.5, 0.8)
RAND_AUGMENT_CHOICES: tuple[int, ...] = (0, 2)
PARAMS_ADDED_LATER: dict[str, Any] = {"crop": 0.0, "rand_augment": 0}
NO_DROP_PATH: frozenset[str] = frozenset({"densenet121", "inceptionv3"})   # timm has no stochastic depth there
# The model-table keys whose `cpu` seed-0 rerun logs start each study (results/cpu/reruns/x-sdd/<key>/)
ADOPT_FROM_PROFILE = "cpu"


class SearchError(UserError):
    """A search that cannot go on as asked (no study, a journal another process holds, ...)."""


def _optuna():
    try:
        import optuna
    except ImportError:   # pragma: no cover - a dependency of the project
        raise SearchError("optuna is not installed: run `make install`") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


# ----------------------------------------------------------------------------------- the space
def suggest_recipe(trial: Any, model: str) -> dict[str, Any]:
    """The trial's parameters (Optuna names and values), drawn from the space described above."""
    params: dict[str, Any] = {
        "lr": trial.suggest_float("lr", 3e-5, 1e-2, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-3, 0.3, log=True),
        "warmup_fraction": trial.suggest_float("warmup_fraction", 0.0, 0.2),
        "steps": trial.suggest_categorical("steps", list(STEP_BUDGETS)),
        "data": trial.suggest_categorical("data", list(DATA_MODES)),
        "label_smoothing": trial.suggest_categorical("label_smoothing", [0.0, 0.1]),
        "mix": trial.suggest_categorical("mix", list(MIXES)),
        "random_erasing": trial.suggest_categorical("random_erasing", [0.0, 0.25]),
        "ema": trial.suggest_categorical("ema", list(EMA_CHOICES)),
        "crop": trial.suggest_categorical("crop", list(CROP_CHOICES)),
        "rand_augment": trial.suggest_categorical("rand_augment", list(RAND_AUGMENT_CHOICES)),
    }
    if model not in NO_DROP_PATH:
        params["drop_path_rate"] = trial.suggest_float("drop_path_rate", 0.0, 0.3)
    return params


def distributions(model: str) -> dict[str, Any]:
    """The space as Optuna distributions (for trials added by hand: the adopted `cpu` recipe)."""
    optuna = _optuna()
    d = optuna.distributions
    out = {"lr": d.FloatDistribution(3e-5, 1e-2, log=True),
           "weight_decay": d.FloatDistribution(1e-3, 0.3, log=True),
           "warmup_fraction": d.FloatDistribution(0.0, 0.2),
           "steps": d.CategoricalDistribution(list(STEP_BUDGETS)),
           "data": d.CategoricalDistribution(list(DATA_MODES)),
           "label_smoothing": d.CategoricalDistribution([0.0, 0.1]),
           "mix": d.CategoricalDistribution(list(MIXES)),
           "random_erasing": d.CategoricalDistribution([0.0, 0.25]),
           "ema": d.CategoricalDistribution(list(EMA_CHOICES)),
           "crop": d.CategoricalDistribution(list(CROP_CHOICES)),
           "rand_augment": d.CategoricalDistribution(list(RAND_AUGMENT_CHOICES))}
    if model not in NO_DROP_PATH:
        out["drop_path_rate"] = d.FloatDistribution(0.0, 0.3)
    return out


def steps_per_epoch(train_images: int, batch_size: int) -> int:
    """Optimiser steps in one epoch (the loader drops the last partial batch)."""
    return train_images // batch_size


def recipe_fields(params: Mapping[str, Any], train_images: int, batch_size: int = 64) -> dict[str, Any]:
    """A trial's parameters as :class:`~.config.TrainConfig` fields. ``train_images`` is the size of
    the training part *in this data mode* (x4 with offline copies): the epochs are the step budget
    over the steps per epoch, rounded, so online-only trials get the same optimiser steps (within
    one epoch of 15 steps) as offline ones; the warm-up is that fraction of the epochs, rounded."""
    spe = steps_per_epoch(train_images, batch_size)
    if spe < 1:
        raise SearchError(f"training part of {train_images} images is smaller than one batch ({batch_size})")
    epochs = max(1, round(params["steps"] / spe))
    fields: dict[str, Any] = {
        "lr": float(params["lr"]), "weight_decay": float(params["weight_decay"]),
        "epochs": epochs, "warmup_epochs": round(params["warmup_fraction"] * epochs),
        **DATA_MODES[params["data"]], "label_smoothing": float(params["label_smoothing"]),
        **MIXES[params["mix"]], "random_erasing": float(params["random_erasing"]),
        "ema_decay": EMA_CHOICES[params["ema"]],
        "drop_path_rate": float(params.get("drop_path_rate", 0.0)),
        "online_crop": float(params.get("crop", 0.0)), "rand_augment": int(params.get("rand_augment", 0)),
    }
    return fields


# Fields a winner hands to the `cpu2` model table (the epochs follow from steps and data mode).
RECIPE_FIELDS: tuple[str, ...] = ("lr", "weight_decay", "epochs", "warmup_epochs", "augment_copies",
                                  "online_augment", "label_smoothing", "mixup_alpha", "cutmix_alpha",
                                  "random_erasing", "ema_decay", "drop_path_rate", "online_crop", "rand_augment")


# ----------------------------------------------------------------------------------- scoring
def running_score(val_accs: Sequence[float | None], k: int = SCORE_EPOCHS) -> float | None:
    """Mean validation accuracy over the last ``k`` epochs logged so far (fewer at the start)."""
    vals = [v for v in val_accs[-k:] if v is not None]
    return sum(vals) / len(vals) if vals else None


# ----------------------------------------------------------------------------------- storage
def study_path(profile: ProfileRef, model: str, results: str | Path = "results") -> Path:
    from . import runs as R

    return store.profile_dir(results, profile) / "search" / f"{R.slug(model)}.journal"


def _storage(path: Path):
    optuna = _optuna()
    from optuna.storages.journal import JournalFileBackend

    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def study_name(profile: ProfileRef, model: str) -> str:
    return f"{profile_name(profile)}:{model}"


def load_study(profile: ProfileRef, model: str, results: str | Path = "results", create: bool = False):
    """The model's study (created when ``create``), with this module's sampler and pruner."""
    optuna = _optuna()
    path = study_path(profile, model, results)
    if not path.is_file() and not create:
        raise SearchError(f"no search study for {model} in {path} (esg search --profile "
                          f"{profile_name(profile)} --model {model})")
    storage = _storage(path)
    name = study_name(profile, model)
    existing = None
    if path.stat().st_size if path.is_file() else 0:
        try:   # optuna.load_study only reads; create_study(load_if_exists) would append a line each time
            existing = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            existing = None
    drawn = len(drawn_trials(existing)) if existing is not None else 0
    sampler = optuna.samplers.TPESampler(n_startup_trials=STARTUP_TRIALS, multivariate=True, group=True,
                                         seed=1000 + drawn)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=MIN_RESOURCE_STEPS,
                                                    reduction_factor=REDUCTION_FACTOR)
    if existing is not None:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    return optuna.create_study(study_name=name, storage=storage, direction="maximize", sampler=sampler,
                               pruner=pruner)


def drawn_trials(study: Any) -> list[Any]:
    """Trials whose parameters were drawn or adopted, not retries of an interrupted trial. The sampler's
    seed is their count: each model's n-th drawn trial gets the same seed (in the random start, the
    same recipe for every model), a retry draws nothing, and a failed (diverged) trial is not redrawn."""
    return [t for t in study.get_trials(deepcopy=False) if "retry_of" not in t.user_attrs]


def finished(study: Any) -> list[Any]:
    optuna = _optuna()
    return [t for t in study.get_trials(deepcopy=False)
            if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]


def requeue_interrupted(study: Any) -> int:
    """Mark trials left RUNNING (their process was killed) as FAIL and enqueue their parameters again,
    so the retry resumes the same run folder. Only the holder of the study's lock calls this."""
    optuna = _optuna()
    n = 0
    for t in study.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.RUNNING:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            # parameters that joined the space after this trial started were off in it: keep them off
            params = {**PARAMS_ADDED_LATER, **t.params}
            study.enqueue_trial(params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
            n += 1
    return n


# ----------------------------------------------------------------------------------- adopting `cpu`
def cpu_recipe_params(model: str, profile: ProfileRef = ADOPT_FROM_PROFILE, spe: int = 61) -> dict[str, Any]:
    """The `cpu` profile's recipe for ``model`` in the search's terms (trial 0 of every study);
    ``spe``: its steps per epoch (61: the x4 training part of 3912 images at batch 64)."""
    cfg = build_config(profile, model=model)
    data = next(k for k, v in DATA_MODES.items()
                if v == {"augment_copies": cfg.augment_copies, "online_augment": cfg.online_augment})
    params = {"lr": cfg.lr, "weight_decay": cfg.weight_decay,
              "warmup_fraction": cfg.warmup_epochs / cfg.epochs, "steps": cfg.epochs * spe, "data": data,
              "label_smoothing": cfg.label_smoothing, "mix": "none", "random_erasing": cfg.random_erasing,
              "ema": "off", "crop": cfg.online_crop, "rand_augment": cfg.rand_augment}
    if model not in NO_DROP_PATH:
        params["drop_path_rate"] = cfg.drop_path_rate
    return params


def rerun_log(model: str, results: str | Path = "results", profile: str = ADOPT_FROM_PROFILE,
              dataset: str = "x-sdd") -> tuple[Path, list[dict[str, Any]]] | None:
    """The committed seed-0 rerun log of ``model`` (``results/<profile>/reruns/<dataset>/<model>/s0-*``)."""
    base = store.reruns_dir(results, profile) / dataset / model
    logs = sorted(base.glob("s0-*/log.jsonl")) if base.is_dir() else []
    if not logs:
        return None
    return logs[0], [json.loads(line) for line in logs[0].read_text().splitlines() if line.strip()]


def adopt_cpu_trial(study: Any, model: str, results: str | Path = "results") -> bool:
    """Add the `cpu` recipe as a COMPLETE trial from its committed seed-0 rerun log (once)."""
    optuna = _optuna()
    if any(t.user_attrs.get("adopted_from") for t in study.get_trials(deepcopy=False)):
        return False
    found = rerun_log(model, results)
    if found is None:
        return False
    path, log = found
    from . import runs as R

    metrics = R.read_json(path.parent / "metrics.json") or {}
    meta = R.read_json(path.parent / "meta.json") or {}
    params = cpu_recipe_params(model, spe=metrics.get("steps_per_epoch") or 61)
    inter, accs = {}, []
    for rec in log:
        accs.append(rec.get("val_acc"))
        inter[int(rec["step"])] = running_score(accs)
    system = {}
    rung, steps = 0, sorted(inter)
    while True:   # the halving rungs this trial passed, as the pruner would have recorded them
        at = MIN_RESOURCE_STEPS * REDUCTION_FACTOR ** rung
        reached = [s for s in steps if s >= at]
        if not reached:
            break
        system[f"completed_rung_{rung}"] = inter[reached[0]]
        rung += 1
    origin = os.path.relpath(path.parent.resolve(), Path(results).resolve().parent)
    attrs = {"adopted_from": origin, **_log_attrs(log), "threads": meta.get("threads"),
             "cpu_model": (meta.get("hardware") or {}).get("cpu_model"),
             "val_n": (metrics.get("split_sizes") or {}).get("val"), "run_id": metrics.get("run_id"),
             "fields": {k: v for k, v in (R.read_json(path.parent / "config.json") or {}).get("config", {}).items()
                        if k in RECIPE_FIELDS}}
    trial = optuna.trial.create_trial(value=running_score(accs), params=params, distributions=distributions(model),
                                      user_attrs=attrs, system_attrs=system, intermediate_values=inter)
    study.add_trial(trial)
    return True


def _log_attrs(log: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What a trial's table and curve verdict need from its log (validation and training only)."""
    return {"val_acc": [r.get("val_acc") for r in log], "train_acc": [r.get("train_acc") for r in log],
            "val_loss": [r.get("val_loss") for r in log], "steps_done": int(log[-1]["step"]) if log else 0,
            "epochs_done": len(log), "verdict": curve_verdict(log),
            "train_seconds": log[-1].get("train_seconds") if log else None}


# ----------------------------------------------------------------------------------- running
def trial_config(profile: ProfileRef, model: str, fields: Mapping[str, Any], out: str | Path = "runs",
                 **runtime: Any) -> TrainConfig:
    """A trial's run: the profile, seed 0's leak-free X-SDD split, the trial's fields; under OUT/search.
    Validation only: the run never predicts its test part (``score_test`` off, a runtime field, so the
    run identity is the same as with it on)."""
    return build_config(profile, model=model, seed=SEARCH_SEED, dataset="x-sdd", protocol="leak-free",
                        out=str(Path(out) / "search"), **{**runtime, **fields, "score_test": False})


class _Bundles:
    """Decoded splits by data mode (offline copies or not), prepared once per process."""

    def __init__(self) -> None:
        self._by_copies: dict[int, Any] = {}

    def get(self, cfg: TrainConfig):
        from .train import prepare_bundle

        if cfg.augment_copies not in self._by_copies:
            self._by_copies[cfg.augment_copies] = prepare_bundle(cfg)
        return self._by_copies[cfg.augment_copies]


def _split_sizes(profile: ProfileRef, model: str, params: Mapping[str, Any], bundles: _Bundles,
                 out: str | Path) -> tuple[int, int, int]:
    """Training images in the trial's data mode, the profile's batch size and the validation images."""
    probe = trial_config(profile, model, {**DATA_MODES[params["data"]]}, out)
    bundle = bundles.get(probe)
    return len(bundle.train), probe.batch_size, len(bundle.val)


def run_trial(study: Any, profile: ProfileRef, model: str, bundles: _Bundles, out: str | Path = "runs",
              **runtime: Any) -> Any:
    """Ask the study for a trial, train it (pruning on the running score), tell the outcome."""
    optuna = _optuna()
    from .train import TrainingDiverged, fit, matching_bundle

    trial = study.ask()
    params = suggest_recipe(trial, model)
    n_train, batch_size, n_val = _split_sizes(profile, model, params, bundles, out)
    fields = recipe_fields(params, n_train, batch_size)
    trial.set_user_attr("val_n", n_val)
    cfg = trial_config(profile, model, fields, out, **runtime)
    bundle = matching_bundle(cfg, bundles.get(cfg))
    use_pruner = len(finished(study)) >= STARTUP_TRIALS
    accs: list[float | None] = []

    def on_epoch(rec: Mapping[str, Any]) -> None:
        accs.append(rec.get("val_acc"))
        score = running_score(accs)
        if score is None:
            return
        trial.report(score, int(rec["step"]))
        if trial.should_prune() and use_pruner:
            raise optuna.TrialPruned(f"pruned at step {rec['step']}: running score {score:.4f}")

    print(f"search {model} trial {trial.number}: {json.dumps(params)}", flush=True)
    t0 = time.time()
    try:
        res = fit(cfg, bundle=bundle, on_epoch=on_epoch)
    except optuna.TrialPruned as exc:
        log = _read_log(cfg, bundle)
        _set_attrs(trial, cfg, log, t0)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        print(f"  {exc}", flush=True)
        return trial
    except TrainingDiverged as exc:
        _set_attrs(trial, cfg, _read_log(cfg, bundle), t0)
        trial.set_user_attr("diverged", str(exc))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        print(f"  diverged: {exc}", flush=True)
        return trial
    log = _read_log(cfg, bundle)
    _set_attrs(trial, cfg, log, t0, res.run_id)
    value = running_score([r.get("val_acc") for r in log])
    study.tell(trial, value)
    shown = "none (no validation part)" if value is None else f"{value:.4f}"
    print(f"  score {shown} ({len(log)} epochs, {_log_attrs(log)['verdict']})", flush=True)
    return trial


def _read_log(cfg: TrainConfig, bundle: Any) -> list[dict[str, Any]]:
    from .train import planned_run_dir

    path = planned_run_dir(cfg, bundle) / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _set_attrs(trial: Any, cfg: TrainConfig, log: Sequence[Mapping[str, Any]], t0: float,
               run_id: str | None = None) -> None:
    from . import provenance as P

    attrs = {**_log_attrs(log), "fields": {k: getattr(cfg, k) for k in RECIPE_FIELDS},
             "run_id": run_id, "wall_seconds": time.time() - t0, "threads": cfg.threads,
             "cpu_model": P.cpu_model(), "git": (P.git_commit() or {}).get("commit")}
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def run_search(profile: ProfileRef, models: Sequence[str] = SEARCH_MODELS, n_trials: int = DEFAULT_TRIALS,
               out: str | Path = "runs", results: str | Path = "results", until: float | None = None,
               limit: int | None = None, **runtime: Any) -> int:
    """Round-robin over ``models``: one trial of each model whose study has the fewest finished
    trials, until each has ``n_trials`` (the adopted `cpu` trial counts), ``limit`` trials were run,
    or the clock passes ``until`` (a UNIX time; no trial starts after it). Returns trials run."""
    from . import runs as R

    prof = get_profile(profile)
    locks, studies = [], {}
    try:
        for model in models:
            # beside the journal, not `<journal>.lock`: Optuna's file backend takes that name itself
            lock = R.RunLock(study_path(prof, model, results).with_suffix(".search"))
            try:
                lock.acquire()
            except R.RunBusy as exc:
                raise SearchError(f"the {model} search is running in another process: {exc}") from None
            locks.append(lock)
            study = load_study(prof, model, results, create=True)
            if adopt_cpu_trial(study, model, results):
                print(f"{model}: trial 0 adopted from the `cpu` seed-0 rerun log")
            again = requeue_interrupted(study)
            if again:
                print(f"{model}: {again} interrupted trial(s) marked failed and queued again")
            studies[model] = study
        bundles, ran = _Bundles(), 0
        while limit is None or ran < limit:
            counts = {m: len(finished(s)) for m, s in studies.items()}
            todo = [m for m in models if counts[m] < n_trials]
            if not todo:
                break
            if until is not None and time.time() >= until:
                print("time is up: no new trial starts (the search resumes where it stopped)")
                break
            model = min(todo, key=lambda m: (counts[m], models.index(m)))
            # a fresh sampler seed per trial: resumed processes must not redraw earlier random trials
            studies[model] = load_study(prof, model, results)
            run_trial(studies[model], prof, model, bundles, out, **runtime)
            ran += 1
            write_search_table(prof, results, models)
        return ran
    finally:
        for lock in locks:
            lock.release()


# ----------------------------------------------------------------------------------- reading
def trial_rows(profile: ProfileRef, model: str, results: str | Path = "results") -> list[dict[str, Any]]:
    """Every trial of the model's study as a flat row (state, score, parameters, steps, verdict)."""
    study = load_study(profile, model, results)
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"model": model, "trial": t.number, "state": t.state.name, "value": t.value,
                     "params": dict(t.params), "steps_done": t.user_attrs.get("steps_done"),
                     "epochs_done": t.user_attrs.get("epochs_done"), "verdict": t.user_attrs.get("verdict"),
                     "adopted_from": t.user_attrs.get("adopted_from"),
                     "train_seconds": t.user_attrs.get("train_seconds"), "fields": t.user_attrs.get("fields"),
                     "val_n": t.user_attrs.get("val_n"), "run_id": t.user_attrs.get("run_id")})
    return rows


def winner(profile: ProfileRef, model: str, results: str | Path = "results") -> dict[str, Any] | None:
    """The best COMPLETE trial's row (highest score, then the earlier trial), or None."""
    done = [r for r in trial_rows(profile, model, results) if r["state"] == "COMPLETE" and r["value"] is not None]
    return max(done, key=lambda r: (r["value"], -r["trial"])) if done else None


def _fmt_params(params: Mapping[str, Any]) -> str:
    parts = []
    for key in ("lr", "weight_decay", "warmup_fraction", "steps", "data", "label_smoothing", "mix",
                "random_erasing", "ema", "drop_path_rate", "crop", "rand_augment"):
        if key not in params:
            continue
        v = params[key]
        short = {"weight_decay": "wd", "warmup_fraction": "warm-up", "label_smoothing": "LS",
                 "random_erasing": "erase", "drop_path_rate": "drop-path",
                 "rand_augment": "RandAugment"}.get(key, key)
        parts.append(f"{short} {v:.2g}" if isinstance(v, float) else f"{short} {v}")
    return ", ".join(parts)


def search_table_markdown(profile: ProfileRef, results: str | Path = "results",
                          models: Sequence[str] = SEARCH_MODELS) -> str:
    """The trials of every study (validation only), winners in bold, and each model's budget spent."""
    prof = get_profile(profile)
    lines, budget, val_n = [], [], set()
    for model in models:
        if not study_path(prof, model, results).is_file():
            continue
        rows = trial_rows(prof, model, results)
        val_n |= {r["val_n"] for r in rows if r.get("val_n")}
        best = winner(prof, model, results)
        for r in rows:
            mark = "**" if best is not None and r["trial"] == best["trial"] else ""
            value = "—" if r["value"] is None else f"{100 * r['value']:.1f}"
            origin = " (the `cpu` recipe, from its seed-0 rerun log)" if r["adopted_from"] else ""
            lines.append([model, f"{mark}{r['trial']}{mark}", r["state"].lower(), f"{mark}{value}{mark}",
                          f"{r['steps_done'] or 0}", r["verdict"] or "—", _fmt_params(r["params"]) + origin])
        spent = sum(r["steps_done"] or 0 for r in rows)
        counted = [r for r in rows if r["state"] in ("COMPLETE", "PRUNED")]
        budget.append([model, str(len(counted)), str(spent),
                       "—" if best is None else f"{100 * best['value']:.1f} (trial {best['trial']})"])
    if not lines:
        return f"No `{prof.name}` search studies are committed yet (`esg search --profile {prof.name}`)."
    size = (f"{min(val_n)} images, {100 / min(val_n):.1f} points each" if len(val_n) == 1
            else "validation images: " + (", ".join(map(str, sorted(val_n))) or "?"))
    out = [markdown_rows(["Model", "Trial", "State", "Val score", "Steps", "Curves", "Parameters"], lines), "",
           markdown_rows(["Model", "Finished trials", "Optimiser steps spent", "Best val score"], budget), "",
           f"Val score: mean validation accuracy (%) over the last {SCORE_EPOCHS} epochs, seed {SEARCH_SEED}'s "
           f"leak-free X-SDD split ({size}); the test part is never read. "
           f"Budget: {DEFAULT_TRIALS} trials per model, steps per trial one of {', '.join(map(str, STEP_BUDGETS))}; "
           f"successive halving (rungs at {MIN_RESOURCE_STEPS} and {MIN_RESOURCE_STEPS * REDUCTION_FACTOR} steps) "
           f"after {STARTUP_TRIALS} finished trials. Bold: the winner. Curves: under-trained (best epoch last, "
           "still rising), memorising (train ≥ 99 %, validation 5 points or more below) or converged. "
           f"Rebuild: `esg search --profile {prof.name} --report`."]
    return "\n".join(out)


def write_search_table(profile: ProfileRef, results: str | Path = "results",
                       models: Sequence[str] = SEARCH_MODELS) -> Path:
    prof = get_profile(profile)
    path = store.profile_dir(results, prof) / "search.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(f"# Recipe search — profile `{prof.name}` (Optuna, validation only)\n\n"
                   + search_table_markdown(prof, results, models) + "\n")
    os.replace(tmp, path)
    return path


def parse_until(text: str | None) -> float | None:
    """``--until``: minutes from now (``90m``) or a local clock time (``18:40``) → UNIX time.

    A clock time already past today means that time tomorrow: ``--until 01:10`` typed at 22:36 gives
    the search until ten past one, not no time at all."""
    if not text:
        return None
    text = text.strip()
    if text.endswith("m") and text[:-1].replace(".", "", 1).isdigit():
        return time.time() + 60 * float(text[:-1])
    try:
        hh, mm = (int(p) for p in text.split(":"))
        if not (0 <= hh < 24 and 0 <= mm < 60):
            raise ValueError
        now = time.localtime()
        day = 0 if (hh, mm) > (now.tm_hour, now.tm_min) else 1
        return time.mktime((now.tm_year, now.tm_mon, now.tm_mday + day, hh, mm, 0, 0, 0, -1))
    except ValueError:
        raise SearchError(f"--until expects minutes ('90m') or a clock time ('18:40'), got {text!r}") from None


__all__ = ["SEARCH_MODELS", "suggest_recipe", "recipe_fields", "running_score", "curve_verdict", "run_search",
           "load_study", "trial_rows", "winner", "search_table_markdown", "write_search_table", "parse_until",
           "SearchError"]
