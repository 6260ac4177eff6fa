"""Siamese ViT pre-training (contrastive + reconstruction) and the fine-tuning classifier.

Seyfioglu et al., MICCAI 2022, Fig. 1 and Sec. 2: one ViT encoder (shared weights, a
siamese pair) encodes t1 (BAR + BAM) and t2 (cut + shuffle of the anchor); the [cls]
tokens of both views enter the continuous InfoNCE loss on the soft labels (Eq. 4); a
two-layer transposed-convolution decoder reconstructs the anchor X_i from t2's patch
tokens, L1 loss (Eq. 5). The pre-training loss is alpha1 * L_NCEc + alpha2 * L_recon
with alpha1 = alpha2 = 1. Fine-tuning: an MLP (128, 64) on the [cls] token with a
sigmoid output and binary cross-entropy.
"""

import keras
import tensorflow as tf
from keras import layers, ops

from shared.backbones.vit3d import vit3d_decoder, vit3d_encoder
from shared.training.scale import (as_float32, gather_across_replicas, scale_for_replicas,
                          skip_together)

LABEL_MODES = ("soft", "hard", "instance")


def _replica_id():
    """Index of the current replica (0 outside a strategy)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None:
        return 0
    return tf.cast(ctx.replica_id_in_sync_group, "int32")


@keras.saving.register_keras_serializable(package="medrepro")
class SiamesePretrainer(keras.Model):
    """Siamese contrastive + reconstruction pre-training of a ViT encoder.

    Args:
        encoder: keras.Model. Volumes -> (cls [B, W], patch tokens [B, N, W]).
        decoder: keras.Model or None. Patch tokens -> volume (Eq. 5); None: no recon.
        contrastive_loss: keras.losses.Loss or None. Called as `loss(labels, z)` with
            z = stacked [cls(t1), cls(t2)] of shape [B, 2, W]: `ContinuousInfoNCE` on soft
            labels (Eq. 4), `SupConLoss` on hard labels, or `SupConLoss` with one class
            per sample (SimCLR's InfoNCE, Eq. 1). None: no contrastive term.
        label_mode: str, default "soft". What `labels` the contrastive loss gets: "soft"
            (the batch's soft labels as floats), "hard" (rounded to int) or "instance"
            (0..B-1, self-supervised).
        contrastive_weight: float, default 1.0. alpha1.
        recon_weight: float, default 1.0. alpha2.
        shuffle_labels: bool, default False. Permute the labels within each batch before
            the contrastive loss (the control "do the labels matter?").
        seed: int, default 0. Seeds that permutation.

    Inputs of `fit`: ({"view1", "view2", "anchor"}, labels [B]).
    """

    def __init__(self, encoder, decoder=None, contrastive_loss=None, label_mode="soft",
                 contrastive_weight=1.0, recon_weight=1.0, shuffle_labels=False, seed=0,
                 **kwargs):
        super().__init__(**kwargs)
        if decoder is None and contrastive_loss is None:
            raise ValueError("SiamesePretrainer needs a decoder, a contrastive loss or both")
        if label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be one of {LABEL_MODES}. "
                             f"Received: label_mode={label_mode!r}")
        self.encoder = encoder
        self.decoder = decoder
        self.contrastive_loss = contrastive_loss
        self.label_mode = label_mode
        self.contrastive_weight = float(contrastive_weight)
        self.recon_weight = float(recon_weight)
        self.shuffle_labels = bool(shuffle_labels)
        self.seed = int(seed)
        self.label_seeds = keras.random.SeedGenerator(self.seed) if self.shuffle_labels else None
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.contrastive_tracker = keras.metrics.Mean(name="contrastive")
        self.recon_tracker = keras.metrics.Mean(name="recon")
        # Collapse diagnostics (not losses): how alike the [cls] tokens of different
        # scans are, and, for a soft-label kernel, the range of its pair weights.
        self.cosine_tracker = keras.metrics.Mean(name="cls_cosine")
        self.sigma = getattr(contrastive_loss, "sigma", None) if label_mode == "soft" else None
        # ... and the lowest value the soft-label loss can take on the batch's labels
        # (`attainable_minimum`): Eq. 4 at sigma 0.8 sits a few hundredths above it at
        # collapse, which the contrastive term alone does not show.
        self.kernel_trackers = ([keras.metrics.Mean(name="kernel_min"),
                                 keras.metrics.Mean(name="kernel_max"),
                                 keras.metrics.Mean(name="contrastive_floor")]
                                if self.sigma is not None else [])

    @property
    def metrics(self):
        return [self.loss_tracker, self.contrastive_tracker, self.recon_tracker,
                self.cosine_tracker] + self.kernel_trackers

    def call(self, inputs, training=False):
        """Returns (cls of view1, cls of view2, reconstruction of view2 or None)."""
        cls1, _ = self.encoder(inputs["view1"], training=training)
        cls2, tokens2 = self.encoder(inputs["view2"], training=training)
        recon = self.decoder(tokens2, training=training) if self.decoder is not None else None
        return cls1, cls2, recon

    @staticmethod
    def mean_pairwise_cosine(tokens):
        """Mean cosine similarity over the pairs i != j of the rows of `tokens` [B, W]."""
        t = as_float32(tokens)
        t = t / ops.maximum(ops.sqrt(ops.sum(t * t, axis=1, keepdims=True)), 1e-12)
        sims = ops.matmul(t, ops.transpose(t))
        b = ops.cast(ops.shape(t)[0], "float32")
        pairs = ops.maximum(b * (b - 1.0), 1.0)
        return (ops.sum(sims) - ops.trace(sims)) / pairs

    @staticmethod
    def kernel_range(labels, sigma):
        """(min, max) of the RBF pair weights exp(-(y_i - y_j)^2 / (2 sigma^2)), i != j.

        A batch of one sample has no pair: both are 1.
        """
        y = ops.reshape(ops.cast(labels, "float32"), (-1, 1))
        w = ops.exp(-ops.square(y - ops.transpose(y)) / (2.0 * float(sigma) ** 2))
        off = 1.0 - ops.eye(ops.shape(y)[0], dtype="float32")
        low = ops.min(w * off + (1.0 - off) * 2.0)
        high = ops.max(w * off)
        single = ops.cast(ops.shape(y)[0], "float32") < 2.0
        return ops.where(single, 1.0, ops.minimum(low, 1.0)), ops.where(single, 1.0, high)

    def _contrastive_labels(self, labels, batch, offset=0):
        if self.shuffle_labels and self.label_mode != "instance":
            labels = keras.random.shuffle(labels, axis=0, seed=self.label_seeds)
        if self.label_mode == "soft":
            return ops.cast(labels, "float32")
        if self.label_mode == "hard":
            return ops.cast(ops.round(labels), "int32")
        return offset + ops.arange(batch, dtype="int32")

    def loss_terms(self, inputs, labels, training):
        """The losses of one batch (Eqs. 4-5), in float32, on one replica or on all.

        Under a distribution strategy every replica sees its share of the global batch.
        The [cls] tokens of both views and the labels of all replicas are gathered
        (`gather_across_replicas`), so that Eq. 4's anchors meet the candidates of the
        whole global batch; each replica evaluates the global contrastive loss, divided
        by the replica count for its gradient: the gather's gradient sums the replicas'
        contributions and keeps each replica's own rows, so the optimizer's sum over
        replicas is the gradient of the global loss. The L1 reconstruction (Eq. 5) is
        summed over the local samples and divided by the global batch size. Without a
        strategy both reduce to the batch means.

        Returns:
            dict with `total`, `contrastive`, `recon` (the values to report: global
            contrastive loss, local mean L1) and `objective` (what the gradient is taken
            of on this replica).
        """
        zero = ops.zeros((), "float32")
        contrastive, recon, objective = zero, zero, zero
        if self.contrastive_loss is not None:
            cls1, _ = self.encoder(inputs["view1"], training=training)
        cls2, tokens2 = self.encoder(inputs["view2"], training=training)
        local_batch = ops.shape(cls2)[0]
        global_batch = ops.shape(gather_across_replicas(ops.ones_like(cls2[:, :1])))[0]
        if self.contrastive_loss is not None:
            # Logits in float32 whatever the policy: float16 cosine / temperature loses the
            # small differences the soft-label kernel weights.
            z = gather_across_replicas(as_float32(ops.stack([cls1, cls2], axis=1)))
            z = ops.reshape(z, (-1, 2, cls2.shape[-1]))  # the gather drops static shapes
            offset = 0
            if self.label_mode == "instance":
                offset = _replica_id() * local_batch
            y = gather_across_replicas(self._contrastive_labels(labels, local_batch, offset))
            y = ops.reshape(y, (-1,))
            contrastive = as_float32(self.contrastive_loss(y, z))
            if self.sigma is not None:
                from shared.losses.infonce import attainable_minimum

                floor = attainable_minimum(y, sigma=self.sigma,
                                           mode=getattr(self.contrastive_loss, "mode", "all"))
            objective = objective + self.contrastive_weight * scale_for_replicas(contrastive)
        if self.decoder is not None:
            recon_out = self.decoder(tokens2, training=training)
            per_sample = ops.mean(ops.abs(as_float32(recon_out) - as_float32(inputs["anchor"])),
                                  axis=(1, 2, 3, 4))
            recon = ops.mean(per_sample)
            objective = objective + self.recon_weight * (
                ops.sum(per_sample) / ops.cast(global_batch, "float32"))
        total = self.contrastive_weight * contrastive + self.recon_weight * recon
        terms = dict(total=total, contrastive=contrastive, recon=recon, objective=objective,
                     cls_cosine=ops.stop_gradient(self.mean_pairwise_cosine(cls2)))
        if self.sigma is not None:
            terms["kernel_min"], terms["kernel_max"] = self.kernel_range(labels, self.sigma)
            terms["contrastive_floor"] = ops.stop_gradient(floor)
        return terms

    def compute_losses(self, inputs, labels, training):
        """(total, contrastive, recon) losses of one batch (Eqs. 4-5)."""
        terms = self.loss_terms(inputs, labels, training)
        return terms["total"], terms["contrastive"], terms["recon"]

    def _update(self, terms):
        self.loss_tracker.update_state(terms["total"])
        self.contrastive_tracker.update_state(terms["contrastive"])
        self.recon_tracker.update_state(terms["recon"])
        self.cosine_tracker.update_state(terms["cls_cosine"])
        for tracker in self.kernel_trackers:
            tracker.update_state(terms[tracker.name])
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        inputs, labels = data
        with tf.GradientTape() as tape:
            terms = self.loss_terms(inputs, labels, training=True)
            # Loss scaling of mixed_float16 (a no-op for other policies); `apply` unscales.
            scaled = self.optimizer.scale_loss(terms["objective"])
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        grads = skip_together(self.optimizer, grads)
        self.optimizer.apply(grads, variables)
        return self._update(terms)

    def test_step(self, data):
        inputs, labels = data
        return self._update(self.loss_terms(inputs, labels, training=False))

    def get_config(self):
        config = super().get_config()
        config.update(
            encoder=keras.saving.serialize_keras_object(self.encoder),
            decoder=(keras.saving.serialize_keras_object(self.decoder)
                     if self.decoder is not None else None),
            contrastive_loss=(keras.saving.serialize_keras_object(self.contrastive_loss)
                              if self.contrastive_loss is not None else None),
            label_mode=self.label_mode, contrastive_weight=self.contrastive_weight,
            recon_weight=self.recon_weight, shuffle_labels=self.shuffle_labels, seed=self.seed,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "decoder", "contrastive_loss"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def build_encoder(input_size, *, patch_size, width, depth, num_heads, mlp_dim,
                  class_token=True, dropout=0.0, name="vit3d"):
    """The ViT encoder for `input_size`^3 single-channel volumes (see `vit3d_encoder`)."""
    return vit3d_encoder((input_size,) * 3 + (1,), patch_size=patch_size, width=width,
                         depth=depth, num_heads=num_heads, mlp_dim=mlp_dim,
                         class_token=class_token, dropout=dropout, name=name)


def build_decoder(input_size, *, patch_size, width, hidden_channels=16):
    """The two-layer transposed-convolution decoder matching `build_encoder`."""
    g = input_size // patch_size
    return vit3d_decoder((g ** 3, width), grid=(g, g, g), patch_size=patch_size,
                         hidden_channels=hidden_channels)


def build_classifier(encoder, *, head_units=(128, 64), dropout=0.0, freeze_encoder=False,
                     name="bar_classifier"):
    """Encoder [cls] -> MLP (128, 64, ReLU) -> 1 sigmoid unit (fine-tuning, Sec. 3).

    Args:
        encoder: keras.Model. Volumes -> (cls, tokens).
        head_units: tuple of int, default (128, 64).
        dropout: float, default 0.0. Dropout before each head layer.
        freeze_encoder: bool, default False. True: a linear-probe-style ablation (only the
            MLP head trains on the frozen [cls] features).
        name: str.

    Returns:
        A functional `keras.Model` volumes -> P(AD) [B, 1].
    """
    encoder.trainable = not freeze_encoder
    inputs = keras.Input(encoder.input_shape[1:], name="volume")
    cls, _ = encoder(inputs, training=False if freeze_encoder else None)
    x = cls
    for i, units in enumerate(head_units):
        if dropout:
            x = layers.Dropout(dropout, name=f"head_dropout_{i}")(x)
        x = layers.Dense(units, activation="relu", name=f"head_{i}")(x)
    # float32 output under a mixed policy: the BCE of probabilities near 0 or 1.
    out = layers.Dense(1, activation="sigmoid", dtype="float32", name="ad_probability")(x)
    return keras.Model(inputs, out, name=name)
