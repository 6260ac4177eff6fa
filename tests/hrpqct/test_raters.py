import numpy as np
import pytest

from hrpqct import motion, raters


def test_grade_and_consensus_by_hand():
    edges = [1.0, 2.0, 3.0, 4.0]
    assert raters.grade([0.5, 1.0, 2.5, 9.0], edges).tolist() == [1, 2, 3, 5]
    # Raters grading 1, 2, 2 -> mean 1.67 -> 2; 2, 3, 3 -> 2.67 -> 3; 2, 3 -> 2.5 -> 3 (half up).
    assert raters.consensus_of(np.array([[0.5, 1.5, 1.5], [1.5, 2.5, 2.5]]), edges).tolist() == [2, 3]
    assert raters.consensus_of(np.array([[1.5, 2.5]]), edges).tolist() == [3]


def test_calibration_by_hand_and_to_the_thesis_table():
    # One noiseless rater perceiving 1..5, equal targets: each edge lies in (k, k + 1].
    edges = raters.calibrate_edges(np.arange(1.0, 6.0)[:, None], (1, 1, 1, 1, 1))
    assert np.all(edges > [1, 2, 3, 4]) and np.all(edges <= [2, 3, 4, 5])
    # Three noisy raters of 2000 scans: the consensus follows the radius table within a scan
    # or two per grade, though the raters disagree.
    measure = np.exp(np.random.default_rng(0).normal(size=2000))
    perceived = raters.perceive(measure, seed=1, noise=0.3)
    target = np.asarray(motion.THESIS_GRADE_COUNTS["radius"], float)
    edges = raters.calibrate_edges(perceived, target)
    counts = np.bincount(raters.consensus_of(perceived, edges), minlength=6)[1:]
    np.testing.assert_allclose(counts, target / target.sum() * 2000, atol=3)
    assert np.mean(np.any(raters.grade(perceived, edges) != raters.grade(perceived, edges)[:, :1], axis=1)) > 0.2
    with pytest.raises(ValueError, match="target_counts"):
        raters.calibrate_edges(perceived, (1, 1))


def test_perception_is_reseedable_and_keeps_still_scans_at_grade_one():
    a = raters.perceive([0.0, 0.1], seed=3, noise=0.3)
    np.testing.assert_array_equal(a, raters.perceive([0.0, 0.1], seed=3, noise=0.3))
    assert raters.grade(a[0], [1e-3, 1e-2, 0.1, 1.0]).tolist() == [1, 1, 1]
