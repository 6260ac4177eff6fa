import numpy as np
import pytest

import keras

from shared.backbones.vgg import VGG16_BLOCK_DEPTHS, vgg16_backbone

TINY = (2, 4, 4, 8, 8)


def test_layer_names_match_keras_applications():
    base = vgg16_backbone((32, 32, 3), filters=TINY)
    reference = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    ours = [layer.name for layer in base.layers[1:]]
    theirs = [layer.name for layer in reference.layers[1:]]
    assert ours == theirs
    assert base.layers[-2].name == "block5_conv3"


def test_full_width_has_keras_parameter_count():
    base = vgg16_backbone((32, 32, 3))
    reference = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    assert base.count_params() == reference.count_params() == 14_714_688


def test_output_shapes_follow_five_poolings():
    base = vgg16_backbone((105, 135, 1), filters=TINY)
    assert base.get_layer("block5_conv3").output.shape == (None, 6, 8, 8)
    assert base.output_shape == (None, 3, 4, 8)
    # Conv parameters by hand: 3*3*in*out + out per convolution.
    expected, c_in = 0, 1
    for depth, c_out in zip(VGG16_BLOCK_DEPTHS, TINY):
        for _ in range(depth):
            expected += 9 * c_in * c_out + c_out
            c_in = c_out
    assert base.count_params() == expected


def test_local_weights_file_round_trip(tmp_path):
    base = vgg16_backbone((32, 32, 1), filters=TINY)
    path = tmp_path / "vgg.weights.h5"
    base.save_weights(path)
    other = vgg16_backbone((32, 32, 1), filters=TINY, weights=str(path))
    x = np.random.default_rng(0).random((2, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(base.predict(x, verbose=0), other.predict(x, verbose=0), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(input_shape=(16, 32, 3)), ValueError),
        (dict(input_shape=(32, 32)), ValueError),
        (dict(input_shape=(32, 32, 3), filters=(8, 8)), ValueError),
        (dict(input_shape=(32, 32, 1), weights="imagenet"), ValueError),
        (dict(input_shape=(32, 32, 3), filters=TINY, weights="imagenet"), ValueError),
        (dict(input_shape=(32, 32, 3), weights="/nonexistent/vgg.weights.h5"), FileNotFoundError),
    ],
)
def test_bad_arguments(kwargs, error):
    with pytest.raises(error):
        vgg16_backbone(**kwargs)


def test_kernel_initializer_is_configurable():
    base = vgg16_backbone((32, 32, 1), filters=TINY, kernel_initializer="he_normal")
    init = base.get_layer("block3_conv2").kernel_initializer
    assert type(init).__name__ == "HeNormal"
    default = vgg16_backbone((32, 32, 1), filters=TINY).get_layer("block1_conv1").kernel_initializer
    assert type(default).__name__ == "GlorotUniform"
