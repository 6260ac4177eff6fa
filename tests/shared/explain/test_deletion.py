"""Deletion / insertion curves and areas against curves worked out by hand."""

import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf

from shared import explain
from shared.explain.deletion import removal_counts
from tests.shared.explain._models import linear_model, region_mean_model

# A 4 x 4 image of ones; the model's class 0 is the mean over the top-left 2 x 2 block.
REGION = np.zeros((4, 4), np.float32)
REGION[:2, :2] = 1.0


def _region_first_and_last(region):
    """Two copies of an image of ones; maps rank the region first, then last."""
    images = np.ones((2,) + region.shape + (1,), np.float32)
    maps = np.stack([region, 1.0 - region])
    return images, maps


def test_deletion_of_a_region_mean_model_ranked_first_and_last():
    # 16 pixels, 4 steps of 4 pixels. Region first: the first step removes the whole
    # region, the score falls from 1 to 0 and stays there: [1, 0, 0, 0, 0], area
    # 0.25 * (1/2 + 0 + 0 + 0 + 0/2) = 0.125. Region last: the score holds until the
    # last step: [1, 1, 1, 1, 0], area 0.25 * (1/2 + 1 + 1 + 1 + 0) = 0.875.
    images, maps = _region_first_and_last(REGION)
    curve = explain.deletion_curve(region_mean_model(REGION), images, maps, [0, 0], steps=4)
    np.testing.assert_allclose(curve.fractions.numpy(), [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curve.scores.numpy(), [[1, 0, 0, 0, 0], [1, 1, 1, 1, 0]],
                               atol=1e-6)
    np.testing.assert_allclose(curve.area().numpy(), [0.125, 0.875], atol=1e-6)


def test_class_one_is_the_complement_score():
    images, maps = _region_first_and_last(REGION)
    curve = explain.deletion_curve(region_mean_model(REGION), images, maps, 1, steps=4)
    np.testing.assert_allclose(curve.scores.numpy(), [[0, 1, 1, 1, 1], [0, 0, 0, 0, 1]],
                               atol=1e-6)


def test_insertion_of_a_region_mean_model():
    # Inserting into a zero baseline: region first [0, 1, 1, 1, 1] (area 0.875),
    # region last [0, 0, 0, 0, 1] (area 0.125).
    images, maps = _region_first_and_last(REGION)
    curve = explain.insertion_curve(region_mean_model(REGION), images, maps, [0, 0], steps=4)
    np.testing.assert_allclose(curve.scores.numpy(), [[0, 1, 1, 1, 1], [0, 0, 0, 0, 1]],
                               atol=1e-6)
    np.testing.assert_allclose(curve.area().numpy(), [0.875, 0.125], atol=1e-6)


def test_deletion_of_volumes():
    # The same case on 2 x 2 x 4 volumes: 16 voxels, a region of 4.
    region = REGION.reshape(2, 2, 4)
    images, maps = _region_first_and_last(region)
    curve = explain.deletion_curve(region_mean_model(region), images, maps, [0, 0], steps=4)
    np.testing.assert_allclose(curve.scores.numpy(), [[1, 0, 0, 0, 0], [1, 1, 1, 1, 0]],
                               atol=1e-6)


def test_a_coarse_map_is_resized_to_the_image_grid():
    # A 2 x 2 map hot in its top-left cell, upsampled bilinearly, ranks the four pixels
    # of the top-left quadrant first (1, 0.75, 0.75, 0.5625 against at most 0.25).
    images = np.ones((1, 4, 4, 1), np.float32)
    coarse = np.array([[[1.0, 0.0], [0.0, 0.0]]], np.float32)
    curve = explain.deletion_curve(region_mean_model(REGION), images, coarse, [0], steps=4)
    np.testing.assert_allclose(curve.scores.numpy(), [[1, 0, 0, 0, 0]], atol=1e-6)


def test_insertion_on_a_linear_model_has_a_known_area():
    # Score = 4 x0 + 3 x1 + 2 x2 + 1 x3 on a 2 x 2 image of ones, zero baseline.
    # Ranked by the exact attribution w * x: [0, 4, 7, 9, 10], area
    # 0.25 * (0 + 4 + 7 + 9 + 10/2) = 6.25. Ranked in reverse: [0, 1, 3, 6, 10], area
    # 0.25 * (0 + 1 + 3 + 6 + 5) = 3.75.
    w = np.array([4.0, 3.0, 2.0, 1.0])
    model = linear_model(w[:, None], [0.0], (2, 2, 1))
    images = np.ones((2, 2, 2, 1), np.float32)
    maps = np.stack([w.reshape(2, 2), w[::-1].reshape(2, 2)])
    curve = explain.insertion_curve(model, images, maps, 0, steps=4)
    np.testing.assert_allclose(curve.scores.numpy(), [[0, 4, 7, 9, 10], [0, 1, 3, 6, 10]],
                               atol=1e-5)
    np.testing.assert_allclose(curve.area().numpy(), [6.25, 3.75], atol=1e-5)


def test_insertion_from_a_constant_baseline():
    # Baseline 1, image 3: each inserted pixel adds w * (3 - 1) to the baseline's 10:
    # [10, 18, 24, 28, 30], area 0.25 * (5 + 18 + 24 + 28 + 15) = 22.5.
    w = np.array([4.0, 3.0, 2.0, 1.0])
    model = linear_model(w[:, None], [0.0], (2, 2, 1))
    images = np.full((1, 2, 2, 1), 3.0, np.float32)
    curve = explain.insertion_curve(model, images, w.reshape(1, 2, 2), 0, steps=4, baseline=1.0)
    np.testing.assert_allclose(curve.scores.numpy(), [[10, 18, 24, 28, 30]], atol=1e-5)
    np.testing.assert_allclose(curve.area().numpy(), [22.5], atol=1e-5)


def test_a_callable_target_scores_the_outputs():
    images, maps = _region_first_and_last(REGION)
    curve = explain.deletion_curve(region_mean_model(REGION), images, maps,
                                   lambda out: 2.0 * out[:, 0], steps=4)
    np.testing.assert_allclose(curve.scores.numpy(), [[2, 0, 0, 0, 0], [2, 2, 2, 2, 0]],
                               atol=1e-6)


def test_blur_baseline_deletes_to_the_blurred_image():
    # Deleting everything leaves the blurred image: the last point scores the blur.
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 12, 12, 1)).astype(np.float32)
    w = rng.normal(size=(144, 1))
    model = linear_model(w, [0.0], (12, 12, 1))
    maps = rng.normal(size=(2, 12, 12)).astype(np.float32)
    curve = explain.deletion_curve(model, images, maps, 0, steps=3, baseline="blur",
                                   blur_sigma=1.5)
    blurred = scipy.ndimage.gaussian_filter(images, sigma=(0, 1.5, 1.5, 0), mode="reflect",
                                            truncate=3.0)
    expected = blurred.reshape(2, -1) @ w[:, 0]
    np.testing.assert_allclose(curve.scores.numpy()[:, -1], expected, atol=1e-4)


@pytest.mark.parametrize("shape,sigma", [((2, 12, 11, 2), 1.5), ((1, 9, 10, 8, 1), 1.0)])
def test_gaussian_blur_matches_scipy(shape, sigma):
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    axes_sigma = (0,) + (sigma,) * (len(shape) - 2) + (0,)
    expected = scipy.ndimage.gaussian_filter(x, sigma=axes_sigma, mode="reflect", truncate=3.0)
    np.testing.assert_allclose(explain.gaussian_blur(x, sigma).numpy(), expected, atol=1e-5)


def test_removal_counts_floor_the_fraction():
    assert removal_counts(4, 3) == [0, 1, 2, 4]
    assert removal_counts(16, 4) == [0, 4, 8, 12, 16]


def test_curve_area_is_the_trapezoid_over_the_range():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(3, 6))
    x = np.sort(rng.uniform(size=6))
    expected = np.trapezoid(scores, x, axis=1) / (x[-1] - x[0])
    np.testing.assert_allclose(explain.curve_area(scores, x).numpy(), expected, atol=1e-5)


def test_pixel_ranks_break_ties_by_position():
    ranks = explain.pixel_ranks(tf.constant([[[0.5, 2.0], [0.5, 2.0]]]))
    np.testing.assert_array_equal(ranks.numpy(), [[[2, 0], [3, 1]]])
