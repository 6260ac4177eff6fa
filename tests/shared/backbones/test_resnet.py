import numpy as np
import pytest


from shared.backbones.resnet import resnet34_backbone, resnet_stage_output_names


def test_full_resnet34_has_21_3_million_parameters():
    model = resnet34_backbone((224, 224, 3))
    # torchvision's resnet34 without fc: 21,284,672 weights (+ BN running stats here).
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 21_284_672
    assert round(model.count_params() / 1e6, 1) == 21.3
    assert model.output_shape == (None, 7, 7, 512)


def test_stage_outputs_are_named_and_strided():
    model = resnet34_backbone((64, 64, 1), filters=(4, 8, 16, 32), blocks=(1, 2, 1, 1))
    names = resnet_stage_output_names((1, 2, 1, 1))
    assert names == ["conv2_block1_out", "conv3_block2_out", "conv4_block1_out", "conv5_block1_out"]
    sizes = [model.get_layer(n).output.shape[1] for n in names]
    assert sizes == [16, 8, 4, 2]
    assert model.get_layer("conv1_relu").output.shape[1] == 32
    assert model.output.name == model.get_layer(names[-1]).output.name


def test_tiny_forward_and_weights_file_round_trip(tmp_path):
    kwargs = dict(filters=(4, 8), blocks=(1, 1))
    model = resnet34_backbone((32, 32, 1), **kwargs)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 1)).astype("float32")
    path = tmp_path / "enc.weights.h5"
    model.save_weights(path)
    loaded = resnet34_backbone((32, 32, 1), weights=path, **kwargs)
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="same, non-zero length"):
        resnet34_backbone((32, 32, 1), filters=(4, 8), blocks=(1,))
    with pytest.raises(ValueError, match="imagenet"):
        resnet34_backbone((32, 32, 3), weights="imagenet")
    with pytest.raises(FileNotFoundError, match="missing.weights.h5"):
        resnet34_backbone((32, 32, 1), filters=(4,), blocks=(1,), weights="missing.weights.h5")
