"""Balanced accuracy and DeLong ROC statistics against scikit-learn and a slow DeLong."""

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from shared.metrics import balanced_accuracy, delong_paired_test, roc_auc_ci

sklearn_metrics = pytest.importorskip("sklearn.metrics")


pytestmark = pytest.mark.no_keras


def _slow_components(y, s):
    """DeLong et al. (1988) structural components straight from the definition."""
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)  # AUC, V10 (m), V01 (n)


def _slow_cov(y, scores):
    comps = [_slow_components(y, s) for s in scores]
    v10 = np.array([c[1] for c in comps])
    v01 = np.array([c[2] for c in comps])
    m, n = v10.shape[1], v01.shape[1]
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return [c[0] for c in comps], cov


def _data(n, seed, *, ties=False, prevalence=0.4):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    y[:2], y[2:4] = 1, 0  # at least two of each class
    a = y * 0.8 + rng.normal(0, 1, n)
    b = 0.6 * a + y * 0.3 + rng.normal(0, 0.8, n)  # correlated with a
    if ties:
        a, b = np.round(a), np.round(b * 2) / 2
    return y, a, b


@pytest.mark.parametrize("n,seed,ties", [(4, 0, False), (5, 1, True), (30, 2, False),
                                         (30, 3, True), (200, 4, True), (200, 5, False)])
def test_roc_auc_ci_equals_sklearn_and_slow_delong(n, seed, ties):
    y, a, _ = _data(n, seed, ties=ties)
    result = roc_auc_ci(y, a)
    assert result["auc"] == pytest.approx(sklearn_metrics.roc_auc_score(y, a))
    (auc,), cov = _slow_cov(y, [a])
    assert result["auc"] == pytest.approx(auc)
    assert result["se"] == pytest.approx(math.sqrt(cov[0, 0]))
    z = stats.norm.isf(0.025)
    assert result["ci95"] == pytest.approx([max(0.0, auc - z * result["se"]),
                                            min(1.0, auc + z * result["se"])])
    assert result["n_pos"] == int(y.sum()) and result["n_neg"] == int((1 - y).sum())
    narrow = roc_auc_ci(y, a, level=0.5)["ci95"]
    assert result["ci95"][0] <= narrow[0] <= narrow[1] <= result["ci95"][1]


def test_roc_auc_ci_by_hand_and_bounds():
    # Positives 0.35, 0.8, 0.9 vs negatives 0.1, 0.4: 5 of 6 pairs ordered -> AUC 5/6.
    # V10 = (1/2, 1, 1), V01 = (1, 2/3): S10 = 1/12, S01 = 1/18 -> var = 1/36 + 1/36.
    result = roc_auc_ci([0, 0, 1, 1, 1], [0.1, 0.4, 0.35, 0.8, 0.9])
    assert result["auc"] == pytest.approx(5 / 6)
    assert result["se"] == pytest.approx(math.sqrt(1 / 36 + 1 / 36))
    assert result["ci95"][1] == 1.0  # clipped
    perfect = roc_auc_ci([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert perfect["auc"] == 1.0 and perfect["se"] == 0.0 and perfect["ci95"] == [1.0, 1.0]
    all_tied = roc_auc_ci([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5])
    assert all_tied["auc"] == 0.5 and all_tied["se"] == 0.0


@pytest.mark.parametrize("n,seed,ties", [(6, 14, False), (6, 11, True), (40, 12, True),
                                         (300, 13, False)])
def test_delong_paired_equals_slow_delong(n, seed, ties):
    y, a, b = _data(n, seed, ties=ties)
    result = delong_paired_test(y, a, b)
    (auc_a, auc_b), cov = _slow_cov(y, [a, b])
    assert result["auc_a"] == pytest.approx(sklearn_metrics.roc_auc_score(y, a))
    assert result["auc_b"] == pytest.approx(auc_b)
    assert result["difference"] == pytest.approx(auc_a - auc_b)
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    assert result["se"] == pytest.approx(math.sqrt(var))
    z = (auc_a - auc_b) / math.sqrt(var)
    assert result["z"] == pytest.approx(z)
    assert result["p"] == pytest.approx(2 * stats.norm.sf(abs(z)))
    # Swapping the models flips z, keeps p.
    swapped = delong_paired_test(y, b, a)
    assert swapped["z"] == pytest.approx(-result["z"]) and swapped["p"] == pytest.approx(
        result["p"])


def test_delong_paired_degenerate_cases():
    y, a, _ = _data(30, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = delong_paired_test(y, a, 3 * a + 1)  # same ranking: same ROC curve
        assert same["difference"] == pytest.approx(0.0) and same["p"] == 1.0
        assert "note" in same
        separated = delong_paired_test([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], [0.2, 0.1, 0.9, 0.8])
        assert separated["p"] == 1.0 and separated["z"] == 0.0


def test_balanced_accuracy_equals_sklearn():
    rng = np.random.default_rng(7)
    for n, k in ((3, 2), (50, 3), (200, 5)):
        y_true = rng.integers(0, k, n)
        y_true[:2] = [0, 1]
        y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, k, n))
        assert balanced_accuracy(y_true, y_pred) == pytest.approx(
            sklearn_metrics.balanced_accuracy_score(y_true, y_pred))
    # A class predicted but never true does not count (sklearn warns and drops it).
    y_true, y_pred = [0, 0, 1, 1], [0, 2, 1, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = sklearn_metrics.balanced_accuracy_score(y_true, y_pred)
    assert balanced_accuracy(y_true, y_pred) == pytest.approx(expected) == 0.75
    assert balanced_accuracy([0, 0, 0, 1], [0, 0, 0, 0]) == 0.5


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="y_true: expected binary labels"):
        roc_auc_ci([0, 1, 2, 1], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="y_true: expected at least 2 positives"):
        roc_auc_ci([0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="y_true: expected at least 2 positives"):
        roc_auc_ci([0, 0, 0, 1], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="scores: value at index 1 is nan"):
        roc_auc_ci([0, 0, 1, 1], [0.1, float("nan"), 0.3, 0.4])
    with pytest.raises(ValueError, match="scores: expected 4 values \\(one per label\\)"):
        roc_auc_ci([0, 0, 1, 1], [0.1, 0.3, 0.4])
    with pytest.raises(ValueError, match="level"):
        roc_auc_ci([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], level=1.0)
    with pytest.raises(ValueError, match="scores_b: value at index 0 is inf"):
        delong_paired_test([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], [float("inf"), 0, 0, 0])
    with pytest.raises(ValueError, match="y_pred"):
        balanced_accuracy([0, 1, 1], [0, 1])
