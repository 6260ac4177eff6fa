"""The siamese training on one device and on two replicas; mixed precision."""

import keras
import numpy as np
import pytest

from shared.testing.distribution import compare_single_and_mirrored


@pytest.mark.slow
def test_siamese_training_agrees_on_one_and_two_replicas():
    result = compare_single_and_mirrored("tests.covidnet_siamese.dist_models:build",
                                         "tests.covidnet_siamese.dist_models:data", steps=3)
    assert result["replicas"] == 2 and result["finite"]
    # Two replicas each take 4 of the 8 pairs; Keras's loss divides by the global
    # batch, so the summed gradients, the losses and the weights after 3 SGD steps
    # match the single device to float32 round-off.
    np.testing.assert_allclose(result["single"]["loss"], result["mirrored"]["loss"], rtol=1e-5)
    assert result["single"]["loss"][0] != pytest.approx(result["single"]["loss"][-1], rel=1e-3)  # it trained
    assert result["max_weight_diff"] < 1e-5


@pytest.mark.slow
def test_siamese_mixed_float16_on_two_replicas_stays_finite():
    result = compare_single_and_mirrored("tests.covidnet_siamese.dist_models:build_bn",
                                         "tests.covidnet_siamese.dist_models:data", steps=3,
                                         precision="mixed_float16")
    assert result["replicas"] == 2 and result["finite"]
    # With batch norm each replica normalises its 4 pairs with their own statistics
    # instead of the 8 pairs' (the same holds in float32: about 1 % apart after 3 steps
    # on this batch, against 1e-7 without batch norm); float16 adds ~1e-4. A 5 %
    # tolerance catches a lost loss scale or a float16 overflow, not that difference.
    np.testing.assert_allclose(result["single"]["loss"], result["mirrored"]["loss"], rtol=0.05)
    assert result["mirrored"]["loss"][-1] < result["mirrored"]["loss"][0]


def test_mixed_float16_keeps_the_similarity_in_float32():
    from covidnet_siamese.models import build_siamese_net, build_single_net

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        siamese = build_siamese_net((16, 16, 1), nf=4, depths=(1,), embedding_dim=8)
        single = build_single_net((16, 16, 1), nf=4, depths=(1,), fc_units=8)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert siamese.get_layer("twin").output.dtype == "float16"
    assert siamese.output.dtype == "float32" and single.output.dtype == "float32"
    assert siamese.get_layer("weighted_l1").compute_dtype == "float32"
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 1)).astype("float32")
    out = siamese([x, x[::-1]])
    assert out.dtype == "float32" and np.all(np.isfinite(out.numpy()))
