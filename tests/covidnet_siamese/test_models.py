"""PEPX channel plan and shapes, the weighted L1 distance by hand, serialization."""

import keras
import numpy as np
import pytest

from covidnet_siamese.models import (PEPX, WeightedL1Distance, build_siamese_net, build_single_net, build_trunk,
                                     gradcam_layer_name, pepx_channel_plan, similarity_from_embeddings)


def test_pepx_channel_plan_follows_eq4():
    assert pepx_channel_plan(128, 256) == (128, 64, 96, 96, 64, 256)
    assert pepx_channel_plan(4, 8) == (4, 2, 3, 3, 2, 8)


def test_pepx_layers_and_shapes():
    layer = PEPX(24, name="p")
    y = layer(np.zeros((2, 6, 6, 16), np.float32))
    assert tuple(y.shape) == (2, 6, 6, 24)
    assert [layer.projection.filters, layer.expansion.filters, layer.projection2.filters,
            layer.extension.filters] == [8, 12, 8, 24]
    assert layer.depthwise.kernel_size == (3, 3)
    assert all(conv.kernel_size == (1, 1) for conv in
               (layer.projection, layer.expansion, layer.projection2, layer.extension))
    with pytest.raises(ValueError, match="filters"):
        PEPX(0)


def test_trunk_stages_downsample_and_widen():
    trunk = build_trunk((32, 32, 1), nf=4, depths=(2, 1))
    assert tuple(trunk.output.shape) == (None, 4, 4, 8)  # stem /2, two 2x2 pools
    names = [layer.name for layer in trunk.layers]
    assert {"pepx1_1", "pepx1_2", "pepx2_1", "stage1_out", "stage2_out"} <= set(names)
    assert gradcam_layer_name((2, 1)) == "stage2_out"
    bn = [layer for layer in build_trunk((32, 32, 1), nf=4, depths=(1,), bn_momentum=0.9).layers
          if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bn) == 2 and all(layer.momentum == 0.9 for layer in bn)  # stem and stage 1
    with pytest.raises(ValueError, match="depths"):
        build_trunk((32, 32, 1), nf=4, depths=())


def test_single_net_head():
    model = build_single_net((32, 32, 1), nf=4, depths=(1,), fc_units=16)
    probs = model(np.random.default_rng(0).normal(size=(3, 32, 32, 1)).astype("float32"))
    np.testing.assert_allclose(np.sum(probs, axis=1), 1.0, rtol=1e-5)
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == [0.5, 0.2, 0.2]


def test_weighted_l1_by_hand():
    layer = WeightedL1Distance(alpha_initializer=keras.initializers.Constant([0.5, 1.0, 2.0]))
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], np.float32)
    y = np.array([[0.0, 4.0, 3.0], [1.0, 1.0, 1.0]], np.float32)
    np.testing.assert_allclose(layer([x, y]), [[0.5 * 1 + 1 * 2 + 2 * 0], [3.5]])
    np.testing.assert_allclose(layer([y, x]), layer([x, y]))  # symmetric
    auto = WeightedL1Distance()
    auto.build([(None, 4), (None, 4)])
    np.testing.assert_allclose(auto.alpha.numpy(), 0.25)
    with pytest.raises(ValueError, match="same known feature size"):
        WeightedL1Distance().build([(None, 3), (None, 4)])


def test_siamese_shares_weights_and_round_trips(tmp_path):
    model = build_siamese_net((32, 32, 1), nf=4, depths=(1,), embedding_dim=8)
    twins = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    assert len(twins) == 1  # one twin, called on both inputs
    rng = np.random.default_rng(1)
    a, b = (rng.normal(size=(2, 32, 32, 1)).astype("float32") for _ in range(2))
    out = model([a, b]).numpy()
    np.testing.assert_allclose(out, model([b, a]).numpy(), rtol=1e-5)
    same = model([a, a]).numpy()
    assert np.all(same >= out - 1e-6)  # zero distance = maximal similarity at init
    twin = model.get_layer("twin")
    np.testing.assert_allclose(similarity_from_embeddings(model, twin(a), twin(b)).numpy(), out[:, 0], rtol=1e-5)
    path = tmp_path / "siamese.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded([a, b]).numpy(), out, rtol=1e-5)
    for layer in (PEPX(6, name="q"), WeightedL1Distance(alpha_constraint="non_neg")):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
