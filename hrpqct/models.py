"""Slice graders: Walle et al.'s baseline CNN and the thesis' proposed network.

Both map one reconstructed slice [H, W, 1] to probabilities of grades 1-5
(index 0-4). Widths are arguments so the same architectures run small on a CPU.

* `build_baseline_grader` (Walle et al. 2023, as the thesis describes it,
  section 2.1): five alternating convolution (LeakyReLU) and max-pooling
  stages, global average pooling, a fully connected ReLU layer and a softmax.
  Kernel sizes and widths are not given in the thesis: 3 x 3 kernels and the
  widths of the presets are our choice.
* `build_proposed_grader` (thesis, sections 2.3.x): a convolution stem (5 x 5,
  stride 2, then 2 x 2 max pooling, as ResNet's stem reduces the input 4-fold)
  and residual stages (two 3 x 3 convolutions with batch normalisation and ReLU or
  ELU, a 1 x 1 projection on the shortcut when the shape changes) each followed
  by a CBAM attention module (Woo et al. 2018: channel attention from average-
  and max-pooled descriptors through a shared MLP, then spatial attention from
  a 7 x 7 convolution over channel-wise mean and max), max pooling between
  stages, global average pooling, a dense layer and a softmax.

The last feature map of each network is the layer named ``cam_features``, the
layer Grad-CAM reads. The output layer computes in float32 whatever the global
dtype policy (under ``mixed_float16`` a float16 softmax rounds small
probabilities to zero and the cross-entropy to infinity).
"""

from __future__ import annotations

import keras
from keras import layers, ops

NUM_GRADES = 5
CAM_LAYER = "cam_features"
# The proposed network at the paper preset's size: XtremeCT II slices of 512 x 512.
PAPER_INPUT_SHAPE = (512, 512, 1)
PAPER_PROPOSED_FILTERS = (32, 64, 128, 256)
PAPER_DENSE_UNITS = 128


@keras.saving.register_keras_serializable(package="medrepro")
class CBAM(layers.Layer):
    """Convolutional block attention module (Woo et al. 2018, Eqs. 2-3).

    ``F' = M_c(F) * F`` with ``M_c = sigmoid(MLP(avgpool F) + MLP(maxpool F))``,
    then ``F'' = M_s(F') * F'`` with ``M_s = sigmoid(conv7x7([mean_c F'; max_c F']))``.

    Args:
        reduction: int, default 8. Channel reduction of the shared MLP.
        kernel_size: int, default 7. Spatial attention kernel.
    """

    def __init__(self, reduction=8, kernel_size=7, **kwargs):
        super().__init__(**kwargs)
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1. Received: reduction={reduction}")
        self.reduction = int(reduction)
        self.kernel_size = int(kernel_size)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        hidden = max(1, channels // self.reduction)
        self.mlp_hidden = layers.Dense(hidden, activation="relu", name="mlp_hidden")
        self.mlp_out = layers.Dense(channels, name="mlp_out")
        self.mlp_hidden.build((None, channels))
        self.mlp_out.build((None, hidden))
        self.spatial = layers.Conv2D(1, self.kernel_size, padding="same", activation="sigmoid", name="spatial")
        self.spatial.build(tuple(input_shape[:-1]) + (2,))

    def call(self, inputs):
        avg = ops.mean(inputs, axis=(1, 2))
        mx = ops.max(inputs, axis=(1, 2))
        channel = ops.sigmoid(self.mlp_out(self.mlp_hidden(avg)) + self.mlp_out(self.mlp_hidden(mx)))
        x = inputs * channel[:, None, None, :]
        desc = ops.concatenate([ops.mean(x, axis=-1, keepdims=True), ops.max(x, axis=-1, keepdims=True)], axis=-1)
        return x * self.spatial(desc)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(reduction=self.reduction, kernel_size=self.kernel_size)
        return config


def _check(input_shape, filters):
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (H, W, C). Received: input_shape={input_shape}")
    if not filters or any(int(f) < 1 for f in filters):
        raise ValueError(f"filters must be positive ints. Received: filters={filters}")


def build_baseline_grader(input_shape, *, filters=(32, 64, 128, 256, 256), dense_units=128,
                          negative_slope=0.1, name="baseline_grader") -> keras.Model:
    """Walle et al.'s CNN: five conv (LeakyReLU) + max-pool stages, GAP, dense, softmax.

    Args:
        input_shape: (H, W, 1). H and W should be divisible by 32.
        filters: 5 ints. Width of each stage.
        dense_units: int. Fully connected ReLU layer.
        negative_slope: float, default 0.1. LeakyReLU slope.
        name: str.

    Returns:
        keras.Model slice -> probabilities of the 5 grades.
    """
    _check(input_shape, filters)
    if len(filters) != 5:
        raise ValueError(f"the baseline has five stages. Received: filters={filters}")
    inputs = keras.Input(input_shape, name="slice")
    x = inputs
    for i, f in enumerate(filters):
        x = layers.Conv2D(int(f), 3, padding="same", name=f"conv{i + 1}")(x)
        x = layers.LeakyReLU(negative_slope, name=CAM_LAYER if i == len(filters) - 1 else f"lrelu{i + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(int(dense_units), activation="relu", name="fc")(x)
    outputs = layers.Dense(NUM_GRADES, activation="softmax", dtype="float32", name="grade")(x)
    return keras.Model(inputs, outputs, name=name)


def _residual_block(x, filters, activation, prefix, bn_momentum):
    shortcut = x
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{prefix}_conv1")(x)
    y = layers.BatchNormalization(momentum=bn_momentum, name=f"{prefix}_bn1")(y)
    y = layers.Activation(activation, name=f"{prefix}_act1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{prefix}_conv2")(y)
    y = layers.BatchNormalization(momentum=bn_momentum, name=f"{prefix}_bn2")(y)
    y = CBAM(name=f"{prefix}_cbam")(y)
    if shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, use_bias=False, name=f"{prefix}_proj")(shortcut)
        shortcut = layers.BatchNormalization(momentum=bn_momentum, name=f"{prefix}_proj_bn")(shortcut)
    return layers.Add(name=f"{prefix}_add")([y, shortcut])


def build_proposed_grader(input_shape, *, filters=PAPER_PROPOSED_FILTERS, dense_units=PAPER_DENSE_UNITS,
                          activation="relu", dropout=0.3, bn_momentum=0.9, name="proposed_grader") -> keras.Model:
    """The thesis' network: BN, ReLU/ELU, residual blocks with CBAM attention.

    Args:
        input_shape: (H, W, 1). H and W divisible by 2 ** (len(filters) + 1).
        filters: ints. One residual stage per entry; max pooling after each but the last.
        dense_units: int. Hidden dense layer.
        activation: "relu" (with batch norm, as the thesis recommends) or "elu".
        dropout: float, default 0.3. Before the output layer.
        bn_momentum: float, default 0.9. Momentum of the batch-norm moving
            statistics (PyTorch's default; Keras' 0.99 leaves them far from the
            data's after the few hundred steps of a small training set, and the
            network then grades validation slices with the wrong statistics).
        name: str.

    Returns:
        keras.Model slice -> probabilities of the 5 grades.
    """
    _check(input_shape, filters)
    if activation not in ("relu", "elu"):
        raise ValueError(f"activation must be 'relu' or 'elu'. Received: activation={activation!r}")
    inputs = keras.Input(input_shape, name="slice")
    x = layers.Conv2D(int(filters[0]), 5, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(momentum=bn_momentum, name="stem_bn")(x)
    x = layers.Activation(activation, name="stem_act")(x)
    x = layers.MaxPooling2D(2, name="stem_pool")(x)
    for i, f in enumerate(filters):
        x = _residual_block(x, int(f), activation, f"stage{i + 1}", float(bn_momentum))
        last = i == len(filters) - 1
        x = layers.Activation(activation, name=CAM_LAYER if last else f"stage{i + 1}_out")(x)
        if not last:
            x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(int(dense_units), activation=activation, name="fc")(x)
    if dropout:
        x = layers.Dropout(float(dropout), name="dropout")(x)
    outputs = layers.Dense(NUM_GRADES, activation="softmax", dtype="float32", name="grade")(x)
    return keras.Model(inputs, outputs, name=name)


def build_grader(arm, input_shape, *, baseline_filters, proposed_filters, dense_units, activation="relu"):
    """`build_baseline_grader` for arm "baseline", `build_proposed_grader` for "proposed"."""
    if arm == "baseline":
        return build_baseline_grader(input_shape, filters=baseline_filters, dense_units=dense_units)
    if arm == "proposed":
        return build_proposed_grader(input_shape, filters=proposed_filters, dense_units=dense_units,
                                     activation=activation)
    raise ValueError(f"arm must be 'baseline' or 'proposed'. Received: arm={arm!r}")


def build_paper_grader() -> keras.Model:
    """The proposed network at the paper preset's size (input `PAPER_INPUT_SHAPE`)."""
    return build_proposed_grader(PAPER_INPUT_SHAPE, filters=PAPER_PROPOSED_FILTERS,
                                 dense_units=PAPER_DENSE_UNITS)
