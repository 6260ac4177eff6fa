"""ResNet with basic (two 3x3 convolution) residual blocks: ResNet18/34 and narrower variants.

He et al., "Deep residual learning for image recognition", CVPR 2016, Table 1: a 7x7
stride-2 stem convolution, 3x3 stride-2 max pooling, then four stages of basic blocks
([3, 4, 6, 3] for ResNet34) with 64, 128, 256 and 512 filters; the first block of
stages 2-4 halves the resolution and uses a 1x1 projection shortcut (option B).
At full width with a 3-channel input and no top this is 21.28 M parameters.

`keras.applications` has no ResNet34; this module builds it (and tiny versions of it
for CPU tests) as a plain functional model.

Layer names (for skip connections, CAMs and feature extraction), following
`keras.applications.ResNet50`:

- `conv1_relu`: stem output, stride 2.
- `pool1_pool`: after max pooling, stride 4.
- `conv{s}_block{b}_out`: output of block `b` (1-based) of stage `s` (2..5); the
  last block of each stage, `resnet_stage_output_names(blocks)`, gives the stage
  outputs at strides 4, 8, 16 and 32. The model's output is the last of them.
"""

from pathlib import Path

import keras
from keras import layers

_BN_EPSILON = 1.001e-5


def resnet_stage_output_names(blocks=(3, 4, 6, 3)) -> list:
    """Names of the layers holding each stage's output (strides 4, 8, 16, 32).

    Args:
        blocks: sequence of int, default (3, 4, 6, 3). Blocks per stage.

    Returns:
        list of str, e.g. `["conv2_block3_out", "conv3_block4_out", ...]`.
    """
    return [f"conv{stage + 2}_block{n}_out" for stage, n in enumerate(blocks)]


def _basic_block(x, filters, stride, name):
    """Two 3x3 conv-BN layers plus the (projected when needed) shortcut, then ReLU."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_0_conv")(x)
        shortcut = layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}_0_bn")(shortcut)
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_1_conv")(x)
    y = layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}_1_bn")(y)
    y = layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(y)
    y = layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}_2_bn")(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def resnet34_backbone(
    input_shape,
    *,
    weights=None,
    filters=(64, 128, 256, 512),
    blocks=(3, 4, 6, 3),
    stem_filters=None,
    name="resnet34",
) -> keras.Model:
    """A ResNet with basic blocks, without its classification top.

    Args:
        input_shape: tuple (H, W, C). Height and width may be None.
        weights: None (random initialisation, the default) or str / Path of a local
            `.weights.h5` file saved from a model of the same configuration. No ImageNet
            ResNet34 weights ship with Keras; converting a downloaded checkpoint into
            such a file is left to the user.
        filters: sequence of int, default (64, 128, 256, 512). Filters per stage.
        blocks: sequence of int, default (3, 4, 6, 3) (ResNet34; (2, 2, 2, 2) gives
            ResNet18). Same length as `filters`.
        stem_filters: int, optional. Filters of the 7x7 stem; default `filters[0]`.
        name: str, default "resnet34". Model name.

    Returns:
        A functional `keras.Model` mapping images to the last stage's feature map
        (stride 32 for four stages). See the module docstring for layer names.

    Example:
        >>> enc = resnet34_backbone((128, 128, 1), filters=(8, 16, 32, 64), blocks=(1, 1, 1, 1))
        >>> enc.output_shape
        (None, 4, 4, 64)
    """
    filters = tuple(int(f) for f in filters)
    blocks = tuple(int(b) for b in blocks)
    if len(filters) != len(blocks) or not filters:
        raise ValueError(
            "filters and blocks need the same, non-zero length. "
            f"Received: filters={filters}, blocks={blocks}"
        )
    if any(f < 1 for f in filters) or any(b < 1 for b in blocks):
        raise ValueError(f"filters and blocks must be positive. Received: filters={filters}, blocks={blocks}")
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (H, W, C). Received: input_shape={input_shape}")
    if weights is not None and not isinstance(weights, (str, Path)):
        raise ValueError(f"weights must be None or a file path. Received: weights={weights!r}")
    if isinstance(weights, str) and weights == "imagenet":
        raise ValueError(
            "No ImageNet ResNet34 weights ship with Keras. Pass weights=None or the path of a "
            "local .weights.h5 file. Received: weights='imagenet'"
        )
    stem_filters = filters[0] if stem_filters is None else int(stem_filters)

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = layers.Conv2D(stem_filters, 7, strides=2, padding="same", use_bias=False, name="conv1_conv")(inputs)
    x = layers.BatchNormalization(epsilon=_BN_EPSILON, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1_pool")(x)
    for stage, (n_filters, n_blocks) in enumerate(zip(filters, blocks)):
        for b in range(n_blocks):
            stride = 2 if (b == 0 and stage > 0) else 1
            x = _basic_block(x, n_filters, stride, name=f"conv{stage + 2}_block{b + 1}")
    model = keras.Model(inputs, x, name=name)

    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"ResNet weights file not found: {path}")
        model.load_weights(str(path))
    return model
