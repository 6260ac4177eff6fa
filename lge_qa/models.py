"""Stage 1 (LA detector) and stage 2 (QA) networks of Sultan et al.

- `build_la_detector`: 2D U-Net with a sigmoid output (Section 3.1).
- `build_qa_model`: ResNet34 encoder -> three attribute classifiers (myocardium
  nulling, sharpness, aorta / valve enhancement) -> QA module on their concatenated
  outputs (Section 3.2.1, Eq. 1); with `decoder=True` also a U-Net decoder on the
  encoder's stages that segments the LA blood pool (Multi-Task QA, Eqs. 2-3).
- `SupConPretrainer`: the encoder plus a projection head trained with the sum of
  four supervised contrastive losses, one per binary label (Section 3.2.3, Eqs. 4-5).
- `supcon_bounds`, `supcon_sum_free_minimum`: how far Eq. 4 / Eq. 5 can fall below
  the collapsed-embedding level for a batch's labels (to read the pre-training loss).

The attribute classifiers each project the pooled embedding to a latent vector
(`<name>_latent`) and predict their attribute from it. The QA module reads, by
`qa_input`, the concatenated attribute outputs (three probabilities, as the paper's
Fig. 1 draws it: "outputs") or the concatenated attribute latents ("latents", which
keeps more of the embedding in the QA module's input).
"""

import re

import keras
import tensorflow as tf
from keras import layers

from shared.backbones.resnet import resnet34_backbone
from shared.backbones.unet import unet2d, unet_decoder
from shared.training.scale import as_float32, gather_across_replicas, local_slice, skip_together

ATTRIBUTE_OUTPUTS = ("nulling", "sharpness", "enhancement")
QA_OUTPUT = "qa"
OUTPUTS = ATTRIBUTE_OUTPUTS + (QA_OUTPUT,)
MASK_OUTPUT = "mask"
EMBEDDING_LAYER = "embedding"
QA_INPUTS = ("outputs", "latents")
_MASK_VALUE = -1e9  # self-similarity logit: exp() underflows to 0, 0 * value stays finite


def build_la_detector(image_size, *, filters=(64, 128, 256, 512), name="la_detector") -> keras.Model:
    """The stage-1 U-Net: [B, S, S, 1] slices -> [B, S, S, 1] LA probability."""
    return unet2d((image_size, image_size, 1), filters=filters, out_channels=1,
                  activation="sigmoid", name=name)


def build_encoder(image_size, *, filters=(64, 128, 256, 512), blocks=(3, 4, 6, 3), weights=None,
                  name="encoder") -> keras.Model:
    """The ResNet34 image encoder (single-channel input, feature map output)."""
    return resnet34_backbone((image_size, image_size, 1), filters=filters, blocks=blocks,
                             weights=weights, name=name)


def set_batchnorm_momentum(model, momentum) -> int:
    """Sets the moving-average momentum of every BatchNormalization layer in `model`
    (nested models included). Returns the number of layers changed.

    Keras' default (0.99) averages the batch statistics over about 100 updates; a
    schedule with only a few hundred updates leaves the inference-mode statistics
    far from the data, so the trained network predicts a constant at test time.
    0.9 (PyTorch's default, written there as momentum 0.1) averages over about 10.
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1). Received: momentum={momentum}")
    n = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = float(momentum)
            n += 1
    return n


def recalibrate_batchnorm(model, images, *, batch_size=256) -> int:
    """Re-estimates the moving statistics of every trainable BatchNormalization layer
    of `model` from `images` (training-mode forward passes, no weight update).

    After training, the moving averages describe the augmented training batches of
    the last updates; inference sees un-augmented slices. This sets each layer's
    moving mean and variance to the average of its batch statistics over `images`
    (the population statistics for `batch_size >= len(images)`), all layers in one
    training-mode forward pass per batch. Frozen layers (inference-mode BN) are left
    alone. Returns the number of layers re-estimated.
    """
    bns = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
           if isinstance(layer, layers.BatchNormalization) and layer.trainable]
    if not bns:
        return 0
    saved = [layer.momentum for layer in bns]
    try:
        for k, start in enumerate(range(0, len(images), batch_size)):
            # Running average over batches: moving <- (k * moving + batch) / (k + 1).
            for layer in bns:
                layer.momentum = k / (k + 1.0)
            model(images[start:start + batch_size], training=True)
    finally:
        for layer, momentum in zip(bns, saved):
            layer.momentum = momentum
    return len(bns)


def decoder_skip_names(encoder) -> list:
    """Encoder layers feeding the multi-task decoder: the stem (stride 2) and every
    ResNet stage output but the last (which is the decoder's input)."""
    last = {}
    for layer in encoder.layers:
        m = re.fullmatch(r"conv(\d+)_block(\d+)_out", layer.name)
        if m:
            stage, block = int(m.group(1)), int(m.group(2))
            last[stage] = max(last.get(stage, 0), block)
    if not last:
        raise ValueError(f"encoder {encoder.name!r} has no ResNet stage outputs (conv<s>_block<b>_out)")
    stages = sorted(last)
    return ["conv1_relu"] + [f"conv{s}_block{last[s]}_out" for s in stages[:-1]]


def _attribute_and_qa_heads(embedding, latent_dim, dropout, qa_input):
    if qa_input not in QA_INPUTS:
        raise ValueError(f"qa_input must be one of {QA_INPUTS}. Received: qa_input={qa_input!r}")
    outputs, latents = {}, []
    for name in ATTRIBUTE_OUTPUTS:
        h = layers.Dense(latent_dim, activation="relu", name=f"{name}_latent")(embedding)
        latents.append(h)
        h = layers.Dropout(dropout, name=f"{name}_dropout")(h) if dropout > 0 else h
        outputs[name] = layers.Dense(1, activation="sigmoid", dtype="float32", name=name)(h)
    parts = latents if qa_input == "latents" else [outputs[name] for name in ATTRIBUTE_OUTPUTS]
    h = layers.Concatenate(name="qa_concat")(parts)
    h = layers.Dense(latent_dim, activation="relu", name="qa_latent")(h)
    h = layers.Dropout(dropout, name="qa_dropout")(h) if dropout > 0 else h
    outputs[QA_OUTPUT] = layers.Dense(1, activation="sigmoid", dtype="float32", name=QA_OUTPUT)(h)
    return outputs


def build_qa_model(encoder, *, latent_dim=128, dropout=0.2, decoder=False, skip_names=None,
                   qa_input="outputs", name="qa_model") -> keras.Model:
    """Attribute classifiers + QA module (and optionally the LA decoder) on `encoder`.

    The encoder's layers become part of this model's graph (shared, not copied), so
    its layers (e.g. `conv5_block3_out` for HiResCAM) are reachable by name.

    Args:
        encoder: keras.Model from `build_encoder` (or any functional encoder).
        latent_dim: int, default 128. Width of each attribute latent and the QA module.
        dropout: float, default 0.2. Dropout before each classifier.
        decoder: bool, default False. Add the multi-task LA decoder (output "mask").
        skip_names: list of str, optional. Decoder skips; default the ResNet's
            `decoder_skip_names`.
        qa_input: str, default "outputs". What the QA module reads: the three
            attribute outputs (the paper's Fig. 1) or the three attribute latents.
        name: str, default "qa_model".

    Returns:
        Functional keras.Model with dict outputs "nulling", "sharpness",
        "enhancement", "qa" ([B, 1] probabilities) and, with the decoder, "mask"
        ([B, S, S, 1] probability).
    """
    features = encoder.output
    embedding = layers.GlobalAveragePooling2D(name=EMBEDDING_LAYER)(features)
    outputs = _attribute_and_qa_heads(embedding, latent_dim, dropout, qa_input)
    if decoder:
        if skip_names is None:
            skip_names = decoder_skip_names(encoder)
        outputs[MASK_OUTPUT] = unet_decoder(encoder, skip_names, out_channels=1, activation="sigmoid",
                                            name=MASK_OUTPUT)
    return keras.Model(encoder.input, outputs, name=name)


def build_frozen_qa_model(encoder, *, latent_dim=128, dropout=0.2, qa_input="outputs",
                          name="qa_contrastive") -> keras.Model:
    """Heads on a frozen encoder (inference-mode BN): QA & contrastive step 2, the
    baseline on frozen features, and the frozen-random-encoder control."""
    encoder.trainable = False
    return build_qa_model(encoder, latent_dim=latent_dim, dropout=dropout, decoder=False,
                          qa_input=qa_input, name=name)


def embedding_model(qa_model) -> keras.Model:
    """Maps images to the pooled encoder embedding (the input of the attribute classifiers)."""
    return keras.Model(qa_model.input, qa_model.get_layer(EMBEDDING_LAYER).output,
                       name=f"{qa_model.name}_embedding")


def build_projection_head(input_dim, projection_dim, *, name="projection") -> keras.Model:
    """SupCon projection head: Dense(input_dim, ReLU) -> Dense(projection_dim)."""
    inputs = keras.Input((input_dim,), name="embedding")
    h = layers.Dense(input_dim, activation="relu", name=f"{name}_hidden")(inputs)
    out = layers.Dense(projection_dim, name=f"{name}_out")(h)
    return keras.Model(inputs, out, name=name)


def supcon_replica_share(labels, z, *, temperature, base_temperature):
    """This replica's share of the supervised contrastive loss of the global batch.

    Eq. 4 (`shared.losses.SupConLoss`, "all" contrast mode) over the global batch:
    the projections `z` [b, V, D] and labels [b] of every replica are gathered
    (`shared.scale.gather_across_replicas`) into [B, V, D] and [B]; this replica's own
    rows (`local_slice`) are the anchors, contrasted against all V * B views. The
    share is the sum of its anchors' terms divided by the number of anchors with a
    positive in the global batch, so the shares of all replicas add up to the
    single-device loss, and the gradients (the gather's gradient returns each
    replica's rows their part of every replica's loss) add up to its gradient.
    Outside a strategy, or with one replica, it is the loss itself. Computed in
    float32 whatever the dtype policy.

    Args:
        labels: int [b] (or [b, 1]) labels of this replica's samples.
        z: [b, V, D] projections of V views of each sample (any float dtype).
        temperature, base_temperature: floats, as `SupConLoss`.

    Returns:
        scalar float32.
    """
    z = tf.math.l2_normalize(as_float32(z), axis=-1)
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    local_b = tf.shape(z)[0]
    z_all = gather_across_replicas(z)
    labels_all = gather_across_replicas(labels)
    batch, views = tf.shape(z_all)[0], tf.shape(z_all)[1]
    # View-major order, as SupConLoss: all first views, then all second views.
    contrast = tf.reshape(tf.transpose(z_all, [1, 0, 2]), [batch * views, -1])
    contrast_labels = tf.tile(labels_all, [views])
    rows = local_slice(tf.range(batch), local_b)  # this replica's samples in the global batch
    anchor_index = tf.reshape(rows[None, :] + batch * tf.range(views)[:, None], [-1])
    anchors = tf.gather(contrast, anchor_index)
    anchor_labels = tf.gather(contrast_labels, anchor_index)

    logits = tf.matmul(anchors, contrast, transpose_b=True) / temperature
    self_mask = tf.cast(tf.one_hot(anchor_index, batch * views), tf.bool)
    logits = tf.where(self_mask, _MASK_VALUE, logits)
    log_prob = logits - tf.reduce_logsumexp(logits, axis=1, keepdims=True)
    positives = tf.logical_and(tf.equal(anchor_labels[:, None], contrast_labels[None, :]),
                               tf.logical_not(self_mask))
    n_pos = tf.reduce_sum(tf.cast(positives, tf.float32), axis=1)
    mean_log_prob_pos = tf.reduce_sum(tf.where(positives, log_prob, 0.0), axis=1) / tf.maximum(n_pos, 1.0)
    per_anchor = -(temperature / base_temperature) * mean_log_prob_pos
    local_sum = tf.reduce_sum(tf.where(n_pos > 0, per_anchor, 0.0))
    # Anchors of the global batch with at least one positive: views of a label seen more than once.
    same = tf.equal(contrast_labels[:, None], contrast_labels[None, :])
    n_anchors = tf.reduce_sum(tf.cast(tf.reduce_sum(tf.cast(same, tf.int32), axis=1) > 1, tf.float32))
    return local_sum / tf.maximum(n_anchors, 1.0)


def supcon_bounds(labels, *, views=2, temperature=0.1) -> dict:
    """Chance level and minimum of one SupCon term (Eq. 4, mean over anchors, scale
    `temperature / base_temperature` = 1) for a batch with binary labels.

    With V views of B samples every anchor has 2N - 1 = V * B - 1 others. If all
    projections coincide (a collapsed embedding) every logit is equal and each
    anchor's loss is log(V * B - 1): the "chance" level. For an anchor of a class
    with n samples, n_pos = V * n - 1 positives and n_neg = V * (B - n) negatives,
    Jensen's inequality and -1 <= z_i . z_a <= 1 give

        L_i >= log(n_pos + n_neg * exp(-2 / temperature)),

    reached when each class sits at one point and the two points are antipodal.
    The minimum is the mean of this bound over the anchors.

    Args:
        labels: [B] binary (or any two-valued) labels of the batch.
        views: int, default 2.
        temperature: float, default 0.1.

    Returns:
        dict with "chance" and "minimum" (floats).
    """
    import numpy as np

    labels = np.asarray(labels).reshape(-1)
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) > 2:
        raise ValueError(f"labels must take at most two values. Received: {classes.tolist()}")
    batch = len(labels)
    total = 0.0
    for n in counts:
        n_pos, n_neg = views * n - 1, views * (batch - n)
        if n_pos > 0:
            total += views * n * np.log(n_pos + n_neg * np.exp(-2.0 / temperature))
    anchors = sum(views * n for n in counts if views * n > 1)
    return {"chance": float(np.log(views * batch - 1)), "minimum": float(total / max(anchors, 1))}


def supcon_sum_free_minimum(labels, *, views=2, temperature=0.1, dim=32, steps=1500, learning_rate=0.02,
                            seed=0) -> float:
    """The lowest Eq. 5 (sum of one SupCon term per label column) that any embedding of
    the batch reaches: the projections [B, V, dim] themselves are optimised (Adam) with
    the labels [B, K] fixed. All K terms share one embedding, so with several labels
    this lies above the sum of the per-label minima of `supcon_bounds`; it is what a
    perfect encoder could reach on that batch (a numerical estimate, from above)."""
    from shared.losses.supcon import supervised_contrastive_loss

    labels = tf.constant(labels)
    if len(labels.shape) == 1:
        labels = labels[:, None]
    z = tf.Variable(tf.random.stateless_normal([labels.shape[0], views, dim], seed=[seed, 0]))
    opt = keras.optimizers.Adam(learning_rate)

    def loss():
        return tf.add_n([supervised_contrastive_loss(labels[:, k], z, temperature=temperature,
                                                     base_temperature=temperature)
                         for k in range(labels.shape[1])])

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            value = loss()
        opt.apply([tape.gradient(value, z)], [z])
        return value

    for _ in range(int(steps)):
        step()
    return float(loss())


def replicas_in_sync() -> int:
    """Replicas of the current distribution strategy (1 outside one)."""
    ctx = tf.distribute.get_replica_context()
    return 1 if ctx is None else int(ctx.num_replicas_in_sync)


@keras.saving.register_keras_serializable(package="medrepro")
class SupConPretrainer(keras.Model):
    """Encoder + projection head trained with Eq. 5: the sum of four SupCon losses (Eq. 4).

    Batches are `(views, labels)`: views [B, 2, H, W, C] (two augmentations of each
    image), labels int [B, K] (K binary labels: three attributes and QA). Both views
    go through the encoder and the head in one [2B] batch; the loss is
    `sum_k SupConLoss(labels[:, k], z)` with z [B, 2, D].

    Under a distribution strategy every replica contrasts its anchors against the
    projections and labels of the whole global batch (`supcon_replica_share`), so the
    loss and the update equal the single-device ones (up to per-replica batch-norm
    statistics). Logits and loss are float32; under `mixed_float16` the loss is
    scaled with `self.optimizer.scale_loss` before the gradients.

    Args:
        encoder: keras.Model mapping images to a feature map or vector.
        projection_dim: int, default 128.
        temperature: float, default 0.1. SupCon temperature tau.
        projection: keras.Model, optional (used when restoring from config).
    """

    def __init__(self, encoder, projection_dim=128, temperature=0.1, projection=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.projection_dim = int(projection_dim)
        self.temperature = float(temperature)
        self.pool = layers.GlobalAveragePooling2D(name="pool") if len(encoder.output.shape) == 4 else None
        width = int(encoder.output.shape[-1])
        self.projection = projection if projection is not None else build_projection_head(width, self.projection_dim)
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def call(self, images, training=False):
        """Images [N, H, W, C] -> projections [N, D]; views [B, V, H, W, C] -> [B, V, D]."""
        if len(images.shape) == 5:
            shape = tf.shape(images)
            flat = tf.reshape(images, tf.concat([[shape[0] * shape[1]], shape[2:]], axis=0))
            return tf.reshape(self.call(flat, training=training), [shape[0], shape[1], -1])
        h = self.encoder(images, training=training)
        if self.pool is not None:
            h = self.pool(h)
        return self.projection(h, training=training)

    def project_views(self, views, training=True):
        """[B, V, H, W, C] views -> [B, V, D] projections (one forward pass over B * V images)."""
        return self(views, training=training)

    def replica_loss(self, views, labels, training=True):
        """This replica's share of Eq. 5 over the global batch (the whole loss on one device)."""
        z = self.project_views(views, training=training)
        labels = tf.cast(labels, tf.int32)
        total = tf.constant(0.0, tf.float32)
        for k in range(labels.shape[-1]):
            total += supcon_replica_share(labels[:, k], z, temperature=self.temperature,
                                          base_temperature=self.temperature)
        return total

    def contrastive_loss(self, views, labels, training=True):
        """Eq. 5 over the global batch (on every replica)."""
        return self.replica_loss(views, labels, training=training) * float(replicas_in_sync())

    def train_step(self, data):
        views, labels = data
        with tf.GradientTape() as tape:
            share = self.replica_loss(views, labels, training=True)
            # The optimizer sums the replicas' gradients; the shares sum to the loss.
            scaled = self.optimizer.scale_loss(share)
        variables = self.trainable_variables
        grads = skip_together(self.optimizer, tape.gradient(scaled, variables))
        self.optimizer.apply(grads, variables)
        # The tracker averages over replicas: replicas * share averages to the global loss.
        self.loss_tracker.update_state(share * float(replicas_in_sync()))
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        views, labels = data
        self.loss_tracker.update_state(self.contrastive_loss(views, labels, training=False))
        return {"loss": self.loss_tracker.result()}

    @property
    def metrics(self):
        return [self.loss_tracker]

    def get_config(self):
        config = super().get_config()
        config.update({
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "projection": keras.saving.serialize_keras_object(self.projection),
            "projection_dim": self.projection_dim,
            "temperature": self.temperature,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        config["projection"] = keras.saving.deserialize_keras_object(config["projection"])
        return cls(**config)
