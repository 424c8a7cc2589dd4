"""``esg train | evaluate | predict | runs``: train models, and use or list the runs they leave.

Registered by :mod:`esg_lib.cli`. Every user mistake (unknown model, profile or dataset, missing
checkpoint, unreadable image, a bad ``--set``) is raised as :class:`esg_lib.errors.UserError`: one line
on stderr, exit code 2. A command imports what it runs inside its function, so that ``esg --help``
loads neither torch nor pandas.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from esg_lib.engine.config import DRY_RUN, PROFILES, build_config, get_profile, parse_overrides
from esg_lib.errors import UserError

from . import FMT

EXAMPLES_TRAIN = """examples:
  esg train                                              # esg_convnext_atto, x-sdd, smoke, seed 0
  esg train --profile cpu --model all --seeds 0 1 2      # the X-SDD comparison (resumable)
  esg train --profile cpu --model swin-t resnet18 --dataset neu-cls-64
  esg train --profile paper --dry-run                    # 2 steps, batch 2, 224 px (CI check)
  esg train --model convnextv2_atto --set lr=3e-4 --set epochs=5
  torchrun --nproc-per-node 4 -m esg_lib train --profile paper --model all --seeds 0 1 2 3 4
"""


def _add_common_overrides(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("overrides (any config field: --set KEY=VALUE)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--img-size", type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--max-images", type=int)
    g.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    g.add_argument("--threads", type=int, help="CPU threads per process (default: the cores it may run on / processes)")
    g.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="override any TrainConfig field, e.g. --set warmup_epochs=2")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Each command's arguments are declared by its own ``_add_<command>``."""
    for add in (_add_train, _add_evaluate, _add_predict, _add_runs):
        add(subparsers)


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train models (resumable, reuses finished runs)",
                              description="Train one or more models for one or more seeds, score "
                              "each on the test split and aggregate mean ± std across seeds.",
                              epilog=EXAMPLES_TRAIN, formatter_class=FMT)
    p.add_argument("--model", nargs="+", default=["esg_convnext_atto"], metavar="NAME",
                   help="model-table key (esg-convnext, mobilenetv3, inceptionv3, convnextv2, "
                        "convnextv2-param, vit, densenet121, swin-t, resnet18, esg-abl1..5), any "
                        "timm name, 'all' (the comparison) or 'ablation' (default: esg_convnext_atto)")
    p.add_argument("--dataset", default="x-sdd", help="x-sdd, neu-cls-64 or a folder-per-class path")
    p.add_argument("--profile", default="smoke", help=f"one of {', '.join(PROFILES)} (default: smoke)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, metavar="S",
                   help="seeds (default: 0; --profile-seeds uses the profile's)")
    p.add_argument("--profile-seeds", action="store_true", help="use the profile's seeds")
    p.add_argument("--protocol", default="leak-free",
                   help="leak-free (default), augment-then-split or augment-then-group-split")
    p.add_argument("--out", default="runs", help="run folders go under OUT/<profile>/ (default: runs)")
    p.add_argument("--results", default="results",
                   help="tables go to RESULTS/<profile>/ (default: results)")
    p.add_argument("--pretrained-file", help="local weights to start from (nothing is downloaded)")
    p.add_argument("--force", action="store_true", help="retrain even if a finished run exists")
    p.add_argument("--dry-run", action="store_true",
                   help="2 optimiser steps, batch 2, full image size, no tables (CI check)")
    p.add_argument("--no-report", action="store_true", help="do not rebuild results/<profile>/")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    _add_common_overrides(p)
    p.set_defaults(func=cmd_train)


def _add_evaluate(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="score a checkpoint on a dataset's test split",
                              description="Evaluate a checkpoint (best.pt / last.pt) on the test "
                              "split prepared exactly as in its run (or on another dataset).",
                              epilog="example:\n  esg evaluate --checkpoint runs/smoke/x-sdd/"
                              "esg_convnext_atto/s0-0123456789/best.pt --out eval/",
                              formatter_class=FMT)
    p.add_argument("--checkpoint", required=True, help="path to best.pt or last.pt")
    p.add_argument("--dataset", help="dataset name or path (default: the run's)")
    p.add_argument("--split", default="test", choices=("test", "val", "train"))
    p.add_argument("--out", help="write predictions, confusion matrix, report and features here")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_evaluate)


def _add_predict(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="class and probability for image files",
                              description="Predict the class of each image with a checkpoint.",
                              epilog="example:\n  esg predict --checkpoint best.pt a.jpg b.png",
                              formatter_class=FMT)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("images", nargs="+", metavar="IMG")
    p.add_argument("--device", default="auto")
    p.add_argument("--top", type=int, default=1, help="show the top-k classes (default 1)")
    p.set_defaults(func=cmd_predict)


def _add_runs(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("runs", help="list run folders and their metrics",
                              description="List runs under OUT (status, seed, test metrics).",
                              formatter_class=FMT)
    p.add_argument("--out", default="runs")
    p.add_argument("--profile", help="only this profile")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)



# ----------------------------------------------------------------------------------- train
# config fields that `esg train` sets from options of their own: a --set of one of them would be
# overwritten by the option's default (dataset, protocol, out) or clash with it (model, seed, profile)
OWN_OPTIONS = {"model": "--model", "seed": "--seeds", "profile": "--profile", "dataset": "--dataset",
               "protocol": "--protocol", "out": "--out", "pretrained_file": "--pretrained-file"}


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    o = parse_overrides(args.set)
    own = [k for k in o if k in OWN_OPTIONS]
    if own:
        raise UserError("; ".join(f"--set {k}: use {OWN_OPTIONS[k]} instead" for k in own))
    for name in ("epochs", "batch_size", "img_size", "lr", "max_images", "device", "threads"):
        value = getattr(args, name, None)
        if value is not None:
            o[name] = value
    return o


def cmd_train(args: argparse.Namespace) -> int:
    from esg_lib.engine import runs as R
    from esg_lib.engine.models import model_keys, resolve_model
    from esg_lib.engine.train import TrainingDiverged, fit, prepare_bundle
    from esg_lib.report import build_report

    profile = get_profile(args.profile)
    seeds = list(profile.seeds) if args.profile_seeds else (args.seeds or [0])
    overrides = _overrides(args)
    if args.dry_run:
        overrides = {**DRY_RUN, **overrides}
    overrides.update(dataset=args.dataset, protocol=args.protocol, out=args.out,
                     pretrained_file=args.pretrained_file)
    if args.no_progress:
        overrides["progress"] = False
    keys = model_keys(args.model, profile)
    for key in keys:                     # fail fast on a bad model name, before any data work
        resolve_model(key, profile)
    base = build_config(profile, model=keys[0], seed=seeds[0], **overrides)
    if args.pretrained_file and not Path(args.pretrained_file).is_file():
        raise UserError(f"pretrained file not found: {args.pretrained_file}")

    results: list[dict[str, Any]] = []
    diverged: list[str] = []
    busy: list[str] = []
    bundles: dict[int, Any] = {}
    for seed in seeds:
        for key in keys:
            cfg = build_config(profile, model=key, seed=seed, **overrides)
            if seed not in bundles:      # the split depends on the seed, not on the model
                bundles = {seed: prepare_bundle(cfg)}
            try:
                res = fit(cfg, bundle=bundles[seed], force=args.force)
            except TrainingDiverged as exc:   # keep going with the other runs, fail at the end
                print(f"{key} seed {seed}: {exc}", file=sys.stderr)
                diverged.append(f"{key}/seed {seed}")
                continue
            except R.RunBusy as exc:
                print(f"{key} seed {seed}: {exc}", file=sys.stderr)
                busy.append(f"{key}/seed {seed}")
                continue
            results.append({"model": key, "seed": seed, **res.metrics.get("test", {})})
    del base
    _print_summary(results)
    if not args.dry_run and not args.no_report and _is_rank0():
        written = build_report(profile, args.out, args.results)
        if written:
            print(f"tables: {', '.join(str(p) for p in written)}")
    problems = []
    if diverged:
        problems.append(f"{len(diverged)} run(s) stopped on a non-finite loss: {', '.join(diverged)}")
    if busy:
        problems.append(f"{len(busy)} run(s) not trained here, another process holds them: {', '.join(busy)}")
    if problems:
        raise UserError("; ".join(problems))
    return 0


def _is_rank0() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _print_summary(rows: list[dict[str, Any]]) -> None:
    from esg_lib import metrics as M

    if not _is_rank0():
        return
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_model.setdefault(r["model"], []).append(r)
    print("\nmodel                 seeds  acc            precision      recall         f1")
    for model, rs in by_model.items():
        agg = M.aggregate(rs)
        cells = "  ".join(f"{M.format_mean_std(*agg[k]):13s}" for k in M.METRIC_KEYS)
        print(f"{model:21s} {len(rs):5d}  {cells}")


# ----------------------------------------------------------------------------------- evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    from esg_lib.engine.inference import evaluate_checkpoint

    metrics = evaluate_checkpoint(args.checkpoint, dataset=args.dataset, split=args.split,
                                  out=args.out, device=args.device)
    if args.json:
        print(json.dumps(metrics))
    else:
        print(f"{metrics['dataset']} {args.split} ({metrics['n']} images): acc {metrics['acc']:.4f} "
              f"precision {metrics['precision']:.4f} recall {metrics['recall']:.4f} "
              f"f1 {metrics['f1']:.4f} loss {metrics['loss']:.4f}")
    return 0


# ----------------------------------------------------------------------------------- predict
def cmd_predict(args: argparse.Namespace) -> int:
    from esg_lib.engine.inference import predict_images

    for path, top in predict_images(args.checkpoint, args.images, top=args.top, device=args.device):
        print(path + "\t" + "\t".join(f"{name}\t{p:.4f}" for name, p in top))
    return 0


# ----------------------------------------------------------------------------------- runs
def cmd_runs(args: argparse.Namespace) -> int:
    from esg_lib.engine import runs as R

    profile = get_profile(args.profile) if args.profile else None
    folders = R.find_runs(args.out, profile)
    rows = [R.run_record(f) for f in folders]
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return 0
    if not rows:
        print(f"no runs under {args.out}")
        return 0
    print(f"{'profile':7s} {'dataset':12s} {'model':22s} {'seed':>4s} {'status':15s} "
          f"{'epochs':>6s} {'acc':>6s} {'f1':>6s}  run")
    for r in rows:
        acc = f"{r['acc']:.4f}" if r["acc"] is not None else "—"
        f1 = f"{r['f1']:.4f}" if r["f1"] is not None else "—"
        print(f"{r['profile'] or '?':7s} {str(r['dataset'])[:12]:12s} {str(r['model'])[:22]:22s} "
              f"{r['seed'] if r['seed'] is not None else '?':>4} {r['status']:15s} "
              f"{r['epochs_done']:>3}/{r['epochs'] or '?':<2} {acc:>6s} {f1:>6s}  {r['path']}")
    return 0
