"""Model zoo table: parameters and GMACs per model and input size (``esg zoo``).

GMACs are multiply-accumulates (one MAC = one multiply + one add), the unit timm and the paper
report as "GFLOPs". They are counted by ``torch.utils.flop_counter.FlopCounterMode`` (which counts
2 FLOPs per MAC for convolutions and matrix products, halved here) during one real forward pass at
batch 1; elementwise work (activations, attention gates, norms) is not counted, as in timm's tables.

Training work (forward + backward, :func:`count_training_gmacs`) needs one correction: torch's formula
for ``convolution_backward`` (torch 2.14.1) ignores ``groups`` in the weight gradient, so a depthwise
convolution's backward on C channels is counted as (1 + C) x its forward instead of 2 x. Every counter
here is built by :func:`flop_counter`, which registers :func:`grouped_conv_backward_flop` (the weight
gradient divided by ``groups``) in place of torch's. Forward counts are unaffected (the forward
formula reads ``in_channels / groups`` from the weight's shape), so ``esg zoo`` prints the same numbers.
tests/test_models_perf.py pins both torch's overcount and the corrected count of one depthwise
convolution, so an upstream fix (or a regression of ours) fails a test.

:func:`stage_table` measures a network's stem and stages the same way, from the module itself
(forward hooks): the stage figure of notebook 02 (:func:`esg_lib.figures.plot_stages`) draws it.
"""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Iterable, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from esg_lib.markdown import markdown_rows

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["count_parameters", "count_gmacs", "count_training_gmacs", "flop_counter",
           "grouped_conv_backward_flop", "complexity", "zoo_rows", "format_markdown", "stage_table", "register",
           "DEFAULT_ZOO_MODELS"]

DEFAULT_ZOO_MODELS = tuple(f"esg_convnext_{s}" for s in ("atto", "femto", "pico", "nano", "tiny")) + tuple(
    f"convnextv2_{s}" for s in ("atto", "femto", "pico", "nano", "tiny"))


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def grouped_conv_backward_flop(grad_out_shape: Sequence[int], x_shape: Sequence[int], w_shape: Sequence[int],
                               _bias: object, _stride: object, _padding: object, _dilation: object,
                               transposed: bool, _output_padding: object, groups: int,
                               output_mask: Sequence[bool], out_shape: Sequence[Sequence[int]] | None = None,
                               **kwargs: object) -> int:
    """FLOPs of ``aten.convolution_backward`` with ``groups`` honoured (2 per MAC, as torch counts).

    The input gradient is a (transposed) convolution with the same grouped weight as the forward, and
    torch counts it right. The weight gradient correlates input and output-gradient channels only
    within a group: torch's formula multiplies all C_in x C_out pairs, ``groups`` x too many."""
    def swap(shape: Sequence[int]) -> list[int]:
        return [shape[1], shape[0], *shape[2:]]

    assert out_shape is not None
    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:
        src, kernel = (grad_out_shape, x_shape) if transposed else (x_shape, grad_out_shape)
        flops += conv_flop_count(swap(src), swap(kernel), swap(out_shape[1]), transposed=False) // groups
    return flops


def flop_counter() -> FlopCounterMode:
    """A ``FlopCounterMode`` (no display) whose convolution backward honours ``groups``."""
    return FlopCounterMode(display=False,
                           custom_mapping={torch.ops.aten.convolution_backward: grouped_conv_backward_flop})


@torch.no_grad()
def count_gmacs(model: torch.nn.Module, img_size: int, in_chans: int = 3) -> float:
    """Multiply-accumulates (in billions) of one forward pass of one ``img_size`` image."""
    model.eval()
    counter = flop_counter()
    with counter:
        model(torch.zeros(1, in_chans, img_size, img_size))
    return counter.get_total_flops() / 2 / 1e9


def count_training_gmacs(model: torch.nn.Module, img_size: int, in_chans: int = 3, batch_size: int = 2) -> float:
    """Multiply-accumulates (in billions) per image of a training step's forward + backward (no
    optimizer): cross-entropy on a batch of ``batch_size`` (BatchNorm needs two samples in training
    mode), divided by the batch. About 3 x the forward for most networks (the stem's input gradient is
    not computed). Gradients are left in the model's ``.grad``: pass a throw-away copy."""
    model.train()
    counter = flop_counter()
    x = torch.zeros(batch_size, in_chans, img_size, img_size)
    with counter:
        out = model(x)
        torch.nn.functional.cross_entropy(out, torch.zeros(batch_size, dtype=torch.long)).backward()
    return counter.get_total_flops() / 2 / 1e9 / batch_size


def complexity(name: str, img_sizes: Sequence[int] = (64, 224), num_classes: int = 9) -> dict[str, float | str]:
    """``{"model", "params_m", "gmacs_<size>"...}`` for a timm model name (ours included)."""
    import timm

    model = timm.create_model(name, num_classes=num_classes)
    row: dict[str, float | str] = {"model": name, "params_m": count_parameters(model) / 1e6}
    for size in img_sizes:
        row[f"gmacs_{size}"] = count_gmacs(model, size)
    return row


def zoo_rows(models: Iterable[str] = DEFAULT_ZOO_MODELS, img_sizes: Sequence[int] = (64, 224),
             num_classes: int = 9) -> list[dict[str, float | str]]:
    return [complexity(m, img_sizes, num_classes) for m in models]


def format_markdown(rows: list[dict[str, float | str]], img_sizes: Sequence[int]) -> str:
    header = ["model", "params (M)", *(f"GMACs @ {s} px" for s in img_sizes)]
    cells = [[f"`{r['model']}`", f"{r['params_m']:.2f}", *(f"{r[f'gmacs_{s}']:.3f}" for s in img_sizes)]
             for r in rows]
    return markdown_rows(header, cells, align="l" + "r" * (1 + len(img_sizes)))


def stage_table(model: torch.nn.Module, sizes: Sequence[int] = (64, 224)) -> pd.DataFrame:
    """The network's stem and stages measured by forward hooks on ``model.stem`` and each of
    ``model.stages`` (ESG-ConvNeXt, ConvNeXtV2): blocks per stage, output channels and the output
    feature-map size for each input size in ``sizes`` -- nothing typed by hand."""
    import pandas as pd   # here, not on top: `esg zoo` itself needs no pandas

    parts = [("stem", model.stem)] + [(f"stage {i + 1}", s) for i, s in enumerate(model.stages)]
    shapes: dict[int, dict[str, tuple[int, ...]]] = {}
    for size in sizes:
        seen: dict[str, tuple[int, ...]] = {}
        hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: seen.__setitem__(name, tuple(out.shape)))
                 for name, m in parts]
        try:
            was = model.training
            model.eval()
            with torch.no_grad():
                model(torch.zeros(1, getattr(model, "in_chans", 3), size, size))
            model.train(was)
        finally:
            for h in hooks:
                h.remove()
        shapes[size] = seen
    rows = []
    for name, module in parts:
        blocks = getattr(module, "blocks", None)
        first = shapes[sizes[0]][name]
        row = {"part": name, "blocks": len(blocks) if blocks is not None else 0, "channels": first[1],
               "params (M)": round(sum(p.numel() for p in module.parameters()) / 1e6, 3)}
        for size in sizes:
            shape = shapes[size][name]
            row[f"map @ {size} px"] = f"{shape[2]}×{shape[3]}"
        rows.append(row)
    return pd.DataFrame(rows)


def _run(args: argparse.Namespace) -> int:
    import timm

    from esg_lib.errors import UserError

    unknown = [m for m in args.models if not timm.is_model(m)]
    if unknown:
        raise UserError(f"unknown model(s): {', '.join(unknown)} (see `timm.list_models('esg_convnext_*')`)")
    rows = zoo_rows(args.models, args.img_size, args.num_classes)
    print(format_markdown(rows, args.img_size))
    print(f"\nparams for {args.num_classes} classes; GMACs = multiply-accumulates (timm's and the paper's "
          f"'GFLOPs'), batch 1, counted by torch.utils.flop_counter")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("zoo", help="parameters and GMACs of the models (README model zoo table)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(DEFAULT_ZOO_MODELS), metavar="NAME")
    p.add_argument("--img-size", nargs="+", type=int, default=[64, 224], metavar="PX")
    p.add_argument("--num-classes", type=int, default=9, help="classifier size (NEU-CLS-64 has 9)")
    p.set_defaults(func=_run)
