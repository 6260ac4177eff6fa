import numpy as np
import pytest

import keras
import tensorflow as tf

from lge_qa import models
from shared.losses import SupConLoss

SIZE = 32
KW = dict(filters=(4, 8, 8), blocks=(1, 1, 1))


def _encoder():
    return models.build_encoder(SIZE, **KW)


def test_qa_module_reads_the_attribute_latents_when_asked():
    model = models.build_qa_model(_encoder(), latent_dim=6, dropout=0.0, qa_input="latents")
    out = model(np.zeros((2, SIZE, SIZE, 1), "float32"))
    assert sorted(out) == sorted(models.OUTPUTS)
    assert all(tuple(v.shape) == (2, 1) for v in out.values())
    concat = model.get_layer("qa_concat")
    assert concat.output.shape[-1] == 3 * 6
    assert {t.name for t in concat.input} == {model.get_layer(f"{n}_latent").output.name
                                              for n in models.ATTRIBUTE_OUTPUTS}


def test_qa_module_reads_the_attribute_outputs_by_default():
    """The paper's Fig. 1: the QA module sees the three attribute outputs only."""
    model = models.build_qa_model(_encoder(), latent_dim=6, dropout=0.0)
    concat = model.get_layer("qa_concat")
    assert concat.output.shape[-1] == 3
    assert {t.name for t in concat.input} == {model.get_layer(n).output.name
                                              for n in models.ATTRIBUTE_OUTPUTS}
    assert tuple(model.get_layer("qa_latent").kernel.shape) == (3, 6)
    with pytest.raises(ValueError, match="qa_input must be one of"):
        models.build_qa_model(_encoder(), qa_input="features")


def test_multitask_adds_a_full_resolution_mask_sharing_the_encoder():
    enc = _encoder()
    assert models.decoder_skip_names(enc) == ["conv1_relu", "conv2_block1_out", "conv3_block1_out"]
    model = models.build_qa_model(enc, latent_dim=4, decoder=True)
    out = model(np.zeros((2, SIZE, SIZE, 1), "float32"))
    assert tuple(out[models.MASK_OUTPUT].shape) == (2, SIZE, SIZE, 1)
    assert model.get_layer("conv1_conv") is enc.get_layer("conv1_conv")
    assert models.embedding_model(model).output_shape == (None, 8)


def test_frozen_encoder_for_the_contrastive_step():
    enc = _encoder()
    model = models.build_frozen_qa_model(enc, latent_dim=4)
    trainable = {v.path.split("/")[0] for v in model.trainable_variables}
    assert not any(n.startswith("conv") for n in trainable)
    assert "qa" in trainable


def test_la_detector_shape():
    det = models.build_la_detector(SIZE, filters=(4, 8))
    assert det.output_shape == (None, SIZE, SIZE, 1)


def test_supcon_pretrainer_loss_is_the_sum_of_four_supcon_losses():
    """Eq. 5: one SupCon term per binary label, same embeddings."""
    keras.utils.set_random_seed(0)
    pre = models.SupConPretrainer(_encoder(), projection_dim=5, temperature=0.1)
    views = tf.random.uniform((6, 2, SIZE, SIZE, 1), seed=1)
    labels = tf.constant([[0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 1], [0, 1, 0, 1], [1, 1, 1, 0]])
    got = float(pre.contrastive_loss(views, labels, training=False))
    z = tf.reshape(pre(tf.reshape(views, (12, SIZE, SIZE, 1))), (6, 2, -1))
    loss = SupConLoss(temperature=0.1, base_temperature=0.1)
    want = sum(float(loss(labels[:, k], z)) for k in range(4))
    assert got == pytest.approx(want, rel=1e-5)


def test_supcon_pretrainer_trains_and_round_trips(tmp_path):
    from shared.training.lars import LARS

    keras.utils.set_random_seed(0)
    pre = models.SupConPretrainer(_encoder(), projection_dim=4)
    pre.compile(optimizer=LARS(learning_rate=0.5, eta=0.01))
    views = np.random.default_rng(0).random((8, 2, SIZE, SIZE, 1)).astype("float32")
    labels = np.random.default_rng(1).integers(0, 2, (8, 4)).astype("int32")
    before = [w.numpy().copy() for w in pre.encoder.trainable_weights[:1]]
    hist = pre.fit(views, labels, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    assert not np.allclose(before[0], pre.encoder.trainable_weights[0].numpy())
    config = pre.get_config()
    clone = models.SupConPretrainer.from_config(config)
    assert clone.projection_dim == 4 and clone.encoder.name == pre.encoder.name


def test_qa_model_saves_and_loads(tmp_path):
    model = models.build_qa_model(_encoder(), latent_dim=4, decoder=True)
    x = np.random.default_rng(0).random((2, SIZE, SIZE, 1)).astype("float32")
    path = tmp_path / "qa.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    a, b = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_replica_share_is_the_supcon_loss_on_one_device():
    """Outside a strategy the share of the only replica is the whole Eq. 4 loss."""
    rng = np.random.default_rng(3)
    z = tf.constant(rng.normal(size=(6, 2, 4)), tf.float32)
    labels = tf.constant([0, 1, 1, 0, 2, 0])  # label 2 alone: its two views are each other's positive
    got = float(models.supcon_replica_share(labels, z, temperature=0.2, base_temperature=0.1))
    want = float(SupConLoss(temperature=0.2, base_temperature=0.1)(labels, z))
    assert got == pytest.approx(want, rel=1e-6)
    # A float16 projection gives the float32 loss of the same values.
    half = models.supcon_replica_share(labels, tf.cast(z, tf.float16), temperature=0.2, base_temperature=0.1)
    assert half.dtype == tf.float32 and float(half) == pytest.approx(want, rel=1e-2)


def test_supcon_bounds_worked_by_hand():
    """Labels (0, 0, 1), two views: 6 views, each anchor has 5 others. Class 0: 4 anchors
    with 3 positives and 2 negatives; class 1: 2 anchors with 1 positive and 4 negatives.
    Collapsed: log 5 per anchor. Antipodal classes at tau = 0.1: (4 log(3 + 2 e^-20) +
    2 log(1 + 4 e^-20)) / 6 = 2/3 log 3 + ~1e-9. SupConLoss agrees at both embeddings."""
    got = models.supcon_bounds([0, 0, 1], views=2, temperature=0.1)
    assert got["chance"] == pytest.approx(np.log(5.0), rel=1e-12)
    assert got["minimum"] == pytest.approx(2.0 / 3.0 * np.log(3.0), rel=1e-8)
    loss = SupConLoss(temperature=0.1, base_temperature=0.1)
    labels = np.array([0, 0, 1])
    collapsed = np.ones((3, 2, 4), "float32")
    antipodal = np.zeros((3, 2, 4), "float32")
    antipodal[:, :, 0] = np.where(labels == 0, 1.0, -1.0)[:, None]
    assert float(loss(labels, collapsed)) == pytest.approx(got["chance"], rel=1e-5)
    assert float(loss(labels, antipodal)) == pytest.approx(got["minimum"], rel=1e-5)
    # No embedding goes below the bound.
    z = np.random.default_rng(0).normal(size=(3, 2, 4)).astype("float32")
    assert float(loss(labels, z)) > got["minimum"]
    with pytest.raises(ValueError, match="two values"):
        models.supcon_bounds([0, 1, 2])


def test_supcon_free_minimum_one_label_reaches_the_bound_shared_labels_do_not():
    """One label: the optimised embedding reaches `supcon_bounds`' minimum. Two
    independent labels on one embedding cannot both be antipodally split, so their
    joint minimum lies above the sum of the per-label minima."""
    one = np.array([0, 0, 1, 1, 1, 0, 1, 1])
    want = models.supcon_bounds(one)["minimum"]
    assert models.supcon_sum_free_minimum(one, steps=400) == pytest.approx(want, abs=5e-3)
    two = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 2)
    per_label = sum(models.supcon_bounds(two[:, k])["minimum"] for k in range(2))
    chance = 2 * models.supcon_bounds(two[:, 0])["chance"]
    joint = models.supcon_sum_free_minimum(two, steps=400)
    assert per_label + 0.1 < joint < chance


@pytest.mark.slow
def test_supcon_pretrainer_same_on_one_device_and_two_replicas():
    """Each replica's anchors see the other replica's projections and labels (gathered), so
    two replicas give the single-device loss and update; mixed_float16 stays finite."""
    from shared.testing.distribution import compare_single_and_mirrored

    result = compare_single_and_mirrored("tests.lge_qa.dist_models:build", "tests.lge_qa.dist_models:data",
                                         steps=3)
    assert result["replicas"] == 2 and result["finite"]
    # Without the gather each replica would contrast 4 of the 8 samples: another loss.
    np.testing.assert_allclose(result["mirrored"]["loss"], result["single"]["loss"], rtol=1e-5)
    assert result["max_weight_diff"] < 1e-5
    mixed = compare_single_and_mirrored("tests.lge_qa.dist_models:build", "tests.lge_qa.dist_models:data",
                                        steps=3, precision="mixed_float16")
    assert mixed["finite"]
    np.testing.assert_allclose(mixed["mirrored"]["loss"], mixed["single"]["loss"], rtol=2e-2)


def test_batchnorm_momentum_and_recalibration_by_hand():
    inputs = keras.Input((1,))
    h = keras.layers.BatchNormalization(name="bn_a")(inputs)
    out = keras.layers.BatchNormalization(name="bn_frozen")(h)
    model = keras.Model(inputs, out)
    assert models.set_batchnorm_momentum(model, 0.9) == 2
    assert model.get_layer("bn_a").momentum == 0.9
    with pytest.raises(ValueError, match="momentum"):
        models.set_batchnorm_momentum(model, 1.0)
    model.get_layer("bn_frozen").trainable = False
    # Two batches of two: means 2 and 6, variances 1 and 1 -> moving mean 4, variance 1.
    x = np.array([[1.0], [3.0], [5.0], [7.0]], "float32")
    assert models.recalibrate_batchnorm(model, x, batch_size=2) == 1
    bn = model.get_layer("bn_a")
    assert float(bn.moving_mean[0]) == pytest.approx(4.0)
    assert float(bn.moving_variance[0]) == pytest.approx(1.0)
    assert bn.momentum == 0.9  # restored
    frozen = model.get_layer("bn_frozen")
    assert float(frozen.moving_mean[0]) == 0.0 and float(frozen.moving_variance[0]) == 1.0
    # One batch holding all samples: the population statistics (biased variance).
    models.recalibrate_batchnorm(model, x, batch_size=8)
    assert float(bn.moving_mean[0]) == pytest.approx(4.0)
    assert float(bn.moving_variance[0]) == pytest.approx(5.0)


@pytest.mark.parametrize("baseline_encoder, encoder_trains", [("frozen", False), ("end_to_end", True)])
def test_baseline_encoder_switch(baseline_encoder, encoder_trains):
    """`baseline_encoder="frozen"` (the paper's frozen features) leaves every encoder
    weight as initialised; "end_to_end" updates it. The heads train either way."""
    from lge_qa.config import get_config
    from lge_qa.training import train_strategy

    cfg = get_config("tiny", baseline_encoder=baseline_encoder, image_size=SIZE, epochs=1, batch_size=8,
                     recalibrate_bn=False)
    rng = np.random.default_rng(0)
    n = 16
    data = {"images": rng.random((n, SIZE, SIZE, 1)).astype("float32"),
            "masks": np.zeros((n, SIZE, SIZE, 1), "float32"),
            "case_index": np.arange(n) // 2, "labels": rng.integers(0, 2, (n // 2, 4))}
    split = {"train": np.arange(12), "val": np.arange(12, 16)}
    from lge_qa.training import build_strategy_model
    from shared.training.seeding import set_global_seed

    set_global_seed(5)
    _, fresh = build_strategy_model("baseline", cfg)  # the initial weights train_strategy draws
    model, _ = train_strategy("baseline", cfg, data, split, seed=5)
    conv = model.get_layer("conv1_conv").kernel.numpy()
    changed = not np.allclose(conv, fresh.get_layer("conv1_conv").kernel.numpy())
    assert changed is encoder_trains
    assert int(model.optimizer.iterations) == 1


def test_max_train_slices_caps_the_training_set():
    """12 training slices at batch 4: 3 steps an epoch; capped at 4 slices: 1 step."""
    from lge_qa.config import get_config
    from lge_qa.training import train_strategy

    rng = np.random.default_rng(1)
    n = 16
    data = {"images": rng.random((n, SIZE, SIZE, 1)).astype("float32"),
            "masks": np.zeros((n, SIZE, SIZE, 1), "float32"),
            "case_index": np.arange(n) // 2, "labels": rng.integers(0, 2, (n // 2, 4))}
    split = {"train": np.arange(12), "val": np.arange(12, 16)}
    for cap, steps in ((0, 3), (4, 1)):
        cfg = get_config("tiny", image_size=SIZE, epochs=1, batch_size=4, recalibrate_bn=False,
                         max_train_slices=cap)
        model, _ = train_strategy("baseline", cfg, data, split, seed=0)
        assert int(model.optimizer.iterations) == steps
