"""VGG16 without its classification top (Simonyan & Zisserman, 2014).

The layer names equal those of `keras.applications.VGG16`
(`block1_conv1` ... `block5_conv3`, `block1_pool` ... `block5_pool`), so weights
files and attribution code written for the Keras model work here too. The widths
are configurable so that tests and CPU presets can use a tiny network of the same
shape; ImageNet weights need the full width and three input channels.
"""

import os

import keras

# Convolutions per block in VGG16.
VGG16_BLOCK_DEPTHS = (2, 2, 3, 3, 3)
VGG16_FILTERS = (64, 128, 256, 512, 512)


def vgg16_backbone(input_shape, *, weights=None, filters=VGG16_FILTERS, name="vgg16",
                   kernel_initializer="glorot_uniform") -> keras.Model:
    """Builds the VGG16 convolutional base (no top), ending at `block5_pool`.

    Args:
        input_shape: tuple of 3 ints (height, width, channels). Height and width
            must be at least 32 (five 2x2 poolings).
        weights: None (random initialisation, the default: no network access is
            needed), "imagenet" (downloads the Keras ImageNet weights; needs the
            full `filters` and 3 channels), or the path of a weights file
            (`.weights.h5`) saved from a model of the same configuration.
        filters: tuple of 5 ints, default (64, 128, 256, 512, 512). Filters of each
            block's convolutions.
        name: str, default "vgg16". The model's name.
        kernel_initializer: str or initializer, default "glorot_uniform" (as
            keras.applications). "he_normal" (He et al., 2015) suits training the
            plain ReLU stack from scratch.

    Returns:
        A functional `keras.Model` mapping images to the `block5_pool` features.
        The last convolution is `block5_conv3` (the layer Grad-CAM/HiResCAM use).

    Example:
        >>> base = vgg16_backbone((105, 135, 1), filters=(8, 16, 32, 32, 32))
        >>> base.get_layer("block5_conv3").output.shape
        (None, 6, 8, 32)
    """
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or any(d is not None and int(d) <= 0 for d in input_shape):
        raise ValueError(
            f"input_shape must be (height, width, channels) with positive sizes. "
            f"Received: input_shape={input_shape}"
        )
    height, width, _ = input_shape
    if (height is not None and height < 32) or (width is not None and width < 32):
        raise ValueError(
            f"VGG16 needs images of at least 32 x 32 pixels (five 2x2 poolings). "
            f"Received: input_shape={input_shape}"
        )
    filters = tuple(int(f) for f in filters)
    if len(filters) != len(VGG16_BLOCK_DEPTHS) or any(f <= 0 for f in filters):
        raise ValueError(f"filters must be 5 positive ints. Received: filters={filters}")

    if isinstance(weights, str) and weights == "imagenet":
        if filters != VGG16_FILTERS or input_shape[-1] != 3:
            raise ValueError(
                "weights='imagenet' needs filters=(64, 128, 256, 512, 512) and 3 input "
                f"channels. Received: filters={filters}, input_shape={input_shape}"
            )
        return keras.applications.VGG16(include_top=False, weights="imagenet",
                                        input_shape=input_shape, name=name)
    if weights is not None and not os.path.exists(str(weights)):
        raise FileNotFoundError(
            f"VGG16 weights file not found: {weights} (expected None, 'imagenet' or "
            "the path of a .weights.h5 file)"
        )

    inputs = keras.Input(shape=input_shape, name="input_layer")
    x = inputs
    for block, (depth, width_b) in enumerate(zip(VGG16_BLOCK_DEPTHS, filters), start=1):
        for conv in range(1, depth + 1):
            x = keras.layers.Conv2D(width_b, 3, padding="same", activation="relu",
                                    kernel_initializer=kernel_initializer,
                                    name=f"block{block}_conv{conv}")(x)
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
    model = keras.Model(inputs, x, name=name)
    if weights is not None:
        model.load_weights(str(weights))
    return model
