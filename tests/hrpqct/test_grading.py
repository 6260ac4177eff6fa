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


def test_held_out_and_unit_splits_keep_every_scan():
    # 3 grades x 8 scans: the test cohort takes round(8 * 0.25) = 2 per grade; each unit
    # splits the other 18 into validation (round(6 * 1/3) = 2 per grade) and training.
    labels = np.repeat([1, 2, 3], 8)
    pool, test = experiment.held_out_split(labels, test_fraction=0.25, seed=0)
    assert len(test) == 6 and len(pool) == 18 and not set(pool) & set(test)
    np.testing.assert_array_equal(np.bincount(labels[test]), [0, 2, 2, 2])
    splits = [experiment.unit_split(labels, pool, val_fraction=1 / 3, seed=s) for s in (1, 2)]
    for train, val in splits:
        assert len(train) == 12 and len(val) == 6
        assert sorted(np.concatenate([train, val]).tolist()) == pool.tolist()
    # Units differ in their split, and the test cohort does not depend on the unit.
    assert not np.array_equal(splits[0][1], splits[1][1])
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


def test_standardize_in_place_and_chunked_statistics():
    rng = np.random.default_rng(0)
    images = rng.normal(3.0, 2.0, size=(40, 2, 5, 5)).astype(np.float32)
    index = np.arange(0, 40, 3)
    mean, std = grading.mean_and_std(images, index, chunk=4)
    ref = images[index].astype(np.float64)
    assert mean == pytest.approx(ref.mean(), rel=1e-12) and std == pytest.approx(ref.std(), rel=1e-10)
    expected = (images - ref.mean()) / ref.std()
    out = grading.standardize(images, stats=(mean, std), out=images)
    assert out is images and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # The prefilter in place equals scipy's per-slice filter.
    from scipy import ndimage

    x = rng.normal(size=(3, 8, 8)).astype(np.float32)
    ref = np.stack([ndimage.gaussian_filter(s, 0.8) for s in x])
    np.testing.assert_allclose(grading.prefilter(x, 0.8, out=x), ref, rtol=1e-6, atol=1e-6)


def test_threshold_grader_flags_undefined_values():
    # Before: a scan without air (NaN statistic) sorted above every threshold and came out grade 5.
    assert grading.qme_grades([0.5, np.nan, 3.5, np.inf], [1.0, 2.0, 3.0, 4.0]).tolist() == [1, 0, 4, 0]
    values = np.array([0.1, 0.2, 1.5, 2.5, 3.5, 4.5, np.nan, 0.15, 4.6])
    grades = np.array([1, 1, 2, 3, 4, 5, 3, 1, 5])
    out = grading.threshold_grader(values, grades, fit_idx=np.arange(7), test_idx=np.array([6, 7, 8]))
    # Fit on the six finite scans: cuts halfway between neighbours of different grades.
    np.testing.assert_allclose(out["thresholds"], [0.85, 2.0, 3.0, 4.0])
    assert out["not_graded"] == 1 and out["not_graded_index"] == [6]
    assert out["test"]["accuracy"] == 1.0  # scans 7 (grade 1) and 8 (grade 5) graded right


def test_agreement_pairwise_and_full_with_a_missing_rater():
    from hrpqct.agreement import full_agreement_by_site, rater_agreement

    g = np.array([[1, 1, 2], [3, 3, 3], [2, 2, np.nan], [4, np.nan, np.nan]], dtype=float)
    out = rater_agreement(g, np.array([1, 3, 2, 4]))
    # Pairs: scan 1 differs in 2 of 3 pairs, scan 2 in none, scan 3 has one pair (agreeing): 2 / 7.
    assert out["pairwise_disagreement_fraction"] == pytest.approx(2 / 7)
    assert out["disagreement_rater1_rater3"] == pytest.approx(0.5)
    # Full agreement over the 3 scans with two raters or more; a blank is not a disagreement
    # (before: scan 3 counted as a disagreement, giving 1 / 4).
    assert out["scans_with_two_raters"] == 3 and out["full_agreement_fraction"] == pytest.approx(2 / 3)
    assert full_agreement_by_site(g, np.array(["radius", "radius", "tibia", "tibia"])) == {
        "radius": 0.5, "tibia": 1.0}


def test_split_of_a_few_scans_leaves_no_part_empty():
    # Four singleton grades: round(0.3) = round(0.2) = 0 scans per grade for test and
    # validation, so each part takes one training scan of the most common training grade
    # (all tie at one: the lowest grade first) -> test scan 0, validation scan 1.
    tr, va, te = experiment.stratified_split(np.array([1, 2, 3, 4]), val_fraction=0.2, test_fraction=0.3, seed=0)
    np.testing.assert_array_equal(te, [0])
    np.testing.assert_array_equal(va, [1])
    np.testing.assert_array_equal(tr, [2, 3])
    # A part not asked for stays empty.
    tr, va, te = experiment.stratified_split(np.array([1, 2, 3, 4]), val_fraction=0.0, test_fraction=0.3, seed=0)
    assert len(va) == 0 and len(te) == 1 and len(tr) == 3
