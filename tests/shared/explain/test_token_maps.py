"""Token maps of a vision transformer, on a hand-made model and on the suite's 3D ViT."""

import numpy as np
import pytest

import keras

from shared.explain.token_maps import token_maps, tokens_to_grid


def _toy(head_weights, bias):
    """Volumes 4^3 -> 8 patch tokens of 3 channels (2^3 patches, no [cls]); the score is
    a linear read-out of token 5 only."""
    from shared.backbones.vit3d import PatchEmbedding3D

    inputs = keras.Input((4, 4, 4, 1))
    tokens = PatchEmbedding3D(2, 3, name="patch_embedding")(inputs)
    tokens = keras.layers.Activation("linear", name="toks")(tokens)
    picked = keras.layers.Lambda(lambda t: t[:, 5])(tokens)
    head = keras.layers.Dense(1, name="head")
    out = head(picked)
    model = keras.Model(inputs, out)
    head.set_weights([np.asarray(head_weights, np.float32)[:, None],
                      np.array([bias], np.float32)])
    return model


def test_maps_of_a_model_that_reads_one_token_by_hand():
    rng = np.random.default_rng(0)
    w = np.array([0.5, -1.0, 2.0])
    model = _toy(w, 0.3)
    x = rng.normal(size=(2, 4, 4, 4, 1)).astype(np.float32)
    feature = keras.Model(model.input, model.get_layer("toks").output)
    tokens = np.asarray(feature(x))  # [2, 8, 3]
    score = lambda out: out[:, 0]  # noqa: E731
    hires = np.asarray(token_maps(model, x, layer_name="toks", grid=(2, 2, 2), targets=score,
                                  method="hirescam", class_token=False, relu=False))
    expected = np.zeros((2, 8))
    expected[:, 5] = tokens[:, 5] @ w  # dS/dA = w at token 5 only
    assert hires.shape == (2, 2, 2, 2)
    np.testing.assert_allclose(hires.reshape(2, 8), expected, atol=1e-5)
    assert np.allclose(hires[:, 1, 0, 1], expected[:, 5], atol=1e-5)  # 5 = (1, 0, 1) row-major
    # Grad-CAM: channel weights are the gradient averaged over the 8 patches, w / 8.
    grad = np.asarray(token_maps(model, x, layer_name="toks", grid=(2, 2, 2), targets=score,
                                 class_token=False, relu=False))
    np.testing.assert_allclose(grad.reshape(2, 8), tokens @ (w / 8), atol=1e-5)


def test_tokens_to_grid_drops_the_class_token_and_checks_the_grid():
    values = np.arange(2 * 9, dtype=np.float32).reshape(2, 9)
    grid = np.asarray(tokens_to_grid(values, (2, 2, 2)))
    assert grid.shape == (2, 2, 2, 2) and grid[0, 0, 0, 0] == 1 and grid[1, 1, 1, 1] == 17
    with pytest.raises(ValueError, match="holds 8 patches but the layer has 9"):
        tokens_to_grid(values, (2, 2, 2), class_token=False)


def test_vit_classifier_maps_and_the_last_block_refused():
    from shared.backbones.vit3d import vit3d_encoder

    keras.utils.set_random_seed(0)
    encoder = vit3d_encoder((16, 16, 16, 1), patch_size=8, width=16, depth=2, num_heads=2,
                            mlp_dim=32, name="encoder")
    inputs = keras.Input((16, 16, 16, 1))
    cls, _ = encoder(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="head")(cls))
    x = np.random.default_rng(1).normal(size=(3, 16, 16, 16, 1)).astype(np.float32)
    maps = token_maps(model, x, layer_name="block_0", grid=(2, 2, 2),
                      targets=lambda out: out[:, 0], upsample_to=(16, 16, 16))
    assert tuple(maps.shape) == (3, 16, 16, 16) and np.all(np.isfinite(maps))
    assert float(np.min(maps)) >= 0.0
    # The last block's patch tokens no longer reach the [cls] read-out.
    with pytest.raises(ValueError, match="block before the last"):
        token_maps(model, x, layer_name="block_1", grid=(2, 2, 2),
                   targets=lambda out: out[:, 0])
    with pytest.raises(ValueError, match=r"token maps need tokens \[B, T, C\]"):
        token_maps(model, x, layer_name="head", grid=(2, 2, 2), targets=lambda out: out[:, 0])
