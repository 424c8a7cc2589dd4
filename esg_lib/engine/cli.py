"""``esg train | evaluate | predict | runs | report`` (registered by :mod:`esg_lib.cli`).

Every user mistake (unknown model, profile or dataset, missing checkpoint, unreadable image, a bad
``--set``) is raised as :class:`esg_lib.errors.UserError`: one line on stderr, exit code 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from esg_lib.errors import UserError

from .config import BASE_PROFILE, DRY_RUN, PROFILES, TrainConfig, build_config, get_profile, parse_overrides

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
    g.add_argument("--threads", type=int, help="CPU threads per process (default: cores / processes)")
    g.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="override any TrainConfig field, e.g. --set warmup_epochs=2")


def register(subparsers: argparse._SubParsersAction) -> None:
    """The engine's commands: each one's arguments are declared by its own ``_add_<command>``."""
    for add in (_add_train, _add_evaluate, _add_predict, _add_runs, _add_report, _add_tune, _add_search, _add_fps, _add_queue, _add_verify):
        add(subparsers)


_FMT = argparse.RawDescriptionHelpFormatter


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train models (resumable, reuses finished runs)",
                              description="Train one or more models for one or more seeds, score "
                              "each on the test split and aggregate mean ± std across seeds.",
                              epilog=EXAMPLES_TRAIN, formatter_class=_FMT)
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
                              formatter_class=_FMT)
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
                              formatter_class=_FMT)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("images", nargs="+", metavar="IMG")
    p.add_argument("--device", default="auto")
    p.add_argument("--top", type=int, default=1, help="show the top-k classes (default 1)")
    p.set_defaults(func=cmd_predict)


def _add_runs(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("runs", help="list run folders and their metrics",
                              description="List runs under OUT (status, seed, test metrics).",
                              formatter_class=_FMT)
    p.add_argument("--out", default="runs")
    p.add_argument("--profile", help="only this profile")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)


def _add_report(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="rebuild results/<profile>/ tables without training",
                              description="Rebuild every table in RESULTS/<profile>/ from the run "
                              "folders, or from the committed per-run metrics in "
                              "RESULTS/<profile>/runs/ when there are no run folders.",
                              epilog="example:\n  esg report --profile cpu", formatter_class=_FMT)
    p.add_argument("--profile", default=None, help="one profile (default: every profile found)")
    p.add_argument("--out", default="runs", help="run folders (default: runs)")
    p.add_argument("--results", default="results")
    p.add_argument("--readme", nargs="?", const="docs/results.md", metavar="PATH",
                   help="also rewrite the results block of docs/results.md (or PATH) for --profile")
    p.set_defaults(func=cmd_report)


def _add_tune(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("tune", help="try the candidate recipes on the validation part",
                              description="Train every candidate recipe (esg_lib.engine.tuning) for "
                              "each comparison row on seed 0's split and table their "
                              "validation scores in RESULTS/<profile>/tuning.md (resumable).",
                              epilog="examples:\n  esg tune --profile cpu\n  esg tune --profile cpu "
                              "--model resnet18 --threads 1\n  esg tune --profile cpu --report   "
                              "# rebuild the table only", formatter_class=_FMT)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--model", nargs="+", default=None, metavar="KEY",
                   help="model-table keys (default: every tuned row, ESG-ConvNeXt and its references first)")
    p.add_argument("--out", default="runs", help="tuning runs go under OUT/tuning/<profile>/")
    p.add_argument("--results", default="results")
    p.add_argument("--report", action="store_true", help="only rebuild RESULTS/<profile>/tuning.md")
    p.add_argument("--force", action="store_true")
    p.add_argument("--threads", type=int)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_tune)


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
                              formatter_class=_FMT)
    p.add_argument("--profile", default="cpu2")
    p.add_argument("--model", nargs="+", default=None, metavar="KEY",
                   help="model-table keys (default: esg-convnext resnet18 densenet121 convnextv2)")
    p.add_argument("--trials", type=int, default=None, help="finished trials per model (default: 10)")
    p.add_argument("--limit", type=int, default=None, help="stop after this many trials")
    p.add_argument("--until", default=None, help="start no trial after this: '18:40' or '90m' from now")
    p.add_argument("--out", default="runs", help="trial runs go under OUT/search/<profile>/")
    p.add_argument("--results", default="results")
    p.add_argument("--report", action="store_true", help="only rebuild RESULTS/<profile>/search.md")
    p.add_argument("--threads", type=int)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_search)


def _add_fps(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("fps", help="inference speed of every model-table row, one quiet pass",
                              description="Measure images/s (batch 1, the profile's image size, CPU) of "
                              "every comparison and ablation row on freshly built models and write "
                              "RESULTS/<profile>/fps.json, which the tables' FPS column uses. Run it "
                              "on an otherwise idle machine.", formatter_class=_FMT)
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
                              formatter_class=_FMT)
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
                              formatter_class=_FMT)
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
    from esg_lib.report import build_report

    from . import runs as R
    from .models import model_keys, resolve_model
    from .train import TrainingDiverged, fit, prepare_bundle

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
    from .inference import evaluate_checkpoint

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
    from .inference import predict_images

    for path, top in predict_images(args.checkpoint, args.images, top=args.top, device=args.device):
        print(path + "\t" + "\t".join(f"{name}\t{p:.4f}" for name, p in top))
    return 0


# ----------------------------------------------------------------------------------- runs/report
def cmd_runs(args: argparse.Namespace) -> int:
    from . import runs as R

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
    from . import tuning as T

    profile = get_profile(args.profile)
    T.candidates(profile)
    if not args.report:
        T.run_tuning(profile, tuple(args.model or T.TUNED_MODELS), args.out, args.results,
                     force=args.force, **_runtime(args))
    path = T.write_tuning_table(profile, args.results)
    print(path.read_text())
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from . import search as S

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
    from . import fps as F

    path = F.write_fps(get_profile(args.profile), args.results, threads=args.threads, iters=args.iters,
                       repeats=args.repeats)
    print(path)
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    from esg_lib.report import build_report

    from . import plan as P

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
    from . import verify as V

    if args.sample < 1:
        raise UserError("--sample must be >= 1")
    verdicts = V.run_verify(get_profile(args.profile), args.sample, args.seed, args.order, args.results, args.out,
                            args.threads, args.match, args.reuse, args.keep)
    bad = [v for v in verdicts if v.failed]
    print(f"{len(verdicts) - len(bad)}/{len(verdicts)} verified"
          + (f"; {len(bad)} failed: {', '.join(v.record for v in bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(1)
