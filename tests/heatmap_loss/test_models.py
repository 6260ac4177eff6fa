import numpy as np
import pytest

import keras
import tensorflow as tf

from heatmap_loss.losses import attribution_penalty
from heatmap_loss.models import HeatmapLossModel, build_classifier, validate_training_arrays


def _tiny_classifier(seed=0):
    """Conv 1x1 (2 channels, ReLU) on 4x4 images -> Flatten -> Dense(3) logits."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4, 4, 1))
    a = keras.layers.Conv2D(2, 1, activation="relu", name="cam")(inputs)
    logits = keras.layers.Dense(3, name="logits")(keras.layers.Flatten()(a))
    return keras.Model(inputs, logits)


def _hand_reference(classifier, images, labels, masks):
    """HiResCAM of the true class and the penalty, by hand with NumPy."""
    w, b = [v.numpy() for v in classifier.get_layer("cam").weights]
    W, b2 = [v.numpy() for v in classifier.get_layer("logits").weights]
    acts = np.maximum(images * w[0, 0, 0] + b, 0.0)  # [B, 4, 4, 2]
    logits = acts.reshape(len(images), -1) @ W + b2
    penalties, mse = [], []
    for i, c in enumerate(labels):
        grad = W[:, c].reshape(4, 4, 2)  # d logit_c / d A, Flatten in C order
        cam = np.maximum((grad * acts[i]).sum(axis=-1), 0.0)
        penalties.append((cam * (1 - masks[i])).sum() / (cam.sum() + 1e-8))
        p = np.exp(logits[i] - logits[i].max())
        p /= p.sum()
        mse.append(np.mean((np.eye(3)[c] - p) ** 2))
    return np.array(penalties), np.array(mse)


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(6, 4, 4, 1)).astype("float32")
    masks = np.zeros((6, 4, 4), "float32")
    masks[:, 1:3, 1:3] = 1.0
    labels = np.array([0, 1, 2, 0, 1, 2])
    return images, masks, labels


def test_penalty_equals_hand_computed_share(batch):
    images, masks, labels = batch
    clf = _tiny_classifier()
    model = HeatmapLossModel(clf, cam_layer="cam", weight=0.5, classification_loss="mse")
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = model.evaluate((images, masks), labels, batch_size=6, verbose=0, return_dict=True)
    penalty, mse = _hand_reference(clf, images, labels, masks)
    assert 0.05 < penalty.mean() < 0.95  # a non-trivial case
    assert logs["penalty"] == pytest.approx(penalty.mean(), rel=1e-4)
    assert logs["classification_loss"] == pytest.approx(mse.mean(), rel=1e-4)
    assert logs["loss"] == pytest.approx(mse.mean() + 0.5 * penalty.mean(), rel=1e-4)


def test_penalty_zero_when_all_mass_inside(batch):
    images, _, labels = batch
    model = HeatmapLossModel(_tiny_classifier(), cam_layer="cam", weight=1.0)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = model.evaluate((images, np.ones((6, 4, 4), "float32")), labels, verbose=0,
                          return_dict=True)
    assert logs["penalty"] == pytest.approx(0.0, abs=1e-6)


def test_attribution_penalty_modes_by_hand():
    maps = tf.constant([[[4.0, 0.0], [1.0, -3.0]]])  # ReLU: 4, 0, 1, 0 (total 5)
    mask = tf.constant([[[1.0, 1.0], [0.0, 0.0]]])
    assert attribution_penalty(maps, mask).numpy() == pytest.approx([1 / 5])
    # Coverage deficit: map / max = 1, 0 over the two required pixels -> 1 - 1/2.
    assert attribution_penalty(maps, mask, mode="inside").numpy() == pytest.approx([0.5])
    with pytest.raises(ValueError, match="mode"):
        attribution_penalty(maps, mask, mode="around")


def test_training_lowers_penalty(batch):
    images, masks, labels = batch
    images = np.tile(images, (4, 1, 1, 1))
    masks, labels = np.tile(masks, (4, 1, 1)), np.tile(labels, 4)
    model = HeatmapLossModel(_tiny_classifier(1), cam_layer="cam", weight=5.0)
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    before = model.evaluate((images, masks), labels, verbose=0, return_dict=True)["penalty"]
    history = model.fit((images, masks), labels, epochs=15, batch_size=24, verbose=0)
    assert "penalty" in history.history
    after = model.evaluate((images, masks), labels, verbose=0, return_dict=True)["penalty"]
    assert after < before - 0.05


def test_cce_group_trains_without_maps(batch):
    images, masks, labels = batch
    model = HeatmapLossModel(_tiny_classifier(), cam_layer="cam", weight=0.0,
                             classification_loss="cce")
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    history = model.fit((images, masks), labels, epochs=1, verbose=0,
                        validation_data=((images, masks), labels))
    assert "penalty" not in history.history and "val_penalty" in history.history
    probs = model.predict(images, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_gradcam_and_sample_weights(batch):
    images, masks, labels = batch
    model = HeatmapLossModel(_tiny_classifier(), cam_layer="cam", method="gradcam")
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit((images, masks), labels, sample_weight=np.ones(6), epochs=1, verbose=0)
    model.fit((images, masks), labels, class_weight={0: 1.0, 1: 2.0, 2: 0.5}, epochs=1, verbose=0)


def test_serialization_round_trip(tmp_path, batch):
    images, masks, labels = batch
    model = HeatmapLossModel(_tiny_classifier(), cam_layer="cam", weight=0.3, method="gradcam",
                             mode="inside", classification_loss="cce")
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit((images, masks), labels, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, HeatmapLossModel)
    for key in ("cam_layer", "weight", "method", "mode", "classification_loss"):
        assert loaded.get_config()[key] == model.get_config()[key]
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_vgg_classifier_shapes():
    clf = build_classifier((40, 48, 1), filters=(2, 2, 4, 4, 4), dense_units=8)
    assert clf.output_shape == (None, 4)
    model = HeatmapLossModel(clf)
    assert model.cam_layer == "block5_conv3"
    rgb = build_classifier((40, 48, 1), filters=(2, 2, 4, 4, 4), rgb=True)
    assert rgb.get_layer("vgg16").input.shape[-1] == 3


def test_vgg16_preprocessing_equals_keras_preprocess_input():
    clf = build_classifier((40, 48, 1), filters=(2, 2, 4, 4, 4), preprocessing="vgg16")
    grey = np.random.default_rng(0).uniform(0, 255, (2, 40, 48, 1)).astype("float32")
    seen = keras.Model(clf.input, clf.get_layer("vgg16_preprocess").output)(grey).numpy()
    rgb = np.repeat(grey, 3, axis=-1)
    expected = keras.applications.vgg16.preprocess_input(rgb.copy())
    np.testing.assert_allclose(seen, expected, rtol=1e-5, atol=1e-3)
    unit = build_classifier((40, 48, 1), filters=(2, 2, 4, 4, 4))
    assert "vgg16_preprocess" not in [layer.name for layer in unit.layers]
    with pytest.raises(ValueError, match="preprocessing"):
        build_classifier((40, 48, 1), filters=(2, 2, 4, 4, 4), preprocessing="torch")


@pytest.mark.parametrize("case, message", [
    ("nan", "sample index 3 contains NaN"),
    ("label", "sample index 2 has label 7"),
    ("empty", "sample index 4 has an empty allowed region"),
    ("count", "masks has 5 samples but images has 6"),
    ("grid", "do not match images"),
])
def test_bad_input_names_the_sample(batch, case, message):
    images, masks, labels = (a.copy() for a in batch)
    if case == "nan":
        images[3, 0, 0, 0] = np.nan
    elif case == "label":
        labels[2] = 7
    elif case == "empty":
        masks[4] = 0
    elif case == "count":
        masks = masks[:5]
    elif case == "grid":
        masks = np.ones((6, 3, 3), "float32")
    with pytest.raises(ValueError, match=message):
        validate_training_arrays(images, masks, labels, num_classes=3)
    model = HeatmapLossModel(_tiny_classifier(), cam_layer="cam")
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    with pytest.raises(ValueError, match=message):
        model.fit((images, masks), labels, epochs=1, verbose=0)


def test_bad_constructor_arguments():
    clf = _tiny_classifier()
    for kwargs in (dict(method="cam"), dict(mode="around"), dict(classification_loss="hinge"),
                   dict(weight=-1.0)):
        with pytest.raises(ValueError):
            HeatmapLossModel(clf, cam_layer="cam", **kwargs)
    with pytest.raises(ValueError, match="no_such_layer"):
        HeatmapLossModel(clf, cam_layer="no_such_layer")


@pytest.mark.slow
def test_one_and_two_replicas_agree():
    from shared.testing.distribution import compare_single_and_mirrored

    result = compare_single_and_mirrored("tests.heatmap_loss.dist_models:build",
                                         "tests.heatmap_loss.dist_models:data", steps=2)
    assert result["replicas"] == 2 and result["finite"]
    assert result["max_weight_diff"] < 1e-5
    np.testing.assert_allclose(result["single"]["loss"], result["mirrored"]["loss"], rtol=1e-4)
