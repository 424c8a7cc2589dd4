"""Inference speed of every model-table row, measured in one quiet pass (``esg fps``).

Why a separate pass: the FPS a training run records is measured right after training, with that
run's thread count, possibly while another run trains beside it. Speed depends on the architecture,
the image size, the device and the threads -- not on the trained weights -- so the tables' FPS column
comes from one pass over freshly built models on an otherwise idle machine, same protocol for every
row (:func:`esg_lib.engine.evaluate.measure_fps`: batch 1, warm-up, timed iterations), ``repeats``
timings per row. Written to ``results/<profile>/fps.json`` with the command, commit, date and
hardware.

**One figure per network.** Rows that are one network (:func:`same_network`: the same parameter
shapes, and the same outputs once one takes the other's weights -- Table 2's row 1 *is* ConvNeXtV2-atto)
are listed together under ``"networks"`` in ``fps.json`` and get one figure, from the timings of all
of them pooled. Every table and figure reads :func:`fps_figures`: the median of the timings with
their spread (lowest and highest), rounded to the digits that spread allows (:class:`FpsFigure`).
"""
from __future__ import annotations

import datetime as _dt
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from esg_lib import store

from . import provenance as P
from .config import ABLATION, COMPARISON, ProfileRef, get_profile

if TYPE_CHECKING:   # the figures and tables read fps.json without importing torch
    import torch

__all__ = ["FpsFigure", "fps_figures", "fps_note", "same_network", "group_networks", "measure_rows", "fps_path",
           "write_fps", "load_fps", "annotate_networks"]

SAME_NETWORK = ("same parameter shapes, and the same outputs (float32, 1e-4) with one row's perturbed random "
                "weights loaded into the other (esg_lib.engine.fps.same_network)")


# ------------------------------------------------------------------------------ one figure per network
def _decimals(spread: float, value: float) -> int:
    """Decimal places to show: those of the first significant digit of ``spread`` (half the range of
    the timings), after rounding it to that one digit (9.6 → 10: no decimal). No spread (one timing):
    three significant digits of ``value``."""
    if not spread > 0:
        return max(0, 2 - math.floor(math.log10(abs(value)))) if value else 0
    exponent = math.floor(math.log10(spread))
    if round(spread / 10 ** exponent) >= 10:
        exponent += 1
    return -exponent


def _round(value: float, decimals: int) -> str:
    text = f"{round(value, decimals):.{max(decimals, 0)}f}"
    return text.replace("-0", "0") if float(text) == 0 else text


@dataclass(frozen=True)
class FpsFigure:
    """A network's speed: the median of its timings (images/s), the lowest and highest of them, how
    many, and the row keys that share them. :attr:`text` rounds to the digits the spread allows."""
    median: float
    low: float
    high: float
    n: int
    keys: tuple[str, ...]

    @property
    def decimals(self) -> int:
        return _decimals((self.high - self.low) / 2, self.median)

    @property
    def value(self) -> str:
        """The median, rounded to :attr:`decimals`: ``19``, ``200``."""
        return _round(self.median, self.decimals)

    @property
    def text(self) -> str:
        """``19 (18–20)``: the median and the range of the timings, same rounding."""
        d = self.decimals
        return f"{self.value} ({_round(self.low, d)}–{_round(self.high, d)})"

    def __float__(self) -> float:
        return float(self.median)


def fps_figures(data: Mapping[str, Any] | None) -> dict[str, FpsFigure]:
    """Model key → :class:`FpsFigure` of an ``fps.json``. The rows of one network (its ``"networks"``
    list) share one figure over all their timings; a row measured alone has its own."""
    if not data:
        return {}
    models = data.get("models", {})
    groups = [list(g) for g in (data.get("networks") or {}).values()]
    grouped = {k for g in groups for k in g}
    groups += [[k] for k in models if k not in grouped]
    out: dict[str, FpsFigure] = {}
    for group in groups:
        keys = [k for k in group if k in models]
        times = [float(t) for k in keys for t in (models[k].get("fps_all") or [models[k]["fps"]])]
        if not times:
            continue
        figure = FpsFigure(statistics.median(times), min(times), max(times), len(times), tuple(keys))
        out.update({k: figure for k in keys})
    return out


def fps_note(data: Mapping[str, Any] | None) -> str:
    """One sentence on what the FPS figures are (for table captions), from the ``fps.json`` itself."""
    if not data:
        return ""
    p = data["protocol"]
    shared = [g for g in (data.get("networks") or {}).values() if len(g) > 1]
    labels = {k: v.get("label", k) for k, v in data.get("models", {}).items()}
    joint = "; ".join(" = ".join(labels.get(k, k) for k in g) for g in shared)
    return (f"FPS: `esg fps` ({data['date'][:10]}, {data['hardware']}; batch {p['batch_size']}, {p['img_size']} px, "
            f"{p['repeats']} timings of {p['iters']} images per row): median (lowest–highest timing), rounded to the "
            "first significant digit of half that range"
            + (f"; one network, one figure over the timings of its rows: {joint}" if joint else ""))


def same_network(a: "torch.nn.Module", b: "torch.nn.Module", img_size: int = 64) -> bool:
    """Whether two built models are one network: the same number and shapes of parameters and
    buffers (a 1×1 convolution and a linear layer of the same size count as one), and ``b`` loaded with ``a``'s weights (through ``b``'s checkpoint filter when its module
    has one, e.g. ESG-ConvNeXt's for timm ConvNeXtV2 weights) gives ``a``'s outputs."""
    import torch

    def shapes(m: torch.nn.Module) -> list[tuple[int, ...]]:
        # a 1×1 convolution's (out, in, 1, 1) weight is a linear layer's (out, in): compare without them
        def squeeze(shape: tuple[int, ...]) -> tuple[int, ...]:
            while len(shape) > 2 and shape[-1] == 1:
                shape = shape[:-1]
            return shape
        return sorted(squeeze(tuple(t.shape)) for t in m.state_dict().values())

    if shapes(a) != shapes(b):
        return False
    generator = torch.Generator().manual_seed(0)
    for src, dst in ((a, b), (b, a)):
        with torch.no_grad():   # move every weight off its initial value (a GRN or norm at init is a no-op)
            for p in src.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=generator))
        state = src.state_dict()
        convert = getattr(sys.modules.get(type(dst).__module__), "checkpoint_filter_fn", None)
        try:
            dst.load_state_dict(convert(state, dst) if convert else state, strict=True)
        except (RuntimeError, KeyError, ValueError):
            continue
        x = torch.randn(2, 3, img_size, img_size, generator=generator)
        src.eval()
        dst.eval()
        with torch.no_grad():
            return bool(torch.allclose(src(x), dst(x), rtol=1e-4, atol=1e-5))
    return False


def group_networks(profile: ProfileRef, keys: Sequence[str], num_classes: int = 7) -> dict[str, list[str]]:
    """``{first key: [keys]}``: the rows of ``keys`` grouped by :func:`same_network` (each key once,
    in ``keys`` order; the group is named by its first row)."""
    import torch

    from .models import build_model, resolve_model

    prof = get_profile(profile)
    img_size = int(prof.defaults["img_size"])
    built: dict[str, torch.nn.Module] = {}
    groups: dict[str, list[str]] = {}
    for key in keys:
        torch.manual_seed(0)
        model = build_model(resolve_model(key, prof), num_classes, img_size)
        for first in groups:
            if same_network(built[first], model, img_size):
                groups[first].append(key)
                break
        else:
            groups[key] = [key]
            built[key] = model
    return groups


# ----------------------------------------------------------------------------------- measuring
def measure_rows(profile: ProfileRef, keys: Sequence[str] = (*COMPARISON, *ABLATION[:4]), threads: int | None = None,
                 warmup: int = 5, iters: int = 20, repeats: int = 5, num_classes: int = 7,
                 progress: bool = True) -> dict[str, Any]:
    """``{"models": {key: {fps, fps_all, timm_name, ...}}, "networks": ..., "protocol": ..., "hardware": ...}``
    on the CPU. Every row is timed; ``networks`` groups the rows that are one network
    (:func:`group_networks`), which :func:`fps_figures` then report as one figure."""
    import torch

    from .evaluate import measure_fps
    from .models import build_model, resolve_model

    prof = get_profile(profile)
    img_size = int(prof.defaults["img_size"])
    if threads:
        torch.set_num_threads(threads)
    device = torch.device("cpu")
    models: dict[str, Any] = {}
    for key in keys:
        spec = resolve_model(key, prof)
        torch.manual_seed(0)
        model = build_model(spec, num_classes, img_size)
        with torch.inference_mode():
            times = [measure_fps(model, img_size, device, 1, warmup if i == 0 else 1, iters, amp=False)
                     for i in range(repeats)]
        fps = statistics.median(t["fps"] for t in times)
        models[key] = {"label": spec.label, "timm_name": spec.name, "fps": fps,
                       "fps_all": [t["fps"] for t in times]}
        if progress:
            print(f"{key:18s} {spec.name:30s} {fps:8.1f} images/s", flush=True)
    return {"profile": prof.name, "models": models,
            "networks": group_networks(prof, list(keys), num_classes), "networks_by": SAME_NETWORK,
            "protocol": {"img_size": img_size, "batch_size": 1, "warmup": warmup, "iters": iters,
                         "repeats": repeats, "statistic": "median", "threads": torch.get_num_threads(),
                         "device": "cpu", "weights": "random init (speed does not depend on them)"},
            "hardware": P.hardware_text({"hardware": P.hardware(), "threads": torch.get_num_threads(),
                                         "device": "cpu"}),
            "git": P.git_commit(), "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)}


def fps_path(profile: ProfileRef, results: str | Path = "results") -> Path:
    return store.profile_dir(results, profile) / "fps.json"


def write_fps(profile: ProfileRef, results: str | Path = "results", **kwargs: Any) -> Path:
    from .runs import write_json

    prof = get_profile(profile)
    data = measure_rows(prof, **kwargs)
    path = fps_path(prof, results)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, data)
    return path


def annotate_networks(profile: ProfileRef, results: str | Path = "results") -> Path:
    """Add the ``networks`` grouping (:func:`group_networks`) to an ``fps.json`` written before it
    was recorded; the timings are left as measured."""
    from .runs import read_json, write_json

    prof = get_profile(profile)
    path = fps_path(prof, results)
    data = read_json(path)
    if data is None:
        raise FileNotFoundError(path)
    data["networks"] = group_networks(prof, list(data["models"]))
    data["networks_by"] = SAME_NETWORK
    write_json(path, data)
    return path


def load_fps(profile: ProfileRef, results: str | Path = "results") -> dict[str, Any] | None:
    from .runs import read_json

    return read_json(fps_path(profile, results))
