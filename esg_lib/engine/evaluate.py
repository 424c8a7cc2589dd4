"""Evaluation: metrics, per-class report, confusion matrix, predictions, pre-logit features, FPS.

FPS protocol (the paper reports FPS without saying how it was measured): the model in eval mode
under ``torch.inference_mode``, on the run's device (channels_last and autocast on CUDA, as in
training), a random input batch of ``fps_batch_size`` images (default 1: one image at a time, the
latency view an inspection line sees) at the run's ``img_size``, ``fps_warmup`` untimed iterations,
then ``fps_iters`` timed ones (``torch.cuda.synchronize`` before reading the clock on CUDA); data
loading and pre-processing are excluded. FPS = images / seconds. The thread count, device and
batch size are saved with the number (``fps.json``): FPS from different machines, thread counts
or batch sizes are not comparable.
"""
from __future__ import annotations

import csv
import json
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from esg_lib import metrics as M


def autocast_context(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA where supported, else fp16; nothing on CPU."""
    if device.type != "cuda" or not enabled:
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def _loader(dataset, batch_size: int, num_workers: int = 0):
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                       num_workers=num_workers)


@torch.inference_mode()
def predict_dataset(model: nn.Module, dataset, device: torch.device, batch_size: int = 128,
                    features: bool = False, amp: bool = True, channels_last: bool = False,
                    num_workers: int = 0) -> dict[str, np.ndarray]:
    """Logits-derived outputs over a dataset, in dataset order.

    Returns ``labels``, ``preds``, ``probs`` (softmax), ``loss`` (mean cross-entropy) and, with
    ``features=True``, ``features`` = the pre-logit vector (``forward_head(..., pre_logits=True)``).
    """
    model.eval()
    labels, probs, feats = [], [], []
    loss_sum = 0.0
    for x, y in _loader(dataset, batch_size, num_workers):
        x = x.to(device, non_blocking=True)
        if channels_last and device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.as_tensor(y).to(device)
        with autocast_context(device, amp):
            if features and hasattr(model, "forward_features"):
                fmap = model.forward_features(x)
                feats.append(model.forward_head(fmap, pre_logits=True).float().flatten(1).cpu())
                logits = model.forward_head(fmap)
            else:
                logits = model(x)
        logits = logits.float()
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        probs.append(torch.softmax(logits, dim=1).cpu())
        labels.append(y.cpu())
    n = sum(len(t) for t in labels)
    out = {
        "labels": torch.cat(labels).numpy() if labels else np.zeros(0, dtype=np.int64),
        "probs": torch.cat(probs).numpy() if probs else np.zeros((0, 0), dtype=np.float32),
        "loss": np.float64(loss_sum / max(n, 1)),
    }
    out["preds"] = out["probs"].argmax(1) if n else np.zeros(0, dtype=np.int64)
    if features and feats:
        out["features"] = torch.cat(feats).numpy()
    return out


@torch.inference_mode()
def measure_fps(model: nn.Module, img_size: int, device: torch.device, batch_size: int = 1,
                warmup: int = 5, iters: int = 20, amp: bool = True,
                channels_last: bool = False) -> dict[str, Any]:
    """Images per second by the protocol in this module's docstring; returns the number and protocol."""
    model.eval()
    gen = torch.Generator(device=device).manual_seed(0)  # leaves the global RNG untouched
    x = torch.randn(batch_size, 3, img_size, img_size, device=device, generator=gen)
    if channels_last and device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with autocast_context(device, amp):
        for _ in range(max(warmup, 0)):
            model(x)
        sync()
        t0 = time.perf_counter()
        for _ in range(max(iters, 1)):
            model(x)
        sync()
        elapsed = time.perf_counter() - t0
    images = batch_size * max(iters, 1)
    return {
        "fps": images / elapsed if elapsed > 0 else float("inf"),
        "batch_size": batch_size, "warmup": warmup, "iters": max(iters, 1), "img_size": img_size,
        "device": str(device), "threads": torch.get_num_threads(), "seconds": elapsed,
        "amp": bool(amp and device.type == "cuda"),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }


def summarize(out: dict[str, np.ndarray], class_names: Sequence[str]) -> dict[str, Any]:
    """Metrics dict (acc, macro precision/recall/F1, loss), per-class report and confusion matrix."""
    n_cls = len(class_names)
    result: dict[str, Any] = M.classification_metrics(out["labels"], out["preds"], n_cls)
    result["loss"] = float(out["loss"])
    result["n"] = int(len(out["labels"]))
    result["per_class"] = M.per_class_report(out["labels"], out["preds"], class_names)
    result["confusion"] = M.confusion(out["labels"], out["preds"], n_cls).tolist()
    return result


def write_outputs(folder: Path, out: dict[str, np.ndarray], summary: dict[str, Any],
                  class_names: Sequence[str], paths: Sequence[str] | None = None,
                  prefix: str = "test") -> None:
    """``<prefix>_predictions.csv``, ``<prefix>_confusion.csv``, ``<prefix>_report.json`` and
    ``<prefix>_features.npz`` (pre-logit features, labels, predictions: for t-SNE)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{prefix}_predictions.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", "path", "label", "pred", *[f"p_{c}" for c in class_names]])
        for i, (y, p, pr) in enumerate(zip(out["labels"], out["preds"], out["probs"])):
            path = paths[i] if paths is not None and i < len(paths) else ""
            w.writerow([i, path, int(y), int(p), *[f"{v:.6f}" for v in pr]])
    with open(folder / f"{prefix}_confusion.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["true\\pred", *class_names])
        for name, row in zip(class_names, summary["confusion"]):
            w.writerow([name, *row])
    (folder / f"{prefix}_report.json").write_text(json.dumps(
        {k: summary[k] for k in ("per_class", "confusion")}, indent=1))
    if "features" in out:
        np.savez_compressed(folder / f"{prefix}_features.npz", features=out["features"],
                            labels=out["labels"], preds=out["preds"])
