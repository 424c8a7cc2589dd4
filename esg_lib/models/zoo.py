"""Model zoo table: parameters and GMACs per model and input size (``esg zoo``).

GMACs are multiply-accumulates (one MAC = one multiply + one add), the unit timm and the paper
report as "GFLOPs". They are counted by ``torch.utils.flop_counter.FlopCounterMode`` (which counts
2 FLOPs per MAC for convolutions and matrix products, halved here) during one real forward pass at
batch 1; elementwise work (activations, attention gates, norms) is not counted, as in timm's tables.
"""
from __future__ import annotations

import argparse
from typing import Iterable, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_parameters", "count_gmacs", "complexity", "zoo_rows", "format_markdown", "register",
           "DEFAULT_ZOO_MODELS"]

DEFAULT_ZOO_MODELS = tuple(f"esg_convnext_{s}" for s in ("atto", "femto", "pico", "nano", "tiny")) + tuple(
    f"convnextv2_{s}" for s in ("atto", "femto", "pico", "nano", "tiny"))


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_gmacs(model: torch.nn.Module, img_size: int, in_chans: int = 3) -> float:
    """Multiply-accumulates (in billions) of one forward pass of one ``img_size`` image."""
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(1, in_chans, img_size, img_size))
    return counter.get_total_flops() / 2 / 1e9


def complexity(name: str, img_sizes: Sequence[int] = (64, 224), num_classes: int = 9) -> dict[str, float | str]:
    """``{"model", "params_m", "gmacs_<size>"...}`` for a timm model name (ours included)."""
    import timm

    import esg_lib  # noqa: F401  (registers the ESG models)

    model = timm.create_model(name, num_classes=num_classes)
    row: dict[str, float | str] = {"model": name, "params_m": count_parameters(model) / 1e6}
    for size in img_sizes:
        row[f"gmacs_{size}"] = count_gmacs(model, size)
    return row


def zoo_rows(models: Iterable[str] = DEFAULT_ZOO_MODELS, img_sizes: Sequence[int] = (64, 224),
             num_classes: int = 9) -> list[dict[str, float | str]]:
    return [complexity(m, img_sizes, num_classes) for m in models]


def format_markdown(rows: list[dict[str, float | str]], img_sizes: Sequence[int]) -> str:
    head = "| model | params (M) | " + " | ".join(f"GMACs @ {s} px" for s in img_sizes) + " |"
    sep = "|---|---:|" + "---:|" * len(img_sizes)
    lines = [head, sep]
    for r in rows:
        macs = " | ".join(f"{r[f'gmacs_{s}']:.3f}" for s in img_sizes)
        lines.append(f"| `{r['model']}` | {r['params_m']:.2f} | {macs} |")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    import timm

    import esg_lib  # noqa: F401
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
