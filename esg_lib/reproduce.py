"""``esg reproduce``: regenerate the paper's tables and figures on a profile.

Interim version: it writes what the project can already produce (the model zoo table); the
notebook pipeline (``notebooks/00_reproduce_all.ipynb``) replaces it as the areas land.
"""
from __future__ import annotations

import argparse
from pathlib import Path

PROFILES = ("smoke", "cpu", "paper")


def reproduce(profile: str = "smoke", out_root: Path = Path(".")) -> list[Path]:
    from esg_lib.models.zoo import format_markdown, zoo_rows

    results = out_root / "results" / profile
    results.mkdir(parents=True, exist_ok=True)
    sizes = (64, 224)
    table = results / "model_zoo.md"
    table.write_text(format_markdown(zoo_rows(img_sizes=sizes), sizes) + "\n")
    print(f"wrote {table}")
    return [table]


def _run(args: argparse.Namespace) -> int:
    reproduce(args.profile)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("reproduce", help="regenerate the paper's tables and figures on a profile")
    p.add_argument("--profile", choices=PROFILES, default="smoke")
    p.set_defaults(func=_run)
