"""Independent, reproducible trials: seeded redraws, pretrained parts, loss scale."""

import numpy as np
import pytest

import keras

from heatmap_loss.config import get_config
from heatmap_loss.experiment import build_model, initial_weights_of
from heatmap_loss.phantom import generate
from heatmap_loss.data import model_arrays
from heatmap_loss.trials import (InitialWeights, draw_initial_weights, reset_optimizer,
                                 start_trial, trial_init_seed)
from shared.backbones.vgg import vgg16_backbone

TINY = get_config("tiny")


def _weights(model):
    return [w.numpy().copy() for w in model.weights]


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def tiny_data():
    arrays = model_arrays(generate(32, experiment=1, seed=5), TINY.image_size)
    return (arrays["images"], arrays["heart"]), arrays["labels"]


def test_trial_seeds_are_distinct_and_reproducible():
    seeds = [trial_init_seed(0, k) for k in range(50)]
    assert len(set(seeds)) == 50 and seeds == [trial_init_seed(0, k) for k in range(50)]
    assert trial_init_seed(1, 0) != trial_init_seed(0, 0)
    with pytest.raises(ValueError, match="integers"):
        trial_init_seed(None, 0)


def test_two_trials_differ_and_one_seed_repeats():
    model = build_model(TINY, "heatmap", 1e-3)
    start = initial_weights_of(model, TINY)
    start_trial(model, start, init_seed=trial_init_seed(0, 0), learning_rate=1e-3)
    first = _weights(model)
    start_trial(model, start, init_seed=trial_init_seed(0, 1), learning_rate=1e-3)
    second = _weights(model)
    start_trial(model, start, init_seed=trial_init_seed(0, 0), learning_rate=1e-3)
    again = _weights(model)
    kernels = [i for i, w in enumerate(model.weights) if w.path.endswith("kernel")]
    assert kernels and all(not np.array_equal(first[i], second[i]) for i in kernels)
    assert _same(first, again)


def test_trial_k_of_both_groups_starts_from_the_same_weights():
    cce = build_model(TINY, "cce", 1e-3)
    heat = build_model(TINY, "heatmap", 1e-3)
    for model in (cce, heat):
        draw_initial_weights(model, 1234)
    assert _same(_weights(cce), _weights(heat))


def test_redrawn_weights_follow_the_initializer():
    # He-normal: standard deviation sqrt(2 / fan_in) (truncated normal, so a little less).
    model = build_model(dataclass_with(filters=(8, 8, 16, 16, 32)), "cce", 1e-3)
    draw_initial_weights(model, 7)
    kernel = model.classifier.get_layer("vgg16").get_layer("block5_conv3").kernel.numpy()
    fan_in = 3 * 3 * kernel.shape[2]
    assert np.std(kernel) == pytest.approx(np.sqrt(2.0 / fan_in), rel=0.15)
    bias = model.classifier.get_layer("fc").bias.numpy()
    assert np.all(bias == 0.0)


def dataclass_with(**changes):
    import dataclasses

    return dataclasses.replace(TINY, **changes)


def test_loaded_backbone_survives_and_the_head_is_redrawn(tmp_path):
    backbone = vgg16_backbone(tuple(TINY.image_size) + (1,), filters=TINY.filters,
                              kernel_initializer="he_normal")
    path = tmp_path / "backbone.weights.h5"
    backbone.save_weights(path)
    loaded = _weights(backbone)
    config = dataclass_with(backbone_weights=str(path))
    model = build_model(config, "heatmap", 1e-3)
    start = initial_weights_of(model, config)
    assert "loaded vgg16 weights" in start.describe()
    heads = []
    for k in range(2):
        start_trial(model, start, init_seed=trial_init_seed(0, k), learning_rate=1e-3)
        assert _same(_weights(model.classifier.get_layer("vgg16")), loaded)
        heads.append(model.classifier.get_layer("fc").kernel.numpy().copy())
    assert not np.array_equal(heads[0], heads[1])


def test_initial_weights_names_a_missing_backbone():
    model = build_model(TINY, "cce", 1e-3)
    with pytest.raises(ValueError, match="'resnet'"):
        InitialWeights(model, pretrained="resnet")


def test_reset_optimizer_zeroes_slots_and_sets_rate(tiny_data):
    x, y = tiny_data
    model = build_model(TINY, "cce", 1e-2)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 2
    reset_optimizer(model.optimizer, 0.123)
    assert int(model.optimizer.iterations.numpy()) == 0
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.123)
    slots = [v for v in model.optimizer.variables if "momentum" in v.path]
    assert slots and all(not np.any(v.numpy()) for v in slots)


@pytest.fixture
def mixed_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_three_mixed_float16_trials_stay_finite(mixed_float16, tiny_data):
    x, y = tiny_data
    model = build_model(TINY, "heatmap", 2e-3)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    start = initial_weights_of(model, TINY)
    initial_scale = float(model.optimizer.initial_scale)
    for k in range(3):
        start_trial(model, start, init_seed=trial_init_seed(0, k), learning_rate=2e-3)
        assert _loss_scale(model.optimizer) in (None, initial_scale)  # None: not built yet
        history = model.fit(x, y, epochs=2, batch_size=16, verbose=0).history
        assert np.all(np.isfinite(history["loss"])), (k, history)
        assert all(np.all(np.isfinite(w.numpy())) for w in model.weights)
        assert _loss_scale(model.optimizer) > 0


def _loss_scale(optimizer):
    scales = [v for v in optimizer.variables if v.path.endswith("dynamic_scale")]
    return float(scales[0].numpy()) if scales else None


class _RecordsBatches(keras.Model):
    """Records the labels of every training batch (eager), trains nothing."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)
        self.seen = []

    def call(self, x):
        return self.dense(x)

    def train_step(self, data):
        self.seen.append(np.asarray(data[1]).tolist())
        return {"batches": len(self.seen)}


def _batch_order(init_seed):
    x = np.zeros((16, 3), dtype="float32")
    y = np.arange(16)
    model = _RecordsBatches()
    model(x[:1])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
    start_trial(model, InitialWeights(model), init_seed=init_seed, learning_rate=1e-3)
    model.fit(x, y, batch_size=4, epochs=2, shuffle=True, verbose=0)
    return model.seen


def test_batch_order_follows_the_init_seed():
    # Both groups' trial k call start_trial with the same init_seed before fitting.
    first = _batch_order(trial_init_seed(0, 3))
    assert len(first) == 8
    for epoch in (first[:4], first[4:]):
        assert sorted(sum(epoch, [])) == list(range(16))  # each epoch a permutation
    assert first[:4] != [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
    assert _batch_order(trial_init_seed(0, 3)) == first
    assert _batch_order(trial_init_seed(0, 4)) != first
