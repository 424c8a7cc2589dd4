"""``esg benchmark``: ESG-ConvNeXt beside ConvNeXtV2 and ResNet18 in one run, and a per-module profile.

Two modes:

* ``esg benchmark --models esg_convnext_atto convnextv2_atto resnet18 --img-size 64 --json out.json``
  measures inference and training-step throughput (img/s, median and spread of interleaved rounds),
  parameters, multiply-adds per image, achieved GFLOP/s and peak memory (one worker process per
  model), the ESG/ConvNeXtV2 throughput ratios beside the paper's 0.14 (6 vs 42 FPS), and checks
  the issue's targets (:mod:`esg_lib.bench.throughput`).
* ``esg benchmark --profile-step --models esg_convnext_atto`` breaks one training step down by operator
  family with ``torch.profiler`` (:mod:`esg_lib.bench.profile_step`).
* ``esg benchmark --op-times --models esg_convnext_atto`` times every ATen operator of a training step
  by wall clock and counts its work, so each family's achieved GFLOP/s and the most that fusing the
  non-dense operators could gain are printed (:mod:`esg_lib.bench.op_times`).
* ``esg benchmark --modules`` profiles ELA, SimAM, GAM, PReLU, GRN, both parallel branches, the ESG
  core and the plain ConvNeXtV2 block at each stage's real shape, forward and forward+backward,
  beside the literal reference implementations and the first-written code
  (:mod:`esg_lib.bench.modules`).

Numbers depend on the machine and on what else runs on it: the JSON records the threads, device,
versions and load average.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["register", "main_models", "main_modules", "main_profile_step", "main_op_times", "DEFAULT_MODELS"]

DEFAULT_MODELS = ("esg_convnext_atto", "convnextv2_atto", "resnet18")


def _log(msg: str) -> None:
    print(msg, flush=True)


def _check(args: argparse.Namespace) -> None:
    import torch

    from esg_lib.errors import UserError

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {args.device!r} requested but CUDA is not available")
    if args.device != "cpu" and not args.device.startswith("cuda"):
        raise UserError(f"unknown device {args.device!r} (cpu, cuda, cuda:N)")
    for name, value, low in (("--repeats", args.repeats, 1), ("--warmup", args.warmup, 0),
                             ("--threads", args.threads or 1, 1)):
        if value < low:
            raise UserError(f"{name} must be >= {low}, got {value}")
    for s in args.img_size:
        if s < 32:
            raise UserError(f"--img-size {s} is too small: the networks downsample by 32")
    if min(args.batch_size) < 2 and "train" in args.modes and not args.modules:
        raise UserError("--batch-size 1 needs --modes infer (BatchNorm needs two samples in training mode)")
    if min(args.batch_size) < 1:
        raise UserError("--batch-size must be >= 1")


def _warn_if_busy(env: dict[str, Any]) -> None:
    load, cores = (env.get("loadavg_start") or [0.0])[0], env.get("affinity") or env.get("cpu_count") or 1
    if env["device"] == "cpu" and load > 0.5 * cores:
        _log(f"  warning: load average {load:.1f} on {cores} core(s): other processes compete; with more than "
             f"one thread, OpenMP barriers then wait on descheduled threads and small-op networks (ESG) slow "
             f"down far more than large-op ones (measured: 10x with 2 threads, 2x with 1). Prefer a quiet "
             f"machine, or --threads 1 for ratios.")


def main_models(args: argparse.Namespace) -> dict[str, Any]:
    import timm

    from esg_lib.errors import UserError

    from . import throughput as T
    from .timing import environment

    unknown = [m for m in args.models if not timm.is_model(m)]
    if unknown:
        raise UserError(f"unknown model(s): {', '.join(unknown)} (see `timm.list_models('esg_convnext_*')`)")
    env = environment(args.device, args.threads)
    _log(f"esg benchmark: {len(args.models)} model(s) x {len(args.img_size)} size(s) x {len(args.batch_size)} "
         f"batch size(s), {args.repeats} interleaved round(s), {env['threads']} thread(s), {args.device}"
         f"{', channels_last' if args.channels_last else ''}{'' if args.compile == 'off' else ', torch.compile: ' + args.compile}, malloc: {args.malloc}")
    _warn_if_busy(env)
    t0 = time.perf_counter()
    records = T.run_benchmark(args.models, args.img_size, args.batch_size, repeats=args.repeats,
                              warmup=args.warmup, threads=env["threads"], device=args.device,
                              channels_last=args.channels_last,
                              compile={"off": False, "on": True}.get(args.compile, args.compile),
                              malloc=args.malloc, num_classes=args.num_classes, modes=args.modes, min_time=args.min_time, log=_log)
    env["elapsed_s"] = time.perf_counter() - t0
    env["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    rat = T.ratios(records)
    speedups = T.speedups(records)
    tgt = T.targets(records)
    print()
    print(T.format_table(records))
    if speedups:
        print()
        print(T.format_speedups(speedups))
    print("\nGMACs = multiply-accumulates per image, forward (timm's and the paper's 'GFLOPs'), counted by "
          "torch.utils.flop_counter; achieved GFLOP/s = 2 x MACs x img/s (training: forward + backward MACs, "
          "convolution backward counted per group, ~3 x forward).")
    if rat:
        print()
        print(T.format_ratios(rat))
    if tgt:
        print("\ntargets (issue 7):")
        print(T.format_targets(tgt))
    print(f"\nthreads {env['threads']}, {env['cpu']}, torch {env['torch']}, load average "
          f"{env.get('loadavg_start')} -> {env.get('loadavg_end')}, {env['elapsed_s']:.0f} s")
    return {"records": records, "ratios": rat, "speedups": speedups, "targets": tgt, "environment": env}


def main_modules(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from . import modules as M
    from .throughput import format_targets, targets
    from .timing import environment

    if args.threads:
        torch.set_num_threads(args.threads)
    env = environment(args.device, args.threads)
    size, img, batch = args.size, args.img_size[0], args.batch_size[0]
    _log(f"esg benchmark --modules: one ESG block per stage of {size} at {img} px, batch {batch}, "
         f"{args.repeats} round(s), {env['threads']} thread(s), {args.device}")
    t0 = time.perf_counter()
    cases = M.build_cases(size, img, batch, ref_batch=args.ref_batch)
    records = M.profile_modules(cases, repeats=args.repeats, warmup=max(args.warmup, 1), device=args.device,
                                log=_log)
    env["elapsed_s"] = time.perf_counter() - t0
    env["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    explanation = M.explain_ratio(records, size)
    mod_targets = M.module_targets(records)
    print()
    print(M.format_modules(records))
    print(f"\nmedian ms of {args.repeats} round(s); literal references marked 'scaled' were timed on "
          f"{args.ref_batch} samples and scaled to {batch} (their loops run per sample and channel).")
    for mode, e in explanation.items():
        label = "forward" if mode == "fwd" else "forward+backward"
        shares = ", ".join(f"{k} {v:.0%}" for k, v in e["shares"].items())
        print(f"\n{label}: {size}'s blocks (depth-weighted) take {e['esg_blocks_ms']:.0f} ms as ESG blocks vs "
              f"{e['convnextv2_blocks_ms']:.0f} ms as ConvNeXtV2 blocks: predicted throughput ratio "
              f"{e['predicted_ratio']:.3f} (paper 0.143). ESG block time: {shares}.")
        if "channels_last_speedup_esg" in e:
            print(f"  channels_last blocks: ESG {e['channels_last_speedup_esg']:.2f}x, ConvNeXtV2 "
                  f"{e['channels_last_speedup_convnextv2']:.2f}x faster than NCHW")
    tgt = targets([], mod_targets)
    print("\ntargets (issue 7):")
    print(format_targets(tgt))
    return {"modules": records, "explanation": explanation, "targets": tgt, "environment": env}


def _in_process_setup(args: argparse.Namespace) -> tuple[dict[str, Any], str, int, int]:
    """Threads and allocator as training runs them (``--malloc both`` means nothing for one process:
    it tunes), then the environment record and the first model, image size and batch size."""
    import torch

    from esg_lib.engine.runtime import tune_malloc

    from .timing import environment

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.malloc != "default":
        tune_malloc()
    return environment(args.device, args.threads), args.models[0], args.img_size[0], args.batch_size[0]


def main_profile_step(args: argparse.Namespace) -> dict[str, Any]:
    from .profile_step import format_profile, profile_training_step

    env, model, img, batch = _in_process_setup(args)
    _log(f"esg benchmark --profile-step: {model} at {img} px, batch {batch}, {args.repeats} profiled step(s) "
         f"after {max(args.warmup, 1)} warm-up, {env['threads']} thread(s){', compiled' if args.compile != 'off' else ''}, malloc: {args.malloc}")
    _warn_if_busy(env)
    result = profile_training_step(model, img, batch, steps=args.repeats, warmup=args.warmup,
                                   compile=args.compile != "off", num_classes=args.num_classes)
    env["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    print()
    print(format_profile(result))
    print("\nself CPU time per step from torch.profiler (the profiler itself adds per-op overhead); "
          "'depthwise' = groups == channels, read from the recorded shapes.")
    return {"profile": result, "environment": env}


def main_op_times(args: argparse.Namespace) -> dict[str, Any]:
    from .op_times import format_op_times, time_training_ops

    env, model, img, batch = _in_process_setup(args)
    _log(f"esg benchmark --op-times: {model} at {img} px, batch {batch}, {args.repeats} timed step(s) after "
         f"{max(args.warmup, 1)} warm-up, {env['threads']} thread(s), malloc: {args.malloc}")
    _warn_if_busy(env)
    result = time_training_ops(model, img, batch, steps=args.repeats, warmup=args.warmup,
                               num_classes=args.num_classes)
    env["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    print()
    print(format_op_times(result))
    return {"op_times": result, "environment": env}


def _run(args: argparse.Namespace) -> int:
    _check(args)
    if args.op_times:
        result = main_op_times(args)
    elif args.profile_step:
        result = main_profile_step(args)
    else:
        result = main_modules(args) if args.modules else main_models(args)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("benchmark", help="throughput, work and memory of models; per-module profile",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="NAME",
                   help="timm model names (default: %(default)s)")
    p.add_argument("--img-size", nargs="+", type=int, default=[64], metavar="PX")
    p.add_argument("--batch-size", nargs="+", type=int, default=[64], metavar="N")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None,
                   help="intra-op threads (default: torch's default, the number of cores)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timed rounds (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed steps of each kind before timing (default: %(default)s)")
    p.add_argument("--modes", nargs="+", choices=("infer", "train"), default=["infer", "train"],
                   help="what to time (default: both)")
    p.add_argument("--min-time", type=float, default=0.5,
                   help="each measurement repeats whole steps for at least this many seconds (default: %(default)s)")
    p.add_argument("--channels-last", action="store_true", help="model and input in channels_last memory format")
    p.add_argument("--compile", nargs="?", const="on", default="off", choices=("off", "on", "both"),
                   help="torch.compile the models (compile time reported apart); 'both': eager and compiled "
                        "workers in the same interleaved rounds, with the paired speed-up (default: off)")
    p.add_argument("--malloc", default="tuned", choices=("default", "tuned", "both"),
                   help="CPU allocator setting of each worker: 'tuned' as training runs (freed tensor memory kept "
                        "mapped, esg_lib.engine.runtime.tune_malloc), 'default' glibc as it comes, 'both': a worker "
                        "each, with the paired speed-up (default: %(default)s)")
    p.add_argument("--num-classes", type=int, default=9)
    p.add_argument("--json", metavar="PATH", help="write records, ratios, targets and environment as JSON")
    p.add_argument("--modules", action="store_true",
                   help="per-module profile of one ESG block per stage instead of whole models")
    p.add_argument("--profile-step", action="store_true",
                   help="torch.profiler operator breakdown of --repeats training steps of the first --models entry")
    p.add_argument("--op-times", action="store_true",
                   help="wall time and work per operator family of --repeats eager training steps of the first "
                        "--models entry, beside the machine's dense rate (CPU)")
    p.add_argument("--size", default="atto", help="ESG size for --modules (default: %(default)s)")
    p.add_argument("--ref-batch", type=int, default=8,
                   help="--modules: samples the literal SimAM reference is timed on, then scaled (default: %(default)s)")
    p.set_defaults(func=_run)
