"""Model factory: ESG-ConvNeXt (esg_lib.models) and the paper's baselines, all through timm.

The paper compares ESG-ConvNeXt with MobileNetV3, InceptionV3, ConvNeXtV2, ViT, DenseNet121 and
Swin-T without naming sizes or sources. We take each from timm, randomly initialised (nothing is
downloaded, ``pretrained=False`` always), and add two rows: the ConvNeXtV2 closest in parameter
count to the ESG model (ESG's attention adds many parameters, so the same-name ConvNeXtV2 is a
smaller network) and a plain ResNet18 (what a practitioner would try first).

Input-size constraints (what each model gets at ``img_size`` < 224):

* ViT: built with ``img_size`` = the run's size and a patch that divides it (8 px at 32/64 px, so
  a 64 px image gives 8×8 = 64 tokens; 16 px at 224). Position embeddings are sized to match.
* Swin-T: built with ``img_size`` and ``window_size`` 4 at 32/64 px (stage grids 16, 8, 4, 2 at
  64 px; timm shrinks the window to the grid where the grid is smaller). 7 at 224 px.
* InceptionV3: its stem and reductions need ≥ 75 px; smaller inputs are upsampled bilinearly to
  75 px inside the model (:class:`MinInputSize`), so the data pipeline stays the same for all.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.models import get_pretrained_cfg
from timm.models._helpers import load_state_dict
from torch import nn

from .config import (ABLATION, COMPARISON, ConfigError, ModelSpec, ProfileRef, TrainConfig, canonical_model_key,
                     get_profile)

CONVNEXTV2_SIZES = ("atto", "femto", "pico", "nano", "tiny", "base", "large")


class MinInputSize(nn.Module):
    """Upsample inputs smaller than ``min_size`` (bilinear) before a model that needs them.

    Exposes the inner model's ``forward_features`` / ``forward_head`` / ``num_features`` so the
    engine treats it like any timm model.
    """

    def __init__(self, model: nn.Module, min_size: int):
        super().__init__()
        self.model = model
        self.min_size = int(min_size)
        self.num_features = getattr(model, "num_features", None)
        self.num_classes = getattr(model, "num_classes", None)
        self.head_hidden_size = getattr(model, "head_hidden_size", self.num_features)

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if min(h, w) >= self.min_size:
            return x
        scale = self.min_size / min(h, w)
        size = (max(self.min_size, round(h * scale)), max(self.min_size, round(w * scale)))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(self._resize(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.model.forward_head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self._resize(x))


@functools.lru_cache(maxsize=None)
def count_params(name: str, num_classes: int = 7) -> int:
    """Parameter count of a timm model, built on the meta device where the model allows it."""
    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    except (NotImplementedError, RuntimeError):  # a model whose __init__ reads tensor values
        model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    return sum(p.numel() for p in model.parameters())


def closest_convnextv2(reference: str, num_classes: int = 7) -> str:
    """The ConvNeXtV2 size whose parameter count (with ``num_classes``) is closest to ``reference``."""
    target = count_params(reference, num_classes=num_classes)
    return min((f"convnextv2_{s}" for s in CONVNEXTV2_SIZES),
               key=lambda n: abs(count_params(n, num_classes=num_classes) - target))


def resolve_model(key: str, profile: ProfileRef) -> ModelSpec:
    """A model-table key of the profile (``swin-t``) or any timm name → a concrete :class:`ModelSpec`."""
    table = get_profile(profile).models
    if key in table:
        spec = table[key]
    elif key in timm.list_models(key):
        spec = ModelSpec(key, key)
    else:
        known = ", ".join(table)
        raise ConfigError(f"unknown model {key!r} (a timm model name or one of: {known})")
    if spec.param_match_of:
        if spec.param_match_of not in timm.list_models(spec.param_match_of):
            raise ConfigError(f"{spec.param_match_of} is not registered (esg_lib.models missing?)")
        spec = dataclasses.replace(spec, name=closest_convnextv2(spec.param_match_of), param_match_of=None)
    if spec.name not in timm.list_models(spec.name):
        raise ConfigError(f"model {spec.name!r} (for {key!r}) is not registered in timm")
    return spec


def model_keys(selection: list[str], profile: ProfileRef) -> list[str]:
    """Expand ``all`` (the comparison rows) and ``ablation`` (Table 2 rows) in a model selection."""
    prof = get_profile(profile)
    out: list[str] = []
    for item in selection:
        out.extend(COMPARISON if item == "all" else ABLATION if item == "ablation"
                   else [canonical_model_key(item, prof)])
    return list(dict.fromkeys(out))


def build_model(spec: ModelSpec, num_classes: int, img_size: int,
                pretrained_file: str | None = None) -> nn.Module:
    """Create the model (random init unless ``pretrained_file`` is a local checkpoint)."""
    kwargs: dict[str, Any] = dict(spec.kwargs)
    if pretrained_file:
        path = Path(pretrained_file)
        if not path.is_file():
            raise ConfigError(f"pretrained file not found: {path}")
        overlay: dict[str, Any] = {"file": str(path)}
        file_classes = _file_num_classes(path, spec.name)
        if file_classes is not None:   # timm keeps the head only if this matches num_classes
            overlay["num_classes"] = file_classes
        kwargs.update(pretrained=True, pretrained_cfg_overlay=overlay)
    else:
        kwargs["pretrained"] = False
    try:
        model = timm.create_model(spec.name, num_classes=num_classes, **kwargs)
    except (RuntimeError, ValueError, KeyError) as exc:
        if pretrained_file:
            raise ConfigError(f"cannot load {pretrained_file} into {spec.name}: "
                              f"{str(exc).splitlines()[0]}") from None
        raise
    if spec.min_input and img_size < spec.min_input:
        model = MinInputSize(model, spec.min_input)
    return model


def _file_num_classes(path: Path, name: str) -> int | None:
    """Classes of the head stored in a local weights file (None if it has no recognisable head).

    timm drops a pretrained head whose class count differs from the model's; telling it the file's
    count keeps the head of a checkpoint trained on the same classes (fine-tuning, evaluation) and
    drops an ImageNet head.
    """
    cfg = get_pretrained_cfg(name, allow_unregistered=True)
    classifier = getattr(cfg, "classifier", None) if cfg is not None else None
    if not classifier:
        return None
    try:
        state = load_state_dict(str(path), weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error here
        raise ConfigError(f"cannot read {path}: {str(exc).splitlines()[0][:160]}") from None
    names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    for head in names:
        weight = state.get(f"{head}.weight")
        if weight is not None:
            return int(weight.shape[0])
    return None


def spec_for_config(cfg: TrainConfig) -> ModelSpec:
    """The run's :class:`ModelSpec`: the table row, with ``drop_path_rate`` in its kwargs when set
    (it is part of the spec that the run identity hashes, so the planned folder must see it too)."""
    spec = resolve_model(cfg.model, cfg.profile)
    if cfg.drop_path_rate:
        spec = dataclasses.replace(spec, kwargs={**spec.kwargs, "drop_path_rate": cfg.drop_path_rate})
    return spec


def model_for_config(cfg: TrainConfig, num_classes: int) -> tuple[nn.Module, ModelSpec]:
    """The run's model; ``drop_path_rate`` > 0 is passed to timm (stochastic depth), and a model
    without residual blocks to drop (timm's DenseNet, InceptionV3) is refused with a clear error."""
    spec = spec_for_config(cfg)
    if cfg.drop_path_rate:
        try:
            return build_model(spec, num_classes, cfg.img_size, cfg.pretrained_file), spec
        except TypeError as exc:
            raise ConfigError(f"{spec.name} has no stochastic depth (drop_path_rate): {exc}") from None
    return build_model(spec, num_classes, cfg.img_size, cfg.pretrained_file), spec


def no_weight_decay_names(model: nn.Module) -> list[str]:
    """Parameter names that get no weight decay: norms, biases, GRN γ/β (and 1-d params, by timm).

    ConvNeXt-V2 applies no weight decay to its GRN parameters; the official implementation stores
    them as (1, 1, 1, C) tensors, which timm's 1-d rule would miss, so GRN modules are matched by
    class name as well.
    """
    names: set[str] = set()
    for mod_name, module in model.named_modules():
        cls = type(module).__name__.lower()
        is_norm = isinstance(module, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm,
                                      nn.modules.normalization.RMSNorm)) or "norm" in cls
        if is_norm or "grn" in cls or "globalresponse" in cls:
            for p_name, _ in module.named_parameters(recurse=False):
                names.add(f"{mod_name}.{p_name}" if mod_name else p_name)
    for p_name, _ in model.named_parameters():
        if p_name.endswith(".bias") or "grn" in p_name.lower():
            names.add(p_name)
    extra = getattr(model, "no_weight_decay", None)
    if callable(extra):
        for pattern in extra():
            names.update(n for n, _ in model.named_parameters() if n == pattern or n.endswith("." + pattern))
    return sorted(names)


def check_input_size(model: nn.Module, name: str, img_size: int) -> None:
    """One eval-mode forward of a zero batch: a model that cannot take ``img_size`` inputs (a timm
    ViT built for 224 px given 64 px, say) fails here with one line instead of mid-training."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, img_size, img_size))
    except Exception as exc:  # noqa: BLE001 - any failure here means "wrong size for this model"
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(f"{name} cannot take {img_size} px inputs ({first}); use a model-table "
                          f"key of this profile or another --img-size") from None
    finally:
        model.train(was_training)
