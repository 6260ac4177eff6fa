import numpy as np
import pytest
from scipy import ndimage

from hrpqct import experiment, grading, training


def test_ensemble_votes_by_hand():
    # 3 models x 2 scans x 4 slices.
    votes = np.array([
        [[2, 2, 3, 3], [5, 5, 5, 4]],
        [[2, 2, 3, 3], [5, 5, 5, 5]],
        [[2, 1, 3, 4], [5, 5, 5, 5]],
    ])
    out = grading.ensemble_scan_grades(votes, threshold=0.75)
    # Scan 0: slice grades 2, 2, 3, 3 -> mean 2.5 -> 3 (half up); 5 of 12 votes say 3.
    # Scan 1: slice grades 5, 5, 5, 5 -> 5; 11 of 12 votes say 5.
    np.testing.assert_array_equal(out["slice_grades"], [[2, 2, 3, 3], [5, 5, 5, 5]])
    np.testing.assert_array_equal(out["grade"], [3, 5])
    np.testing.assert_allclose(out["confidence"], [5 / 12, 11 / 12])
    np.testing.assert_array_equal(out["review"], [True, False])
    # A tie between the models' votes goes to the lower grade.
    tie = grading.ensemble_scan_grades(np.array([[[2]], [[4]]]))
    assert tie["slice_grades"][0, 0] == 2 and tie["confidence"][0] == 0.5
    with pytest.raises(ValueError, match="grades 1-5"):
        grading.ensemble_scan_grades(np.zeros((1, 1, 1), int))
    with pytest.raises(ValueError, match="models, scans, slices"):
        grading.ensemble_scan_grades(np.ones((2, 2), int))


def test_prefilter_is_per_slice_gaussian():
    x = np.random.default_rng(0).random((2, 3, 12, 12)).astype(np.float32)
    out = grading.prefilter(x, 0.8)
    np.testing.assert_allclose(out[1, 2], ndimage.gaussian_filter(x[1, 2], 0.8), atol=1e-6)
    np.testing.assert_array_equal(grading.prefilter(x, 0.0), x)


def test_qme_threshold_grader_and_helpers():
    qme = np.array([0.1, 0.2, 0.3, 0.4, 1.0, 2.0, 5.0, 9.0])
    grades = np.array([1, 1, 2, 2, 3, 3, 4, 5])
    thr = grading.fit_qme_thresholds(qme, grades)
    np.testing.assert_allclose(thr, [0.25, 0.7, 3.5, 7.0])
    np.testing.assert_array_equal(grading.qme_grades(qme, thr), grades)
    w = training.class_weights([0, 0, 0, 1], cap=10.0)
    assert w[0] == pytest.approx(4 / 6) and w[1] == pytest.approx(2.0) and w[4] == 10.0
    m = training.scan_metrics([1, 2, 4, 5], [1, 3, 4, 3])
    assert m["accuracy"] == 0.5 and m["recall_grade2"] == 0.0 and np.isnan(m["recall_grade3"])
    assert m["rescan_sensitivity"] == 0.5 and m["rescan_specificity"] == 1.0
    tr, va, te = experiment.stratified_split(np.repeat([1, 2, 3], 8), val_fraction=0.25, test_fraction=0.25, seed=0)
    assert len(tr) == 12 and len(va) == 6 and len(te) == 6
    assert not set(tr) & set(te) and not set(va) & set(te)
    agree = experiment.rater_agreement(np.array([[1, 1, 1], [2, 2, 3], [3, 3, 3]], float), [1, 2, 3])
    assert agree["kappa_rater1_rater2"] == pytest.approx(1.0)
    assert agree["any_disagreement_fraction"] == pytest.approx(1 / 3)


def test_standardize_uses_reference_statistics():
    # reference (0, 2): mean 1, std 1, so 1 -> 0 and 3 -> 2, whatever the images' own statistics.
    out = grading.standardize(np.array([[1.0, 3.0]]), np.array([0.0, 2.0]))
    np.testing.assert_allclose(out, [[0.0, 2.0]])
    assert out.dtype == np.float32
    # A constant reference does not divide by zero.
    assert np.all(np.isfinite(grading.standardize(np.ones((2, 2)), np.ones(3))))
    with pytest.raises(ValueError, match="reference"):
        grading.standardize(np.ones(2), np.array([]))


def test_air_streak_rms_by_hand():
    # A disc of soft tissue (0.2 / cm) in air; the air outside carries +-0.01 stripes.
    yy, xx = np.mgrid[:32, :32]
    disc = np.hypot(yy - 15.5, xx - 15.5) < 8
    stripes = np.where(xx % 2 == 0, 0.01, -0.01)
    scan = np.where(disc, 0.2, stripes)[None, None].astype(np.float32)
    rms = grading.air_streak_rms(np.concatenate([scan, np.where(disc, 0.2, 0.0)[None, None]]))
    np.testing.assert_allclose(rms, [0.01, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match="scans, slices"):
        grading.air_streak_rms(np.zeros((2, 8, 8)))
