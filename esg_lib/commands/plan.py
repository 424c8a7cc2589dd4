"""``esg tune | search | fps | queue | verify``: the work a profile's experiment plan is made of (recipe
tuning and search, inference speed, the queue of pending runs) and a reviewer's retraining of committed runs.

Registered by :mod:`esg_lib.cli`; errors are :class:`esg_lib.errors.UserError`, as in every command.
"""
from __future__ import annotations

import argparse
from typing import Any

from esg_lib.engine.config import TrainConfig, get_profile, parse_overrides
from esg_lib.errors import UserError

from . import FMT


def register(subparsers: argparse._SubParsersAction) -> None:
    """Each command's arguments are declared by its own ``_add_<command>``."""
    for add in (_add_tune, _add_search, _add_fps, _add_queue, _add_verify):
        add(subparsers)


def _add_tune(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("tune", help="try the candidate recipes on the validation part",
                              description="Train every candidate recipe (esg_lib.engine.tuning) for "
                              "each comparison row on seed 0's split and table their "
                              "validation scores in RESULTS/<profile>/tuning.md (resumable).",
                              epilog="examples:\n  esg tune --profile cpu\n  esg tune --profile cpu "
                              "--model resnet18 --threads 1\n  esg tune --profile cpu --report   "
                              "# rebuild the table only", formatter_class=FMT)
    _add_study_arguments(p, "cpu", "tuning", "every tuned row, ESG-ConvNeXt and its references first")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_tune)


def _add_study_arguments(p: argparse.ArgumentParser, profile: str, kind: str, default_models: str) -> None:
    """The arguments `esg tune` and `esg search` share: both train trials of a study per model on
    seed 0's validation part, under OUT/<kind>/<profile>/, and table them in RESULTS/<profile>/<kind>.md."""
    p.add_argument("--profile", default=profile)
    p.add_argument("--model", nargs="+", default=None, metavar="KEY",
                   help=f"model-table keys (default: {default_models})")
    p.add_argument("--out", default="runs", help=f"trial runs go under OUT/{kind}/<profile>/")
    p.add_argument("--results", default="results")
    p.add_argument("--report", action="store_true", help=f"only rebuild RESULTS/<profile>/{kind}.md")
    p.add_argument("--threads", type=int)
    p.add_argument("--no-progress", action="store_true")


def _add_search(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("search", help="Optuna recipe search on the validation part (resumable)",
                              description="Search each model's training recipe with Optuna (TPE sampler, "
                              "successive-halving pruning on optimiser steps; esg_lib.engine.search): the "
                              "same space and trial budget for every model, round-robin, on seed 0's "
                              "validation part. Studies are journal files in RESULTS/<profile>/search/; a "
                              "stopped search resumes (an interrupted trial is retried from its last epoch). "
                              "The trial table goes to RESULTS/<profile>/search.md.",
                              epilog="examples:\n  esg search --profile cpu2 --threads 2 --until 18:40\n"
                              "  esg search --profile cpu2 --model resnet18 --trials 10\n"
                              "  esg search --profile cpu2 --report          # rebuild the table only\n"
                              "  setsid nohup esg search --profile cpu2 > search.log 2>&1 &",
                              formatter_class=FMT)
    _add_study_arguments(p, "cpu2", "search", "esg-convnext resnet18 densenet121 convnextv2")
    p.add_argument("--trials", type=int, default=None, help="finished trials per model (default: 10)")
    p.add_argument("--limit", type=int, default=None, help="stop after this many trials")
    p.add_argument("--until", default=None,
                   help="start no trial after this: '18:40' (tomorrow if already past) or '90m' from now")
    p.set_defaults(func=cmd_search)


def _add_fps(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("fps", help="inference speed of every model-table row, one quiet pass",
                              description="Measure images/s (batch 1, the profile's image size, CPU) of "
                              "every comparison and ablation row on freshly built models and write "
                              "RESULTS/<profile>/fps.json, which the tables' FPS column uses. Run it "
                              "on an otherwise idle machine.", formatter_class=FMT)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--results", default="results")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's, i.e. all cores)")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.set_defaults(func=cmd_fps)


def _add_queue(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("queue", help="train what the profile's experiment plan still lacks",
                              description="Train the pending runs of the profile's plan "
                              "(esg_lib.engine.plan) in order, resuming unfinished ones; rebuild the "
                              "tables after each run. Safe to stop and restart.",
                              epilog="examples:\n  esg queue --profile cpu --status\n"
                              "  esg queue --profile cpu                       # everything, in order\n"
                              "  esg queue --profile cpu --stage leak --limit 2\n"
                              "  esg queue --profile cpu --stage NEU --device cuda --set amp=false\n"
                              "  setsid nohup esg queue --profile cpu > queue.log 2>&1 &   # background",
                              formatter_class=FMT)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--stage", nargs="+", default=None, metavar="TEXT",
                   help="only stages whose name contains TEXT (e.g. 'references', 'leak', 'NEU')")
    p.add_argument("--model", nargs="+", default=None, metavar="KEY", help="only these model-table rows")
    p.add_argument("--status", action="store_true", help="print the progress table and exit")
    p.add_argument("--list", action="store_true", help="print the pending runs in order and exit")
    p.add_argument("--limit", type=int, default=None, help="stop after this many runs")
    p.add_argument("--out", default="runs")
    p.add_argument("--results", default="results")
    p.add_argument("--threads", type=int)
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="runtime config fields only (e.g. amp=false, num_workers=4): the plan fixes the rest")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_queue)


def _add_verify(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("verify", help="a reviewer's spot check: retrain committed runs and compare",
                              description="Retrain committed runs (results/<profile>/runs/*.json) from "
                              "their recorded configuration and compare: 'reproduced exactly' on the "
                              "same machine and thread count, else the difference in points and in "
                              "seed-stds. Exit code 1 when a same-hardware rerun differs or a record "
                              "cannot be rebuilt.",
                              epilog="examples:\n  esg verify --profile cpu --sample 1            "
                              "# the cheapest committed run\n"
                              "  esg verify --profile cpu --sample 3 --order random --seed 7\n"
                              "  esg verify --profile cpu --match x-sdd resnet18 --sample 1\n"
                              "  esg verify --profile cpu --match s0-f04c28eb8b --out runs --reuse   "
                              "# a rerun trained earlier\n"
                              "  esg verify --profile cpu --match s0-f04c28eb8b --out runs --reuse --keep   "
                              "# and commit its light files as a rerun",
                              formatter_class=FMT)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--sample", type=int, default=1, metavar="K", help="how many runs to retrain (default 1)")
    p.add_argument("--order", choices=("cheapest", "random"), default="cheapest")
    p.add_argument("--seed", type=int, default=0, help="seeds the choice (ties, --order random)")
    p.add_argument("--match", nargs="+", default=(), metavar="TEXT",
                   help="only records whose file name contains every TEXT (e.g. x-sdd resnet18)")
    p.add_argument("--threads", type=int, help="default: the record's own thread count")
    p.add_argument("--out", default="runs/verify", help="scratch folder for the reruns")
    p.add_argument("--reuse", action="store_true",
                   help="compare a finished rerun already under --out (e.g. made by `esg train --out`) "
                        "instead of training it again")
    p.add_argument("--keep", action="store_true",
                   help="keep each rerun's light files (curves, predictions, confusion, seed-0 features and "
                        "Grad-CAM maps, never a checkpoint) and "
                        "its verdict under RESULTS/<profile>/reruns/, for the figures that need a run's files")
    p.add_argument("--results", default="results")
    p.set_defaults(func=cmd_verify)


def _runtime(args: argparse.Namespace) -> dict[str, Any]:
    """``--threads``, ``--no-progress`` and, for ``esg queue``, ``--device`` and ``--set``: fields that
    leave a run's identity alone (a queue that changed the recipe would train runs outside its plan)."""
    o = parse_overrides(getattr(args, "set", None) or [])
    recipe = sorted(k for k in o if k not in TrainConfig.RUNTIME_FIELDS)
    if recipe:
        raise UserError(f"--set {', '.join(recipe)}: the plan fixes these fields; only runtime fields can be "
                        f"set here ({', '.join(sorted(TrainConfig.RUNTIME_FIELDS))})")
    if getattr(args, "device", None):
        o["device"] = args.device
    if args.threads:
        o["threads"] = args.threads
    if args.no_progress:
        o["progress"] = False
    return o


def cmd_tune(args: argparse.Namespace) -> int:
    from esg_lib.engine import tuning as T

    profile = get_profile(args.profile)
    T.candidates(profile)
    if not args.report:
        T.run_tuning(profile, tuple(args.model or T.TUNED_MODELS), args.out, args.results,
                     force=args.force, **_runtime(args))
    path = T.write_tuning_table(profile, args.results)
    print(path.read_text())
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from esg_lib.engine import search as S

    profile = get_profile(args.profile)
    models = tuple(args.model or S.SEARCH_MODELS)
    unknown = [m for m in models if m not in profile.models]
    if unknown:
        raise UserError(f"not a row of the {profile.name} model table: {', '.join(unknown)}")
    if args.trials is not None and args.trials < 1:
        raise UserError("--trials must be >= 1")
    if not args.report:
        until = S.parse_until(args.until)
        S.run_search(profile, models, args.trials or S.DEFAULT_TRIALS, args.out, args.results, until,
                     args.limit, **_runtime(args))
    path = S.write_search_table(profile, args.results, models)
    print(path.read_text())
    return 0


def cmd_fps(args: argparse.Namespace) -> int:
    from esg_lib.engine import fps as F

    path = F.write_fps(get_profile(args.profile), args.results, threads=args.threads, iters=args.iters,
                       repeats=args.repeats)
    print(path)
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    from esg_lib.engine import plan as P
    from esg_lib.report import build_report

    runtime = _runtime(args)   # a bad --set fails before anything is listed or trained
    profile = get_profile(args.profile)
    if args.status:
        print(P.status_markdown(profile, args.results, args.out))
        return 0
    if args.list:
        for stage, model, seed in P.pending(profile, args.stage, args.results, args.out, args.model):
            print(f"{stage.name}\t{model}\tseed {seed}")
        return 0
    done = P.run_queue(profile, args.stage, args.out, args.results, args.limit, args.model, **runtime)
    if done:   # the queue exported each finished run's record; the tables are the report layer's
        build_report(profile, args.out, args.results)
    print(f"{len(done)} run(s) finished")
    print(P.status_markdown(profile, args.results, args.out))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from esg_lib.engine import verify as V

    if args.sample < 1:
        raise UserError("--sample must be >= 1")
    verdicts = V.run_verify(get_profile(args.profile), args.sample, args.seed, args.order, args.results, args.out,
                            args.threads, args.match, args.reuse, args.keep)
    bad = [v for v in verdicts if v.failed]
    print(f"{len(verdicts) - len(bad)}/{len(verdicts)} verified"
          + (f"; {len(bad)} failed: {', '.join(v.record for v in bad)}" if bad else ""))
    return 1 if bad else 0
