"""Tests of the NumPy classification metrics, against hand-worked cases and scikit-learn."""

import numpy as np
import pytest
from sklearn import metrics as skm

from shared.metrics import (
    classification_metrics,
    confusion_matrix,
    per_class_accuracy,
    quadratic_weighted_kappa,
    scan_mode,
)


pytestmark = pytest.mark.no_keras


def test_binary_by_hand():
    # TP=2, FN=1, FP=1, TN=4
    y_true = [1, 1, 1, 0, 0, 0, 0, 0]
    y_pred = [1, 1, 0, 1, 0, 0, 0, 0]
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, 2), [[4, 1], [1, 2]])
    m = classification_metrics(y_true, y_pred, average="binary")
    assert m == pytest.approx(
        {"accuracy": 6 / 8, "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "specificity": 4 / 5}
    )
    # class 0 as positive swaps recall and specificity
    m0 = classification_metrics(y_true, y_pred, average="binary", positive=0)
    assert m0["recall"] == pytest.approx(4 / 5) and m0["specificity"] == pytest.approx(2 / 3)


def test_macro_three_class_by_hand():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 0]
    # precision: c0 1/2, c1 2/3, c2 1/1; recall: 1/2, 1, 1/2
    # specificity: c0 3/4, c1 3/4, c2 4/4
    m = classification_metrics(y_true, y_pred)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert m["recall"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    f1 = [0.5, 2 * (2 / 3) / (2 / 3 + 1), 2 * 0.5 / 1.5]
    assert m["f1"] == pytest.approx(np.mean(f1))
    assert m["specificity"] == pytest.approx((3 / 4 + 3 / 4 + 1) / 3)
    np.testing.assert_allclose(per_class_accuracy(y_true, y_pred, 3), [0.5, 1.0, 0.5])


@pytest.mark.parametrize("k,seed", [(2, 0), (3, 1), (5, 2)])
def test_against_sklearn_random(k, seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, k, 200))
    labels = list(range(k))
    np.testing.assert_array_equal(
        confusion_matrix(y_true, y_pred, k), skm.confusion_matrix(y_true, y_pred, labels=labels)
    )
    m = classification_metrics(y_true, y_pred, num_classes=k)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
        assert m[name] == pytest.approx(fn(y_true, y_pred, labels=labels, average="macro", zero_division=0))
    # specificity of class c = recall of "not c"
    spec = [skm.recall_score(y_true != c, y_pred != c) for c in labels]
    assert m["specificity"] == pytest.approx(np.mean(spec))
    if k == 2:
        b = classification_metrics(y_true, y_pred, average="binary")
        assert b["f1"] == pytest.approx(skm.f1_score(y_true, y_pred))
        assert b["precision"] == pytest.approx(skm.precision_score(y_true, y_pred))


def test_zero_division_and_scores_input():
    # class 2 never predicted nor present: precision/recall/F1 0, specificity 1
    m = classification_metrics([0, 1], [0, 1], num_classes=3)
    assert m["precision"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(1.0)
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    np.testing.assert_array_equal(confusion_matrix(np.eye(2)[[0, 1, 1]], probs), [[1, 0], [1, 1]])
    assert np.isnan(per_class_accuracy([0, 0], [0, 1], 3)[2])


def test_scan_mode_and_ties():
    preds = [3, 3, 2, 1, 2, 2, 2, 4, 4, 5, 5]
    scans = ["a", "a", "a", "b", "b", "b", "b", "c", "c", "c", "c"]
    assert scan_mode(preds, scans) == {"a": 3, "b": 2, "c": 4}  # c: tie 4/5 -> 4 (smallest)
    assert scan_mode([2, 1, 1, 2], [0] * 4) == {0: 1}
    # regression scores are rounded first
    assert scan_mode([2.2, 1.9, 4.6], [1, 1, 1]) == {1: 2}
    assert scan_mode(np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), [0, 0, 0]) == {0: 1}


def test_qwk_by_hand_and_against_sklearn():
    # perfect agreement -> 1, complete reversal on 2 classes -> -1
    assert quadratic_weighted_kappa([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert quadratic_weighted_kappa([0, 1], [1, 0]) == pytest.approx(-1.0)
    # hand-worked: a=[0,0,1,1], b=[0,1,1,1], K=2, W=[[0,1],[1,0]]
    # O=[[1,1],[0,2]] -> sum W*O = 1; rows (2,2), cols (1,3), E=[[.5,1.5],[.5,1.5]] -> sum W*E = 2
    assert quadratic_weighted_kappa([0, 0, 1, 1], [0, 1, 1, 1]) == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    a = rng.integers(1, 6, 300)
    b = np.clip(a + rng.integers(-1, 2, 300), 1, 5)
    ref = skm.cohen_kappa_score(a, b, weights="quadratic", labels=[1, 2, 3, 4, 5])
    assert quadratic_weighted_kappa(a, b, num_classes=5, min_label=1) == pytest.approx(ref)
    # the label range matters when not all grades occur
    sub_a, sub_b = np.array([2, 3, 3, 4]), np.array([2, 3, 4, 4])
    ref = skm.cohen_kappa_score(sub_a, sub_b, weights="quadratic", labels=[1, 2, 3, 4, 5])
    assert quadratic_weighted_kappa(sub_a, sub_b, num_classes=5, min_label=1) == pytest.approx(ref)
    with pytest.warns(UserWarning, match="undefined"):
        assert np.isnan(quadratic_weighted_kappa([2, 2], [2, 2]))


def test_error_paths():
    with pytest.raises(ValueError, match="empty"):
        classification_metrics([], [])
    with pytest.raises(ValueError, match="same length"):
        confusion_matrix([0, 1], [0])
    with pytest.raises(ValueError, match=r"y_pred\[1\]=3 is outside 0..1"):
        confusion_matrix([0, 1], [0, 3], 2)
    with pytest.raises(ValueError, match="average"):
        classification_metrics([0, 1], [0, 1], average="micro")
    with pytest.raises(ValueError, match="positive=4"):
        classification_metrics([0, 1], [0, 1], average="binary", positive=4)
    with pytest.raises(ValueError, match="integer labels"):
        confusion_matrix([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match="NaN at index 1"):
        confusion_matrix([0, np.nan], [0, 1])
    with pytest.raises(ValueError, match="same length"):
        scan_mode([1, 2], ["a"])
    with pytest.raises(ValueError, match="outside"):
        quadratic_weighted_kappa([0, 5], [0, 1], num_classes=3)
