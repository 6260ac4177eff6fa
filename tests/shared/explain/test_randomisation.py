"""Cascading model-parameter randomisation and the Spearman correlation it reports."""

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from shared import explain
from tests.shared.explain._models import linear_model


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, size=(3, 4, 5)).astype(np.float32)  # many ties
    b = a + rng.integers(0, 3, size=a.shape)
    got = explain.spearman_correlation(a, b).numpy()
    expected = [scipy.stats.spearmanr(a[n].ravel(), b[n].ravel()).statistic for n in range(3)]
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_spearman_of_a_map_with_itself_reversed_and_constant():
    a = np.random.default_rng(1).normal(size=(1, 6, 6))
    np.testing.assert_allclose(explain.spearman_correlation(a, 2 * a + 1).numpy(), [1.0])
    np.testing.assert_allclose(explain.spearman_correlation(a, -a).numpy(), [-1.0])
    assert np.isnan(explain.spearman_correlation(a, np.zeros_like(a)).numpy()[0])


def _mlp():
    """Flatten -> Dense 'hidden' -> Dense 'head', weights from a seeded initialiser."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 1))
    x = keras.layers.Dense(8, name="hidden")(keras.layers.Flatten()(inp))
    return keras.Model(inp, keras.layers.Dense(2, name="head")(x), name="mlp")


def test_identity_map_gives_one_at_every_step_and_weights_are_restored():
    # A map that ignores the weights (the image itself) cannot change: correlation 1.
    model = _mlp()
    before = [w.copy() for w in model.get_weights()]
    images = np.random.default_rng(2).normal(size=(3, 16, 16, 1)).astype(np.float32)
    result = explain.cascading_randomisation(
        model, images, [0, 1, 0], lambda m, x, t: tf.convert_to_tensor(x)[..., 0], seed=0
    )
    assert result.layers == ("head", "hidden")
    np.testing.assert_allclose(result.correlations.numpy(), np.ones((2, 3)), atol=1e-6)
    for w, v in zip(before, model.get_weights()):
        np.testing.assert_array_equal(w, v)


def test_a_fully_reinitialised_model_gives_uncorrelated_maps():
    # A linear model whose weights form a ramp; its integrated gradients (baseline 0)
    # are w * x. Re-initialised, the weights are independent draws w': w' * x and
    # w * x agree in |x| but not in sign, so their rank correlation is near 0 (the
    # standard error for 256 pixels is about 1 / 16).
    ramp = np.linspace(1.0, 2.0, 256)
    model = linear_model(np.stack([ramp, -ramp], axis=1), [0.0, 0.0], (16, 16, 1))
    images = np.random.default_rng(3).normal(size=(4, 16, 16, 1)).astype(np.float32)

    def ig(m, x, t):
        return explain.integrated_gradients(m, x, t, steps=1)

    result = explain.cascading_randomisation(model, images, 0, ig, seed=0)
    rho = result.correlations.numpy()
    assert result.layers == ("head",) and rho.shape == (1, 4)
    assert np.all(np.abs(rho) < 0.25) and abs(rho.mean()) < 0.1, rho
    # Before any re-initialisation the same map is identical: correlation 1.
    np.testing.assert_allclose(explain.spearman_correlation(ig(model, images, 0),
                                                            ig(model, images, 0)), 1.0)


def _one_channel_cam_model(seed):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((6, 6, 3))
    feat = keras.layers.Conv2D(1, 1, name="feat")(inp)
    pooled = keras.layers.GlobalAveragePooling2D()(feat)
    return keras.Model(inp, keras.layers.Dense(2, name="head")(pooled), name="cam1")


def test_reinitialising_the_head_of_a_one_channel_cam_only_rescales_the_map():
    # With one feature channel A, Grad-CAM is (w_c / 36) * A: a new head changes only
    # the scale, so the absolute maps keep their ranking exactly (correlation 1). A new
    # feature layer changes A itself: the ranking moves.
    model = _one_channel_cam_model(0)
    images = np.random.default_rng(4).normal(size=(2, 6, 6, 3)).astype(np.float32)

    def cam(m, x, t):
        return explain.gradcam(m, x, layer_name="feat", targets=t, relu=False)

    result = explain.cascading_randomisation(model, images, [0, 1], cam, seed=3, absolute=True)
    assert result.layers == ("head", "feat")
    rho = result.correlations.numpy()
    np.testing.assert_allclose(rho[0], [1.0, 1.0], atol=1e-6)
    assert np.all(rho[1] < 0.99), rho


def test_nested_models_and_batch_norm_are_walked_from_the_output_down():
    keras.utils.set_random_seed(1)
    inner_in = keras.Input((8, 8, 1))
    y = keras.layers.Conv2D(2, 3, padding="same", name="conv")(inner_in)
    y = keras.layers.BatchNormalization(name="bn")(y)
    backbone = keras.Model(inner_in, y, name="backbone")
    inp = keras.Input((8, 8, 1))
    out = keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D()(backbone(inp)))
    model = keras.Model(inp, out)
    assert explain.weighted_layers(model) == ["head", "backbone/bn", "backbone/conv"]
    before = [w.copy() for w in model.get_weights()]
    images = np.random.default_rng(5).normal(size=(2, 8, 8, 1)).astype(np.float32)

    def hires(m, x, t):
        return explain.hirescam(m, x, layer_name="backbone/conv", targets=t, relu=False)

    result = explain.cascading_randomisation(model, images, 0, hires, seed=0,
                                             layers=["head", "backbone/conv"])
    assert result.layers == ("head", "backbone/conv") and result.correlations.shape == (2, 2)
    for w, v in zip(before, model.get_weights()):
        np.testing.assert_array_equal(w, v)


def test_reinitialisation_is_seeded():
    model = _mlp()
    images = np.random.default_rng(6).normal(size=(2, 16, 16, 1)).astype(np.float32)

    def ig(m, x, t):
        return explain.integrated_gradients(m, x, t, steps=1)

    a = explain.cascading_randomisation(model, images, 0, ig, seed=7).correlations.numpy()
    b = explain.cascading_randomisation(model, images, 0, ig, seed=7).correlations.numpy()
    c = explain.cascading_randomisation(model, images, 0, ig, seed=8).correlations.numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_weights_are_restored_when_a_map_is_not_finite():
    model = _mlp()
    before = [w.copy() for w in model.get_weights()]
    calls = []

    def breaks_after_trained(m, x, t):
        calls.append(1)
        maps = tf.reduce_sum(tf.convert_to_tensor(x), axis=-1)
        return maps if len(calls) == 1 else maps * np.nan

    images = np.ones((2, 16, 16, 1), np.float32)
    with pytest.raises(ValueError, match=r"^maps after re-initialising 'head' must be finite"):
        explain.cascading_randomisation(model, images, 0, breaks_after_trained, seed=0)
    for w, v in zip(before, model.get_weights()):
        np.testing.assert_array_equal(w, v)
