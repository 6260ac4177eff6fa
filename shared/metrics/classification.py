"""Classification metrics in NumPy: arrays in, floats out.

Conventions:

* Labels are integers ``0 .. num_classes - 1``; ``y_true`` / ``y_pred`` may
  also be one-hot or probability arrays ``[N, K]``, reduced with ``argmax``.
* A ratio whose denominator is zero (e.g. precision of a class never
  predicted) counts as 0.0, as scikit-learn's ``zero_division=0``.
* Macro averages are unweighted means over all ``num_classes`` classes; the
  macro F1 is the mean of per-class F1 scores (scikit-learn's definition),
  not the F1 of macro precision and recall.
"""

from __future__ import annotations

import warnings
from typing import Hashable, Sequence

import numpy as np

__all__ = [
    "confusion_matrix",
    "classification_metrics",
    "per_class_accuracy",
    "scan_mode",
    "quadratic_weighted_kappa",
]


def _labels(values, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] > 1:
        arr = np.argmax(arr, axis=1)
    elif arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be labels [N] or scores [N, K]. Received: shape={np.shape(values)}"
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty; expected at least one sample.")
    if arr.dtype.kind == "f":
        if np.isnan(arr).any():
            raise ValueError(f"{name} contains NaN at index {int(np.flatnonzero(np.isnan(arr))[0])}.")
        if not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integer labels; received non-integral values.")
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"{name} must hold integer labels. Received: dtype={arr.dtype}")
    return arr.astype(np.int64)


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(
            f"y_true and y_pred must have the same length. Received: {t.shape[0]} and {p.shape[0]}"
        )
    return t, p


def _num_classes(t, p, num_classes) -> int:
    if num_classes is None:
        return int(max(t.max(), p.max(), 1)) + 1
    num_classes = int(num_classes)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1. Received: num_classes={num_classes}")
    return num_classes


def _check_range(arr, num_classes, name):
    bad = (arr < 0) | (arr >= num_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}[{i}]={int(arr[i])} is outside 0..{num_classes - 1} (num_classes={num_classes})."
        )


def _div(num, den):
    num, den = np.asarray(num, float), np.asarray(den, float)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def confusion_matrix(y_true, y_pred, num_classes=None) -> np.ndarray:
    """Confusion matrix ``C[i, j]`` = number of samples of true class i predicted as j.

    Args:
        y_true: int labels ``[N]`` (or one-hot / scores ``[N, K]``).
        y_pred: int labels ``[N]`` (or scores ``[N, K]``, argmax taken).
        num_classes: int or None (inferred as the largest label + 1, at least 2).

    Returns:
        int64 array ``[num_classes, num_classes]``.

    Raises:
        ValueError: empty inputs, different lengths, labels out of range.
    """
    t, p = _pair(y_true, y_pred)
    k = _num_classes(t, p, num_classes)
    _check_range(t, k, "y_true")
    _check_range(p, k, "y_pred")
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def _per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    tp = np.diag(cm).astype(float)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = cm.sum() - tp - fp - fn
    precision = _div(tp, tp + fp)
    recall = _div(tp, tp + fn)
    return {
        "precision": precision,
        "recall": recall,
        "f1": _div(2 * precision * recall, precision + recall),
        "specificity": _div(tn, tn + fp),
    }


def classification_metrics(
    y_true, y_pred, *, num_classes=None, average="macro", positive=1
) -> dict[str, float]:
    """Accuracy, precision, recall (sensitivity), F1 and specificity.

    Per class ``c`` (one-vs-rest): precision = TP / (TP + FP), recall =
    TP / (TP + FN), F1 = 2PR / (P + R), specificity = TN / (TN + FP).

    Args:
        y_true: int labels ``[N]`` or one-hot ``[N, K]``.
        y_pred: int labels ``[N]`` or scores ``[N, K]``.
        num_classes: int or None (inferred).
        average: "macro" (unweighted mean over classes) or "binary" (the
            ``positive`` class only).
        positive: int, default 1. Positive class for ``average="binary"``.

    Returns:
        dict with float ``accuracy``, ``precision``, ``recall``, ``f1``,
        ``specificity``.

    Example:
        >>> classification_metrics([1, 1, 0, 0], [1, 0, 0, 0], average="binary")
        {'accuracy': 0.75, 'precision': 1.0, 'recall': 0.5, 'f1': 0.666..., 'specificity': 1.0}
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    k = cm.shape[0]
    per = _per_class(cm)
    out = {"accuracy": float(np.trace(cm) / cm.sum())}
    if average == "macro":
        out.update({name: float(np.mean(v)) for name, v in per.items()})
    elif average == "binary":
        if not 0 <= int(positive) < k:
            raise ValueError(f"positive={positive} is outside 0..{k - 1} (num_classes={k}).")
        out.update({name: float(v[int(positive)]) for name, v in per.items()})
    else:
        raise ValueError(f"average must be 'macro' or 'binary'. Received: average={average!r}")
    return out


def per_class_accuracy(y_true, y_pred, num_classes=None) -> np.ndarray:
    """Fraction of each true class predicted correctly (per-class recall).

    Args:
        y_true, y_pred: labels as in :func:`confusion_matrix`.
        num_classes: int or None (inferred).

    Returns:
        float array ``[num_classes]``; NaN for a class absent from ``y_true``.
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    support = cm.sum(axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.where(support > 0, support, 1.0), np.nan)


def scan_mode(slice_preds, scan_ids: Sequence[Hashable]) -> dict:
    """Per-scan label: the mode of its slice predictions (LGE paper, Sec. 3).

    Regression scores are rounded to the nearest integer first (``np.rint``,
    halves to even). Ties between equally frequent labels go to the smallest
    label (the rule of ``scipy.stats.mode``), which for quality scores is the
    more conservative (worse) grade.

    Args:
        slice_preds: ``[N]`` predicted label or score per slice, or ``[N, K]``
            class scores (argmax taken).
        scan_ids: ``[N]`` scan identifier per slice (any hashable).

    Returns:
        dict ``scan_id -> int`` label, in order of first appearance.

    Raises:
        ValueError: empty input, different lengths, NaN predictions.
    """
    preds = np.asarray(slice_preds)
    if preds.ndim == 2:
        preds = np.argmax(preds, axis=1)
    preds = preds.ravel() if preds.ndim != 1 else preds
    ids = list(scan_ids)
    if preds.size == 0:
        raise ValueError("slice_preds is empty; expected at least one slice.")
    if len(ids) != preds.size:
        raise ValueError(
            f"slice_preds and scan_ids must have the same length. Received: {preds.size} and {len(ids)}"
        )
    if preds.dtype.kind == "f" and np.isnan(preds).any():
        raise ValueError(f"slice_preds contains NaN at index {int(np.flatnonzero(np.isnan(preds))[0])}.")
    labels = np.rint(preds).astype(np.int64)
    groups: dict = {}
    for scan, label in zip(ids, labels.tolist()):
        groups.setdefault(scan, []).append(label)
    result = {}
    for scan, values in groups.items():
        uniq, counts = np.unique(values, return_counts=True)  # uniq is sorted
        result[scan] = int(uniq[np.argmax(counts)])  # argmax: first (smallest) of the tied
    return result


def quadratic_weighted_kappa(a, b, *, num_classes=None, min_label=None) -> float:
    """Cohen's kappa with quadratic weights between two raters / rater and model.

    ``kappa = 1 - sum(W * O) / sum(W * E)`` with ``W[i, j] = (i - j)^2 /
    (K - 1)^2``, ``O`` the observed confusion matrix and ``E`` the outer product
    of the two label histograms scaled to ``O``'s total.

    Args:
        a, b: integer ratings ``[N]`` (e.g. motion grades 1..5).
        num_classes: int or None. Number of possible ratings; None uses the
            observed range.
        min_label: int or None. Smallest possible rating (e.g. 1 for grades
            1..5); None uses the smallest observed rating.

    Returns:
        float kappa in [-1, 1]; NaN (with a warning) when both raters give
        one and the same rating to every sample, where kappa is undefined.
    """
    t, p = _pair(a, b)
    lo = int(min(t.min(), p.min())) if min_label is None else int(min_label)
    t, p = t - lo, p - lo
    k = int(max(t.max(), p.max())) + 1 if num_classes is None else int(num_classes)
    if k < 1:
        raise ValueError(f"num_classes must be >= 1. Received: num_classes={num_classes}")
    _check_range(t, k, f"a (minus min_label={lo})")
    _check_range(p, k, f"b (minus min_label={lo})")
    observed = np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(float)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    idx = np.arange(k)
    weights = (idx[:, None] - idx[None, :]) ** 2 / max((k - 1) ** 2, 1)
    denominator = float(np.sum(weights * expected))
    if denominator == 0.0:
        warnings.warn("quadratic_weighted_kappa is undefined when both raters use a single rating.")
        return float("nan")
    return float(1.0 - np.sum(weights * observed) / denominator)
