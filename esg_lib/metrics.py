"""Classification metrics (scikit-learn) and mean ± std aggregation across seeds.

The paper reports accuracy, precision, recall and F1 (Eqs. 14-17, written for the binary case)
for 7- and 9-class problems without saying how they are averaged. We report **macro** averages
(every class weighs the same; X-SDD's classes range from 63 to 397 images), with
``zero_division=0`` (a class never predicted has precision 0, not NaN). Values are fractions in
[0, 1]; tables print percentages.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from sklearn.metrics import (accuracy_score, classification_report, confusion_matrix,
                             precision_recall_fscore_support)

METRIC_KEYS = ("acc", "precision", "recall", "f1")


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int],
                           num_classes: int | None = None) -> dict[str, float]:
    """Accuracy and macro precision / recall / F1 over ``range(num_classes)`` (all classes count)."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.size == 0:
        return {k: float("nan") for k in METRIC_KEYS}
    labels = list(range(num_classes)) if num_classes else None
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro",
                                                 zero_division=0)
    return {"acc": float(accuracy_score(y_true, y_pred)), "precision": float(p),
            "recall": float(r), "f1": float(f)}


def per_class_report(y_true: Sequence[int], y_pred: Sequence[int],
                     class_names: Sequence[str]) -> dict[str, Any]:
    """scikit-learn's per-class report as a dict (precision, recall, f1-score, support per class)."""
    return classification_report(y_true, y_pred, labels=list(range(len(class_names))),
                                 target_names=list(class_names), output_dict=True, zero_division=0)


def confusion(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """Confusion matrix, rows = true class, columns = predicted class (as in the paper's Fig. 10)."""
    return confusion_matrix(y_true, y_pred, labels=list(range(num_classes)))


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) of the finite values."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return float("nan"), float("nan"), 0
    arr = np.asarray(vals, dtype=np.float64)
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return float(arr.mean()), std, int(arr.size)


def aggregate(rows: Sequence[Mapping[str, Any]], keys: Sequence[str] = METRIC_KEYS) -> dict[str, Any]:
    """``{key: (mean, std, n)}`` over rows (one row per seed)."""
    return {k: mean_std(r.get(k) for r in rows) for k in keys}


def format_mean_std(mean: float, std: float, n: int, scale: float = 100.0, digits: int = 1) -> str:
    """``97.5 ± 0.3`` (percent by default); a single seed prints without ± ; no value prints ``—``."""
    if n == 0 or not math.isfinite(mean):
        return "—"
    if n == 1:
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


# ----------------------------------------------------------------------------------- training curves
CURVE_TAIL = 3          # epochs whose validation accuracy tells whether a run still rises
MEMORISE_GAP = 0.05     # training accuracy >= 0.99 with validation this far below: memorising
STILL_RISING = 0.01     # the last CURVE_TAIL epochs gained more than this: still rising


def curve_verdict(log: Sequence[Mapping[str, Any]], memorise_gap: float = MEMORISE_GAP,
                  rising: float = STILL_RISING) -> str:
    """One word on a run's curves (its ``log.jsonl`` records, in epoch order):

    - ``memorising``: the last epoch's training accuracy is >= 0.99 and its validation accuracy is
      ``memorise_gap`` or more below it;
    - ``under-trained``: the best validation epoch is the last one and the last :data:`CURVE_TAIL`
      epochs still gained more than ``rising`` in validation accuracy;
    - ``converged``: neither; ``no epochs`` for an empty log.
    """
    if not log:
        return "no epochs"
    accs = [r.get("val_acc") or 0.0 for r in log]
    last_train = log[-1].get("train_acc") or 0.0
    if last_train >= 0.99 and last_train - accs[-1] >= memorise_gap:
        return "memorising"
    best = max(range(len(accs)), key=lambda i: (accs[i], i))
    tail = accs[-CURVE_TAIL:]
    if best == len(accs) - 1 and len(tail) > 1 and tail[-1] - tail[0] > rising:
        return "under-trained"
    return "converged"


def curve_summary(log: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What a run record keeps of its curves: the verdict and the numbers it rests on."""
    accs = [r.get("val_acc") for r in log]
    known = [(i, a) for i, a in enumerate(accs) if a is not None]
    best = max(known, key=lambda ia: (ia[1], ia[0]))[0] + 1 if known else None
    return {"verdict": curve_verdict(log), "epochs": len(log), "best_val_epoch": best,
            "last_train_acc": log[-1].get("train_acc") if log else None,
            "last_val_accs": accs[-CURVE_TAIL:]}
