"""Grad-CAM target layers and reshape transforms for every model family of the comparison."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from esg_lib.engine.models import build_model, resolve_model
from esg_lib.experiments import COMPARISON_MODELS
from esg_lib.engine.gradcam import cam_target, explain, gradcam_maps, load_cams, pick_images, save_cams
from esg_lib.errors import UserError


@pytest.mark.parametrize("key", COMPARISON_MODELS)
def test_every_comparison_model_gives_a_cam(key: str) -> None:
    torch.manual_seed(0)
    spec = resolve_model(key, "smoke")
    model = build_model(spec, num_classes=7, img_size=32)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # the caller may have disabled gradients: Grad-CAM must re-enable them
        cams = gradcam_maps(model, x, targets=[0, 3])
    assert cams.shape == (2, 32, 32)
    assert np.isfinite(cams).all() and cams.min() >= 0 and cams.max() <= 1


def test_auto_stage_takes_the_earlier_layer_for_small_inputs() -> None:
    spec = resolve_model("esg-convnext", "smoke")
    model = build_model(spec, num_classes=7, img_size=64)
    assert cam_target(model, 64, "auto")[0] is model.stages[-2]
    assert cam_target(model, 224, "auto")[0] is model.stages[-1]
    assert cam_target(model, 64, "last")[0] is model.stages[-1]
    with pytest.raises(ValueError, match="stage must be"):
        cam_target(model, 64, "first")


# The target layers the figures were drawn with before the choice came from feature_info (the class-name
# rules): (model-table key, image size) -> module path. Same module, same maps, same committed figures.
EARLIER_TARGETS = {
    ("esg-convnext", 64): "stages.2", ("esg-convnext", 224): "stages.3",
    ("convnextv2", 64): "stages.2", ("convnextv2", 224): "stages.3",
    ("resnet18", 64): "layer3", ("resnet18", 224): "layer4",
    ("densenet121", 64): "features.denseblock3",
    ("mobilenetv3", 64): "blocks.4", ("mobilenetv3", 224): "blocks.6",
    ("inceptionv3", 64): "Mixed_6e", ("inceptionv3", 224): "Mixed_7c",
    ("vit", 64): "blocks.11.norm1", ("swin-t", 64): "layers.2",
}


@pytest.mark.parametrize("key, img_size", sorted(EARLIER_TARGETS))
def test_feature_info_picks_the_layers_the_figures_were_drawn_with(key, img_size) -> None:
    profile = "cpu" if img_size == 64 else "paper"
    model = build_model(resolve_model(key, profile), num_classes=7, img_size=img_size)
    layer, reshape = cam_target(model, img_size, "auto")
    inner = getattr(model, "model", model)
    assert layer is inner.get_submodule(EARLIER_TARGETS[key, img_size])
    assert (reshape is None) == (key not in ("vit", "swin-t"))


def test_densenets_last_stage_is_the_output_of_its_features() -> None:
    model = build_model(resolve_model("densenet121", "smoke"), num_classes=7, img_size=32)
    layer, _ = cam_target(model, 224, "last")
    assert layer is model.features[-1]         # features.norm5: what the whole `features` block returns


@pytest.mark.parametrize("key, img_size, grid", [("esg-convnext", 64, (4, 4)), ("resnet18", 64, (4, 4)),
                                                  ("esg-convnext", 128, (4, 4)), ("vit", 32, (4, 4))])
def test_explain_names_the_predicted_class_and_the_grid_the_map_comes_from(key, img_size, grid) -> None:
    """The maps explain the model's own prediction, which :func:`explain` returns beside them (the
    argmax of the model's logits), and the grid is the target layer's: stride 16 below 128 px
    (``stage="auto"``), the last stage (stride 32) from 128 px, ViT's token grid (32 px / patch 8)."""
    torch.manual_seed(0)
    model = build_model(resolve_model(key, "smoke"), num_classes=7, img_size=img_size).eval()
    x = torch.randn(3, 3, img_size, img_size)
    result = explain(model, x)
    with torch.no_grad():
        assert result.predictions.tolist() == model(x).argmax(1).tolist()
    assert result.grid == grid and result.maps.shape == (3, img_size, img_size)
    np.testing.assert_allclose(result.maps, gradcam_maps(model, x, targets=result.predictions.tolist()), atol=1e-6)


def test_vit_reshape_drops_the_class_token() -> None:
    spec = resolve_model("vit", "smoke")
    model = build_model(spec, num_classes=7, img_size=32)
    layer, reshape = cam_target(model, 32)
    tokens = torch.randn(2, 1 + model.patch_embed.num_patches, model.embed_dim)
    grid = reshape(tokens)
    assert grid.shape == (2, model.embed_dim, *model.patch_embed.grid_size)
    torch.testing.assert_close(grid[:, :, 0, 1], tokens[:, 2, :])


def test_picks_take_one_image_per_class_in_class_order() -> None:
    labels = np.array([2, 0, 1, 0, 2, 1, 1, 0])
    picks = pick_images(labels, n_classes=4, n_images=9, seed=42)    # class 3 has no image
    assert [int(labels[i]) for i in picks] == [0, 1, 2]
    assert pick_images(labels, 4, n_images=2, seed=42) == picks[:2]
    assert {tuple(pick_images(labels, 4, 9, s)) for s in range(20)} != {tuple(picks)}   # the seed matters
    assert sorted(pick_images(np.array([], dtype=int).reshape(0), 0, 3, 0)) == []


def test_saved_maps_come_back_with_what_they_were_made_of(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model(resolve_model("resnet18", "smoke"), num_classes=7, img_size=32).eval()
    result = explain(model, torch.randn(3, 3, 32, 32))
    with pytest.raises(UserError, match="neither a checkpoint nor saved Grad-CAM maps"):
        load_cams(tmp_path)
    save_cams(tmp_path, [5, 1, 9], 42, "auto", result)
    stored = load_cams(tmp_path)
    assert stored.matches([5, 1, 9], 42, "auto")
    assert not stored.matches([5, 1], 42, "auto") and not stored.matches([5, 1, 9], 7, "auto")
    assert not stored.matches([5, 1, 9], 42, "last")
    assert stored.explanation.grid == result.grid
    assert list(stored.explanation.predictions) == list(result.predictions)
    np.testing.assert_allclose(stored.explanation.maps, result.maps, atol=1e-3)


def test_the_committed_reruns_maps_have_the_grid_of_the_layer_chosen_now() -> None:
    """Each kept rerun's gradcam.npz records the target layer's grid when it was drawn; the layer chosen
    from feature_info now has the same grid at the run's size (a second check beside the one above)."""
    root = Path(__file__).resolve().parents[1] / "results" / "cpu" / "reruns" / "x-sdd"
    found = sorted(root.glob("*/s0-*/gradcam.npz"))
    if not found:
        pytest.skip("no committed Grad-CAM maps")
    for path in found:
        key = path.parent.parent.name
        stored = load_cams(path.parent)
        model = build_model(resolve_model(key, "cpu"), num_classes=7, img_size=64).eval()
        layer, reshape = cam_target(model, 64, stored.stage)
        seen = []
        handle = layer.register_forward_hook(lambda mod, inp, out: seen.append(out))
        with torch.no_grad():
            model(torch.randn(1, 3, 64, 64))
        handle.remove()
        out = reshape(seen[0]) if reshape else seen[0]
        assert tuple(out.shape[-2:]) == stored.explanation.grid, key
