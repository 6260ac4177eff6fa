import keras
import numpy as np
import pytest

from hrpqct import models


def test_graders_shapes_and_round_trip(tmp_path):
    x = np.random.default_rng(0).random((2, 32, 32, 1)).astype("float32")
    for model in (models.build_baseline_grader((32, 32, 1), filters=(4, 4, 8, 8, 8), dense_units=8),
                  models.build_proposed_grader((32, 32, 1), filters=(4, 8), dense_units=8, activation="elu")):
        y = model(x)
        assert y.shape == (2, 5)
        np.testing.assert_allclose(np.sum(y, axis=-1), 1.0, rtol=1e-5)
        assert model.get_layer(models.CAM_LAYER) is not None
        model.save(tmp_path / "m.keras")
        again = keras.saving.load_model(tmp_path / "m.keras")
        np.testing.assert_allclose(again(x), y, atol=1e-6)
    assert isinstance(models.PAPER_INPUT_SHAPE, tuple) and models.PAPER_INPUT_SHAPE == (512, 512, 1)


def test_cbam_attention_by_hand():
    layer = models.CBAM(reduction=2, kernel_size=1)
    x = np.ones((1, 4, 4, 4), "float32")
    y = layer(x)
    assert y.shape == x.shape
    # Constant input, 1 x 1 spatial kernel: worked out from the weights (Woo et al. Eqs. 2-3).
    def sig(v):
        return 1 / (1 + np.exp(-v))

    w1, b1 = [np.asarray(v) for v in layer.mlp_hidden.weights]
    w2, b2 = [np.asarray(v) for v in layer.mlp_out.weights]
    mlp = np.maximum(np.ones(4) @ w1 + b1, 0) @ w2 + b2
    channel = sig(2 * mlp)  # average- and max-pooled descriptors are equal here
    k, b = [np.asarray(v) for v in layer.spatial.weights]
    spatial = sig(k[0, 0, 0, 0] * channel.mean() + k[0, 0, 1, 0] * channel.max() + b[0])
    np.testing.assert_allclose(y, np.broadcast_to(channel * spatial, x.shape), rtol=1e-5)
    again = models.CBAM.from_config(layer.get_config())
    assert again.reduction == 2 and again.kernel_size == 1
    with pytest.raises(ValueError, match="reduction"):
        models.CBAM(reduction=0)


def test_builder_errors():
    with pytest.raises(ValueError, match="five stages"):
        models.build_baseline_grader((32, 32, 1), filters=(4, 4))
    with pytest.raises(ValueError, match="activation"):
        models.build_proposed_grader((32, 32, 1), filters=(4,), activation="tanh")
    with pytest.raises(ValueError, match="arm"):
        models.build_grader("vgg", (32, 32, 1), baseline_filters=(4,) * 5, proposed_filters=(4,), dense_units=4)


def test_proposed_grader_trains_under_mixed_float16():
    from hrpqct.config import get_config
    from hrpqct.training import train_grader

    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 32, 32, 1)).astype("float32")
    y = np.arange(16) % 5
    config = get_config("tiny", epochs=1, batch_size=8, rotation_p=0.0, noise_p=0.0)
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model, hist = train_grader("proposed", x, y, x[:8], y[:8], config=config, seed=0)
        assert model.get_layer("stem_conv").compute_dtype == "float16"
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        probs = model.predict(x[:4], verbose=0)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    # The softmax stays in float32: probabilities sum to 1 and the loss is finite.
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)
    assert np.isfinite(hist["loss"][0]) and np.isfinite(hist["val_loss"][0])
    assert all(np.all(np.isfinite(np.asarray(w, dtype=np.float32))) for w in model.weights)
