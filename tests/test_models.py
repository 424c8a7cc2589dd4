"""The ESG-ConvNeXt network: shapes, gradients, timm registration, ablation rows, equivalence with
timm's ConvNeXtV2, checkpoints and error messages."""
from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
import torch.nn as nn

import esg_lib
from esg_lib.models import ABLATION_ROWS, ELA, GAM, SIZES, ESGConvNeXt, SimAM, checkpoint_filter_fn, esg_convnext
from esg_lib.models.esg_convnext import ChannelsLastPReLU, InvertedResidualBranch, ResidualBranch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def atto() -> ESGConvNeXt:
    torch.manual_seed(0)
    return timm.create_model("esg_convnext_atto", num_classes=7).eval()


# The biggest sizes only at small inputs, to keep the suite fast.
SHAPE_CASES = [("atto", 64, 64), ("atto", 128, 128), ("atto", 224, 224), ("atto", 64, 96),
               ("femto", 64, 64), ("femto", 128, 128), ("femto", 96, 64),
               ("pico", 64, 64), ("pico", 128, 128),
               ("nano", 64, 64), ("nano", 64, 96),
               ("tiny", 64, 64), ("tiny", 32, 64)]


@pytest.mark.parametrize("size, height, width", SHAPE_CASES)
def test_output_and_feature_shapes(size: str, height: int, width: int) -> None:
    model = timm.create_model(f"esg_convnext_{size}", num_classes=7).eval()
    x = torch.randn(1, 3, height, width)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model.forward_head(features)
        pre_logits = model.forward_head(features, pre_logits=True)
    dims = SIZES[size]["dims"]
    assert features.shape == (1, dims[-1], height // 32, width // 32)
    assert logits.shape == (1, 7)
    assert pre_logits.shape == (1, model.num_features) and model.num_features == dims[-1]


def test_every_size_and_row_is_registered_in_timm() -> None:
    names = set(timm.list_models("esg_convnext_*"))
    expected = {f"esg_convnext_{s}" for s in SIZES} | {f"esg_convnext_{s}_abl{r}" for s in SIZES
                                                        for r in ABLATION_ROWS}
    assert names == expected
    assert esg_lib.models.model_names() == sorted(expected)


def test_create_model_kwargs_are_honoured() -> None:
    model = timm.create_model("esg_convnext_atto", num_classes=3, in_chans=1, drop_path_rate=0.1,
                              drop_rate=0.2)
    assert model.stem[0].in_channels == 1
    assert model.get_classifier().out_features == 3
    assert model.stages[3].blocks[1].drop_path.drop_prob == pytest.approx(0.1)
    assert model.head.drop.p == pytest.approx(0.2)
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 3)
    model.reset_classifier(5)
    assert model(torch.randn(1, 1, 64, 64)).shape == (1, 5)


def test_every_parameter_receives_a_gradient() -> None:
    model = timm.create_model("esg_convnext_atto", num_classes=7).train()
    # GRN's gamma/beta start at zero, which blocks gradients to fc1 at step 0 in ConvNeXtV2 as well;
    # nudge them so the test sees every path.
    for name, p in model.named_parameters():
        if "grn" in name:
            p.data.fill_(0.1)
    x = torch.randn(4, 3, 64, 64)
    nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3])).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_eval_mode_is_deterministic(atto: ESGConvNeXt) -> None:
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(atto(x), atto(x), rtol=0, atol=0)


def test_state_dict_round_trip(atto: ESGConvNeXt, tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save(atto.state_dict(), path)
    other = timm.create_model("esg_convnext_atto", num_classes=7).eval()
    other.load_state_dict(torch.load(path, weights_only=True))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(other(x), atto(x), rtol=0, atol=0)


def test_pretrained_loads_a_local_file_through_timm(atto: ESGConvNeXt, tmp_path: Path) -> None:
    path = tmp_path / "esg_atto.pth"
    torch.save(atto.state_dict(), path)
    loaded = timm.create_model("esg_convnext_atto", num_classes=7, pretrained=True,
                               pretrained_cfg_overlay=dict(file=str(path))).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), atto(x), rtol=0, atol=0)


def test_row1_is_timm_convnextv2_atto() -> None:
    """Row 1 (every addition off) loads timm's convnextv2_atto weights and gives its outputs."""
    reference = timm.create_model("convnextv2_atto", num_classes=7).eval()
    for name, p in reference.named_parameters():  # random GRN/LN affine, so every layer matters
        if "grn" in name or "norm" in name:
            p.data.normal_(0, 0.5)
    ours = timm.create_model("esg_convnext_atto_abl1", num_classes=7).eval()
    ours.load_state_dict(checkpoint_filter_fn(reference.state_dict(), ours), strict=True)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ours.forward_head(ours.forward_features(x), pre_logits=True),
                                   reference.forward_head(reference.forward_features(x), pre_logits=True),
                                   rtol=1e-4, atol=1e-5)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())


def _count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize("row", sorted(ABLATION_ROWS))
def test_ablation_rows_contain_exactly_their_modules(row: int) -> None:
    model = timm.create_model(f"esg_convnext_atto_abl{row}", num_classes=7)
    spec = ABLATION_ROWS[row]
    blocks = sum(SIZES["atto"]["depths"])
    attention = bool(spec.attention)
    assert _count(model, ResidualBranch) == (blocks if spec.residual_branch else 0)
    assert _count(model, InvertedResidualBranch) == (blocks if spec.inverted_branch else 0)
    assert _count(model, ELA) == (blocks if attention else 0)
    assert _count(model, GAM) == (blocks if attention else 0)
    # SimAM inside the MLP of each block, and after the inverted branch when it exists
    assert _count(model, SimAM) == (blocks * (1 + spec.inverted_branch) if attention else 0)
    prelu = spec.act == "prelu"
    assert _count(model, nn.GELU) == (0 if prelu else blocks * (1 + 2 * spec.inverted_branch))
    assert _count(model, ChannelsLastPReLU) == (blocks if prelu else 0)
    downsample_prelu = sum(isinstance(stage.downsample[-1], nn.PReLU) for stage in model.stages[1:])
    assert downsample_prelu == (3 if prelu else 0)


def test_row5_is_the_full_model() -> None:
    torch.manual_seed(0)
    full = esg_convnext("atto", num_classes=7)
    torch.manual_seed(0)
    row5 = timm.create_model("esg_convnext_atto_abl5", num_classes=7)
    assert full.state_dict().keys() == row5.state_dict().keys()
    for a, b in zip(full.state_dict().values(), row5.state_dict().values()):
        assert torch.equal(a, b)


def test_unknown_size_or_row_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown ESG-ConvNeXt size 'huge'.*atto"):
        esg_convnext("huge")
    with pytest.raises(ValueError, match="unknown ablation row"):
        esg_convnext("atto", ablation=7)
    with pytest.raises(RuntimeError, match="Unknown model"):
        timm.create_model("esg_convnext_huge")
    with pytest.raises(ValueError, match="unknown attention"):
        ESGConvNeXt(attention=("ela", "cbam"))
    with pytest.raises(ValueError, match="unknown activation"):
        ESGConvNeXt(act="relu")


def test_wrong_input_channels_or_size_is_a_clear_error(atto: ESGConvNeXt) -> None:
    with pytest.raises(ValueError, match=r"expected input of shape \(B, 3, H, W\), got \(1, 1, 64, 64\)"):
        atto(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="too small"):
        atto(torch.randn(1, 3, 16, 64))


def test_feature_info_stage_gives_a_grad_cam_heat_map(atto: ESGConvNeXt) -> None:
    """Our model describes its stages in timm's feature_info (module path, reduction), which is all
    Grad-CAM needs to find a target layer."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    assert [(d["module"], d["reduction"]) for d in atto.feature_info] == [
        ("stages.0", 4), ("stages.1", 8), ("stages.2", 16), ("stages.3", 32)]
    x = torch.randn(2, 3, 64, 64)
    with GradCAM(model=atto, target_layers=[atto.get_submodule("stages.2")]) as cam:
        heat = cam(input_tensor=x, targets=[ClassifierOutputTarget(1), ClassifierOutputTarget(2)])
    assert heat.shape == (2, 64, 64)
    assert (heat >= 0).all() and (heat <= 1).all()
