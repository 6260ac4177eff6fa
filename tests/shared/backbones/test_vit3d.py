"""3D ViT encoder and decoder: shapes, class token, serialization, argument errors."""

import numpy as np
import pytest

import keras

from shared.backbones.vit3d import (PatchEmbedding3D, TransformerBlock, vit3d_decoder,
                                    vit3d_encoder)


def _tiny(class_token=True):
    return vit3d_encoder((16, 16, 16, 1), patch_size=8, width=16, depth=1, num_heads=2,
                         mlp_dim=32, class_token=class_token)


def test_encoder_decoder_shapes():
    enc = _tiny()
    x = np.random.default_rng(0).random((2, 16, 16, 16, 1), dtype=np.float32)
    cls, tokens = enc(x)
    assert cls.shape == (2, 16)
    assert tokens.shape == (2, 8, 16)  # (16 / 8)^3 patches, [cls] removed
    dec = vit3d_decoder((8, 16), grid=(2, 2, 2), patch_size=8)
    assert dec(tokens).shape == (2, 16, 16, 16, 1)


def test_paper_geometry_token_count():
    # The paper's geometry (96^3, 16^3 patches, 10 blocks, 12 heads) at a small width:
    # 216 patch tokens plus [cls] = the paper's 217-token sequence.
    enc = vit3d_encoder((96, 96, 96, 1), width=24, depth=10, num_heads=12, mlp_dim=8)
    assert enc.get_layer("tokens").output.shape[1:] == (217, 24)
    assert [tuple(o.shape) for o in enc.outputs] == [(None, 24), (None, 216, 24)]
    assert len([l for l in enc.layers if l.name.startswith("block_")]) == 10


def test_patch_embedding_is_a_linear_map_of_each_patch():
    layer = PatchEmbedding3D(2, 3)
    x = np.random.default_rng(1).random((1, 4, 4, 4, 1), dtype=np.float32)
    out = np.asarray(layer(x))
    kernel, bias = (np.asarray(w) for w in layer.proj.weights)
    patch = x[0, 2:4, 0:2, 2:4, 0]  # patch index (1, 0, 1) -> token 1*4 + 0*2 + 1 = 5
    expected = np.einsum("abc,abcd->d", patch, kernel[..., 0, :]) + bias
    np.testing.assert_allclose(out[0, 5], expected, rtol=1e-5, atol=1e-6)


def test_without_class_token_first_output_is_mean_token():
    enc = _tiny(class_token=False)
    x = np.random.default_rng(2).random((1, 16, 16, 16, 1), dtype=np.float32)
    cls, tokens = enc(x)
    np.testing.assert_allclose(np.asarray(cls), np.asarray(tokens).mean(axis=1), atol=1e-6)


def test_round_trip_through_keras_saving(tmp_path):
    enc = _tiny()
    x = np.random.default_rng(3).random((2, 16, 16, 16, 1), dtype=np.float32)
    path = tmp_path / "vit.keras"
    enc.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(enc(x), loaded(x)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    block = TransformerBlock(16, 2, 32, dropout=0.1)
    assert TransformerBlock.from_config(block.get_config()).get_config() == block.get_config()


@pytest.mark.parametrize("kwargs", [
    dict(input_shape=(20, 16, 16, 1), patch_size=8),
    dict(input_shape=(16, 16, 1), patch_size=8),
    dict(input_shape=(16, 16, 16, 1), patch_size=8, width=15, num_heads=2),
    dict(input_shape=(16, 16, 16, 1), patch_size=8, depth=0),
])
def test_encoder_argument_errors(kwargs):
    kwargs = dict(dict(width=16, depth=1, num_heads=2, mlp_dim=32), **kwargs)
    with pytest.raises(ValueError):
        vit3d_encoder(kwargs.pop("input_shape"), **kwargs)


def test_decoder_grid_must_match_tokens():
    with pytest.raises(ValueError, match="prod\\(grid\\)"):
        vit3d_decoder((8, 16), grid=(2, 2, 3), patch_size=8)
