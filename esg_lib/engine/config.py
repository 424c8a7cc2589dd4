"""Training configuration: one typed config, three profiles and a per-profile model table.

Every run is a :class:`TrainConfig`; a *profile* (``smoke``, ``cpu``, ``paper``) fills its defaults
and names the model table (which timm variant stands for each row of the paper's tables). Any field
can be overridden (``esg train --set lr=3e-4`` or ``build_config("cpu", lr=3e-4)`` from a notebook).

``paper`` is the paper's protocol (224 px, AdamW lr 1e-4 with warm-up and cosine decay, batch 64,
100 epochs, seeds 0-4) plus a validation part; ``cpu`` is real data scaled to a 2-core budget (64 px,
15 epochs on X-SDD, 4 on NEU-CLS-64, a recipe per row tuned on validation); ``smoke`` exercises every
code path in about a minute. What the paper specifies, the measured step times and the budget
arithmetic behind the ``cpu`` numbers are in docs/training.md ("Profiles").
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping, Union

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from esg_lib.data.dataset import DataConfig
from esg_lib.errors import ConfigError, UserError  # noqa: F401  (ConfigError is re-exported)
from esg_lib.models.esg_convnext import ABLATION_ROWS


@dataclass(frozen=True)
class ModelSpec:
    """One row of a profile's model table.

    ``name`` is a timm model name (ESG-ConvNeXt models are registered in timm by ``import esg_lib``);
    ``kwargs`` go to ``timm.create_model``; ``min_input`` > img_size upsamples the input inside the
    model (InceptionV3 needs ≥ 75 px); ``param_match_of`` makes the name be resolved at build time to
    the ConvNeXtV2 size whose parameter count is closest to that model's. ``recipe`` holds training
    fields chosen for this row by tuning on the validation part (:mod:`esg_lib.engine.tuning`); they
    sit between the profile's defaults and the caller's overrides.
    """

    label: str
    name: str = ""
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    min_input: int | None = None
    param_match_of: str | None = None
    note: str = ""
    recipe: Mapping[str, Any] = field(default_factory=dict)


# The model sets, by model-table key: defined here once, imported by everything else (the report,
# the notebooks, the plan). ESG-ConvNeXt, the network every comparison is read against.
ESG_CONVNEXT = "esg-convnext"
# Our comparison in the model table's order (its tables in results/<profile>/, `esg train --model all`):
# ESG-ConvNeXt, the paper's baselines in the order of its Tables 1 and 3, and our two rows that are not
# in the paper, each after the row it is read beside (REFERENCE_MODELS).
COMPARISON = (ESG_CONVNEXT, "mobilenetv3", "inceptionv3", "convnextv2", "convnextv2-param",
              "vit", "densenet121", "swin-t", "resnet18")
# Ours, not the paper's: ConvNeXtV2 with about ESG-ConvNeXt's parameters, and the ResNet18 reference.
REFERENCE_MODELS = ("convnextv2-param", "resnet18")
# The paper's seven models (Tables 1 and 3, Figs. 12 and 13) in the order its tables list them: the
# baselines as above, its own network last.
PAPER_MODELS = tuple(k for k in COMPARISON if k not in (ESG_CONVNEXT, *REFERENCE_MODELS)) + (ESG_CONVNEXT,)
# Table 2 rows 1-5 (row 5 is the full network, the same as ESG-ConvNeXt).
ABLATION = tuple(f"esg-abl{k}" for k in range(1, 6))


# Rows that take their partner's tuned recipe: they differ from it only in the network.
SHARED_RECIPE: dict[str, str] = {"convnextv2-param": "convnextv2",
                                 **{f"esg-abl{k}": "esg-convnext" for k in range(1, 6)}}


def _table(esg: str, img_size: int, vit: str, vit_patch: int, swin_window: int,
           recipes: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, ModelSpec]:
    """The profile's model table. ``recipes`` (model key → training fields) come from tuning; the
    ablation rows share ESG-ConvNeXt's recipe and the param-matched ConvNeXtV2 shares ConvNeXtV2's,
    so that a row differs from its partner only in the model."""
    size = esg.rsplit("_", 1)[-1]
    small = img_size < 224
    vit_kw = {"img_size": img_size, "patch_size": vit_patch} if small else {}
    swin_kw = {"img_size": img_size, "window_size": swin_window} if small else {}
    table = {
        "esg-convnext": ModelSpec("ESG-ConvNeXt", esg, note="ours (esg_lib.models)"),
        "mobilenetv3": ModelSpec("MobileNetV3", "mobilenetv3_large_100"),
        "inceptionv3": ModelSpec("InceptionV3", "inception_v3", min_input=75,
                                 note="inputs < 75 px are upsampled (bilinear) inside the model"),
        "convnextv2": ModelSpec("ConvNeXtV2", f"convnextv2_{size}", note="same name-size as ours"),
        "convnextv2-param": ModelSpec("ConvNeXtV2 (param-matched)", param_match_of=esg,
                                      note=f"ConvNeXtV2 size closest in parameters to {esg}"),
        "vit": ModelSpec("ViT", vit, vit_kw,
                         note=f"patch {vit_patch} at {img_size} px" if small else "ViT-B/16"),
        "densenet121": ModelSpec("DenseNet121", "densenet121"),
        "swin-t": ModelSpec("Swin-T", "swin_tiny_patch4_window7_224", swin_kw,
                            note=f"window {swin_window} at {img_size} px" if small else "window 7"),
        "resnet18": ModelSpec("ResNet18", "resnet18", note="reference, not in the paper"),
    }
    for k in range(1, 6):
        table[f"esg-abl{k}"] = ModelSpec(f"Row {k}: {ABLATION_ROWS[k].label}", f"{esg}_abl{k}",
                                         note="paper Table 2 row")
    recipes = dict(recipes or {})
    for key in table:
        recipe = recipes.get(key, recipes.get(SHARED_RECIPE.get(key, ""), {}))
        if recipe:
            table[key] = dataclasses.replace(table[key], recipe=dict(recipe))
    return table


@dataclass
class TrainConfig:
    """Everything that determines one training run (and a few runtime knobs that do not).

    Stored flat, as it is serialised in every run's ``config.json`` and hashed into its identity, and
    read in typed groups: :attr:`data` (a :class:`~esg_lib.data.DataConfig`, what
    ``prepare_data(cfg.data)`` takes), :attr:`optim` (:class:`OptimConfig`) and :attr:`runtime`
    (:class:`RuntimeConfig`, the fields outside the identity). :data:`GROUPS` lists each group's fields.
    """

    # what is trained on what
    model: str = "esg_convnext_atto"   # a model-table key (e.g. "swin-t") or any timm name
    dataset: str = "x-sdd"
    profile: str = "smoke"
    protocol: str = "leak-free"
    seed: int = 0
    # data (passed to esg_lib.data.prepare_data)
    img_size: int = 32
    max_images: int | None = 100
    augment_copies: int = 1
    online_augment: bool = False
    online_crop: float = 0.0           # RandomResizedCrop, smallest area scale (0 = off; esg_lib.data.augment)
    rand_augment: int = 0              # RandAugment operations per image (0 = off)
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    # optimisation
    epochs: int = 2
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 0
    warmup_lr: float = 1e-6
    min_lr: float = 1e-6
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    max_steps: int | None = None       # stop after this many optimiser steps (dry runs)
    select_metric: str = "val_f1"      # best checkpoint: val_f1 | val_acc | val_loss (never test)
    # regularisation from timm's own pieces (issue 18's recipe candidates); the defaults switch it off
    drop_path_rate: float = 0.0        # stochastic depth (the model's drop_path_rate)
    mixup_alpha: float = 0.0           # timm.data.Mixup: mixup's Beta(alpha, alpha)
    cutmix_alpha: float = 0.0          # timm.data.Mixup: cutmix's Beta(alpha, alpha)
    random_erasing: float = 0.0        # timm.data.RandomErasing: probability per training image
    ema_decay: float | None = None     # timm.utils.ModelEmaV3: validate, select and test the EMA weights
    pretrained_file: str | None = None
    # runtime (not part of the run identity)
    device: str = "auto"               # auto | cpu | cuda | cuda:N
    amp: bool = True                   # CUDA only (bf16 where supported, else fp16 + GradScaler)
    channels_last: bool = True         # CUDA only
    compile: bool = False              # torch.compile the training model (inductor; needs a C++ compiler).
    #   Runtime: a compiled run keeps its eager twin's run identity, but is not bit-identical to it
    #   (fused kernels round differently); docs/performance.md has the cost and the break-even.
    threads: int | None = None         # CPU threads per process; None = its cores (affinity) / processes
    tune_malloc: bool = True           # CPU: keep freed tensor memory mapped (glibc mallopt), no page
    #   faults on every new activation; same arithmetic, so same results (docs/performance.md)
    num_workers: int = 0
    eval_batch_size: int = 128
    fps_batch_size: int = 1
    fps_warmup: int = 5
    fps_iters: int = 20
    save_features: bool = True
    progress: bool = True
    keep_last: bool = True             # False: delete last.pt (resume state, optimiser included) once done
    score_test: bool = True            # False: validation only (a search trial): the test part is never
    #   predicted and no FPS is measured; metrics.json holds "test": null
    out: str = "runs"

    # fields that do not change the trained weights or metrics (excluded from the run identity)
    RUNTIME_FIELDS: typing.ClassVar[frozenset[str]] = frozenset({
        "device", "threads", "num_workers", "eval_batch_size", "fps_batch_size", "fps_warmup",
        "fps_iters", "save_features", "progress", "out", "amp", "channels_last", "keep_last",
        "compile", "tune_malloc", "score_test"})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def data(self) -> DataConfig:
        """The data part: what :func:`esg_lib.data.prepare_data` needs (the split seed is the run's seed)."""
        return DataConfig(**{name: getattr(self, name) for name in GROUPS["data"]})

    @property
    def optim(self) -> OptimConfig:
        return OptimConfig(**{name: getattr(self, name) for name in GROUPS["optim"]})

    @property
    def runtime(self) -> RuntimeConfig:
        return RuntimeConfig(**{name: getattr(self, name) for name in GROUPS["runtime"]})


@dataclass(frozen=True)
class OptimConfig:
    """The optimisation part of a :class:`TrainConfig`: recipe, budget and checkpoint choice."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_epochs: int
    warmup_lr: float
    min_lr: float
    label_smoothing: float
    grad_clip: float | None
    max_steps: int | None
    select_metric: str
    drop_path_rate: float
    mixup_alpha: float
    cutmix_alpha: float
    random_erasing: float
    ema_decay: float | None


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how a run executes; none of it enters the run identity (``RUNTIME_FIELDS``)."""

    device: str
    amp: bool
    channels_last: bool
    compile: bool
    threads: int | None
    tune_malloc: bool
    num_workers: int
    eval_batch_size: int
    fps_batch_size: int
    fps_warmup: int
    fps_iters: int
    save_features: bool
    progress: bool
    keep_last: bool
    score_test: bool
    out: str


# Each TrainConfig field's group ("run" names the run itself: model, profile, seed, starting weights).
# The seed is in two: it seeds the split (data) and the initialisation (run).
GROUPS: dict[str, tuple[str, ...]] = {
    "run": ("model", "profile", "seed", "pretrained_file"),
    "data": tuple(f.name for f in dataclasses.fields(DataConfig) if f.name != "skip_bad_files"),
    "optim": tuple(f.name for f in dataclasses.fields(OptimConfig)),
    "runtime": tuple(f.name for f in dataclasses.fields(RuntimeConfig)),
}


@dataclass(frozen=True)
class Profile:
    name: str
    defaults: Mapping[str, Any]
    seeds: tuple[int, ...]
    models: Mapping[str, ModelSpec]
    description: str = ""
    # dataset name → fields that differ for that dataset (after ``defaults``, before a row's recipe)
    dataset_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


# Recipes chosen by `esg tune --profile cpu`: each tuned model's best candidate on seed 0's
# validation part (results/cpu/tuning.md). A test checks these equal the committed tuning winners.
CPU_RECIPES: dict[str, dict[str, Any]] = {
    "esg-convnext": {"lr": 1e-3, "online_augment": True, "label_smoothing": 0.1},
    "resnet18": {"lr": 1e-3, "online_augment": False, "label_smoothing": 0.0},
    "convnextv2": {"lr": 1e-3, "online_augment": False, "label_smoothing": 0.0},
    "mobilenetv3": {"lr": 1e-3, "online_augment": False, "label_smoothing": 0.0},
    "inceptionv3": {"lr": 1e-3, "online_augment": False, "label_smoothing": 0.0},
    "densenet121": {"lr": 1e-3, "online_augment": False, "label_smoothing": 0.0},
    "vit": {"lr": 3e-4, "online_augment": True, "label_smoothing": 0.1},
    "swin-t": {"lr": 1e-4, "online_augment": False, "label_smoothing": 0.0},
}

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke",
        dict(img_size=32, max_images=100, augment_copies=1, epochs=2, batch_size=16, lr=1e-3,
             warmup_epochs=0, fps_iters=3, fps_warmup=1, eval_batch_size=64),
        seeds=(0, 1),
        models=_table("esg_convnext_atto", 32, "vit_tiny_patch16_224", 8, 4),
        description="~100 images, 32 px, 2 epochs: every code path in about a minute (CI)",
    ),
    "cpu": Profile(
        "cpu",
        dict(img_size=64, max_images=None, augment_copies=3, epochs=15, batch_size=64, lr=1e-4,
             warmup_epochs=1, fps_iters=20, fps_warmup=5),
        seeds=(0, 1, 2),
        models=_table("esg_convnext_atto", 64, "vit_tiny_patch16_224", 8, 4, recipes=CPU_RECIPES),
        description=("real data at 64 px, 15 epochs (4 on NEU-CLS-64): the X-SDD comparison in < 6 h "
                     "on 2 cores"),
        dataset_defaults={"neu-cls-64": {"epochs": 4}},
    ),
    "paper": Profile(
        "paper",
        dict(img_size=224, max_images=None, augment_copies=3, epochs=100, batch_size=64, lr=1e-4,
             warmup_epochs=5, fps_iters=100, fps_warmup=20),
        seeds=(0, 1, 2, 3, 4),
        models=_table("esg_convnext_atto", 224, "vit_base_patch16_224", 16, 7),
        description="the paper's protocol: 224 px, 100 epochs, batch 64, lr 1e-4, 5 seeds (GPU)",
    ),
}

# The experiments that ask why ESG-ConvNeXt trails ResNet18/DenseNet121 (issue 18): the `cpu`
# profile's defaults, models, recipes and seeds (so the same splits), under a name of their own, so
# that their runs get new identities and their own tables (``results/cpu-gap/``) and the 78 committed
# `cpu` runs stay as they are. What each arm changes lives in its plan's stages
# (:data:`esg_lib.engine.plan.PLANS`), never in these defaults.
PROFILES["cpu-gap"] = dataclasses.replace(
    PROFILES["cpu"], name="cpu-gap",
    description=("the `cpu` profile's recipes, seeds and splits, with one change per experiment arm "
                 "(more optimiser steps, 128 px): why ESG-ConvNeXt trails ResNet18"))
# Issue 33's comparison again: the `cpu` profile's data, size and splits, 5 seeds (the paper's count),
# and for each row the winner of an equal Optuna search (:mod:`esg_lib.engine.search`, the studies
# in results/cpu2/search/). The searched rows' recipes enter CPU2_RECIPES when their studies are
# finished (a test checks them against the studies); until then `esg queue --profile cpu2` waits.
# Rows not searched take their family's recipe (CPU2_FAMILY): BatchNorm CNNs ResNet18's, the
# ConvNeXt rows ConvNeXtV2's, the ablation rows ESG-ConvNeXt's; the transformers get a search of
# their own later (none yet).
# Searched on their own (esg search), ESG-ConvNeXt and the rows it is compared with most closely first.
SEARCH_MODELS: tuple[str, ...] = ("esg-convnext", "resnet18", "densenet121", "convnextv2")
CPU2_RECIPES: dict[str, dict[str, Any]] = {}
CPU2_FAMILY: dict[str, str] = {"mobilenetv3": "resnet18", "inceptionv3": "resnet18",
                               "convnextv2-param": "convnextv2",
                               **{f"esg-abl{k}": "esg-convnext" for k in range(1, 6)}}
PROFILES["cpu2"] = dataclasses.replace(
    PROFILES["cpu"], name="cpu2", seeds=(0, 1, 2, 3, 4),
    models=_table("esg_convnext_atto", 64, "vit_tiny_patch16_224", 8, 4,
                  recipes={**CPU2_RECIPES, **{k: CPU2_RECIPES[v] for k, v in CPU2_FAMILY.items()
                                              if v in CPU2_RECIPES}}),
    description=("X-SDD leak-free at 64 px, 5 seeds, each row's recipe from an equal Optuna search "
                 "(results/cpu2/search.md)"),
    dataset_defaults={})

# Profiles that are another profile under a new name (same defaults, models, recipes and seeds):
# they share its model table, and their time-left estimates borrow its finished runs.
BASE_PROFILE: dict[str, str] = {"cpu-gap": "cpu"}

# Overrides applied by ``--dry-run``: the paper profile's CI check (2 steps, batch 2, full size).
DRY_RUN = dict(max_steps=2, batch_size=2, epochs=1, max_images=42, augment_copies=0,
               eval_batch_size=8, fps_iters=2, fps_warmup=1, fps_batch_size=1)


# A profile as the public functions take it: its name (what notebooks, tests and the command line
# hold) or the resolved :class:`Profile` (what the entry points pass down).
ProfileRef = Union[str, Profile]


def get_profile(profile: ProfileRef) -> Profile:
    """The :class:`Profile` of a name, or ``profile`` itself when it already is one (no lookup).

    Entry points resolve once and pass the object: the ``esg`` commands and
    :class:`~esg_lib.experiments.Experiment` call this on the name they are given and pass the
    :class:`Profile` down. A function that takes a :data:`ProfileRef` calls this once at its top
    (so a name from a notebook or test still works, and an object passed on is never looked up
    again) and hands the object on; one that only needs the name for a folder or label uses
    :func:`profile_name`. Paths, records, plan keys and ``TrainConfig.profile`` hold ``.name``.
    An unknown name raises :class:`ConfigError`.
    """
    if isinstance(profile, Profile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise ConfigError(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})") from None


def profile_name(profile: ProfileRef) -> str:
    """The name of a profile or of a name, without a lookup: for functions that only need the
    folder or label (``results/<name>/...``). No check either, as before: such a folder may hold
    records that no profile defines (``esg_lib.report.figure_frames`` reads a scratch ``fresh/`` export)."""
    return profile.name if isinstance(profile, Profile) else profile


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def build_config(profile: ProfileRef = "smoke", **overrides: Any) -> TrainConfig:
    """The profile's defaults, then its ``dataset_defaults`` for the run's dataset, then the model
    row's tuned ``recipe``, then ``overrides``; unknown fields raise :class:`ConfigError`."""
    prof = get_profile(profile)
    unknown = sorted(set(overrides) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
    model = canonical_model_key(overrides.get("model", TrainConfig.model), prof)
    recipe = prof.models[model].recipe if model in prof.models else {}
    dataset = overrides.get("dataset") or prof.defaults.get("dataset", TrainConfig.dataset)
    per_dataset = prof.dataset_defaults.get(dataset, {})
    # the config holds the name: it is what config.json records and the run identity hashes
    values = {**prof.defaults, **per_dataset, **recipe, **overrides, "profile": prof.name}
    if "model" in values:
        values["model"] = model
    cfg = TrainConfig(**values)
    validate(cfg)
    return cfg


def canonical_model_key(model: str, profile: ProfileRef) -> str:
    """A timm name that is exactly one row of the profile's table → that row's key.

    ``esg_convnext_atto`` and ``esg-convnext`` are then the same run (same identity, same folder,
    same table row), and ``vit_tiny_patch16_224`` at 64 px gets the row's img_size/patch size;
    a timm name with no row stays as given (and is built with timm's defaults).
    """
    table = get_profile(profile).models
    if model in table:
        return model
    rows = [k for k, s in table.items() if s.name == model]
    return rows[0] if len(rows) == 1 else model


def validate(cfg: TrainConfig) -> None:
    if cfg.epochs < 1:
        raise ConfigError("epochs must be >= 1")
    if cfg.batch_size < 1:
        raise ConfigError("batch_size must be >= 1")
    if cfg.img_size < 8:
        raise ConfigError("img_size must be >= 8")
    if not math.isfinite(cfg.lr) or cfg.lr <= 0:
        raise ConfigError("lr must be a finite number > 0")
    for name in ("weight_decay", "warmup_lr", "min_lr", "label_smoothing"):
        value = getattr(cfg, name)
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{name} must be a finite number >= 0")
    if cfg.select_metric not in ("val_f1", "val_acc", "val_loss"):
        raise ConfigError("select_metric must be val_f1, val_acc or val_loss")
    if cfg.max_steps is not None and cfg.max_steps < 1:
        raise ConfigError("max_steps must be >= 1")
    for name in ("drop_path_rate", "random_erasing"):
        if not 0.0 <= getattr(cfg, name) < 1.0:
            raise ConfigError(f"{name} must be in [0, 1)")
    if not 0.0 <= cfg.online_crop < 1.0:
        raise ConfigError("online_crop must be in [0, 1) (0 = off)")
    if cfg.rand_augment < 0:
        raise ConfigError("rand_augment must be >= 0 (0 = off)")
    if cfg.mixup_alpha < 0 or cfg.cutmix_alpha < 0:
        raise ConfigError("mixup_alpha and cutmix_alpha must be >= 0")
    if cfg.ema_decay is not None and not 0.0 < cfg.ema_decay < 1.0:
        raise ConfigError("ema_decay must be in (0, 1) or None")


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["lr=3e-4", "epochs=5"]`` → ``{"lr": 0.0003, "epochs": 5}``, typed and checked against
    :class:`TrainConfig` by OmegaConf (a structured config from the dataclass, merged with the dotted
    list): unknown keys and values of the wrong type raise :class:`ConfigError`. ``none`` / ``null``
    / ``~`` set an optional field to None; booleans take true/false, yes/no, on/off, 1/0."""
    pairs: list[str] = []
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = (part.strip() for part in item.split("=", 1))
        key = key.replace("-", "_")
        if key not in _FIELDS:
            raise ConfigError(f"unknown config field {key!r}")
        # OmegaConf would resolve ${...} (other fields, environment variables) and keep ??? as "missing"
        if "${" in value or value == "???":
            raise ConfigError(f"bad value for {key}: {value!r} (interpolations and ??? are not values)")
        pairs.append(f"{key}={'null' if value.lower() == 'none' else value}")
    if not pairs:
        return {}
    try:   # YAML's reader and OmegaConf both raise their own errors on odd text: one line each
        given = OmegaConf.from_dotlist(pairs)
        merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), given)
        return {key: merged[key] for key in given}
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        raise ConfigError(f"bad value for {key}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:   # yaml.ReaderError and the like, from the text of a value
        given_keys = ", ".join(p.split("=", 1)[0] for p in pairs)
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"bad value for {given_keys}: {first}") from None


# Fields added after runs were committed, with the value that reproduces those runs. A field at that
# value is left out of identities and config variants, so every earlier run keeps its id and its
# table row; set to anything else, it names a new run (issue 18's recipe candidates).
LATER_FIELDS: dict[str, Any] = {"drop_path_rate": 0.0, "mixup_alpha": 0.0, "cutmix_alpha": 0.0,
                                "random_erasing": 0.0, "ema_decay": None, "online_crop": 0.0, "rand_augment": 0}


def result_fields(config: Mapping[str, Any]) -> dict[str, Any]:
    """Of a config dict, the fields that determine a result: no runtime knob, and no later field at
    the value that earlier runs were trained with (:data:`LATER_FIELDS`)."""
    return {k: v for k, v in config.items() if k not in TrainConfig.RUNTIME_FIELDS
            and not (k in LATER_FIELDS and v == LATER_FIELDS[k])}


def identity_fields(cfg: TrainConfig) -> dict[str, Any]:
    """The config fields that determine a run's result (:func:`result_fields` of the config)."""
    return result_fields(cfg.to_dict())
