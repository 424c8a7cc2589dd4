"""Literal, slow implementations of the paper's attention equations.

They exist to check the real modules (tests) and to measure what the optimized modules save
(benchmark). Each follows the equations as written, loops included; none is used for training.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .attention import ELA, GAM

__all__ = ["ela_literal", "simam_literal", "simam_energy_minimised", "gam_literal"]


def ela_literal(module: ELA, x: torch.Tensor) -> torch.Tensor:
    """ELA Eq. 1-5 with explicit loops over rows and columns (NCHW), using ``module``'s weights."""
    b, c, h, w = x.shape
    z_h = torch.stack([x[:, :, row, :].sum(dim=-1) / w for row in range(h)], dim=-1)  # Eq. 1
    z_w = torch.stack([x[:, :, :, col].sum(dim=-1) / h for col in range(w)], dim=-1)  # Eq. 2
    conv = module.conv
    y_h = torch.sigmoid(F.group_norm(F.conv1d(z_h, conv.weight, None, padding=conv.padding, groups=conv.groups),
                                     module.norm.num_groups, module.norm.weight, module.norm.bias,
                                     module.norm.eps))  # Eq. 3
    y_w = torch.sigmoid(F.group_norm(F.conv1d(z_w, conv.weight, None, padding=conv.padding, groups=conv.groups),
                                     module.norm.num_groups, module.norm.weight, module.norm.bias,
                                     module.norm.eps))  # Eq. 4
    out = torch.empty_like(x)
    for row in range(h):
        for col in range(w):
            out[:, :, row, col] = x[:, :, row, col] * y_h[:, :, row] * y_w[:, :, col]  # Eq. 5
    return out


def simam_literal(x: torch.Tensor, lam: float = 1e-4) -> torch.Tensor:
    """SimAM's reference closed form written step by step on NCHW input (one channel at a time)."""
    b, c, h, w = x.shape
    n = max(h * w - 1, 1)
    out = torch.empty_like(x)
    for i in range(b):
        for k in range(c):
            channel = x[i, k]
            mu = channel.mean()
            d = (channel - mu) ** 2
            variance = d.sum() / n
            inverse_energy = d / (4 * (variance + lam)) + 0.5
            out[i, k] = channel * torch.sigmoid(inverse_energy)
    return out


def simam_energy_minimised(x: torch.Tensor, lam: float = 1e-4) -> torch.Tensor:
    """1 / e*_t for every neuron by *directly minimising* the energy of Eq. 6 over (w_t, b_t).

    For each target ``t`` the energy is quadratic in (w, b): ``(1/(M-1)) sum_i (-1 - (w x_i + b))^2 +
    (1 - (w t + b))^2 + lam w^2``, with ``x_i`` the other M - 1 neurons of the channel. Its minimum
    solves a 2x2 linear system (the normal equations), solved here numerically per neuron; the
    minimal energy is then evaluated from the equation itself. Input (C, H, W), float64 advised.
    """
    c, h, w = x.shape
    m = h * w
    flat = x.reshape(c, m)
    inverse = torch.empty_like(flat)
    for k in range(c):
        for j in range(m):
            t = flat[k, j]
            others = torch.cat([flat[k, :j], flat[k, j + 1:]])
            weight = 1.0 / (m - 1)
            # energy = weight*sum((w x_i + b + 1)^2) + (w t + b - 1)^2 + lam w^2 ; gradient = 0:
            a11 = 2 * weight * (others ** 2).sum() + 2 * t * t + 2 * lam
            a12 = 2 * weight * others.sum() + 2 * t
            a22 = 2 * weight * (m - 1) + 2
            r1 = -2 * weight * others.sum() + 2 * t
            r2 = -2 * weight * (m - 1) + 2
            system = x.new_tensor([[float(a11), float(a12)], [float(a12), a22]])
            wt, bt = torch.linalg.solve(system, x.new_tensor([float(r1), r2]))
            energy = (weight * ((-1 - (wt * others + bt)) ** 2).sum() + (1 - (wt * t + bt)) ** 2
                      + lam * wt ** 2)
            inverse[k, j] = 1.0 / energy
    return inverse.reshape(c, h, w)


def gam_literal(module: GAM, x: torch.Tensor) -> torch.Tensor:
    """GAM Eq. 11-12 as in the reference: permute to (B, H*W, C), MLP, permute back; then the
    spatial 7x7 convolutions, using ``module``'s weights (NCHW in and out)."""
    b, c, h, w = x.shape
    ch = module.channel
    tokens = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
    gate = ch.fc2(F.relu(ch.fc1(tokens))).reshape(b, h, w, c).permute(0, 3, 1, 2)
    f2 = x * torch.sigmoid(gate)  # Eq. 11
    sp = module.spatial
    s = F.relu(sp.bn1(sp.conv1(f2)))
    s = sp.bn2(sp.conv2(s))
    return f2 * torch.sigmoid(s)  # Eq. 12
