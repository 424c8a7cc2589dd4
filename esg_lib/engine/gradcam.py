"""Grad-CAM (pytorch-grad-cam) for every model family of the comparison: the target layer and the
reshape transform each one needs (paper Fig. 13).

Target layers come from the stages each model describes in timm's ``feature_info`` (:func:`cam_target`),
so no model family is named here. ``stage="last"``: the stage of largest reduction (stride 32) —
ESG-ConvNeXt and ConvNeXtV2 ``stages.3``, ResNet ``layer4``, DenseNet ``features.norm5`` (the output of
``features``), MobileNetV3 ``blocks.6``, InceptionV3 ``Mixed_7c``, Swin ``layers.3`` (NHWC, permuted
to NCHW); ViT, whose blocks all keep one token grid, ``blocks[-1].norm1`` with the prefix (class)
tokens dropped and the patch tokens reshaped to their grid.

At 64 px those last layers are 2x2 (ViT keeps its 8x8 token grid), which makes coarse maps, so
``stage="auto"`` takes the stage at half that reduction (stride 16, 4x4 at 64 px) for inputs under
128 px: ConvNeXt ``stages.2``, ResNet ``layer3``, DenseNet ``features.denseblock3``, MobileNetV3
``blocks.4``, InceptionV3 ``Mixed_6e``, Swin ``layers.2``; ViT is unchanged. (Before the choice came
from ``feature_info``, Swin's ``last`` was its last block's ``norm1``; no committed figure used it.)

**Stored maps.** Fig. 13 explains each model's best checkpoint on the same test images
(:func:`pick_images`). A checkpoint is tens of MB and never committed, so a rerun kept by
``esg verify --keep`` carries its maps instead: :func:`write_run_cams` saves them beside the checkpoint
as ``gradcam.npz`` (:data:`CAM_FILE`: the images' positions in the test split, the pick seed, the
stage, the maps in float16, the predicted classes and the grid), and the figure reads them back with
:func:`load_cams` when the checkpoint is absent. They hold Fig. 13's choice only (:data:`CAM_IMAGES`
images, seed :data:`CAM_SEED`, ``stage="auto"``); other choices need the checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from esg_lib.engine.artifacts import CAM_FILE
from esg_lib.errors import UserError

__all__ = ["CAM_FILE", "CAM_IMAGES", "CAM_SEED", "CamExplanation", "StoredCams", "cam_target", "explain",
           "gradcam_maps", "load_cams", "load_run_model", "pick_images", "save_cams", "write_run_cams"]

CAM_IMAGES = 9      # Fig. 13 (notebook 06): one test image per class, up to nine
CAM_SEED = 42       # numpy.random.default_rng seed of the picks


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


def _stages(m: nn.Module) -> list[dict[str, Any]]:
    info = getattr(m, "feature_info", None)
    if hasattr(info, "get_dicts"):      # a features_only model's FeatureInfo
        info = info.get_dicts()
    return [dict(d) for d in info or []]


def cam_target(model: nn.Module, img_size: int, stage: str = "auto") -> tuple[nn.Module, Callable | None]:
    """``(target layer, reshape_transform)`` for Grad-CAM on ``model``, chosen from the stages the model
    describes in timm's ``feature_info`` (module path and reduction), fetched with ``get_submodule``:

    - a hierarchy (CNNs, ConvNeXt, ESG-ConvNeXt, Swin): the last stage with the largest reduction, or,
      for ``penultimate`` and for ``auto`` below 128 px, the stage at half that reduction (stride 16);
      a model whose ``output_fmt`` is NHWC (Swin) gets its maps permuted to NCHW;
    - a token model, whose every block has the same reduction (ViT): the last block's ``norm1``, its
      prefix tokens dropped and the patch tokens reshaped to their grid (pytorch-grad-cam's ViT recipe).
    """
    if stage not in ("auto", "last", "penultimate"):
        raise ValueError(f"stage must be auto, last or penultimate, got {stage!r}")
    early = stage == "penultimate" or (stage == "auto" and img_size < 128)
    m = _inner(model)
    info = _stages(m)
    if not info:
        raise ValueError(f"{m.__class__.__name__} describes no stages (timm's feature_info): no Grad-CAM target "
                         "layer (esg_lib.engine.gradcam.cam_target)")
    reductions = [int(d["reduction"]) for d in info]
    if len(set(reductions)) == 1:
        return m.get_submodule(f"{info[-1]['module']}.norm1"), _vit_reshape(m)
    want = max(reductions) // 2 if early else max(reductions)
    entry = next((d for d in reversed(info) if int(d["reduction"]) == want), info[-1])
    reshape = _nhwc_to_nchw if getattr(m, "output_fmt", "NCHW") == "NHWC" else None
    return m.get_submodule(entry["module"]), reshape


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


def load_run_model(run_dir: str | Path) -> nn.Module:
    """The best checkpoint of a run folder as an eval-mode CPU model (Grad-CAM runs on the CPU)."""
    from .inference import load_run_model as load_checkpoint_model   # one way to rebuild a run's model

    return load_checkpoint_model(Path(run_dir) / "best.pt", device="cpu")[1]


def pick_images(labels: np.ndarray, n_classes: int, n_images: int = CAM_IMAGES, seed: int = CAM_SEED) -> list[int]:
    """Positions in a test split of the images Fig. 13 explains: one random image of each class in
    class order (``numpy.random.default_rng(seed)``), at most ``n_images``; without any labelled
    class, ``n_images`` random images."""
    rng = np.random.default_rng(seed)
    picks = [int(rng.choice(np.flatnonzero(labels == c))) for c in range(n_classes) if (labels == c).any()]
    picks = picks[:n_images]
    return picks or [int(i) for i in rng.choice(len(labels), size=min(n_images, len(labels)), replace=False)]


@dataclass(frozen=True)
class StoredCams:
    """A run's saved Grad-CAM (:data:`CAM_FILE`): which test images, picked how, and the explanation."""
    indices: list[int]
    seed: int
    stage: str
    explanation: CamExplanation

    def matches(self, indices: Sequence[int], seed: int, stage: str) -> bool:
        return list(indices) == self.indices and seed == self.seed and stage == self.stage


def save_cams(folder: str | Path, indices: Sequence[int], seed: int, stage: str, explanation: CamExplanation) -> Path:
    """Write :data:`CAM_FILE` in ``folder``; the maps in float16 (a figure's colours, not a measurement)."""
    path = Path(folder) / CAM_FILE
    np.savez_compressed(path, indices=np.asarray(indices, dtype=np.int64), seed=np.int64(seed), stage=np.str_(stage),
                        maps=explanation.maps.astype(np.float16), predictions=np.asarray(explanation.predictions),
                        grid=np.asarray(explanation.grid, dtype=np.int64))
    return path


def load_cams(folder: str | Path) -> StoredCams:
    """The Grad-CAM saved by :func:`save_cams` in ``folder``."""
    path = Path(folder) / CAM_FILE
    if not path.is_file():
        raise UserError(f"no {CAM_FILE} in {folder}: neither a checkpoint nor saved Grad-CAM maps")
    with np.load(path) as data:
        explanation = CamExplanation(data["maps"].astype(np.float32), data["predictions"],
                                     tuple(int(v) for v in data["grid"]))
        return StoredCams([int(i) for i in data["indices"]], int(data["seed"]), str(data["stage"]), explanation)


def write_run_cams(run_dir: str | Path, bundle: Any, n_images: int = CAM_IMAGES, seed: int = CAM_SEED,
                   stage: str = "auto") -> Path:
    """Grad-CAM of a run's ``best.pt`` on the test images of :func:`pick_images`, saved beside it
    (:func:`save_cams`); ``bundle``: the run's data (its test split decides the images)."""
    test = bundle.test
    picks = pick_images(test.labels.numpy(), len(bundle.class_names), n_images, seed)
    model = load_run_model(run_dir)
    return save_cams(run_dir, picks, seed, stage, explain(model, test.normalize(test.images[picks]), stage=stage))
