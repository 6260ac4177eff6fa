"""H3's secondary measure, region occlusion of the border band, on nets whose evidence is known."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

import keras
import tensorflow as tf

from covidnet_siamese.data import border_mask
from covidnet_siamese.experiment import border_occlusion, occlusion_blur_sigma

SIZE = 20
SLOPE = 0.5


def _reader(region):
    """Probabilities softmax([SLOPE * mean of the film inside `region`, 0, 0])."""
    weights = tf.constant(region / region.sum(), tf.float32)
    inputs = keras.Input((SIZE, SIZE, 1))
    mean = keras.layers.Lambda(lambda x: tf.reduce_sum(x[..., 0] * weights, axis=[1, 2]))(inputs)
    probs = keras.layers.Lambda(lambda m: tf.nn.softmax(
        tf.stack([SLOPE * m, tf.zeros_like(m), tf.zeros_like(m)], -1)))(mean)
    return keras.Model(inputs, probs)


def _p0(mean):
    return np.exp(SLOPE * mean) / (np.exp(SLOPE * mean) + 2.0)


def test_a_net_that_reads_only_the_border_band():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, SIZE, SIZE, 1)).astype(np.float32)
    band = border_mask(SIZE, 0.1)
    artefacts = np.zeros((4, SIZE, SIZE), bool)
    artefacts[1, 0:2, 5:9] = True  # one film carries an artefact, inside the band
    sigma = 1.5
    out = border_occlusion(_reader(band), x, np.zeros(4, np.int64), band, artefacts,
                           blur_sigma=sigma, batch_size=3)
    # Outside the band nothing it reads changes: exactly 0.
    assert out["border_complement_drop"] == 0.0
    on_band = band.astype(bool)
    expected, artefact = [], None
    for i, film in enumerate(x[..., 0].astype(np.float64)):
        blurred = gaussian_filter(film, sigma, mode="reflect", truncate=3.0)
        expected.append(_p0(film[on_band].mean()) - _p0(blurred[on_band].mean()))
        if i == 1:
            mixed = np.where(artefacts[1], blurred, film)
            artefact = _p0(film[on_band].mean()) - _p0(mixed[on_band].mean())
    assert out["border_drop"] == pytest.approx(np.mean(expected), abs=1e-6)
    assert out["artefact_images"] == 1
    assert out["artefact_drop"] == pytest.approx(artefact, abs=1e-6)


def test_a_net_that_ignores_the_border_loses_nothing_when_it_is_blurred():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, SIZE, SIZE, 1)).astype(np.float32)
    band = border_mask(SIZE, 0.1)
    out = border_occlusion(_reader(1.0 - band), x, np.zeros(3, np.int64), band,
                           np.zeros((3, SIZE, SIZE), bool), blur_sigma=2.0)
    assert out["border_drop"] == 0.0
    assert out["artefact_images"] == 0 and np.isnan(out["artefact_drop"])


def test_blur_sigma_is_rises_at_the_papers_grid():
    assert occlusion_blur_sigma(224) == 5.0
    assert occlusion_blur_sigma(64) == pytest.approx(1.4286, abs=1e-4)
