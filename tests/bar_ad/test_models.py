"""Siamese pre-trainer (Eqs. 4-5) and classifier: a training step, losses, serialization."""

import numpy as np
import pytest
import tensorflow as tf

import keras

from bar_ad.models import SiamesePretrainer, build_classifier, build_decoder, build_encoder
from shared.losses import ContinuousInfoNCE, SupConLoss


def _parts():
    enc = build_encoder(16, patch_size=8, width=16, depth=1, num_heads=2, mlp_dim=32)
    dec = build_decoder(16, patch_size=8, width=16, hidden_channels=4)
    return enc, dec


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    x = {k: rng.random((4, 16, 16, 16, 1)).astype(np.float32) for k in ("view1", "view2", "anchor")}
    return x, np.array([0.0, 0.3, 1.0, 0.7], np.float32)


def test_losses_match_their_definitions():
    enc, dec = _parts()
    loss = ContinuousInfoNCE(sigma=0.8, temperature=0.1, mode="cross_view")
    model = SiamesePretrainer(enc, dec, loss)
    x, y = _batch()
    total, contrastive, recon = model.compute_losses(x, y, training=False)
    cls1, _ = enc(x["view1"])
    cls2, tokens2 = enc(x["view2"])
    expected_recon = np.abs(np.asarray(dec(tokens2)) - x["anchor"]).mean()  # Eq. 5 (L1)
    np.testing.assert_allclose(float(recon), expected_recon, rtol=1e-5)
    expected_c = float(loss(y, tf.stack([cls1, cls2], axis=1)))  # Eq. 4
    np.testing.assert_allclose(float(contrastive), expected_c, rtol=1e-5)
    np.testing.assert_allclose(float(total), expected_c + expected_recon, rtol=1e-5)


@pytest.mark.slow
def test_train_step_updates_weights_and_reports_losses():
    enc, dec = _parts()
    model = SiamesePretrainer(enc, dec, SupConLoss(temperature=0.1), label_mode="instance")
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x, y = _batch()
    before = [np.array(w) for w in enc.trainable_weights]
    hist = model.fit(tf.data.Dataset.from_tensors((x, y)), epochs=2, shuffle=False,
                     verbose=0).history
    assert set(hist) >= {"loss", "contrastive", "recon"}
    assert all(np.isfinite(v).all() for v in hist.values())
    assert any(not np.allclose(a, np.array(b)) for a, b in zip(before, enc.trainable_weights))


def test_pretrainer_round_trip_config():
    enc, dec = _parts()
    model = SiamesePretrainer(enc, dec, ContinuousInfoNCE(sigma=0.8), recon_weight=0.5)
    clone = SiamesePretrainer.from_config(model.get_config())
    assert clone.recon_weight == 0.5 and clone.label_mode == "soft"
    assert isinstance(clone.contrastive_loss, ContinuousInfoNCE)
    assert clone.contrastive_loss.sigma == 0.8
    with pytest.raises(ValueError, match="label_mode"):
        SiamesePretrainer(enc, dec, None, label_mode="fuzzy")
    with pytest.raises(ValueError, match="decoder, a contrastive loss or both"):
        SiamesePretrainer(enc, None, None)


def test_classifier_head_and_freezing(tmp_path):
    enc, _ = _parts()
    clf = build_classifier(enc, head_units=(128, 64))
    assert [l.units for l in clf.layers if isinstance(l, keras.layers.Dense)] == [128, 64, 1]
    x = np.random.default_rng(1).random((3, 16, 16, 16, 1)).astype(np.float32)
    p = np.asarray(clf(x))
    assert p.shape == (3, 1) and ((p > 0) & (p < 1)).all()
    clf.save(tmp_path / "clf.keras")
    np.testing.assert_allclose(np.asarray(keras.saving.load_model(tmp_path / "clf.keras")(x)), p,
                               atol=1e-6)
    frozen = build_classifier(enc, freeze_encoder=True)
    assert len(frozen.trainable_weights) == 6  # three Dense kernels + biases


@pytest.mark.slow
def test_pretrainer_one_and_two_replicas_agree():
    """Gathered [cls] tokens and labels, recon per global batch: 1 and 2 replicas agree.

    Each replica holds 4 of the 8 samples; a contrastive loss over each replica's half
    alone gives a different loss and weights (checked: 1.117 vs 1.105 at the first step,
    weights 1e-2 apart), so this fails unless Eq. 4 sees the global batch.
    """
    from shared.testing.distribution import compare_single_and_mirrored

    result = compare_single_and_mirrored("tests.bar_ad.dist_models:build_soft",
                                         "tests.bar_ad.dist_models:data", steps=3)
    assert result["replicas"] == 2 and result["finite"]
    for key in ("loss", "contrastive", "recon"):
        np.testing.assert_allclose(result["mirrored"][key], result["single"][key], rtol=1e-4,
                                   atol=1e-6)
    assert result["single"]["loss"][-1] < result["single"]["loss"][0]  # it trained
    assert result["max_weight_diff"] < 1e-5


@pytest.mark.slow
def test_pretrainer_mixed_float16_on_two_replicas():
    """mixed_float16 on 2 replicas: finite, trains, and skips overflowing steps as 1 device."""
    from shared.testing.distribution import compare_single_and_mirrored

    result = compare_single_and_mirrored("tests.bar_ad.dist_models:build_instance",
                                         "tests.bar_ad.dist_models:data", steps=8,
                                         precision="mixed_float16")
    assert result["replicas"] == 2 and result["finite"]
    single, mirrored = result["single"]["loss"], result["mirrored"]["loss"]
    assert mirrored[-1] < mirrored[0]
    np.testing.assert_allclose(mirrored, single, rtol=1e-3)


def test_collapse_diagnostics_by_hand():
    tokens = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]], np.float32)
    # cosines: (0,1) 0, (0,2) 1, (1,2) 0 -> mean over the 6 ordered pairs = 2 / 6
    assert float(SiamesePretrainer.mean_pairwise_cosine(tokens)) == pytest.approx(1 / 3)
    collapsed = np.tile([[0.3, -0.2, 0.9]], (4, 1)).astype(np.float32)
    assert float(SiamesePretrainer.mean_pairwise_cosine(collapsed)) == pytest.approx(1.0)
    # sigma = 0.8: labels 0 and 1 weigh exp(-1 / 1.28) = 0.458 (the paper's kernel width)
    low, high = SiamesePretrainer.kernel_range(np.array([0.0, 1.0, 0.5], np.float32), 0.8)
    assert float(low) == pytest.approx(np.exp(-1 / 1.28), rel=1e-5)
    assert float(high) == pytest.approx(np.exp(-0.25 / 1.28), rel=1e-5)
    low, high = SiamesePretrainer.kernel_range(np.array([0.0, 0.0, 1.0], np.float32), 0.25)
    assert float(low) == pytest.approx(np.exp(-1 / 0.125), rel=1e-4) and float(high) == 1.0
    low, high = SiamesePretrainer.kernel_range(np.array([0.4], np.float32), 0.8)
    assert float(low) == 1.0 and float(high) == 1.0


def test_pretraining_history_carries_the_diagnostics():
    enc, dec = _parts()
    model = SiamesePretrainer(enc, dec, ContinuousInfoNCE(sigma=0.8, mode="cross_view"))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x, y = _batch()
    hist = model.fit(tf.data.Dataset.from_tensors((x, y)), epochs=1, shuffle=False,
                     verbose=0).history
    assert set(hist) >= {"contrastive", "cls_cosine", "kernel_min", "kernel_max"}
    assert hist["kernel_min"][0] == pytest.approx(np.exp(-1 / 1.28), rel=1e-5)  # labels 0 and 1
    assert -1.0 <= hist["cls_cosine"][0] <= 1.0
    from shared.losses.infonce import attainable_minimum

    # the floor of Eq. 4 on the batch's labels, logged beside the contrastive term
    assert hist["contrastive_floor"][0] == pytest.approx(
        float(attainable_minimum(y, sigma=0.8, mode="cross_view")), rel=1e-5)
    assert hist["contrastive_floor"][0] < 0.0  # below collapse, which scores 0
    assert hist["contrastive"][0] >= hist["contrastive_floor"][0] - 1e-6
    ssl = SiamesePretrainer(enc, dec, SupConLoss(temperature=0.1), label_mode="instance")
    assert [m.name for m in ssl.metrics] == ["loss", "contrastive", "recon", "cls_cosine"]


def test_shuffled_label_control_permutes_the_batch_labels():
    enc, dec = _parts()
    model = SiamesePretrainer(enc, dec, ContinuousInfoNCE(sigma=0.8), shuffle_labels=True,
                              seed=3)
    labels = np.linspace(0.0, 1.0, 8).astype(np.float32)
    draws = [np.asarray(model._contrastive_labels(labels, 8)) for _ in range(3)]
    for d in draws:
        np.testing.assert_allclose(np.sort(d), labels)
    assert any(not np.allclose(d, labels) for d in draws)
    plain = SiamesePretrainer(enc, dec, ContinuousInfoNCE(sigma=0.8))
    np.testing.assert_allclose(np.asarray(plain._contrastive_labels(labels, 8)), labels)
    clone = SiamesePretrainer.from_config(model.get_config())
    assert clone.shuffle_labels and clone.seed == 3
