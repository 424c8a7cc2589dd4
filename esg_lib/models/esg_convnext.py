"""ESG-ConvNeXt (Zhang et al., Sci Rep 2025): ConvNeXtV2 with ELA, SimAM and GAM in every block, a
parallel multi-scale residual module beside each block, and PReLU in downsampling.

Structure (paper Fig. 2, 3a, 6, 8b)::

    stem: 4x4/4 conv + LN                                     (paper: "Overall structure")
    stage s (s > 0): downsample = LN + 2x2/2 conv + PReLU     (Fig. 8b)
    every block:  x + DropPath( core(x) + residual(x) + inverted(x) )
        core      dw7x7 -> ELA -> LN -> Linear 4C -> act -> SimAM -> GRN -> Linear C -> GAM   (Fig. 3a)
        residual  3x3 -> BN -> PReLU -> 3x3 -> BN -> PReLU -> 1x1                              (Fig. 6, block1)
        inverted  1x1 4C -> BN -> act -> dw3x3 -> BN -> act -> 1x1 C -> BN -> SimAM           (Fig. 6, block2)
    head: global average pool + LN + Linear (timm's ConvNeXt head)

Every addition can be switched off: with all of them off the network *is* timm's ConvNeXtV2
(``tests/test_models.py`` loads ``convnextv2_atto`` weights and gets identical outputs). The
ablation rows of the paper's Table 2 are named ``esg_convnext_<size>_abl<row>`` (see
:data:`ABLATION_ROWS`). Where the paper is ambiguous the choice is stated next to the code and in
the README's "Deviations from the paper" table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, LayerNorm, LayerNorm2d, NormMlpClassifierHead, trunc_normal_
from timm.layers.grn import GlobalResponseNorm
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from .attention import ELA, GAM, SimAM

__all__ = [
    "ESGConvNeXt", "ESGBlock", "AttentionConvNeXtBlock", "ResidualBranch", "InvertedResidualBranch",
    "Downsample", "ChannelsLastPReLU", "SIZES", "ABLATION_ROWS", "ATTENTIONS", "checkpoint_filter_fn",
    "esg_convnext",
]

ATTENTIONS = ("ela", "simam", "gam")

# Widths are ConvNeXtV2's; depths follow the paper's 1:1:3:1 ratio. timm's convnextv2_nano is
# (2, 2, 8, 2): ours is (2, 2, 6, 2) on purpose (the ratio the paper states).
SIZES: dict[str, dict[str, tuple[int, ...]]] = {
    "atto": dict(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320)),
    "femto": dict(depths=(2, 2, 6, 2), dims=(48, 96, 192, 384)),
    "pico": dict(depths=(2, 2, 6, 2), dims=(64, 128, 256, 512)),
    "nano": dict(depths=(2, 2, 6, 2), dims=(80, 160, 320, 640)),
    "tiny": dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)),
}


@dataclass(frozen=True)
class AblationRow:
    """One row of the paper's Table 2 as model switches."""
    label: str
    residual_branch: bool
    inverted_branch: bool
    attention: tuple[str, ...]
    act: str  # "gelu" or "prelu" (also switches PReLU in downsampling on)


ABLATION_ROWS: dict[int, AblationRow] = {
    1: AblationRow("ConvNeXt", False, False, (), "gelu"),
    2: AblationRow("ConvNeXt + block1", True, False, (), "gelu"),
    3: AblationRow("ConvNeXt + block1 + block2", True, True, (), "gelu"),
    4: AblationRow("ConvNeXt + block1 + block2 + Attention", True, True, ATTENTIONS, "gelu"),
    5: AblationRow("ESG-ConvNeXt", True, True, ATTENTIONS, "prelu"),
}


class ChannelsLastPReLU(nn.Module):
    """Per-channel PReLU, ``max(a x, x)`` with one learnable ``a`` per channel (init 0.25), for NHWC
    tensors (``nn.PReLU`` puts channels on dim 1)."""

    def __init__(self, channels: int, init: float = 0.25) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.prelu wants channels on dim 1: a moved-axis *view* gives it that without a copy, and its
        # output keeps the input's strides, so moving the axis back is free too. One elementwise
        # pass instead of compare + multiply + select (about 15x faster forward, 2.5x with backward).
        return F.prelu(x.movedim(-1, 1), self.weight).movedim(1, -1)


def make_act(name: str, channels: int, channels_last: bool) -> nn.Module:
    """The block activation: GELU (ConvNeXt) or per-channel PReLU (the paper's replacement)."""
    if name == "gelu":
        return nn.GELU()
    if name == "prelu":
        return ChannelsLastPReLU(channels) if channels_last else nn.PReLU(channels)
    raise ValueError(f"unknown activation {name!r}; expected 'gelu' or 'prelu'")


class FusedGlobalResponseNorm(GlobalResponseNorm):
    """timm's ``GlobalResponseNorm`` (ConvNeXtV2's GRN, same parameters and state-dict keys) with
    its three full-size output passes fused into one.

    ``x + bias + weight * (x * n)`` is computed as ``bias + x * (1 + weight * n)``: the per-(sample,
    channel) factor is tiny, so the full tensor is read and written once (one ``addcmul``) instead
    of three times with three temporaries. Equal up to float rounding.

    The L2 norm over the spatial dims is ``sqrt(sum(x^2))``: ``Tensor.norm`` over the two outer dims
    of an NHWC tensor is a slow strided reduction (7 ms vs 0.15 ms at atto's 2x2x1280, 1 thread).
    Half-precision input is squared in float32 (no overflow), and the sum is clamped at the
    smallest normal float before the square root, so an all-zero channel has gradient 0 (as
    ``Tensor.norm``'s) rather than NaN.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x if x.dtype in (torch.float32, torch.float64) else x.float()
        sq = xf.square().sum(dim=self.spatial_dim, keepdim=True)
        x_g = sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt().to(x.dtype)
        x_n = x_g / (x_g.mean(dim=self.channel_dim, keepdim=True) + self.eps)
        scale = torch.addcmul(torch.ones_like(x_n), self.weight.view(self.wb_shape), x_n)
        return torch.addcmul(self.bias.view(self.wb_shape), x, scale)


class AttentionMlp(nn.Module):
    """ConvNeXtV2's pointwise MLP (fc1 -> act -> GRN -> fc2, NHWC) with SimAM after the second
    convolution of the block (fc1 and its activation; the depthwise conv is the first).

    Choice: SimAM sits after the activation and before GRN, so GRN's global normalisation sees the
    attended response. Parameter names match timm's ``GlobalResponseNormMlp``.
    """

    def __init__(self, dim: int, hidden: int, act: str, use_simam: bool) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = make_act(act, hidden, channels_last=True)
        self.simam = SimAM(channels_last=True) if use_simam else nn.Identity()
        self.grn = FusedGlobalResponseNorm(hidden, channels_last=True)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.grn(self.simam(self.act(self.fc1(x)))))


class AttentionConvNeXtBlock(nn.Module):
    """The ConvNeXtV2 block with the serial attentions of paper Fig. 3a, *without* its shortcut
    (the shortcut is added once, in :class:`ESGBlock`, after the parallel branches).

    ELA after the first convolution (the depthwise 7x7), SimAM after the second (inside the MLP),
    GAM after the last (fc2). GAM's channel gate runs on the NHWC tensor before the permute back,
    its spatial gate after it, so the block permutes exactly twice like ConvNeXtV2.
    """

    def __init__(self, dim: int, act: str = "gelu", attention: Sequence[str] = ATTENTIONS,
                 mlp_ratio: float = 4.0, ela_kernel: int = 5, gam_reduction: int = 4) -> None:
        super().__init__()
        unknown = set(attention) - set(ATTENTIONS)
        if unknown:
            raise ValueError(f"unknown attention {sorted(unknown)}; choose from {ATTENTIONS}")
        self.conv_dw = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.ela = ELA(dim, ela_kernel) if "ela" in attention else nn.Identity()
        self.norm = LayerNorm(dim, eps=1e-6)
        self.mlp = AttentionMlp(dim, int(mlp_ratio * dim), act, use_simam="simam" in attention)
        self.gam = GAM(dim, gam_reduction) if "gam" in attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nchw_input = not x.is_contiguous(memory_format=torch.channels_last) or x.is_contiguous()
        x = self.ela(self.conv_dw(x))
        x = self.mlp(self.norm(x.permute(0, 2, 3, 1)))
        if self.gam is not None:
            x = self.gam.apply_channel(x)
        x = x.permute(0, 3, 1, 2)
        if nchw_input:
            # Back to the caller's layout. Left channels-last-strided, every later convolution (GAM's,
            # then the branches and the next block's) would run channels-last and reorder its NCHW
            # weights on every call: far more bytes than this one activation copy from stage 2 on.
            x = x.contiguous()
        if self.gam is not None:
            x = self.gam.apply_spatial(x)
        return x


class ResidualBranch(nn.Module):
    """Paper Fig. 6, residual-block branch ("block1"): two 3x3 convolutions and a 1x1, PReLU instead of ReLU.

    The paper's 1x1 "increases the number of channels"; the branch output is *summed* with the
    block's, so it must keep C channels: the 1x1 becomes a C -> C projection at the end (it plays
    the role of the ConvNeXt MLP's fc2). BatchNorm after each 3x3, as in a ResNet basic block.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(dim)
        self.act1 = nn.PReLU(dim)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)
        self.act2 = nn.PReLU(dim)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        return self.proj(x)


class InvertedResidualBranch(nn.Module):
    """Paper Fig. 6, inverted-residual branch ("block2"): 1x1 expansion, 3x3 depthwise, 1x1 reduction
    back to C, then SimAM. Expansion 4 (ConvNeXt's MLP ratio; the paper gives none), BatchNorm after
    each convolution and the block activation after the first two, as in MobileNetV2."""

    def __init__(self, dim: int, act: str = "gelu", expansion: int = 4, use_simam: bool = True) -> None:
        super().__init__()
        hidden = dim * expansion
        self.expand = nn.Conv2d(dim, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.act1 = make_act(act, hidden, channels_last=False)
        self.conv_dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.act2 = make_act(act, hidden, channels_last=False)
        self.reduce = nn.Conv2d(hidden, dim, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(dim)
        self.simam = SimAM() if use_simam else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.expand(x)))
        x = self.act2(self.bn2(self.conv_dw(x)))
        return self.simam(self.bn3(self.reduce(x)))


class ESGBlock(nn.Module):
    """One ESG-ConvNeXt block: the attention ConvNeXt block and the two parallel branches, fused by
    summation (the paper says the branches are processed "in parallel" and fused, not how; a sum
    keeps the width and the residual form), plus one shortcut.

    Choice: the inverted branch's SimAM belongs to the attention set, so the ablation row "+ block2"
    (without attention) has no SimAM anywhere.
    """

    def __init__(self, dim: int, act: str = "gelu", attention: Sequence[str] = ATTENTIONS,
                 residual_branch: bool = True, inverted_branch: bool = True, drop_path: float = 0.0,
                 **block_kwargs: Any) -> None:
        super().__init__()
        self.core = AttentionConvNeXtBlock(dim, act=act, attention=attention, **block_kwargs)
        self.residual = ResidualBranch(dim) if residual_branch else None
        self.inverted = (InvertedResidualBranch(dim, act=act, use_simam="simam" in attention)
                         if inverted_branch else None)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The core's output is a fresh tensor that no backward needs (its last op is a product,
        # whose gradient uses the factors), so the branch sums accumulate into it in place.
        out = self.core(x)
        if self.residual is not None:
            out += self.residual(x)
        if self.inverted is not None:
            out += self.inverted(x)
        return x + self.drop_path(out)


class Downsample(nn.Sequential):
    """LN + 2x2 stride-2 conv (ConvNeXt, Fig. 8a), plus a per-channel PReLU when ``prelu`` (Fig. 8b)."""

    def __init__(self, in_dim: int, out_dim: int, prelu: bool) -> None:
        layers: list[nn.Module] = [LayerNorm2d(in_dim, eps=1e-6), nn.Conv2d(in_dim, out_dim, 2, stride=2)]
        if prelu:
            layers.append(nn.PReLU(out_dim))
        super().__init__(*layers)


class ESGStage(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, depth: int, downsample: bool, prelu_downsample: bool,
                 drop_path_rates: Sequence[float], **block_kwargs: Any) -> None:
        super().__init__()
        self.downsample = Downsample(in_dim, out_dim, prelu_downsample) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[ESGBlock(out_dim, drop_path=drop_path_rates[i], **block_kwargs)
                                      for i in range(depth)])
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and torch.is_grad_enabled():
            from timm.models import checkpoint_seq
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class ESGConvNeXt(nn.Module):
    """ESG-ConvNeXt with every paper addition switchable (defaults: the full model, Table 2 row 5).

    Args:
        in_chans: input channels (grayscale images are stacked to 3 by the data pipeline).
        num_classes: classifier outputs (0 for a feature extractor).
        depths, dims: per-stage block counts and widths (see :data:`SIZES`).
        act: block activation, ``"prelu"`` (the paper's) or ``"gelu"`` (ConvNeXtV2's).
        prelu_downsample: PReLU after each downsampling conv (Fig. 8b); defaults to ``act == "prelu"``.
        attention: which of ``("ela", "simam", "gam")`` each block uses.
        residual_branch, inverted_branch: the two parallel branches of Fig. 6.
        drop_path_rate: stochastic depth, linearly increasing over blocks as in ConvNeXt.
        drop_rate: dropout before the classifier.
    """

    def __init__(self, in_chans: int = 3, num_classes: int = 1000, depths: Sequence[int] = (2, 2, 6, 2),
                 dims: Sequence[int] = (40, 80, 160, 320), act: str = "prelu",
                 prelu_downsample: bool | None = None, attention: Sequence[str] = ATTENTIONS,
                 residual_branch: bool = True, inverted_branch: bool = True, drop_path_rate: float = 0.0,
                 drop_rate: float = 0.0, global_pool: str = "avg", ela_kernel: int = 5,
                 gam_reduction: int = 4) -> None:
        super().__init__()
        if len(depths) != len(dims):
            raise ValueError(f"depths {tuple(depths)} and dims {tuple(dims)} must have the same length")
        if act not in ("gelu", "prelu"):
            raise ValueError(f"unknown activation {act!r}; expected 'gelu' or 'prelu'")
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.attention = tuple(attention)
        prelu_downsample = act == "prelu" if prelu_downsample is None else prelu_downsample

        self.stem = nn.Sequential(nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4),
                                  LayerNorm2d(dims[0], eps=1e-6))
        rates = torch.linspace(0, drop_path_rate, sum(depths)).split(list(depths))
        stages, prev, self.feature_info = [], dims[0], []
        for i, (depth, dim) in enumerate(zip(depths, dims)):
            stages.append(ESGStage(prev, dim, depth, downsample=i > 0, prelu_downsample=prelu_downsample,
                                   drop_path_rates=rates[i].tolist(), act=act, attention=self.attention,
                                   residual_branch=residual_branch, inverted_branch=inverted_branch,
                                   ela_kernel=ela_kernel, gam_reduction=gam_reduction))
            self.feature_info.append(dict(num_chs=dim, reduction=4 * 2 ** i, module=f"stages.{i}"))
            prev = dim
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = dims[-1]
        self.norm_pre = nn.Identity()
        self.head = NormMlpClassifierHead(self.num_features, num_classes, pool_type=global_pool,
                                          drop_rate=drop_rate, norm_layer=LayerNorm2d)
        self.apply(_init_weights)

    # timm model interface --------------------------------------------------------------------
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(stem=r"^stem", blocks=r"^stages\.(\d+)" if coarse else [
            (r"^stages\.(\d+)\.downsample", (0,)), (r"^stages\.(\d+)\.blocks\.(\d+)", None)])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head.reset(num_classes, global_pool)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"expected input of shape (B, {self.in_chans}, H, W), got {tuple(x.shape)}; "
                             f"grayscale images must be stacked to {self.in_chans} channels")
        min_side = 4 * 2 ** (len(self.stages) - 1)
        if min(x.shape[-2:]) < min_side:
            raise ValueError(f"input {tuple(x.shape[-2:])} is too small: each side needs at least "
                             f"{min_side} px (total stride {min_side})")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.norm_pre(self.stages(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pooled, normalised features (``pre_logits=True``, used for t-SNE) or class logits."""
        return self.head(x, pre_logits=True) if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _init_weights(module: nn.Module) -> None:
    """ConvNeXt's initialisation: truncated normal (std 0.02) weights, zero biases."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Map a timm ConvNeXtV2 state dict (``stages.i.blocks.j.*``, 1x1-conv MLP for atto..nano) onto
    ours (``stages.i.blocks.j.core.*``, ``nn.Linear`` MLP). Our own checkpoints pass through."""
    state_dict = state_dict.get("model", state_dict.get("state_dict", state_dict))
    if any(".core." in k for k in state_dict):
        return state_dict
    target = model.state_dict()
    out = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if len(parts) > 4 and parts[0] == "stages" and parts[2] == "blocks":
            key = ".".join(parts[:4] + ["core"] + parts[4:])
        if key in target and value.ndim == 4 and target[key].ndim == 2:
            value = value.flatten(1)  # 1x1 conv weight -> linear weight
        out[key] = value
    return out


def _create(variant: str, pretrained: bool = False, **kwargs: Any) -> ESGConvNeXt:
    return build_model_with_cfg(ESGConvNeXt, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                                feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True), **kwargs)


def _cfg(**kwargs: Any) -> dict[str, Any]:
    # No public weights exist: `url` stays empty. Local weights load with
    # timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=PATH)).
    return dict(url="", num_classes=1000, input_size=(3, 224, 224), pool_size=(7, 7), crop_pct=1.0,
                interpolation="bicubic", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                first_conv="stem.0", classifier="head.fc", license="mit",
                paper_ids="doi:10.1038/s41598-025-88958-6", **kwargs)


default_cfgs = generate_default_cfgs(
    {f"esg_convnext_{size}": _cfg() for size in SIZES}
    | {f"esg_convnext_{size}_abl{row}": _cfg() for size in SIZES for row in ABLATION_ROWS}
)


def esg_convnext(size: str = "atto", ablation: int = 5, pretrained: bool = False, **kwargs: Any) -> ESGConvNeXt:
    """Build an ESG-ConvNeXt of a named size and Table 2 ablation row (5 = the full model)."""
    if size not in SIZES:
        raise ValueError(f"unknown ESG-ConvNeXt size {size!r}; choose from {', '.join(SIZES)}")
    if ablation not in ABLATION_ROWS:
        raise ValueError(f"unknown ablation row {ablation!r}; choose from {list(ABLATION_ROWS)}")
    row = ABLATION_ROWS[ablation]
    args = dict(SIZES[size], act=row.act, attention=row.attention, residual_branch=row.residual_branch,
                inverted_branch=row.inverted_branch)
    variant = f"esg_convnext_{size}" if ablation == 5 else f"esg_convnext_{size}_abl{ablation}"
    return _create(variant, pretrained=pretrained, **dict(args, **kwargs))


@register_model
def esg_convnext_atto(pretrained: bool = False, **kwargs: Any) -> ESGConvNeXt:
    return esg_convnext("atto", pretrained=pretrained, **kwargs)


@register_model
def esg_convnext_femto(pretrained: bool = False, **kwargs: Any) -> ESGConvNeXt:
    return esg_convnext("femto", pretrained=pretrained, **kwargs)


@register_model
def esg_convnext_pico(pretrained: bool = False, **kwargs: Any) -> ESGConvNeXt:
    return esg_convnext("pico", pretrained=pretrained, **kwargs)


@register_model
def esg_convnext_nano(pretrained: bool = False, **kwargs: Any) -> ESGConvNeXt:
    return esg_convnext("nano", pretrained=pretrained, **kwargs)


@register_model
def esg_convnext_tiny(pretrained: bool = False, **kwargs: Any) -> ESGConvNeXt:
    return esg_convnext("tiny", pretrained=pretrained, **kwargs)


def _register_ablation(size: str, row: int) -> Callable[..., ESGConvNeXt]:
    """The timm entry point ``esg_convnext_<size>_abl<row>``: :func:`esg_convnext` with the row as a
    keyword (row 5 is the same model as ``esg_convnext_<size>``)."""

    def entry(pretrained: bool = False, **kwargs: Any) -> ESGConvNeXt:
        return esg_convnext(size, ablation=row, pretrained=pretrained, **kwargs)

    entry.__name__ = entry.__qualname__ = f"esg_convnext_{size}_abl{row}"
    entry.__doc__ = f"ESG-ConvNeXt-{size}, Table 2 row {row}: {ABLATION_ROWS[row].label}."
    entry.__module__ = __name__
    return register_model(entry)


# Table 2 rows by name for every size (25 entry points), registered in timm from one factory:
# timm.create_model("esg_convnext_atto_abl3") is esg_convnext("atto", ablation=3).
ABLATION_ENTRY_POINTS: dict[str, Callable[..., ESGConvNeXt]] = {
    f"esg_convnext_{size}_abl{row}": _register_ablation(size, row) for size in SIZES for row in ABLATION_ROWS}


def __getattr__(name: str) -> Callable[..., ESGConvNeXt]:
    """``from esg_lib.models.esg_convnext import esg_convnext_atto_abl3`` (timm lists the entry points
    in ``__all__``)."""
    try:
        return ABLATION_ENTRY_POINTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
