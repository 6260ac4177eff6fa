"""2D U-Net (Ronneberger et al., MICCAI 2015), standalone or on a given encoder.

Standalone: per level two 3x3 conv-BN-ReLU layers then 2x2 max pooling; the last
entry of `filters` is the bottleneck; the decoder upsamples (2x2 transposed
convolution), concatenates the encoder's feature map of the same resolution and
applies two 3x3 conv-BN-ReLU layers. Same padding throughout (output size = input
size), unlike the original's valid convolutions.

On an encoder (`unet_decoder`): any functional encoder whose intermediate layers are
named, e.g. `shared.backbones.resnet.resnet34_backbone` with skips
`["conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out"]`: the
decoder walks back up through the skips and, when the shallowest skip is coarser than
the input, upsamples to the input resolution.
"""

import keras
from keras import layers


def _conv_block(x, filters, name):
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def _head(x, out_channels, activation, name):
    x = layers.Conv2D(out_channels, 1, name=f"{name}_logits")(x)
    if activation is None:
        return x
    # float32 output keeps sigmoid/softmax stable under mixed precision.
    return layers.Activation(activation, dtype="float32", name=f"{name}_out")(x)


def unet2d(
    input_shape,
    *,
    filters=(64, 128, 256, 512),
    out_channels=1,
    activation="sigmoid",
    name="unet2d",
) -> keras.Model:
    """A standalone 2D U-Net.

    Args:
        input_shape: tuple (H, W, C); H and W divisible by 2 ** (len(filters) - 1).
        filters: sequence of int, default (64, 128, 256, 512). Filters per level,
            the last one being the bottleneck.
        out_channels: int, default 1. Output channels.
        activation: str or None, default "sigmoid". Output activation (None: logits).
        name: str, default "unet2d". Model name.

    Returns:
        A functional `keras.Model` mapping [B, H, W, C] to [B, H, W, out_channels].
        Layer names: `enc{i}_*` (encoder level i), `bottleneck_*`, `dec{i}_*`,
        `{name}_out`.
    """
    filters = tuple(int(f) for f in filters)
    if len(filters) < 2:
        raise ValueError(f"filters needs at least two levels. Received: filters={filters}")
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (H, W, C). Received: input_shape={input_shape}")
    factor = 2 ** (len(filters) - 1)
    for size in input_shape[:2]:
        if size is not None and size % factor:
            raise ValueError(
                f"input height and width must be divisible by {factor} for {len(filters)} levels. "
                f"Received: input_shape={input_shape}"
            )
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    skips = []
    for i, f in enumerate(filters[:-1]):
        x = _conv_block(x, f, name=f"enc{i + 1}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{i + 1}_pool")(x)
    x = _conv_block(x, filters[-1], name="bottleneck")
    for i in reversed(range(len(filters) - 1)):
        x = layers.Conv2DTranspose(filters[i], 2, strides=2, name=f"dec{i + 1}_up")(x)
        x = layers.Concatenate(name=f"dec{i + 1}_concat")([x, skips[i]])
        x = _conv_block(x, filters[i], name=f"dec{i + 1}")
    outputs = _head(x, out_channels, activation, name)
    return keras.Model(inputs, outputs, name=name)


def unet_decoder(
    encoder,
    skip_names,
    *,
    filters=None,
    out_channels=1,
    activation="sigmoid",
    name="decoder",
):
    """Builds a U-Net decoder on top of a functional encoder.

    Args:
        encoder: keras.Model. A functional model with one image input; its output is
            the bottleneck.
        skip_names: sequence of str. Layers of `encoder` whose outputs are the skip
            connections, from the finest (highest resolution) to the coarsest.
        filters: sequence of int, optional. Decoder filters per skip, finest first;
            default the skips' own channel counts.
        out_channels: int, default 1. Output channels.
        activation: str or None, default "sigmoid". Output activation.
        name: str, default "decoder". Prefix of the decoder's layer names.

    Returns:
        `(features_model, output_tensor)`: a model mapping the encoder's input to
        `[bottleneck, *skips]`, and the decoder output tensor built on the
        encoder's input (same H, W). Use `unet2d_on_encoder` for a ready model.
    """
    skip_names = list(skip_names)
    if not skip_names:
        raise ValueError("skip_names must name at least one encoder layer. Received: []")
    try:
        skip_tensors = [encoder.get_layer(n).output for n in skip_names]
    except ValueError as err:
        raise ValueError(f"encoder {encoder.name!r} has no layer among {skip_names}: {err}") from err
    filters = [int(t.shape[-1]) for t in skip_tensors] if filters is None else [int(f) for f in filters]
    if len(filters) != len(skip_names):
        raise ValueError(
            f"filters needs one entry per skip ({len(skip_names)}). Received: filters={filters}"
        )
    x = encoder.output
    for i in reversed(range(len(skip_names))):
        skip = skip_tensors[i]
        if x.shape[1] != skip.shape[1]:
            x = layers.Conv2DTranspose(filters[i], 2, strides=2, name=f"{name}{i + 1}_up")(x)
        if tuple(x.shape[1:3]) != tuple(skip.shape[1:3]):
            raise ValueError(
                f"skip {skip_names[i]!r} has spatial shape {tuple(skip.shape[1:3])} but the decoder "
                f"reaches {tuple(x.shape[1:3])}: the input size must be divisible by the encoder's "
                f"total stride. Received: input shape {tuple(encoder.input.shape[1:])}"
            )
        x = layers.Concatenate(name=f"{name}{i + 1}_concat")([x, skip])
        x = _conv_block(x, filters[i], name=f"{name}{i + 1}")
    in_h = encoder.input.shape[1]
    step = 0
    while in_h is not None and x.shape[1] is not None and x.shape[1] < in_h:
        x = layers.Conv2DTranspose(filters[0], 2, strides=2, name=f"{name}_final_up{step}")(x)
        x = _conv_block(x, filters[0], name=f"{name}_final{step}")
        step += 1
    return _head(x, out_channels, activation, name)


def unet2d_on_encoder(encoder, skip_names, *, filters=None, out_channels=1, activation="sigmoid",
                      name="unet2d") -> keras.Model:
    """A U-Net whose contracting path is `encoder` (see `unet_decoder`).

    Returns:
        A functional model mapping the encoder's input to the segmentation map.
    """
    out = unet_decoder(encoder, skip_names, filters=filters, out_channels=out_channels,
                       activation=activation, name=f"{name}_dec")
    return keras.Model(encoder.input, out, name=name)
