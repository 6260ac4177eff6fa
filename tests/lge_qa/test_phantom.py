import dataclasses

import numpy as np
import pytest

from lge_qa import io, phantom


def test_parameters_drive_scores_monotonically():
    rng = np.random.default_rng(0)
    base = phantom.parameters_from_quality([0.5] * 4, rng)
    fields = {  # field -> (attribute index, +1 if a larger value is better)
        "myo_ratio": (0, -1), "blur_frac": (1, -1), "ghost_frac": (1, -1),
        "wall_enhancement": (2, +1), "fibrosis_gain": (3, +1),
    }
    grids = {"myo_ratio": np.linspace(0.05, 1.1, 12), "blur_frac": np.linspace(0, 1, 12),
             "ghost_frac": np.linspace(0, 1, 12), "wall_enhancement": np.linspace(0.25, 1.35, 12),
             "fibrosis_gain": np.linspace(-0.65, 0.6, 12)}
    for field, (k, sign) in fields.items():
        scores = [phantom.observer_scores(dataclasses.replace(base, **{field: v}), rng, rater_sd=0)[k]
                  for v in grids[field]]
        diffs = sign * np.diff(scores)
        assert np.all(diffs >= 0), (field, scores)
        assert scores[0] != scores[-1], field
    # Blur also dims the fibrosis score (fibrosis seen through the blur).
    sharp = phantom.observer_scores(dataclasses.replace(base, blur_frac=0, ghost_frac=0), rng, rater_sd=0)
    blurred = phantom.observer_scores(dataclasses.replace(base, blur_frac=1, ghost_frac=1), rng, rater_sd=0)
    assert blurred[3] <= sharp[3] and blurred[1] == 1 and sharp[1] == 5
    q_blurred = phantom.attribute_quality(dataclasses.replace(base, blur_frac=1, ghost_frac=1))
    q_sharp = phantom.attribute_quality(dataclasses.replace(base, blur_frac=0, ghost_frac=0))
    assert q_blurred[1] == 0 and q_sharp[1] == 1
    assert q_blurred[3] == pytest.approx(0.7 * q_sharp[3])


def test_quality_round_trip():
    rng = np.random.default_rng(1)
    q = np.array([0.1, 0.4, 0.7, 0.5])
    np.testing.assert_allclose(phantom.attribute_quality(phantom.parameters_from_quality(q, rng)), q, atol=1e-9)


def test_rendered_intensities_follow_the_parameters():
    rng = np.random.default_rng(2)
    params = phantom.ScanParameters(myo_ratio=0.3, blur_frac=0.0, ghost_frac=0.0,
                                    wall_enhancement=1.2, fibrosis_gain=0.5)
    vol = phantom.render_scan(params, (64, 64, 12), rng, noise_sd=0.0)
    img, lab = vol["image"].astype(float), vol["labels"]
    blood = img[lab == 2].mean()
    assert img[lab == 3].mean() / blood == pytest.approx(0.3, abs=0.03)
    assert img[lab == 8].mean() / blood == pytest.approx(1.2, abs=0.06)
    assert img[lab == 6].mean() / blood == pytest.approx(1.5, abs=0.08)
    # The LA occupies part of the stack only, and its mask is the LA blood pool.
    has_la = vol["la_mask"].any(axis=(0, 1))
    assert 0 < has_la.sum() < len(has_la)
    np.testing.assert_array_equal(vol["la_mask"], lab == 4)
    # Blur lowers the edge contrast: mean absolute gradient drops.
    blurred = phantom.render_scan(dataclasses.replace(params, blur_frac=1.0), (64, 64, 12),
                                  np.random.default_rng(2), noise_sd=0.0)["image"].astype(float)
    assert np.abs(np.diff(blurred, axis=0)).mean() < 0.7 * np.abs(np.diff(img, axis=0)).mean()


def test_generated_dataset_layout_and_imbalance(tmp_path):
    root = phantom.generate_dataset(tmp_path / "d", n_segmentation=2, n_scored=40, shape=(24, 24, 4), seed=3)
    assert io.list_cases(root / phantom.SEG_SPLIT) == ["SEG0000", "SEG0001"]
    assert len(io.list_cases(root / phantom.QA_SPLIT)) == 40
    scores = np.stack(list(io.read_scores_csv(root / phantom.SCORES_FILE).values()))
    assert scores.min() >= 1 and scores.max() <= 5
    # Most scores in 2-4, as in the paper's cohort.
    assert np.mean((scores >= 2) & (scores <= 4)) > 0.7
    image, mask = io.read_case(root / phantom.QA_SPLIT / "QA0000")
    assert image.shape == (24, 24, 4) and mask.any()
    # Same seed, same data.
    again = phantom.generate_dataset(tmp_path / "e", n_segmentation=2, n_scored=40, shape=(24, 24, 4), seed=3)
    np.testing.assert_array_equal(io.read_case(again / phantom.QA_SPLIT / "QA0005")[0],
                                  io.read_case(root / phantom.QA_SPLIT / "QA0005")[0])
    with pytest.raises(ValueError, match="seed"):
        phantom.generate_dataset(tmp_path / "f", n_segmentation=1, n_scored=1, shape=(8, 8, 2), seed=None)
