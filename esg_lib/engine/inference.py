"""A finished run's checkpoint put to use: scored on a split prepared exactly as in its run
(``esg evaluate``) or asked for the classes of image files (``esg predict``).

Above both :mod:`.train` (data preparation, device, checkpoint loading) and :mod:`.evaluate`
(predictions and metrics of a model over a dataset), so that neither of those imports the other's
caller.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from esg_lib.data.decode import decode_file
from esg_lib.data.verify import decode_problem
from esg_lib.errors import UserError

from .config import ModelSpec, TrainConfig
from .evaluate import predict_dataset, summarize, write_outputs
from .models import build_model
from .runtime import Dist, load_checkpoint, resolve_device
from .train import prepare_bundle

__all__ = ["load_run_model", "evaluate_checkpoint", "predict_images", "load_image"]


# what every checkpoint written by ``esg train`` holds (best.pt and last.pt alike), and what use needs
CHECKPOINT_KEYS = ("model", "model_spec", "config", "num_classes", "class_names", "mean", "std")


def load_run_model(path: str | Path, device: str = "auto"):
    """``(checkpoint dict, model in eval mode, device)`` from an ``esg train`` checkpoint.

    A file that is not one (unreadable, truncated, random bytes, another program's pickle, a
    checkpoint whose weights do not fit the model it names) raises one :class:`UserError` line naming
    it; loading stays ``weights_only`` (see :func:`.runtime.load_checkpoint`).
    """
    ck = load_checkpoint(path)
    if not isinstance(ck, dict):
        raise UserError(f"cannot read checkpoint {path}: it holds a {type(ck).__name__}, not the contents of "
                        "an esg training checkpoint (a last.pt or best.pt written by esg train)")
    missing = [k for k in CHECKPOINT_KEYS if k not in ck]
    if missing:
        raise UserError(f"cannot read checkpoint {path}: it is not an esg training checkpoint (no "
                        f"{', '.join(missing)}); use a last.pt or best.pt written by esg train")
    problem = description_problem(ck)
    if problem:
        raise UserError(f"cannot read checkpoint {path}: its description of the run is damaged ({problem}); "
                        "use a last.pt or best.pt written by esg train")
    s = ck["model_spec"]
    spec = ModelSpec(s["label"], s["name"], dict(s.get("kwargs") or {}), s.get("min_input"))
    num_classes, img_size = ck["num_classes"], ck["config"]["img_size"]
    try:
        stored = sum(t.numel() for t in ck["model"].values() if isinstance(t, torch.Tensor))
        # first without memory where the model allows it (the meta device; ours does not): a small
        # file must not make esg build a giant model; the count is checked again on the real one
        try:
            with torch.device("meta"):
                _check_size(path, spec, build_model(spec, num_classes, img_size), stored)
        except UserError:
            raise
        except Exception:  # noqa: BLE001 - a model whose construction needs real tensors
            pass
        model = build_model(spec, num_classes, img_size)
        _check_size(path, spec, model, stored)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged description of the model
        raise UserError(f"cannot read checkpoint {path}: its model description is damaged "
                        f"({type(exc).__name__}: {_first_line(exc)})") from None
    try:
        model.load_state_dict(ck["model"])
    except Exception as exc:  # noqa: BLE001 - missing, extra or misshapen weights
        raise UserError(f"cannot read checkpoint {path}: its weights do not fit the model it names "
                        f"({spec.label}): {_first_line(exc)}") from None
    dev = resolve_device(device, Dist())
    return ck, model.to(dev).eval(), dev


# The model arguments a checkpoint may pass to timm (those the profiles' model tables and
# drop_path_rate use), each with its type and range: a checkpoint is untrusted input, and timm takes
# arguments that read other files (checkpoint_path) or change what the model computes.
MODEL_KWARGS: dict[str, tuple[type, float, float]] = {
    "img_size": (int, 8, 2048), "patch_size": (int, 1, 64), "window_size": (int, 1, 64),
    "drop_path_rate": (float, 0.0, 1.0)}
MAX_IMG_SIZE, MAX_CLASSES = 2048, 100_000


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def description_problem(ck: dict[str, Any]) -> str | None:
    """What is wrong with a checkpoint's description of its run (None: nothing), checked before
    anything is built from it: the classes, their count, the normalisation, the image size and
    colour mode, and the model's name, arguments (:data:`MODEL_KWARGS`) and minimum input size."""
    names = ck["class_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return "class_names is not a list of class names"
    n = ck["num_classes"]
    if not isinstance(n, int) or isinstance(n, bool) or n != len(names) or n > MAX_CLASSES:
        return f"num_classes {_short(n)} does not match its {len(names)} class names"
    shown = ck.get("display_names")
    if shown is not None and (not isinstance(shown, list) or len(shown) != n
                              or not all(isinstance(x, str) for x in shown)):
        return "display_names does not name each class"
    for key in ("mean", "std"):
        v = ck[key]
        if not isinstance(v, list) or len(v) not in (1, 3) or not all(_number(x) for x in v):
            return f"{key} is not 1 or 3 numbers"
    if not all(x > 0 for x in ck["std"]):
        return "std is not positive"
    config = ck["config"]
    size = config.get("img_size") if isinstance(config, dict) else None
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= MAX_IMG_SIZE:
        return f"config.img_size {_short(size)} is not an image size (8 to {MAX_IMG_SIZE})"
    if ck.get("color_mode", "RGB") not in ("L", "RGB"):
        return f"color_mode {_short(ck.get('color_mode'))} is not L or RGB"
    spec = ck["model_spec"]
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not isinstance(spec.get("label"), str):
        return "model_spec has no model name and label"
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        return "model_spec.kwargs is not a mapping"
    for key, value in kwargs.items():
        if key not in MODEL_KWARGS:
            return f"model argument {_short(key)} is not one esg train writes"
        kind, low, high = MODEL_KWARGS[key]
        ok = _number(value) and (isinstance(value, int) or kind is float) and low <= value <= high
        if not ok or (kind is float and value >= high):
            return f"model argument {key}={_short(value)} is out of range"
    min_input = spec.get("min_input")
    if min_input is not None and (not isinstance(min_input, int) or isinstance(min_input, bool)
                                  or not 1 <= min_input <= MAX_IMG_SIZE):
        return f"model_spec.min_input {_short(min_input)} is not an image size"
    if not isinstance(ck["model"], dict):
        return "its weights are not a mapping of tensors"
    return None


def _check_size(path: str | Path, spec: ModelSpec, model: torch.nn.Module, stored: int) -> None:
    params = sum(p.numel() for p in model.parameters())
    if params > stored:
        raise UserError(f"cannot read checkpoint {path}: the model it names ({spec.name}, {params} "
                        f"parameters) is larger than the weights it holds ({stored} values)")


def _first_line(exc: BaseException, limit: int = 160) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return " ".join(lines[:2])[:limit] if lines else type(exc).__name__


def evaluate_checkpoint(path: str | Path, dataset: str | None = None, split: str = "test",
                        out: str | Path | None = None, device: str = "auto") -> dict[str, Any]:
    """Score a checkpoint on a split prepared exactly as in its run (or on another ``dataset``
    with the same classes); with ``out``, also write predictions, confusion, report, features."""
    ck, model, dev = load_run_model(path, device)
    fields = {k: v for k, v in ck["config"].items() if k in TrainConfig.__dataclass_fields__}
    cfg = TrainConfig(**fields)
    if dataset:
        cfg.dataset = dataset
    bundle = prepare_bundle(cfg)
    if list(bundle.class_names) != list(ck["class_names"]):
        raise UserError(f"dataset classes {list(bundle.class_names)} differ from the checkpoint's "
                        f"{ck['class_names']}")
    data = getattr(bundle, split)
    res = predict_dataset(model, data, dev, cfg.eval_batch_size, features=out is not None)
    summary = summarize(res, list(bundle.class_names))
    if out is not None:
        write_outputs(Path(out), res, summary, list(bundle.class_names),
                      getattr(data, "paths", None), prefix=split)
    metrics = {k: summary[k] for k in ("acc", "precision", "recall", "f1", "loss", "n")}
    return {**metrics, "dataset": bundle.dataset_name, "split": split}


def predict_images(path: str | Path, images: Sequence[str], top: int = 1,
                   device: str = "auto") -> list[tuple[str, list[tuple[str, float]]]]:
    """``[(image path, [(class display name, probability), …top])]`` for image files."""
    ck, model, dev = load_run_model(path, device)
    size = ck["config"]["img_size"]
    batch = [load_image(p, size, ck.get("color_mode", "RGB")) for p in images]  # all checked first
    mean = torch.tensor(ck["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(ck["std"]).view(1, -1, 1, 1)
    x = (torch.stack(batch).float() / 255.0 - mean) / std
    try:
        with torch.inference_mode():
            probs = torch.softmax(model(x.to(dev)).float(), dim=1).cpu()
    except RuntimeError as exc:   # a description that builds a model which cannot run on these images
        raise UserError(f"cannot use checkpoint {path}: its model does not run on a {size} px image "
                        f"({_first_line(exc)})") from None
    if probs.ndim != 2 or probs.shape[1] != len(ck["class_names"]):
        raise UserError(f"cannot use checkpoint {path}: its model gives {tuple(probs.shape)} outputs for "
                        f"{len(ck['class_names'])} classes")
    names = ck.get("display_names") or ck["class_names"]
    k = max(1, min(top, probs.shape[1]))
    out = []
    for p_img, p in zip(images, probs):
        t = torch.topk(p, k)
        out.append((str(p_img), [(names[i], float(v)) for v, i in zip(t.values.tolist(), t.indices.tolist())]))
    return out


def load_image(path: str | Path, img_size: int, color_mode: str = "RGB") -> torch.Tensor:
    """An image file → uint8 tensor (3, img_size, img_size), decoded like the training data.

    Uses the data area's decoder (Pillow, colour mode ``L`` or ``RGB`` as recorded in the
    checkpoint, bilinear resize, grey repeated on 3 channels) so predictions see what training saw.
    """
    if not Path(path).is_file():
        raise UserError(f"image not found: {path}")
    try:
        arr = decode_file(path, img_size, color_mode)
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for broken files (a bomb's among them)
        raise UserError(f"cannot read image {path}: {decode_problem(path, exc)}") from None
    return torch.from_numpy(np.ascontiguousarray(arr))
