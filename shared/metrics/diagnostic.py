"""Diagnostic accuracy: balanced accuracy, ROC AUC with a DeLong interval, and
the DeLong test of two correlated ROC curves.

DeLong, DeLong & Clarke-Pearson (1988), "Comparing the areas under two or more
correlated receiver operating characteristic curves: a nonparametric approach",
give the variance of the empirical AUC from its structural components

    V10(X_i) = mean_j psi(X_i, Y_j),   V01(Y_j) = mean_i psi(X_i, Y_j),
    psi(x, y) = 1 if x > y, 1/2 if x == y, 0 otherwise,

over the m positive scores X and the n negative scores Y:
Var(AUC) = S10 / m + S01 / n, with S10, S01 the sample (co)variances (ddof 1)
of the components. Sun & Xu (2014), "Fast implementation of DeLong's algorithm
for comparing the areas under correlated receiver operating characteristic
curves", IEEE SPL 21(11), obtain the components from midranks in
O((m + n) log(m + n)) instead of O(m n):

    V10(X_i) = (T_Z(X_i) - T_X(X_i)) / n,   V01(Y_j) = 1 - (T_Z(Y_j) - T_Y(Y_j)) / m,

with T_Z, T_X, T_Y the midranks within all scores, the positives and the
negatives (their Eq. 6-7). That is what this module implements.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from shared.metrics.classification import per_class_accuracy
from shared.stats.validation import finite_vector

__all__ = ["balanced_accuracy", "delong_paired_test", "roc_auc_ci"]


def balanced_accuracy(y_true, y_pred) -> float:
    """Mean recall over the classes present in y_true.

    Equals ``sklearn.metrics.balanced_accuracy_score`` (without adjustment): a
    class that is only predicted, never true, does not count.

    Args:
        y_true: int labels ``[N]`` (or one-hot ``[N, K]``), as in
            `shared.metrics.confusion_matrix`.
        y_pred: int labels ``[N]`` (or scores ``[N, K]``, argmax taken).

    Returns:
        float in [0, 1].

    Example:
        >>> balanced_accuracy([0, 0, 0, 1], [0, 0, 0, 0])  # recalls 1 and 0
        0.5
    """
    return float(np.nanmean(per_class_accuracy(y_true, y_pred)))


def _binary_labels(y_true) -> np.ndarray:
    arr = np.asarray(y_true)
    if arr.ndim != 1:
        raise ValueError(f"y_true: expected a 1-D sequence of 0/1 labels, got shape {arr.shape}")
    try:
        values = arr.astype(float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"y_true: expected 0/1 labels, got dtype {arr.dtype}") from error
    bad = np.flatnonzero((values != 0) & (values != 1))
    if bad.size:
        raise ValueError(f"y_true: expected binary labels 0 (negative) / 1 (positive), got "
                         f"{arr[bad[0]]!r} at index {int(bad[0])}")
    labels = values.astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos < 2 or n_neg < 2:
        raise ValueError(f"y_true: expected at least 2 positives and 2 negatives for the "
                         f"DeLong variance, got {n_pos} positive(s) and {n_neg} negative(s)")
    return labels


def _midrank(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given the mean of their positions (midranks)."""
    order = np.argsort(x, kind="mergesort")
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    ranks = np.empty(x.size)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks


def _delong_components(labels: np.ndarray, scores: np.ndarray):
    """AUC and the structural components (V10 over positives, V01 over negatives)."""
    pos, neg = scores[labels], scores[~labels]
    m, n = pos.size, neg.size
    t_z = _midrank(np.concatenate([pos, neg]))
    v10 = (t_z[:m] - _midrank(pos)) / n
    v01 = 1.0 - (t_z[m:] - _midrank(neg)) / m
    auc = (t_z[:m].sum() - m * (m + 1) / 2.0) / (m * n)
    return float(auc), v10, v01


def roc_auc_ci(y_true, scores, *, level=0.95) -> dict:
    """ROC AUC with its DeLong standard error and a normal confidence interval.

    The interval is the plain (Wald) one, AUC +- z SE with z = Phi^-1((1 + level) / 2),
    clipped to [0, 1], as pROC's ``ci.auc(method="delong")``. (A logit interval
    behaves better near 1 but is undefined at AUC = 1, where the DeLong SE is 0
    and the interval here collapses to [1, 1].)

    Args:
        y_true: sequence of 0/1 labels (1 = positive), at least 2 of each.
        scores: sequence of finite floats, higher = more likely positive.
        level: float. Confidence level in (0, 1). Defaults to 0.95.

    Returns:
        dict with `auc` (equal to ``sklearn.metrics.roc_auc_score``), `ci95`
        ([low, high] at `level`), `level`, `se`, `n_pos`, `n_neg`.

    Raises:
        ValueError: y_true not binary or with fewer than 2 of a class, scores of
            another length or not finite, level outside (0, 1).
    """
    labels = _binary_labels(y_true)
    scores = finite_vector(scores, "scores", size=labels.size)
    try:
        level_ok = not isinstance(level, bool) and 0 < float(level) < 1
    except (TypeError, ValueError):
        level_ok = False
    if not level_ok:
        raise ValueError(f"level: expected a probability in (0, 1), got {level!r}")
    auc, v10, v01 = _delong_components(labels, scores)
    m, n = v10.size, v01.size
    se = math.sqrt(max(0.0, v10.var(ddof=1) / m + v01.var(ddof=1) / n))
    z = stats.norm.isf((1.0 - level) / 2.0)
    return {"auc": auc, "ci95": [float(max(0.0, auc - z * se)), float(min(1.0, auc + z * se))],
            "level": float(level), "se": se, "n_pos": int(m), "n_neg": int(n)}


def delong_paired_test(y_true, scores_a, scores_b) -> dict:
    """DeLong's test of two correlated ROC AUCs (two models scored on the same cases).

    z = (AUC_a - AUC_b) / sqrt(Var_a + Var_b - 2 Cov_ab), with the (co)variances
    from the structural components of both score sets (DeLong et al. 1988,
    Sec. 3), and a two-sided normal p-value. When the variance of the
    difference is zero (e.g. both models separate the classes perfectly) the
    result is z = 0, p = 1.0 for equal AUCs and z = +-inf, p = 0.0 otherwise,
    with a `note`.

    Args:
        y_true: sequence of 0/1 labels, at least 2 of each class.
        scores_a: sequence of finite floats, model a.
        scores_b: sequence of finite floats, model b, same cases in the same order.

    Returns:
        dict with `auc_a`, `auc_b`, `difference` (a - b), `se` (of the
        difference), `z`, `p`, `n_pos`, `n_neg`, and `note` in the degenerate case.
    """
    labels = _binary_labels(y_true)
    scores_a = finite_vector(scores_a, "scores_a", size=labels.size)
    scores_b = finite_vector(scores_b, "scores_b", size=labels.size)
    auc_a, v10_a, v01_a = _delong_components(labels, scores_a)
    auc_b, v10_b, v01_b = _delong_components(labels, scores_b)
    m, n = v10_a.size, v01_a.size
    s10 = np.cov(np.vstack([v10_a, v10_b]), ddof=1)
    s01 = np.cov(np.vstack([v01_a, v01_b]), ddof=1)
    cov = s10 / m + s01 / n
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    difference = auc_a - auc_b
    out = {"auc_a": auc_a, "auc_b": auc_b, "difference": difference, "n_pos": int(m),
           "n_neg": int(n)}
    # A variance this small relative to the two AUC variances is rounding of 0
    # (e.g. scores_b a monotone transform of scores_a); so is such a difference.
    if var <= 1e-12 * (cov[0, 0] + cov[1, 1]):
        equal = abs(difference) < 1e-12
        out.update(se=0.0, z=0.0 if equal else math.copysign(math.inf, difference),
                   p=1.0 if equal else 0.0,
                   note=("the AUC difference has zero variance: the curves do not differ"
                         if equal else "the AUC difference has zero variance and is not zero: "
                                       "the difference is certain"))
        return out
    se = math.sqrt(var)
    z = difference / se
    out.update(se=se, z=float(z), p=float(2.0 * stats.norm.sf(abs(z))))
    return out
