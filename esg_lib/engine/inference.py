"""A finished run's checkpoint put to use: scored on a split prepared exactly as in its run
(``esg evaluate``) or asked for the classes of image files (``esg predict``).

Above both :mod:`.train` (data preparation, device, checkpoint loading) and :mod:`.evaluate`
(predictions and metrics of a model over a dataset), so that neither of those imports the other's
caller.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import UnidentifiedImageError

from esg_lib.data.decode import decode_file
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
    try:
        s = ck["model_spec"]
        spec = ModelSpec(s["label"], s["name"], s.get("kwargs") or {}, s.get("min_input"))
        model = build_model(spec, int(ck["num_classes"]), int(ck["config"]["img_size"]))
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
    with torch.inference_mode():
        probs = torch.softmax(model(x.to(dev)).float(), dim=1).cpu()
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
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UserError(f"cannot read image {path}: {str(exc).splitlines()[0][:160]}") from None
    return torch.from_numpy(np.ascontiguousarray(arr))
