"""The fused fast paths behind :mod:`esg_lib.models.attention`: the same arithmetic as its equations,
with fewer full-size temporaries.

* SimAM (Eq. 10) in place on two temporaries, with a hand-written backward that keeps only the input
  and the gate (autograd of the plain formula keeps five temporaries).
* ELA's Eq. 5 and GAM's Eq. 11-12 products in place on a gate nobody needs afterwards, used only
  when no gradient is recorded (evaluation, FPS).

Each function computes exactly what the plain expression in ``attention.py`` computes, in the same
order of operations; ``tests/test_models_perf.py`` checks each against the plain formula (and
SimAM's backward against autograd and ``gradcheck``).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["simam", "ela_gate_no_grad", "gam_channel_no_grad", "gam_spatial_no_grad"]


def simam(x: torch.Tensor, dims: tuple[int, ...], lam: float) -> torch.Tensor:
    """SimAM's Eq. 10 over the spatial ``dims``: the hand-written backward when a gradient is needed."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _SimAMFunction.apply(x, dims, lam)
    return _simam_forward(x, dims, lam)[0]


def _simam_forward(x: torch.Tensor, dims: tuple[int, ...], lam: float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 10 in place on two temporaries: returns ``(out, gate, mu, k)`` with
    ``gate = sigmoid((x - mu)^2 * k + 0.5)`` and ``k = 1 / (4 (s2 + lam))``.

    Same two-pass statistics as the plain formula (mean first, then the sum of squared deviations),
    so no precision is lost to a one-pass mean of squares.
    """
    n = max(x.shape[dims[0]] * x.shape[dims[1]] - 1, 1)
    mu = x.mean(dim=dims, keepdim=True)
    gate = (x - mu).square_()  # d = (t - mu)^2
    k = gate.sum(dim=dims, keepdim=True).div_(n).add_(lam).mul_(4).reciprocal_()  # 1 / (4 (s2 + lam))
    gate.mul_(k).add_(0.5).sigmoid_()  # sigmoid(1 / e*)
    return x * gate, gate, mu, k


class _SimAMFunction(torch.autograd.Function):
    """SimAM with a hand-written backward: autograd of the plain formula keeps five full-size
    temporaries and runs about twenty elementwise passes; this keeps the input and the gate.

    With ``xm = x - mu``, ``u = xm^2 k + 1/2``, ``s = sigmoid(u)``, ``y = x s`` and ``g = dL/dy``:
    ``q = g x s (1 - s) k``, ``dL/ds2 = -4 k sum(q xm^2)`` (via ``dk/ds2 = -4 k^2``), and
    ``dL/dx = g s + 2 xm q + 2 xm dL/ds2 / n - (2 / N) sum(xm q)``, N = H*W, n = max(N - 1, 1)
    (the mean's gradient term of ``2 xm dL/ds2 / n`` vanishes because ``sum(xm) = 0``).
    Checked against autograd of the plain formula in ``tests/test_models_perf.py``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, dims: tuple[int, ...], lam: float) -> torch.Tensor:  # type: ignore[override]
        out, gate, mu, k = _simam_forward(x, dims, lam)
        ctx.dims = dims
        ctx.save_for_backward(x, gate, mu, k)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        x, gate, mu, k = ctx.saved_tensors
        dims = ctx.dims
        big_n = x.shape[dims[0]] * x.shape[dims[1]]
        n = max(big_n - 1, 1)
        gs = grad * gate  # dL/dx through the product's x factor
        q = torch.addcmul(gs, gs, gate, value=-1).mul_(x).mul_(k)  # g s (1 - s) x k
        xm = x - mu
        q.mul_(xm)  # w = q xm
        w_sum = q.sum(dim=dims, keepdim=True)
        dvar = (q * xm).sum(dim=dims, keepdim=True).mul_(-4).mul_(k)  # dL/ds2 = -4 k sum(q xm^2)
        gs.add_(q, alpha=2).addcmul_(xm, dvar, value=2 / n).sub_(w_sum, alpha=2 / big_n)
        return gs, None, None


def ela_gate_no_grad(x: torch.Tensor, y_h: torch.Tensor, y_w: torch.Tensor) -> torch.Tensor:
    """ELA's Eq. 5 ``x * y_h * y_w`` with one temporary fewer (nothing needs a gradient)."""
    return (x * y_h).mul_(y_w)


def gam_channel_no_grad(channel: nn.Module, x_nhwc: torch.Tensor) -> torch.Tensor:
    """GAM's Eq. 11 ``x * M_C(x)``: sigmoid and product in place on the channel MLP's output."""
    return channel.fc2(channel.act(channel.fc1(x_nhwc))).sigmoid_().mul_(x_nhwc)


def gam_spatial_no_grad(spatial: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """GAM's Eq. 12 ``x * M_S(x)``: sigmoid and product in place on the last BatchNorm's output."""
    sp = spatial
    return sp.bn2(sp.conv2(sp.act(sp.bn1(sp.conv1(x))))).sigmoid_().mul_(x)
