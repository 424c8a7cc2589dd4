"""``esg export --onnx``: a model (a training checkpoint, or a profile's model table row with random
weights) as an ONNX graph, checked against PyTorch with ONNX Runtime; and batch-1 inference FPS in
eager, ``torch.compile`` and ONNX Runtime modes (``--fps``).

Decisions:

* The exporter is ``torch.onnx.export(..., dynamo=True)`` (torch's current exporter; it needs
  ``onnxscript``), opset 18, for batch 1 and one image size (ELA takes a different, exact path for
  square maps, so the graph is specific to one size, as a deployed model is). A dynamic batch
  dimension was asked for at first, but the exported graph came out with the example's batch fixed
  (the model's reshapes specialise on it), so the graph is exported for the batch it serves: 1.
* The check runs the graph in ONNX Runtime (CPU) on random images, one at a time, and compares the
  logits with the PyTorch model's in ``eval()``: the largest absolute difference must be <= ``atol``
  (1e-4 by default); else the command fails (exit code 2) and leaves no file behind.
* FPS: batch 1, the same thread count for all three modes (ONNX Runtime's intra-op threads =
  torch's), ``warmup`` untimed calls (compilation happens there and is reported apart), then calls
  for at least ``min_time`` s, median of ``repeats`` such rounds, modes interleaved per round.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from esg_lib.errors import UserError
from esg_lib.markdown import markdown_row, markdown_rows

if TYPE_CHECKING:   # the engine is imported where it is used, so that `esg --help` stays light
    from esg_lib.engine.config import ProfileRef

__all__ = ["export_onnx", "check_onnx", "onnx_session", "batch1_fps", "build_export_model", "register"]

DEFAULT_OPSET = 18


def build_export_model(model: str | None = None, checkpoint: str | None = None, profile: ProfileRef = "smoke",
                       num_classes: int = 9, img_size: int | None = None) -> tuple[nn.Module, int, str]:
    """``(model in eval mode on CPU, image size, label)`` from a checkpoint or a model-table key/timm name."""
    if checkpoint:
        from esg_lib.engine.inference import load_run_model

        ck, net, _ = load_run_model(checkpoint, device="cpu")
        return net.eval(), img_size or int(ck["config"]["img_size"]), Path(checkpoint).parent.name
    from esg_lib.engine.config import get_profile
    from esg_lib.engine.models import build_model, resolve_model

    prof = get_profile(profile)
    key = model or "esg-convnext"
    spec = resolve_model(key, prof)
    size = img_size or int(prof.defaults["img_size"])
    torch.manual_seed(0)
    return build_model(spec, num_classes, size).eval(), size, spec.name


def export_onnx(model: nn.Module, path: str | Path, img_size: int, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``model`` (eval mode) as ONNX for batch 1 at ``img_size``; returns the path."""
    import warnings

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.randn(1, 3, img_size, img_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's own progress notices
        program = torch.onnx.export(model.eval(), (x,), dynamo=True, opset_version=opset,
                                    input_names=["image"], output_names=["logits"], verbose=False)
    program.save(str(path))
    return path


def onnx_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU inference session with ``threads`` intra-op threads (default torch's)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@torch.inference_mode()
def check_onnx(model: nn.Module, path: str | Path, img_size: int, batch: int = 2, seed: int = 0) -> float:
    """Largest absolute difference between ONNX Runtime's and PyTorch's logits on ``batch`` random
    images (one at a time: the graph is exported for batch 1)."""
    gen = torch.Generator().manual_seed(seed)
    session = onnx_session(path)
    worst = 0.0
    for _ in range(batch):
        x = torch.randn(1, 3, img_size, img_size, generator=gen)
        expected = model.eval()(x).numpy()
        (got,) = session.run(["logits"], {"image": x.numpy()})
        worst = max(worst, float(np.max(np.abs(got - expected))))
    return worst


def _time_round(fn: Callable[[], Any], min_time: float) -> float:
    t0 = time.perf_counter()
    n, elapsed = 0, 0.0
    while n == 0 or elapsed < min_time:
        fn()
        n += 1
        elapsed = time.perf_counter() - t0
    return n / elapsed


def batch1_fps(model: nn.Module, img_size: int, modes: Sequence[str] = ("eager", "compiled", "onnxruntime"),
               repeats: int = 3, warmup: int = 3, min_time: float = 1.0, onnx_path: str | Path | None = None,
               log: Callable[[str], None] = lambda msg: None) -> list[dict[str, Any]]:
    """Batch-1 inference images/s of ``model`` per mode, interleaved rounds (see the module docstring)."""
    model = model.eval()
    x = torch.randn(1, 3, img_size, img_size)
    runners: dict[str, Callable[[], Any]] = {}
    setup_s: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            t0 = time.perf_counter()
            if mode == "eager":
                def run(m=model) -> Any:
                    with torch.inference_mode():
                        return m(x)
            elif mode == "compiled":
                compiled = torch.compile(model)

                def run(m=compiled) -> Any:
                    with torch.inference_mode():
                        return m(x)
            elif mode == "onnxruntime":
                path = Path(onnx_path) if onnx_path else export_onnx(model, Path(tmp) / "model.onnx", img_size)
                session, feed = onnx_session(path), {"image": x.numpy()}

                def run(s=session, f=feed) -> Any:
                    return s.run(None, f)
            else:
                raise UserError(f"unknown FPS mode {mode!r} (eager, compiled, onnxruntime)")
            for _ in range(max(warmup, 1)):
                run()
            setup_s[mode] = time.perf_counter() - t0
            runners[mode] = run
            log(f"  {mode} @ {img_size} px ready ({setup_s[mode]:.1f} s export/compile + warm-up)")
        rates: dict[str, list[float]] = {m: [] for m in runners}
        for r in range(repeats):
            order = list(runners)[r % len(runners):] + list(runners)[: r % len(runners)]
            for mode in order:
                rates[mode].append(_time_round(runners[mode], min_time))
    return [{"mode": m, "img_size": img_size, "batch_size": 1, "fps": statistics.median(v), "fps_min": min(v),
             "fps_max": max(v), "setup_s": setup_s[m], "threads": torch.get_num_threads(), "repeats": repeats}
            for m, v in rates.items()]


def _run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.onnx and not args.fps:
        raise UserError("nothing to do: give --onnx PATH and/or --fps")
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise UserError(f"{exc.name} is not installed (pip install -r requirements-lock.txt)") from exc
    from esg_lib.engine.config import get_profile

    # a checkpoint carries its own config: --profile is resolved only for a model-table row
    profile = args.profile if args.checkpoint else get_profile(args.profile)
    model, size, label = build_export_model(args.model, args.checkpoint, profile, args.num_classes,
                                            args.img_size[0] if args.img_size else None)
    if args.onnx:
        path = export_onnx(model, args.onnx, size, args.opset)
        diff = check_onnx(model, path, size)
        if not diff <= args.atol:
            path.unlink(missing_ok=True)
            raise UserError(f"ONNX Runtime's logits differ from PyTorch's by {diff:.2e} > {args.atol:g}; "
                            f"{path} removed")
        print(f"wrote {path} ({label}, {size} px, opset {args.opset}, {path.stat().st_size / 2**20:.1f} MB); "
              f"ONNX Runtime vs PyTorch: max |diff| {diff:.1e} <= {args.atol:g}")
    if args.fps:
        sizes = args.img_size or [size]
        # printed a row at a time: each size takes minutes (compilation), and a partial table is still worth having
        print(markdown_rows(["model", "px", "mode", "FPS (batch 1, median)", "min-max", "export/compile + warm-up s",
                             "threads"], [], align="lrlrrrr"))
        for s in sizes:
            rows = batch1_fps(model, s, args.modes, repeats=args.repeats, min_time=args.min_time,
                              log=lambda msg: print(msg, flush=True))
            for r in rows:
                print(markdown_row([f"`{label}`", s, r["mode"], f"{r['fps']:.1f}", f"{r['fps_min']:.1f}-{r['fps_max']:.1f}",
                                    f"{r['setup_s']:.1f}", r["threads"]]), flush=True)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="ONNX export checked by ONNX Runtime; batch-1 FPS per runtime",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", metavar="PATH", help="write the model as ONNX here (checked against PyTorch)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", metavar="PT", help="an esg train checkpoint (best.pt / last.pt)")
    src.add_argument("--model", help="a model-table key of --profile or a timm name, random weights "
                                     "(default: esg-convnext)")
    p.add_argument("--profile", default="smoke", help="profile whose model table and image size to use "
                                                      "(default: %(default)s)")
    p.add_argument("--img-size", nargs="+", type=int, metavar="PX",
                   help="image size(s) (default: the checkpoint's or the profile's); --fps measures each")
    p.add_argument("--num-classes", type=int, default=9, help="classes of a --model (default: %(default)s)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    p.add_argument("--atol", type=float, default=1e-4, help="largest allowed |ONNX Runtime - PyTorch| logit")
    p.add_argument("--fps", action="store_true", help="batch-1 inference FPS per mode (see --modes)")
    p.add_argument("--modes", nargs="+", default=["eager", "compiled", "onnxruntime"],
                   choices=("eager", "compiled", "onnxruntime"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--min-time", type=float, default=1.0, help="seconds per timed round (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for all modes")
    p.set_defaults(func=_run)
