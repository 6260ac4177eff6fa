"""COVID-Net-like networks of PEPX modules: the single net and the siamese net.

COVID-Net (Wang et al. 2020) is built from PEPX modules (projection, expansion,
depth-wise, projection, extension) with dense additive skip connections inside each
stage. Its exact micro-architecture was found by generative synthesis and is not
public; the paper (Section 3.2, Eq. 4) fixes the channel plan of each module from its
number of input channels nf:

    nf -> 0.5 nf (1x1 projection) -> 0.75 nf (1x1 expansion) -> 0.75 nf (3x3 depth-wise)
       -> 0.5 nf (1x1 projection) -> nf_out (1x1 extension).

Our trunk: a 7x7 stride-2 stem convolution, then stages of PEPX modules; each stage
starts with 2x2 max pooling and a 1x1 convolution of its input that forms the skip
path; the input of each PEPX module is the sum of that skip path and the outputs of all
earlier modules of the stage (COVID-Net's dense connectivity by addition), and the
stage's output is the sum of all of them. Stage widths are nf, 2 nf, 4 nf, 8 nf.

- Single net: trunk, flatten, three fully connected layers with dropout 0.5, 0.2 and
  0.2 (Section 3.2), 3-way softmax, trained with cross-entropy.
- Siamese net (Section 2.1, Figure 1): the twin (trunk, flatten, a sigmoid dense
  feature layer as in Koch et al. 2015) applied with shared weights to both images,
  the weighted L1 distance of Eq. 1 with one trainable weight per feature, then a
  sigmoid unit, trained with binary cross-entropy.

Pair-label convention: label 1 = same class, so the sigmoid output is a *similarity*
(the probability that both images show the same class) and prediction takes the
argmax over classes. The authors' released code used the opposite labels
(same class = 0, the output a dissimilarity, prediction by argmin); the two differ only
by y -> 1 - y, which the final sigmoid unit absorbs by flipping the sign of its weight
and bias. We use "1 = same" because the paper's text speaks of "choosing the class that
maximizes the similarity" (Sections 3.2.1-3.2.2) and Koch et al. use it.
"""

import keras
from keras import layers, ops

from covidnet_siamese.config import CLASS_NAMES


def pepx_channel_plan(nf_in: int, nf_out: int) -> tuple:
    """Channels after each step of a PEPX module (Eq. 4).

    Returns:
        (input, projection, expansion, depth-wise, projection, extension) channels, e.g.
        `pepx_channel_plan(128, 256) == (128, 64, 96, 96, 64, 256)`.
    """
    half = max(1, int(round(0.5 * nf_in)))
    three_q = max(1, int(round(0.75 * nf_in)))
    return (int(nf_in), half, three_q, three_q, half, int(nf_out))


@keras.saving.register_keras_serializable(package="medrepro")
class PEPX(layers.Layer):
    """Projection-expansion-projection-extension module (COVID-Net; paper Eq. 4).

    Five convolutions, each followed by ReLU: 1x1 projection to 0.5 nf, 1x1 expansion to
    0.75 nf, 3x3 depth-wise, 1x1 projection to 0.5 nf, 1x1 extension to `filters`, where
    nf is the number of input channels.

    Args:
        filters: int. Output channels (nf_out).
        activation: str, default "relu".
        kernel_initializer: default "he_normal".
    """

    def __init__(self, filters, activation="relu", kernel_initializer="he_normal", **kwargs):
        super().__init__(**kwargs)
        if int(filters) < 1:
            raise ValueError(f"filters must be a positive integer. Received: filters={filters}")
        self.filters = int(filters)
        self.activation = activation
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        nf_in = input_shape[-1]
        if nf_in is None:
            raise ValueError(f"PEPX needs a known channel dimension. Received: input_shape={input_shape}")
        _, proj, expand, _, proj2, out = pepx_channel_plan(nf_in, self.filters)
        init = self.kernel_initializer
        act = self.activation
        self.projection = layers.Conv2D(proj, 1, activation=act, kernel_initializer=init, name="projection")
        self.expansion = layers.Conv2D(expand, 1, activation=act, kernel_initializer=init, name="expansion")
        self.depthwise = layers.DepthwiseConv2D(3, padding="same", activation=act,
                                                depthwise_initializer=init, name="depthwise")
        self.projection2 = layers.Conv2D(proj2, 1, activation=act, kernel_initializer=init, name="projection2")
        self.extension = layers.Conv2D(out, 1, activation=act, kernel_initializer=init, name="extension")
        shape = tuple(input_shape)
        for layer in (self.projection, self.expansion, self.depthwise, self.projection2, self.extension):
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def call(self, inputs):
        x = self.projection(inputs)
        x = self.expansion(x)
        x = self.depthwise(x)
        x = self.projection2(x)
        return self.extension(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "activation": self.activation,
                       "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)})
        return config


@keras.saving.register_keras_serializable(package="medrepro")
class WeightedL1Distance(layers.Layer):
    """d(x, y) = sum_i alpha_i |x_i - y_i| with one trainable alpha per feature (Eq. 1).

    Symmetric in its two inputs. Input: a list [x, y] of [B, N] tensors; output [B, 1].

    Args:
        alpha_initializer: default "ones" scaled by 1/N at build time when "auto", so
            the distance starts as the mean absolute difference.
        alpha_constraint: optional Keras constraint (e.g. "non_neg" for a true norm).
    """

    def __init__(self, alpha_initializer="auto", alpha_constraint=None, **kwargs):
        super().__init__(**kwargs)
        self.alpha_initializer = alpha_initializer
        self.alpha_constraint = keras.constraints.get(alpha_constraint)

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(f"WeightedL1Distance takes two inputs [x, y]. Received: input_shape={input_shape}")
        n = input_shape[0][-1]
        if n is None or input_shape[1][-1] != n:
            raise ValueError(f"both inputs need the same known feature size. Received: input_shape={input_shape}")
        init = self.alpha_initializer
        if init == "auto":
            init = keras.initializers.Constant(1.0 / n)
        self.alpha = self.add_weight(name="alpha", shape=(n,), initializer=init,
                                     constraint=self.alpha_constraint, trainable=True)

    def call(self, inputs):
        x, y = inputs
        return ops.sum(self.alpha * ops.abs(x - y), axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], 1)

    def get_config(self):
        config = super().get_config()
        init = self.alpha_initializer
        config.update({
            "alpha_initializer": init if isinstance(init, str) else keras.initializers.serialize(init),
            "alpha_constraint": keras.constraints.serialize(self.alpha_constraint)
            if self.alpha_constraint is not None else None,
        })
        return config


def build_trunk(input_shape=(224, 224, 1), *, nf=128, depths=(3, 4, 6, 3), batch_norm=True,
                bn_momentum=0.99, name="covidnet_trunk"):
    """The COVID-Net-like convolutional trunk.

    Args:
        input_shape: tuple, default (224, 224, 1).
        nf: int, default 128. Width of the first stage; stage s has nf * 2**s channels.
        depths: tuple of int, default (3, 4, 6, 3) (COVID-Net's PEPX counts per stage).
        batch_norm: bool, default True. Batch normalisation after the stem and after
            each stage's sum. Not in the paper's description; without it the sums of
            skip connections grow from stage to stage and training from scratch stalls
            (see the README).
        name: model name.

    Returns:
        keras.Model from images to the last stage's feature map, whose layer is named
        `stage{len(depths)}_out` (the Grad-CAM layer).
    """
    if nf < 1 or not depths or any(int(d) < 1 for d in depths):
        raise ValueError(f"nf must be >= 1 and depths a non-empty tuple of positive ints. "
                         f"Received: nf={nf}, depths={depths}")
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(nf, 7, strides=2, padding="same", activation="relu",
                      kernel_initializer="he_normal", name="stem_conv")(inputs)
    if batch_norm:
        x = layers.BatchNormalization(momentum=bn_momentum, name="stem_bn")(x)
    for s, depth in enumerate(depths, start=1):
        width = nf * 2 ** (s - 1)
        x = layers.MaxPooling2D(2, name=f"stage{s}_pool")(x)
        total = layers.Conv2D(width, 1, kernel_initializer="he_normal", name=f"stage{s}_skip")(x)
        block_input = x
        for i in range(1, int(depth) + 1):
            y = PEPX(width, name=f"pepx{s}_{i}")(block_input)
            last = i == depth and not batch_norm
            total = layers.Add(name=f"stage{s}_out" if last else f"stage{s}_sum{i}")([total, y])
            block_input = total
        x = (layers.BatchNormalization(momentum=bn_momentum, name=f"stage{s}_out")(total)
             if batch_norm else total)
    return keras.Model(inputs, x, name=name)


def gradcam_layer_name(depths) -> str:
    """Name of the trunk layer the Grad-CAM maps are taken from (the last stage's output)."""
    return f"stage{len(depths)}_out"


def build_single_net(input_shape=(224, 224, 1), *, nf=128, depths=(3, 4, 6, 3), fc_units=1024,
                     dropout=(0.5, 0.2, 0.2), num_classes=len(CLASS_NAMES), batch_norm=True, bn_momentum=0.99,
                     name="single_net"):
    """The single net: trunk, flatten, three dense layers with dropout, softmax.

    Args:
        input_shape, nf, depths: see `build_trunk`.
        fc_units: int, default 1024. Units of the first dense layer; the next two
            have fc_units // 4 (COVID-Net's 1024 -> 256).
        dropout: three rates, default (0.5, 0.2, 0.2) (Section 3.2).
        num_classes: int, default 3.
        batch_norm, bn_momentum: see `build_trunk`.

    Returns:
        keras.Model (not compiled) with the trunk's layers inline (no nesting), so the
        Grad-CAM layer `stage{n}_out` is a top-level layer.
    """
    if len(dropout) != 3:
        raise ValueError(f"dropout needs three rates. Received: dropout={dropout}")
    trunk = build_trunk(input_shape, nf=nf, depths=depths, batch_norm=batch_norm, bn_momentum=bn_momentum)
    x = layers.Flatten(name="flatten")(trunk.output)
    units = (fc_units, max(1, fc_units // 4), max(1, fc_units // 4))
    for i, (u, rate) in enumerate(zip(units, dropout), start=1):
        x = layers.Dense(u, activation="relu", name=f"fc{i}")(x)
        x = layers.Dropout(rate, name=f"dropout{i}")(x)
    # The softmax runs in float32 under a mixed policy (probabilities near 0 and 1).
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="softmax")(x)
    return keras.Model(trunk.input, outputs, name=name)


def build_twin(input_shape=(224, 224, 1), *, nf=128, depths=(3, 4, 6, 3), embedding_dim=1024, batch_norm=True,
               bn_momentum=0.99, name="twin"):
    """One branch of the siamese net: trunk, flatten, sigmoid feature layer (Koch et al.)."""
    trunk = build_trunk(input_shape, nf=nf, depths=depths, batch_norm=batch_norm, bn_momentum=bn_momentum)
    x = layers.Flatten(name="flatten")(trunk.output)
    emb = layers.Dense(embedding_dim, activation="sigmoid", name="embedding")(x)
    return keras.Model(trunk.input, emb, name=name)


def build_siamese_net(input_shape=(224, 224, 1), *, nf=128, depths=(3, 4, 6, 3), embedding_dim=1024,
                      batch_norm=True, bn_momentum=0.99, name="siamese_net"):
    """The siamese net: shared twin, weighted L1 distance (Eq. 1), sigmoid similarity.

    Inputs: a list [image_a, image_b]. Output [B, 1]: probability that both show the
    same class (label convention: 1 = same; see the module docstring). The twin is the
    nested model `model.get_layer("twin")`. Under a mixed dtype policy the distance and
    the sigmoid output stay float32.
    """
    twin = build_twin(input_shape, nf=nf, depths=depths, embedding_dim=embedding_dim, batch_norm=batch_norm,
                      bn_momentum=bn_momentum)
    a = keras.Input(input_shape, name="image_a")
    b = keras.Input(input_shape, name="image_b")
    # Distance and sigmoid in float32 under a mixed policy: the sum over all features
    # and a similarity near 0 or 1 lose too much in float16 (the twin runs in the
    # policy's compute dtype; these layers cast its embeddings up).
    distance = WeightedL1Distance(dtype="float32", name="weighted_l1")([twin(a), twin(b)])
    similarity = layers.Dense(1, activation="sigmoid", kernel_initializer=keras.initializers.Constant(-4.0),
                              bias_initializer=keras.initializers.Constant(1.0), dtype="float32",
                              name="similarity")(distance)
    return keras.Model([a, b], similarity, name=name)


def similarity_from_embeddings(siamese, emb_a, emb_b):
    """The siamese head on precomputed embeddings: sigmoid(w d(a, b) + c), shape [B].

    Differentiable; used for templates, three-way validation and the siamese Grad-CAM.
    """
    d = siamese.get_layer("weighted_l1")([emb_a, emb_b])
    return ops.squeeze(siamese.get_layer("similarity")(d), axis=-1)


def similarity_logits(siamese, embeddings, templates):
    """Pre-sigmoid similarity w d(e, t_c) + b of every embedding to every template: [B, C].

    Differentiable. Args: embeddings [B, D] tensor, templates [C, D] array or tensor.
    """
    templates = ops.convert_to_tensor(templates, dtype="float32")
    distance = siamese.get_layer("weighted_l1")
    head = siamese.get_layer("similarity")
    emb = ops.cast(embeddings, "float32")
    cols = []
    for c in range(int(templates.shape[0])):
        tiled = ops.broadcast_to(templates[c:c + 1], ops.shape(emb))
        d = distance([emb, tiled])
        cols.append(ops.matmul(d, ops.cast(head.kernel, "float32")) + ops.cast(head.bias, "float32"))
    return ops.concatenate(cols, axis=-1)


def template_contrast(siamese, embeddings, templates, targets):
    """The siamese Grad-CAM score: logit of the target template minus the best other one.

    `z_target - max_{k != target} z_k` with `z` from `similarity_logits`. Scoring the
    contrast before the sigmoid keeps the score from saturating and makes it
    class-discriminative: the map for the runner-up template is built from the
    opposite gradient. Shape [B].
    """
    z = similarity_logits(siamese, embeddings, templates)
    one_hot = ops.one_hot(ops.cast(targets, "int32"), int(z.shape[-1]), dtype=z.dtype)
    target = ops.sum(z * one_hot, axis=-1)
    others = ops.max(z - 1e9 * one_hot, axis=-1)
    return target - others
