"""Grad-CAM (pytorch-grad-cam) for every model family of the comparison: the target layer and the
reshape transform each one needs (paper Fig. 13).

Target layers (``stage="last"``): ESG-ConvNeXt and ConvNeXtV2 ``stages[-1]``; ResNet ``layer4``;
DenseNet ``features`` (after the last norm); MobileNetV3 ``blocks[-1]``; InceptionV3 ``Mixed_7c``;
ViT ``blocks[-1].norm1`` with the prefix (class) tokens dropped and the patch tokens reshaped to their
grid; Swin ``layers[-1].blocks[-1].norm1`` (timm's Swin is NHWC) permuted to NCHW.

At 64 px those last layers are 2x2 (ViT keeps its 8x8 token grid), which makes coarse maps, so
``stage="auto"`` takes the layer one stage earlier (stride 16, 4x4 at 64 px) for inputs under 128 px:
ConvNeXt ``stages[-2]``, ResNet ``layer3``, DenseNet ``features.denseblock3``, MobileNetV3
``blocks[-3]``, InceptionV3 ``Mixed_6e``, Swin ``layers[-2]``; ViT is unchanged.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

__all__ = ["CamExplanation", "cam_target", "explain", "gradcam_maps", "load_run_model"]


def _inner(model: nn.Module) -> nn.Module:
    """The timm model inside the engine's input-size wrapper (InceptionV3 below 75 px)."""
    return getattr(model, "model", model) if model.__class__.__name__ == "MinInputSize" else model


def _vit_reshape(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    prefix = getattr(model, "num_prefix_tokens", 1)
    grid = model.patch_embed.grid_size

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        x = tokens[:, prefix:, :]
        return x.reshape(x.shape[0], grid[0], grid[1], x.shape[-1]).permute(0, 3, 1, 2)

    return reshape


def _nhwc_to_nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def cam_target(model: nn.Module, img_size: int, stage: str = "auto") -> tuple[nn.Module, Callable | None]:
    """``(target layer, reshape_transform)`` for Grad-CAM on ``model`` (see the module docstring)."""
    if stage not in ("auto", "last", "penultimate"):
        raise ValueError(f"stage must be auto, last or penultimate, got {stage!r}")
    early = stage == "penultimate" or (stage == "auto" and img_size < 128)
    m = _inner(model)
    name = m.__class__.__name__
    if hasattr(m, "grad_cam_target_layer"):  # ESG-ConvNeXt
        return m.grad_cam_target_layer(-2 if early else -1), None
    if name == "ConvNeXt":
        return m.stages[-2 if early else -1], None
    if name == "ResNet":
        return (m.layer3 if early else m.layer4), None
    if name == "DenseNet":
        return (m.features.denseblock3 if early else m.features), None
    if name == "MobileNetV3":
        return m.blocks[-3 if early else -1], None
    if name == "InceptionV3":
        return (m.Mixed_6e if early else m.Mixed_7c), None
    if name == "VisionTransformer":
        return m.blocks[-1].norm1, _vit_reshape(m)
    if name == "SwinTransformer":
        return (m.layers[-2] if early else m.layers[-1].blocks[-1].norm1), _nhwc_to_nchw
    raise ValueError(f"no Grad-CAM target layer known for {name}; add one to esg_lib.gradcam.cam_target")


@dataclass(frozen=True)
class CamExplanation:
    """One model's Grad-CAM of a batch: ``maps`` (N, H, W) in [0, 1] at the input size, the class each
    image was predicted as (what the maps explain when no target is given), and the target layer's
    spatial grid ``(h, w)``: the map's real resolution before pytorch-grad-cam upsamples it."""
    maps: np.ndarray
    predictions: np.ndarray
    grid: tuple[int, int]


def explain(model: nn.Module, x: torch.Tensor, targets: list[int] | None = None,
            stage: str = "auto") -> CamExplanation:
    """Grad-CAM of normalised inputs ``x``; ``targets=None`` explains each image's predicted class.
    Gradients are enabled here even if the caller disabled them."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    layer, reshape = cam_target(model, x.shape[-1], stage)
    with torch.enable_grad(), GradCAM(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
        cam_targets = None if targets is None else [ClassifierOutputTarget(int(t)) for t in targets]
        maps = cam(input_tensor=x, targets=cam_targets)
        # pytorch-grad-cam keeps the last forward's logits and the (reshaped) target-layer activations
        predictions = cam.outputs.detach().argmax(1).cpu().numpy()
        grid = tuple(int(v) for v in cam.activations_and_grads.activations[0].shape[-2:])
    return CamExplanation(maps, predictions, grid)


def gradcam_maps(model: nn.Module, x: torch.Tensor, targets: list[int] | None = None,
                 stage: str = "auto") -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1] for normalised inputs ``x`` (:func:`explain`'s maps)."""
    return explain(model, x, targets, stage).maps


def load_run_model(run_dir: str | Path) -> tuple[nn.Module, "ModelSpec"]:  # noqa: F821
    """The best checkpoint of a run folder as an eval-mode CPU model, with its model spec."""
    from esg_lib.engine.config import ModelSpec
    from esg_lib.engine.models import build_model
    from esg_lib.engine.runtime import load_checkpoint

    run_dir = Path(run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())
    s = cfg["model_spec"]
    spec = ModelSpec(s["label"], s["name"], s.get("kwargs") or {}, s.get("min_input"))
    model = build_model(spec, cfg["num_classes"], cfg["config"]["img_size"])
    model.load_state_dict(load_checkpoint(run_dir / "best.pt")["model"])
    return model.eval(), spec
