"""Contrastive and Dice losses against NumPy references and hand-computed cases."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from shared.losses import (
    ContinuousInfoNCE,
    DiceLoss,
    SupConLoss,
    continuous_infonce,
    dice_coefficient,
)


def _normalize(z):
    return z / np.linalg.norm(z, axis=-1, keepdims=True)


def _logsumexp(v):
    m = np.max(v)
    return m + np.log(np.sum(np.exp(v - m)))


def nt_xent_numpy(z1, z2, temperature):
    """SimCLR NT-Xent written independently: 2N anchors, one positive each, mean."""
    z = _normalize(np.concatenate([z1, z2]).astype(np.float64))
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        sims = np.array([z[i] @ z[a] / temperature for a in range(2 * n) if a != i])
        total += -(z[i] @ z[pos] / temperature - _logsumexp(sims))
    return total / (2 * n)


def y_aware_numpy(y, z1, z2, sigma, temperature):
    """y-aware InfoNCE (all 2B views), weights normalised per anchor, written with loops."""
    z = _normalize(np.concatenate([z1, z2]).astype(np.float64))
    yy = np.concatenate([y, y]).reshape(2 * len(y), -1).astype(np.float64)
    m = len(z)
    total = 0.0
    for i in range(m):
        others = [a for a in range(m) if a != i]
        lse = _logsumexp(np.array([z[i] @ z[a] / temperature for a in others]))
        w = np.array([np.exp(-np.sum((yy[a] - yy[i]) ** 2) / (2 * sigma**2)) for a in others])
        w = w / w.sum()
        total += -sum(wk * (z[i] @ z[a] / temperature - lse) for wk, a in zip(w, others))
    return total / m


@pytest.fixture
def rng():
    return np.random.default_rng(1)


# --------------------------------------------------------------------------- SupCon
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_supcon_with_unique_labels_equals_nt_xent(rng, temperature):
    z1, z2 = rng.normal(size=(2, 6, 8)).astype("float32")
    loss = SupConLoss(temperature=temperature, base_temperature=temperature)
    value = loss(np.arange(6), np.stack([z1, z2], axis=1))
    np.testing.assert_allclose(float(value), nt_xent_numpy(z1, z2, temperature), rtol=1e-5)


def test_supcon_four_samples_by_hand():
    # Unit vectors at 0, 90, 180, 270 degrees; classes {0,1} and {2,3}. For each anchor,
    # the positive has cosine 0 and the negatives 0 and -1, so with tau = 1:
    # L = -(0 - log(e^0 + e^0 + e^-1)) = log(2 + e^-1) for every anchor.
    z = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], "float32")
    labels = np.array([0, 0, 1, 1])
    value = SupConLoss(temperature=1.0, base_temperature=1.0)(labels, z)
    np.testing.assert_allclose(float(value), np.log(2 + np.exp(-1)), rtol=1e-6)
    # tau = 0.5, base 1: scale 0.5 and logits doubled: 0.5 * log(2 + e^-2).
    value = SupConLoss(temperature=0.5, base_temperature=1.0)(labels, z)
    np.testing.assert_allclose(float(value), 0.5 * np.log(2 + np.exp(-2)), rtol=1e-6)


def test_supcon_anchor_without_positive_gives_no_nan():
    z = tf.constant([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    labels = np.array([0, 0, 1])  # anchor 2 is alone in its class
    with tf.GradientTape() as tape:
        tape.watch(z)
        value = SupConLoss(temperature=1.0, base_temperature=1.0)(labels, z)
    grad = tape.gradient(value, z)
    # Anchor 0: positive cosine 0, other candidate (anchor 2) cosine -1: log(1 + e^-1).
    # Anchor 1: positive cosine 0, other candidate cosine 0: log 2. Anchor 2 left out.
    expected = (np.log(1 + np.exp(-1)) + np.log(2)) / 2
    np.testing.assert_allclose(float(value), expected, rtol=1e-6)
    assert np.all(np.isfinite(grad.numpy()))
    # A batch without any positive pair: zero loss, finite (zero) gradients.
    with tf.GradientTape() as tape:
        tape.watch(z)
        value = SupConLoss()(np.array([0, 1, 2]), z)
    grad = tape.gradient(value, z)
    assert float(value) == 0.0
    assert np.all(np.isfinite(grad.numpy()))


def test_supcon_is_float32_under_mixed_precision(rng):
    keras.mixed_precision.set_global_policy("mixed_float16")
    z = tf.constant(rng.normal(size=(4, 2, 3)), tf.float16)
    value = SupConLoss()(np.array([0, 1, 0, 1]), z)
    assert value.dtype == tf.float32 and np.isfinite(float(value))


def test_supcon_in_fit_and_bad_shapes(rng):
    inp = keras.Input((2, 5))
    model = keras.Model(inp, keras.layers.Dense(4)(inp))
    model.compile(optimizer="sgd", loss=SupConLoss(temperature=0.5))
    x = rng.normal(size=(8, 2, 5)).astype("float32")
    history = model.fit(x, np.array([0, 1, 2, 3] * 2), batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    with pytest.raises(ValueError, match=r"\[B, D\] or \[B, V, D\]"):
        SupConLoss()(np.zeros(2), np.zeros((2, 2, 2, 2), "float32"))
    with pytest.raises(ValueError, match="3 entries for 2 embeddings"):
        SupConLoss()(np.zeros(3), np.zeros((2, 4), "float32"))


# --------------------------------------------------------------------------- InfoNCE
def test_continuous_infonce_reduces_to_nt_xent_as_sigma_goes_to_zero(rng):
    z1, z2 = rng.normal(size=(2, 5, 6)).astype("float32")
    labels = np.array([0.1, 0.3, 0.5, 0.7, 0.9], "float32")
    value = ContinuousInfoNCE(sigma=1e-3, temperature=0.1)(labels, np.stack([z1, z2], 1))
    np.testing.assert_allclose(float(value), nt_xent_numpy(z1, z2, 0.1), rtol=1e-5)


@pytest.mark.parametrize("sigma", [0.2, 0.8])
def test_continuous_infonce_matches_loop_reference(rng, sigma):
    z1, z2 = rng.normal(size=(2, 4, 3)).astype("float32")
    labels = rng.uniform(size=(4, 2)).astype("float32")  # two soft-label columns
    value = ContinuousInfoNCE(sigma=sigma, temperature=0.1)(labels, np.stack([z1, z2], 1))
    np.testing.assert_allclose(
        float(value), y_aware_numpy(labels, z1, z2, sigma, 0.1), rtol=1e-5
    )


def test_continuous_infonce_cross_view_equation_4_by_hand(rng):
    # sigma -> 0: only k = i keeps weight, so Eq. 4 is
    # -[theta_ii - log(1/b sum_j exp(theta_ij))] averaged over i.
    z1, z2 = rng.normal(size=(2, 3, 4))
    theta = _normalize(z1) @ _normalize(z2).T / 0.5
    expected = np.mean([-(theta[i, i] - np.log(np.mean(np.exp(theta[i])))) for i in range(3)])
    value = continuous_infonce(
        np.array([0.0, 1.0, 2.0]), np.stack([z1, z2], 1).astype("float32"),
        sigma=1e-3, temperature=0.5, mode="cross_view",
    )
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)


def test_continuous_infonce_errors():
    with pytest.raises(ValueError, match=r"\[B, 2, D\]"):
        ContinuousInfoNCE()(np.zeros(2), np.zeros((2, 3, 4), "float32"))
    with pytest.raises(ValueError, match="mode"):
        ContinuousInfoNCE(mode="diag")
    with pytest.raises(ValueError, match="sigma"):
        ContinuousInfoNCE(sigma=0.0)


# --------------------------------------------------------------------------- Dice
def test_dice_by_hand():
    y_true = np.array([[1, 1, 0, 0]], "float32")
    y_pred = np.array([[1.0, 0.5, 0.5, 0.0]], "float32")
    # |X.Y| = 1.5, |X| = 2, |Y| = 2: dice = 3 / 4.
    np.testing.assert_allclose(dice_coefficient(y_true, y_pred).numpy(), [0.75], atol=1e-6)
    np.testing.assert_allclose(
        dice_coefficient(y_true, y_pred, threshold=0.4).numpy(), [2 * 2 / 5], atol=1e-6
    )
    # Smooth 1: 1 - (3 + 1) / (4 + 1).
    np.testing.assert_allclose(float(DiceLoss(smooth=1.0)(y_true, y_pred)), 0.2, atol=1e-6)
    empty = np.zeros((1, 4), "float32")
    np.testing.assert_allclose(dice_coefficient(empty, empty).numpy(), [1.0])


def test_dice_per_channel_and_masks_without_channel_axis():
    y_true = np.zeros((1, 2, 2, 2), "float32")
    y_true[0, :, :, 0] = 1.0
    y_pred = y_true.copy()
    y_pred[0, 0, 0, 1] = 1.0  # one false positive in channel 1 (empty truth)
    per = dice_coefficient(y_true, y_pred, per_channel=True).numpy()
    np.testing.assert_allclose(per, [(1.0 + (1e-6 / (1 + 1e-6))) / 2], atol=1e-6)
    masks = np.ones((2, 3, 3), "float32")
    np.testing.assert_allclose(dice_coefficient(masks, masks[..., None]).numpy(), [1.0, 1.0])
    with pytest.raises(ValueError, match="same rank"):
        dice_coefficient(np.ones((2, 3)), np.ones((2, 3, 3, 2)))


# --------------------------------------------------------------------------- saving
@pytest.mark.parametrize(
    "loss",
    [
        SupConLoss(temperature=0.2, base_temperature=0.1),
        ContinuousInfoNCE(sigma=0.5, temperature=0.2, mode="cross_view"),
        DiceLoss(smooth=0.5, from_logits=True, per_channel=True),
    ],
)
def test_losses_round_trip_through_keras_serialization(loss):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()


def test_model_with_supcon_loss_saves_and_loads(tmp_path, rng):
    inp = keras.Input((2, 3))
    model = keras.Model(inp, keras.layers.Dense(4)(inp))
    model.compile(optimizer="adam", loss=SupConLoss(temperature=0.3))
    x = rng.normal(size=(4, 2, 3)).astype("float32")
    y = np.array([0, 0, 1, 1])
    model.train_on_batch(x, y)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.loss, SupConLoss) and loaded.loss.temperature == pytest.approx(0.3)
    np.testing.assert_allclose(
        float(loaded.loss(y, loaded(x))), float(model.loss(y, model(x))), rtol=1e-6
    )
