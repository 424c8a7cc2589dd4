"""ELA, SimAM and GAM against literal implementations of the paper's equations."""
from __future__ import annotations

import pytest
import torch

from esg_lib.models import ELA, GAM, SIZES, SimAM, simam
from esg_lib.models.attention import ela_norm_groups
from esg_lib.models.reference import ela_literal, gam_literal, simam_energy_minimised, simam_literal


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _randomise(module: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial norm affine parameters, so a test can tell the layers apart."""
    for name, p in module.named_parameters():
        if "norm" in name or "bn" in name:
            p.data.uniform_(0.5, 1.5) if name.endswith("weight") else p.data.uniform_(-0.5, 0.5)
    return module


# ---------------------------------------------------------------------------------------- ELA
def test_ela_matches_literal_equations_on_non_square_input() -> None:
    ela = _randomise(ELA(40, kernel_size=5))
    x = torch.randn(2, 40, 5, 9)
    torch.testing.assert_close(ela(x), ela_literal(ela, x), rtol=1e-5, atol=1e-6)


def test_ela_gate_factors_per_channel_into_row_and_column_terms() -> None:
    ela = _randomise(ELA(16))
    x = torch.rand(1, 16, 6, 11) + 0.5  # positive, so the gate is out / x
    gate = ela(x) / x
    # rank one per channel: g(h, w) * g(0, 0) == g(h, 0) * g(0, w)
    torch.testing.assert_close(gate * gate[:, :, :1, :1], gate[:, :, :, :1] * gate[:, :, :1, :], rtol=1e-5, atol=1e-6)
    # and the row term really depends on the row (a transposed broadcast would make it constant)
    assert gate[0, :, :, 0].std(dim=1).max() > 1e-3


def test_ela_row_gate_follows_row_content() -> None:
    """A bright row must change that row's gate, not a column's (catches the (B, C, W, 1) reshape bug)."""
    ela = _randomise(ELA(8))
    x = torch.ones(1, 8, 6, 10)
    base = ela(x) / x
    x[:, :, 2, :] = 5.0
    changed = (ela(x) / x - base).abs()
    # rows other than 2 and its conv neighbourhood (k=5: rows 0..4) keep their row gate
    assert changed[:, :, 5, :].max() < changed[:, :, 2, :].max()


@pytest.mark.parametrize("channels", sorted({d for s in SIZES.values() for d in s["dims"]}))
def test_ela_group_norm_fits_every_width(channels: int) -> None:
    groups = ela_norm_groups(channels)
    assert channels % groups == 0 and groups >= 8
    ELA(channels)(torch.randn(1, channels, 3, 4))


def test_ela_rejects_even_kernel() -> None:
    with pytest.raises(ValueError, match="odd"):
        ELA(8, kernel_size=4)


# -------------------------------------------------------------------------------------- SimAM
def test_simam_matches_literal_closed_form() -> None:
    x = torch.randn(2, 6, 5, 7)
    torch.testing.assert_close(simam(x), simam_literal(x), rtol=1e-5, atol=1e-6)


def test_simam_channels_last_equals_channels_first() -> None:
    x = torch.randn(2, 6, 5, 7)
    out_last = SimAM(channels_last=True)(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(out_last, SimAM()(x))


def _loo_inverse_energy(x: torch.Tensor, lam: float) -> torch.Tensor:
    """1/e* of Eq. 9 (square restored) with the leave-one-out mean and variance of Eq. 7-8."""
    c, h, w = x.shape
    flat = x.reshape(c, -1)
    m = flat.shape[1]
    out = torch.empty_like(flat)
    for j in range(m):
        others = torch.cat([flat[:, :j], flat[:, j + 1:]], dim=1)
        mu = others.mean(dim=1)
        var = ((others - mu[:, None]) ** 2).mean(dim=1)
        out[:, j] = ((flat[:, j] - mu) ** 2 + 2 * var + 2 * lam) / (4 * (var + lam))
    return out.reshape(c, h, w)


def test_simam_eq9_is_the_minimum_of_the_energy_eq6() -> None:
    """Direct minimisation of Eq. 6 equals Eq. 9 with leave-one-out statistics (square restored)."""
    lam = 1e-4
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(simam_energy_minimised(x, lam), _loo_inverse_energy(x, lam), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("side, gate_tolerance", [(4, 0.1), (8, 0.025), (16, 0.0065)])
def test_simam_closed_form_approximates_minimised_energy(side: int, gate_tolerance: float) -> None:
    """The reference closed form uses all-neuron statistics instead of leave-one-out ones. Measured
    on Gaussian input: the importance 1/e* it computes differs from the minimised energy's by a mean
    relative error of 1/(H*W - 1) (0.066 at 4x4, 0.016 at 8x8, 0.0039 at 16x16), and the SimAM gate
    sigmoid(1/e*) by at most 0.089, 0.022 and 0.0055 (worst of 50 seeds)."""
    lam = 1e-4
    x = torch.randn(2, side, side, dtype=torch.float64)
    exact = simam_energy_minimised(x, lam) if side <= 8 else _loo_inverse_energy(x, lam)
    n = side * side - 1
    d = (x - x.mean(dim=(1, 2), keepdim=True)) ** 2
    closed = d / (4 * (d.sum(dim=(1, 2), keepdim=True) / n + lam)) + 0.5
    mean_rel = ((closed - exact) / exact).abs().mean().item()
    assert mean_rel == pytest.approx(1 / n, rel=0.1)
    assert (torch.sigmoid(closed) - torch.sigmoid(exact)).abs().max() < gate_tolerance
    # and the closed form is what the module computes
    torch.testing.assert_close(simam(x.unsqueeze(0), lam=lam)[0], x * torch.sigmoid(closed))


def test_simam_single_pixel_is_finite() -> None:
    x = torch.randn(2, 4, 1, 1)
    out = simam(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, x * torch.sigmoid(torch.tensor(0.5)))


def test_simam_gate_emphasises_outliers() -> None:
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 2] = 3.0
    gate = simam(x + 1.0) / (x + 1.0)
    assert gate[0, 0, 1, 2] == gate.max() and gate.max() > gate.min()


# ---------------------------------------------------------------------------------------- GAM
def test_gam_matches_literal_equations() -> None:
    gam = _randomise(GAM(16)).eval()
    x = torch.randn(2, 16, 5, 7)
    torch.testing.assert_close(gam(x), gam_literal(gam, x), rtol=1e-5, atol=1e-6)


def test_gam_split_channel_last_path_equals_forward() -> None:
    gam = _randomise(GAM(16)).eval()
    x = torch.randn(2, 16, 5, 7)
    split = gam.apply_spatial(gam.apply_channel(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
    torch.testing.assert_close(split, gam(x))


def test_gam_gates_lie_strictly_between_zero_and_one() -> None:
    gam = _randomise(GAM(32)).train()
    x = torch.randn(4, 32, 6, 5) * 3
    channel_gate = gam.channel(x.permute(0, 2, 3, 1))
    spatial_gate = gam.spatial(x)
    for gate in (channel_gate, spatial_gate):
        assert (gate > 0).all() and (gate < 1).all()
    assert gam.channel.fc1.out_features == 8  # reduction r = 4
    assert gam.spatial.conv1.kernel_size == (7, 7) and gam.spatial.conv2.kernel_size == (7, 7)
