"""H4 / H5's endpoints on a model whose evidence is known by construction, and their protocol."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

import keras
import tensorflow as tf

from heatmap_loss.config import DEPENDENCE_SESOI, get_config, study_protocol
from heatmap_loss.dependence import occlusion_drops, true_class_probability

SIZE = (10, 12)
SLOPE = 0.02


def _heart():
    mask = np.zeros(SIZE, np.float32)
    mask[3:7, 4:9] = 1.0
    return mask


def _heart_reader():
    """Logits [SLOPE * mean intensity inside the fixed heart, 0]: it reads the heart only."""
    heart = tf.constant(_heart())
    inputs = keras.Input(SIZE + (1,))
    inside = keras.layers.Lambda(
        lambda x: tf.reduce_sum(x[..., 0] * heart, axis=[1, 2]) / tf.reduce_sum(heart))(inputs)
    logits = keras.layers.Lambda(lambda m: tf.stack([SLOPE * m, tf.zeros_like(m)], -1))(inside)
    return keras.Model(inputs, logits)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_a_model_that_reads_only_the_heart_loses_nothing_outside_it():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(5,) + SIZE + (1,)).astype(np.float32)
    labels = np.zeros(5, np.int64)
    masks = np.repeat(_heart()[None], 5, axis=0)
    sigma = 1.5
    heart_drop, complement_drop = occlusion_drops(_heart_reader(), images, labels, masks,
                                                  blur_sigma=sigma, batch_size=2)
    # Outside the heart nothing the model reads changes: exactly 0.
    np.testing.assert_array_equal(complement_drop, np.zeros(5))
    # By hand: p = sigmoid(SLOPE * mean inside), before and after the heart is blurred
    # (scipy's Gaussian filter, reflected borders, as the baseline is declared).
    heart = _heart().astype(bool)
    expected = []
    for image in images[..., 0].astype(np.float64):
        blurred = gaussian_filter(image, sigma, mode="reflect", truncate=3.0)
        expected.append(_sigmoid(SLOPE * image[heart].mean())
                        - _sigmoid(SLOPE * blurred[heart].mean()))
    np.testing.assert_allclose(heart_drop, expected, atol=1e-5)
    assert np.all(np.abs(heart_drop) > 1e-3)  # the blur does change what it reads


def test_true_class_probability_is_the_softmax_of_each_label():
    logits = np.array([[0.0, np.log(3.0)], [np.log(4.0), 0.0]], np.float32)
    np.testing.assert_allclose(true_class_probability([1, 1])(logits).numpy(), [0.75, 0.2],
                               rtol=1e-6)


def test_occlusion_drops_names_a_bad_mask():
    images = np.zeros((2,) + SIZE + (1,), np.float32)
    with pytest.raises(ValueError, match="masks must mark at least one pixel"):
        occlusion_drops(_heart_reader(), images, np.zeros(2, np.int64),
                        np.zeros((2,) + SIZE, np.float32), blur_sigma=1.0)


def test_protocol_declares_h4_h5_in_their_own_family():
    for experiment in (1, 2):
        protocol = study_protocol(get_config("quick"), experiment)
        by_id = {h.id: h for h in protocol.hypotheses}
        h4, h5 = by_id["H4"], by_id["H5"]
        assert (h4.endpoint, h4.direction, h5.endpoint, h5.direction) == (
            "complement_drop", "less", "heart_drop", "greater")
        assert h4.arms == h5.arms == ("heatmap", "cce")
        assert h4.sesoi == h5.sesoi == DEPENDENCE_SESOI == 0.05
        assert h4.sides == h5.sides == 1 and h4.test == h5.test == "wilcoxon"
        assert "sigma 2.5 px" in h4.statement and "blur" in h5.statement
        # H1-H3 stay Holm-corrected among themselves, as the powered trials were sized.
        assert {h.family for h in protocol.hypotheses if h.id in ("H1", "H2", "H3")} == {
            "primary"}
        assert h4.family == h5.family == "dependence"
    assert [h.id for h in study_protocol(get_config("quick"), "acdc").hypotheses] == ["H1", "H2"]


def check_dependence_run(run, text, models):
    """What a tiny run writes for H4 / H5 (called by the end-to-end test of
    `test_experiment.py`, which trains the run once for both)."""
    import json

    from shared.study import read_claims, read_protocol

    protocol = read_protocol(run / "protocol.json")
    assert [h["id"] for h in protocol["protocol"]["hypotheses"]][-2:] == ["H4", "H5"]
    # Declared before training: protocol.json is older than every file the searches wrote.
    written = min(p.stat().st_mtime_ns for folder in ("tuner", "tensorboard")
                  for p in (run / folder).rglob("*") if p.is_file())
    assert (run / "protocol.json").stat().st_mtime_ns <= written
    claims = {c["id"]: c for c in read_claims(run)["claims"]}
    for cid, endpoint in (("H4", "complement_drop"), ("H5", "heart_drop")):
        claim = claims[cid]
        assert claim["endpoint"] == endpoint and claim["family"] == "dependence"
        assert claim["trivial"] == {"name": "a model that ignores the image", "value": 0.0}
        kept = {(m["group"], m["trial_index"]): m[endpoint] for m in models if m["kept"]}
        values = [(arm, unit, value) for arm, rows in claim["unit_values"].items()
                  for unit, value in rows]
        assert values and all(np.isfinite(v) for _, _, v in values)
        assert {(a, u): v for a, u, v in values} == pytest.approx(kept)
    for m in models:
        if m["status"] == "not_trained":
            continue
        for key in ("heart_drop", "complement_drop", "deletion_area", "insertion_area",
                    "marker_drop", "dependence_time_s"):
            assert np.isfinite(m[key]), key
        assert 0.0 <= m["deletion_area"] <= 1.0 and 0.0 <= m["insertion_area"] <= 1.0
        # The mean curves: deletion starts where insertion ends (the image itself) and
        # ends where insertion starts (the whole image blurred), whatever the map.
        x, dele, ins = m["curve_fractions"], m["deletion_curve"], m["insertion_curve"]
        assert x[0] == 0.0 and x[-1] == 1.0 and len(dele) == len(ins) == len(x) == \
            get_config("tiny").deletion_steps + 1
        assert dele[0] == pytest.approx(ins[-1], abs=1e-5) and dele[-1] == pytest.approx(ins[0], abs=1e-5)
    randomised = [m for m in models if "randomisation" in m]
    assert sorted(m["group"] for m in randomised) == sorted(
        {m["group"] for m in models if m["kept"]})
    for m in randomised:
        check = m["randomisation"]
        assert check["layers"][0] == "logits" and len(check["layers"]) == len(
            check["spearman_median"])
    assert "## Did the evidence move, or only the map?" in text
    assert (run / "figures" / "occlusion_drops.png").exists()
    assert (run / "figures" / "deletion_insertion.png").exists()
    assert "figures/deletion_insertion.png" in text
    json.dumps(models)  # models.json holds them as written
