"""Occlusion sensitivity and integrated gradients against hand-derived maps."""

import keras
import numpy as np
import pytest

from shared import explain
from shared.explain.reference_maps import patch_starts
from tests.shared.explain._models import linear_model


def _linear_case(spatial, channels, rng):
    w = rng.normal(size=spatial + (channels,))
    model = linear_model(w.reshape(-1, 1), [0.3], spatial + (channels,))
    images = rng.normal(size=(2,) + spatial + (channels,)).astype(np.float32)
    return model, images, w


def test_patch_starts_end_flush_with_the_border():
    assert patch_starts(5, 2, 2) == [0, 2, 3]
    assert patch_starts(4, 2, 2) == [0, 2]
    assert patch_starts(4, 4, 1) == [0]


def test_tiling_patches_give_each_pixel_its_patch_evidence():
    # Patches of 2 x 2 that tile a 4 x 4 image: the drop of a patch is w . x over it,
    # and each pixel is covered by its patch only.
    rng = np.random.default_rng(0)
    model, images, w = _linear_case((4, 4), 2, rng)
    maps = explain.occlusion_sensitivity(model, images, 0, patch_size=2).numpy()
    evidence = (images * w[None]).sum(axis=-1)
    expected = evidence.reshape(2, 2, 2, 2, 2).sum(axis=(2, 4))  # [N, 2, 2] patch sums
    expected = np.repeat(np.repeat(expected, 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(maps, expected, atol=1e-5)


def _brute_force(images, w, patch, stride, baseline):
    """Loop over images and patch positions, numpy only."""
    spatial = images.shape[1:-1]
    out = np.zeros(images.shape[:-1])
    count = np.zeros(spatial)
    starts = [patch_starts(s, p, st) for s, p, st in zip(spatial, patch, stride)]
    for start in np.array(np.meshgrid(*starts, indexing="ij")).reshape(len(spatial), -1).T:
        region = tuple(slice(s, s + p) for s, p in zip(start, patch))
        count[region] += 1
        for n in range(images.shape[0]):
            hidden = images[n].copy()
            hidden[region] = baseline
            out[n][region] += ((images[n] - hidden) * w).sum()
    return out / count


@pytest.mark.parametrize("spatial,patch,stride", [((5, 6), (2, 3), (1, 2)),
                                                  ((4, 5, 3), (2, 2, 2), (1, 2, 1))],
                         ids=["2d", "3d"])
@pytest.mark.parametrize("per_call", [1, 7])
def test_overlapping_patches_match_a_per_image_loop(spatial, patch, stride, per_call):
    rng = np.random.default_rng(1)
    model, images, w = _linear_case(spatial, 1, rng)
    maps = explain.occlusion_sensitivity(model, images, 0, patch_size=patch, stride=stride,
                                         baseline=0.25, positions_per_call=per_call).numpy()
    np.testing.assert_allclose(maps, _brute_force(images, w, patch, stride, 0.25), atol=1e-5)


def test_integrated_gradients_of_a_linear_model_is_weight_times_difference():
    rng = np.random.default_rng(2)
    model, images, w = _linear_case((3, 4), 2, rng)
    maps = explain.integrated_gradients(model, images, 0, baseline=0.5, steps=3).numpy()
    np.testing.assert_allclose(maps, ((images - 0.5) * w[None]).sum(axis=-1), atol=1e-5)


def _square_model(shape):
    """Score = sum of squared inputs (two classes: +, -)."""
    inp = keras.Input(shape)
    flat = keras.layers.Flatten()(keras.ops.square(inp))
    dense = keras.layers.Dense(2, use_bias=False)
    model = keras.Model(inp, dense(flat))
    p = int(np.prod(shape))
    dense.set_weights([np.stack([np.ones(p), -np.ones(p)], axis=1).astype(np.float32)])
    return model


@pytest.mark.parametrize("shape", [(3, 4, 2), (2, 3, 2, 1)], ids=["2d", "3d"])
def test_integrated_gradients_of_a_square_model(shape):
    # S = sum x^2: the gradient 2 x is linear along the path, so the trapezoid rule is
    # exact: IG = (x - x') * (x + x') = x^2 - x'^2, per pixel and channel.
    rng = np.random.default_rng(3)
    images = rng.normal(size=(2,) + shape).astype(np.float32)
    base = rng.normal(size=images.shape).astype(np.float32)
    model = _square_model(shape)
    maps = explain.integrated_gradients(model, images, [0, 1], baseline=base, steps=2,
                                        sum_channels=False).numpy()
    sign = np.array([1.0, -1.0]).reshape((2,) + (1,) * len(shape))
    np.testing.assert_allclose(maps, sign * (images ** 2 - base ** 2), atol=1e-5)


def test_integrated_gradients_are_complete_on_a_small_network():
    # Completeness (Sundararajan et al. 2017): the map sums to S(x) - S(x').
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="tanh")(inp)
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x))
    model = keras.Model(inp, out)
    images = np.random.default_rng(4).normal(size=(3, 8, 8, 1)).astype(np.float32)
    maps = explain.integrated_gradients(model, images, [0, 1, 2], steps=64).numpy()
    probs = model.predict(np.concatenate([images, np.zeros_like(images)]), verbose=0)
    expected = probs[np.arange(3), [0, 1, 2]] - probs[3 + np.arange(3), [0, 1, 2]]
    np.testing.assert_allclose(maps.reshape(3, -1).sum(axis=1), expected, atol=2e-3)
