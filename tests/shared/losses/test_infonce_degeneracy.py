"""Eq. 4 of the BAR paper as printed is degenerate at sigma 0.8 on labels in [0, 1]:
collapse scores exactly 0, the best any representation can do is H(w) - log b (a few
hundredths of a nat below), and separating the classes scores above collapse; a sharp
kernel makes separation the optimum. Hand-derived values; the tests fail if the `1/b`
inside the logarithm is removed or the kernel replaced."""

import math

import numpy as np
import pytest
import tensorflow as tf

from shared.losses.infonce import attainable_minimum, continuous_infonce

A = math.exp(-1.0 / (2 * 0.8 ** 2))  # kernel weight of labels 0 and 1 at sigma 0.8: 0.4578


def _loss(labels, z, sigma=0.8):
    return float(continuous_infonce(np.asarray(labels, np.float32), np.asarray(z, np.float32),
                                    sigma=sigma, temperature=0.1, mode="cross_view"))


@pytest.mark.parametrize("b", [2, 4, 8])
def test_collapse_scores_exactly_zero(b):
    rng = np.random.default_rng(b)
    labels = rng.uniform(0, 1, b)
    z = np.tile(rng.normal(size=(1, 1, 16)), (b, 2, 1))  # every view the same embedding
    assert _loss(labels, z) == pytest.approx(0.0, abs=1e-6)


def test_the_floor_of_two_labels_by_hand():
    # labels 0 and 1: each anchor's target is (1, A) / (1 + A); floor = H - log 2
    w = np.array([1.0, A]) / (1.0 + A)
    floor = -float(np.sum(w * np.log(w))) - math.log(2)
    assert floor == pytest.approx(-0.0708, abs=1e-4)
    assert float(attainable_minimum([0.0, 1.0], sigma=0.8)) == pytest.approx(floor, rel=1e-6)


def test_free_embeddings_reach_the_floor_and_never_pass_it():
    labels = np.array([0.0, 0.15, 0.4, 0.5, 0.55, 0.8, 0.9, 1.0], np.float32)
    floor = float(attainable_minimum(labels, sigma=0.8))
    # a hand computation of the same floor: mean over anchors of H(w_i) - log 8
    k = np.exp(-(labels[:, None] - labels[None, :]) ** 2 / (2 * 0.8 ** 2))
    w = k / k.sum(axis=1, keepdims=True)
    assert floor == pytest.approx(float(np.mean(-np.sum(w * np.log(w), axis=1)) - math.log(8)),
                                  rel=1e-5)
    assert -0.03 < floor < 0  # a few hundredths of a nat below collapse
    z = tf.Variable(np.random.default_rng(0).normal(size=(8, 2, 8)).astype(np.float32))
    optimizer = tf.keras.optimizers.Adam(0.05)
    values = []
    for _ in range(400):
        with tf.GradientTape() as tape:
            loss = continuous_infonce(labels, z, sigma=0.8, temperature=0.1, mode="cross_view")
        optimizer.apply_gradients([(tape.gradient(loss, z), z)])
        values.append(float(loss))
    assert min(values) >= floor - 1e-5
    assert values[-1] == pytest.approx(floor, abs=2e-3)
    # At the optimum softmax(theta_i) = w_i: the cosines an anchor gives its candidates
    # differ by at most temperature * log(w_max / w_min) <= 0.1 * 0.78 = 0.078 here, so
    # the best representation barely tells scans apart (any configuration with equal
    # similarities, a collapse to one point among them, scores 0)
    zn = tf.math.l2_normalize(z, axis=-1).numpy()
    cos = zn[:, 0] @ zn[:, 1].T
    assert float(np.max(np.ptp(cos, axis=1))) < 0.1 * math.log(1 / A) + 0.01


def _separated(b):
    """b / 2 scans of each class; both views of a scan on its class's axis."""
    z = np.zeros((b, 2, 4), np.float32)
    z[: b // 2, :, 0] = 1.0
    z[b // 2:, :, 1] = 1.0
    return np.repeat([0.0, 1.0], b // 2), z


def test_separating_the_classes_scores_above_collapse_at_sigma_08():
    labels, z = _separated(8)
    # same class: theta = 10 (4 candidates), other class: theta = 0 (4 candidates)
    log_norm = math.log(4 * math.exp(10) + 4)
    w_same, w_other = 1 / (4 + 4 * A), A / (4 + 4 * A)
    expected = -(4 * w_same * (10 - log_norm) + 4 * w_other * (0 - log_norm)) - math.log(8)
    assert expected == pytest.approx(2.447, abs=1e-3)
    assert _loss(labels, z, sigma=0.8) == pytest.approx(expected, rel=1e-5)
    assert _loss(labels, z, sigma=0.8) > 0.0  # worse than collapse


def test_a_sharp_kernel_makes_separation_the_optimum():
    labels, z = _separated(8)
    # sigma 0.1: the other class weighs exp(-50); the target is uniform on the own class,
    # which the separated embeddings match: log 4 - log 8 = -log 2, the floor
    assert _loss(labels, z, sigma=0.1) == pytest.approx(-math.log(2), abs=1e-4)
    assert float(attainable_minimum(labels, sigma=0.1)) == pytest.approx(-math.log(2), abs=1e-6)


def test_instance_infonce_is_nt_xent_by_hand():
    from shared.losses import SupConLoss
    from shared.losses.infonce import instance_infonce

    rng = np.random.default_rng(5)
    z = rng.normal(size=(4, 2, 6)).astype(np.float32)
    zn = z / np.linalg.norm(z, axis=-1, keepdims=True)
    zz = np.concatenate([zn[:, 0], zn[:, 1]])
    logits = zz @ zz.T / 0.1
    np.fill_diagonal(logits, -np.inf)
    log_prob = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -np.mean([log_prob[i, (i + 4) % 8] for i in range(8)])
    assert float(instance_infonce(z, temperature=0.1)) == pytest.approx(expected, rel=1e-5)
    # SupCon with one class per sample is the same loss
    supcon = SupConLoss(temperature=0.1, base_temperature=0.1)
    assert float(supcon(np.arange(4), z)) == pytest.approx(expected, rel=1e-5)


def test_the_instance_term_keeps_collapse_off_the_optimum():
    """With the anchor, collapse scores log(2b - 1) x weight above Eq. 4's 0, so the
    collapsed encoder is no longer (near) optimal."""
    from shared.losses import ContinuousInfoNCE

    b = 8
    labels = np.linspace(0, 1, b).astype(np.float32)
    collapsed = np.ones((b, 2, 4), np.float32)
    loss = ContinuousInfoNCE(sigma=0.8, mode="cross_view", instance_weight=0.5)
    assert float(loss(labels, collapsed)) == pytest.approx(0.5 * math.log(2 * b - 1), rel=1e-5)
    clone = ContinuousInfoNCE.from_config(loss.get_config())
    assert clone.instance_weight == 0.5
