"""The network's attention code as first written (commit ec47348), kept only so the module profile
can show what each later optimisation of :mod:`esg_lib.models.attention` and
:mod:`esg_lib.models.esg_convnext` saved ("before" beside "after"). Same equations, same weights;
never used for training."""
from __future__ import annotations

import torch
import torch.nn as nn

from esg_lib.models.attention import ELA

__all__ = ["ela_original", "simam_original", "prelu_channels_last_original", "grn_original"]


def ela_original(module: ELA, x: torch.Tensor) -> torch.Tensor:
    """ELA as first written: two strip gates (two conv + two GroupNorm calls), two full products."""
    z_h = x.mean(dim=3)
    z_w = x.mean(dim=2)
    y_h = torch.sigmoid(module.norm(module.conv(z_h)))
    y_w = torch.sigmoid(module.norm(module.conv(z_w)))
    return x * y_h.unsqueeze(3) * y_w.unsqueeze(2)


def simam_original(x: torch.Tensor, spatial_dims: tuple[int, int] = (2, 3), lam: float = 1e-4) -> torch.Tensor:
    """SimAM as first written: eight elementwise passes and five full-size temporaries."""
    n = max(x.shape[spatial_dims[0]] * x.shape[spatial_dims[1]] - 1, 1)
    d = (x - x.mean(dim=spatial_dims, keepdim=True)).square()
    variance = d.sum(dim=spatial_dims, keepdim=True) / n
    inverse_energy = d / (4 * (variance + lam)) + 0.5
    return x * torch.sigmoid(inverse_energy)


def prelu_channels_last_original(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-channel PReLU on NHWC as first written: compare, multiply, select (three passes)."""
    return torch.where(x >= 0, x, x * weight)


def grn_original(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm's ``GlobalResponseNorm.forward`` (timm 1.0), channels-last: norm, scale, addcmul, add."""
    x_g = x.norm(p=2, dim=(1, 2), keepdim=True)
    x_n = x_g / (x_g.mean(dim=-1, keepdim=True) + module.eps)
    return x + torch.addcmul(module.bias.view(1, 1, 1, -1), module.weight.view(1, 1, 1, -1), x * x_n)
