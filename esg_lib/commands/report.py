"""``esg report``: rebuild a profile's tables (and, with ``--readme``, a document's results block) from its
runs or committed records, without training.

A command of its own layer: it combines the engine's profiles with the report (:mod:`esg_lib.report`),
which the engine may not import.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from esg_lib.engine.config import BASE_PROFILE, PROFILES, get_profile
from esg_lib.errors import UserError

from . import FMT


def register(subparsers: argparse._SubParsersAction) -> None:
    """``esg report``'s arguments."""
    p = subparsers.add_parser("report", help="rebuild results/<profile>/ tables without training",
                              description="Rebuild every table in RESULTS/<profile>/ from the run "
                              "folders, or from the committed per-run metrics in "
                              "RESULTS/<profile>/runs/ when there are no run folders.",
                              epilog="example:\n  esg report --profile cpu", formatter_class=FMT)
    p.add_argument("--profile", default=None, help="one profile (default: every profile found)")
    p.add_argument("--out", default="runs", help="run folders (default: runs)")
    p.add_argument("--results", default="results")
    p.add_argument("--readme", nargs="?", const="docs/results.md", metavar="PATH",
                   help="also rewrite the results block of docs/results.md (or PATH) for --profile")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from esg_lib.report import build_report, update_readme

    profile = get_profile(args.profile) if args.profile else None
    profiles = [profile] if profile is not None else list(PROFILES.values())
    written: list[Path] = []
    for p in profiles:
        written += build_report(p, args.out, args.results)
        if p.name in BASE_PROFILE:     # an experiment profile: its arms beside the base profile's runs
            from esg_lib.report.gap import write_gap_report

            written += write_gap_report(p, args.results)
    if args.readme:
        if profile is None:
            raise UserError("--readme needs --profile")
        if profile.name in BASE_PROFILE:
            from esg_lib.report.gap import update_gap_block

            changed = update_gap_block(profile, args.readme, args.results)
        else:
            changed = update_readme(profile, args.readme, args.results)
        print(f"{args.readme}: generated block for {profile.name!r} {'updated' if changed else 'unchanged'}")
        return 0
    if not written:
        if profile is not None:
            raise UserError(f"no finished runs for profile {profile.name!r} under {args.out}/ or "
                            f"{args.results}/{profile.name}/runs/")
        print("no finished runs found")
        return 0
    for path in written:
        print(path)
    return 0
