import numpy as np
import pytest

from shared.backbones.resnet import resnet34_backbone
from shared.backbones.unet import unet2d, unet2d_on_encoder


def test_standalone_unet_shapes_and_range():
    model = unet2d((32, 32, 1), filters=(4, 8, 16), out_channels=2)
    y = model.predict(np.zeros((3, 32, 32, 1), "float32"), verbose=0)
    assert y.shape == (3, 32, 32, 2)
    assert np.all((y >= 0) & (y <= 1))
    assert model.get_layer("bottleneck_conv1").output.shape[1] == 8


def test_unet_on_resnet_encoder_reaches_input_resolution():
    enc = resnet34_backbone((64, 64, 1), filters=(4, 8, 16, 32), blocks=(1, 1, 1, 1))
    skips = ["conv1_relu", "conv2_block1_out", "conv3_block1_out", "conv4_block1_out"]
    model = unet2d_on_encoder(enc, skips, activation=None)
    assert model.output_shape == (None, 64, 64, 1)
    # The encoder's weights are shared, not copied.
    assert enc.get_layer("conv1_conv").kernel is model.get_layer("conv1_conv").kernel


def test_unet_errors():
    with pytest.raises(ValueError, match="divisible by 4"):
        unet2d((30, 32, 1), filters=(4, 8, 16))
    enc = resnet34_backbone((32, 32, 1), filters=(4,), blocks=(1,))
    with pytest.raises(ValueError, match="no layer"):
        unet2d_on_encoder(enc, ["nope"])
