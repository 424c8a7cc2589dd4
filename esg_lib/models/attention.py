"""The three attention modules the paper puts in every ConvNeXtV2 block: ELA, SimAM and GAM.

Each module implements one group of the paper's equations and says which. Literal, slow versions of
the same equations live in :mod:`esg_lib.models.reference`; tests check the two agree.

The code here reads as the equations. Where inference or training would pay for that, the same
arithmetic runs in :mod:`esg_lib.models.fused` (SimAM's hand-written backward, in-place products when
no gradient is needed); ``tests/test_models_perf.py`` checks the two paths agree.

Layouts: ConvNeXt blocks alternate between NCHW (depthwise conv) and NHWC (LayerNorm and the
pointwise MLP as ``nn.Linear``). Each module here works in the layout it is called in, so the block
never permutes just to please an attention module.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from . import fused

__all__ = ["ELA", "SimAM", "simam", "GAM", "GAMChannelAttention", "GAMSpatialAttention", "ela_norm_groups"]


def ela_norm_groups(channels: int, preferred: int = 16) -> int:
    """GroupNorm group count for ELA: the largest divisor of ``channels`` not above ``preferred``.

    ELA-B/S/L use 16 groups, ELA-T 32; neither divides every ConvNeXtV2 width (16 does not divide 40,
    atto's first stage). ``gcd(channels, preferred)`` keeps 16 where it divides (48, 64, 80, 96, ...)
    and falls back to 8 for 40.
    """
    return math.gcd(channels, preferred)


class ELA(nn.Module):
    """Efficient Local Attention (paper Eq. 1-5; Xu & Wan 2024, arXiv:2403.01123).

    Strip average pooling per row (Eq. 1, ``z_h`` of shape (B, C, H)) and per column (Eq. 2, ``z_w``
    of shape (B, C, W)); one *shared* 1-D convolution ``F`` of kernel ``k`` over both strips,
    GroupNorm and sigmoid (Eq. 3-4); ``Y = x * y_h * y_w`` (Eq. 5), so the gate factors per channel
    as ``y_h(h) * y_w(w)``.

    Choices (the paper names only k = 5): the 1-D convolution is depthwise (``groups = C``, as ELA-T
    and ELA-B) and bias-free; GroupNorm uses :func:`ela_norm_groups` groups so every width works.
    Input and output are NCHW.
    """

    def __init__(self, channels: int, kernel_size: int = 5, norm_groups: int | None = None) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"ELA kernel_size must be odd to keep the strip length, got {kernel_size}")
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2,
                              groups=channels, bias=False)
        self.norm = nn.GroupNorm(norm_groups or ela_norm_groups(channels), channels)

    def strip_gate(self, z: torch.Tensor) -> torch.Tensor:
        """Eq. 3 / Eq. 4: ``sigmoid(GroupNorm(Conv1d(z)))`` for one direction, z of shape (B, C, L)."""
        return torch.sigmoid(self.norm(self.conv(z)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        z_h = x.mean(dim=3)  # Eq. 1: mean over the width, one value per row
        z_w = x.mean(dim=2)  # Eq. 2: mean over the height, one value per column
        if h == w:
            # Eq. 3-4 for both strips in one Conv1d and one GroupNorm call: stacked on the batch axis,
            # each strip is its own GroupNorm sample, so the statistics stay per strip.
            y_h, y_w = self.strip_gate(torch.cat((z_h, z_w))).split(b)
        else:
            y_h, y_w = self.strip_gate(z_h), self.strip_gate(z_w)
        y_h, y_w = y_h.unsqueeze(3), y_w.unsqueeze(2)
        if not (torch.is_grad_enabled() and (x.requires_grad or y_h.requires_grad)):
            return fused.ela_gate_no_grad(x, y_h, y_w)
        return x * y_h * y_w  # Eq. 5


def simam(x: torch.Tensor, spatial_dims: tuple[int, int] = (2, 3), lam: float = 1e-4) -> torch.Tensor:
    """SimAM (paper Eq. 6-10; Yang et al., ICML 2021) in the reference closed form.

    The minimal energy of Eq. 6 for a neuron ``t`` is ``e* = 4(s2 + lam) / ((t - mu)^2 + 2 s2 + 2 lam)``
    (the paper's Eq. 9 drops the square on ``t - mu``: a typo). Its inverse is
    ``1/e* = (t - mu)^2 / (4 (s2 + lam)) + 0.5`` and Eq. 10 gives ``x * sigmoid(1/e*)``.
    As in the reference code, ``mu`` and ``s2`` are the mean and the variance (divided by
    n = H*W - 1) of *all* neurons of the channel, not the leave-one-out statistics of Eq. 7-8; the
    difference is O(1/(H*W)) (quantified in ``tests/test_models_attention.py``).

    ``H*W = 1`` would divide by n = 0: n is clamped to 1 there, which gives the finite limit
    ``x * sigmoid(0.5)`` (every neuron equally important).
    """
    # Eq. 10 as x * sigmoid((x - mu)^2 / (4 (s2 + lam)) + 0.5), mu and s2 per channel over the spatial
    # dims; evaluated by the fused kernel (same arithmetic, fewer temporaries, hand-written backward).
    return fused.simam(x, tuple(spatial_dims), lam)


class SimAM(nn.Module):
    """Parameter-free 3-D attention, :func:`simam` as a module.

    ``channels_last=True`` takes NHWC input (spatial dims 1, 2), the layout of the ConvNeXt MLP.
    """

    def __init__(self, lam: float = 1e-4, channels_last: bool = False) -> None:
        super().__init__()
        self.lam = lam
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return simam(x, (1, 2) if self.channels_last else (2, 3), self.lam)

    def extra_repr(self) -> str:
        return f"lam={self.lam}, channels_last={self.channels_last}"


class GAMChannelAttention(nn.Module):
    """GAM channel gate ``M_C`` (paper Fig. 4, Eq. 11): a two-layer MLP over channels, then sigmoid.

    The reference permutes NCHW to (B, H*W, C) to apply the MLP per position; here the input is
    already NHWC (the ConvNeXt block's MLP layout), so no permute is needed. Returns the gate, in (0, 1).
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Linear(channels, hidden)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x_nhwc: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(self.act(self.fc1(x_nhwc))))


class GAMSpatialAttention(nn.Module):
    """GAM spatial gate ``M_S`` (paper Fig. 5, Eq. 12): 7x7 conv to C/r, BN, ReLU, 7x7 conv back to C,
    BN, sigmoid. NCHW in, gate of the same shape out, in (0, 1)."""

    def __init__(self, channels: int, reduction: int = 4, kernel_size: int = 7) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        pad = kernel_size // 2
        self.conv1 = nn.Conv2d(channels, hidden, kernel_size, padding=pad)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(hidden, channels, kernel_size, padding=pad)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.bn2(self.conv2(self.act(self.bn1(self.conv1(x))))))


class GAM(nn.Module):
    """Global Attention Mechanism (paper Eq. 11-12; Liu, Shao & Hoffmann 2021, arXiv:2112.05561).

    ``F2 = M_C(F1) * F1`` (Eq. 11) and ``F3 = M_S(F2) * F2`` (Eq. 12), reduction r = 4, with the
    channel sigmoid the paper writes (the circulating "group" variant that drops it is not used).
    :meth:`forward` takes NCHW; the ESG block calls :meth:`apply_channel` on its NHWC tensor and
    :meth:`apply_spatial` after permuting back, which is the same computation without extra permutes.
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.channel = GAMChannelAttention(channels, reduction)
        self.spatial = GAMSpatialAttention(channels, reduction)

    def apply_channel(self, x_nhwc: torch.Tensor) -> torch.Tensor:
        """Eq. 11 on an NHWC tensor."""
        if not torch.is_grad_enabled():
            return fused.gam_channel_no_grad(self.channel, x_nhwc)
        return x_nhwc * self.channel(x_nhwc)

    def apply_spatial(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 12 on an NCHW tensor."""
        if not torch.is_grad_enabled():
            return fused.gam_spatial_no_grad(self.spatial, x)
        return x * self.spatial(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.apply_channel(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.apply_spatial(x)

