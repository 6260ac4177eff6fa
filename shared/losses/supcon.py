"""Supervised contrastive loss (Khosla et al., NeurIPS 2020).

Eq. 4 of the LGE quality-assessment paper (Sultan et al.), the "L_out" form of Khosla et
al. Eq. 2: for every anchor `i` of the 2N (generally B*V) views,

    L_i = -1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p / tau) / sum_{a != i} exp(z_i.z_a / tau) )

with `P(i)` the other views sharing anchor `i`'s label. Adapted from the authors'
reference code (`SupConLoss`, contrast_mode "all"): the loss is scaled by
`temperature / base_temperature` and averaged over anchors, where the paper's Eq. 4 sums
them (a constant factor). The reference divides by |P(i)| and returns NaN for an anchor
with no positive; here such anchors are left out of the mean, and a batch without any
positive pair gives 0.
"""

import keras
import tensorflow as tf

# Large but finite: keeps `0 * masked` at 0 instead of NaN, and exp() underflows to 0.
_MASK_VALUE = -1e9


def _as_views(y_pred):
    """[B, D] -> [B, 1, D]; [B, V, D] unchanged; float32, L2-normalised on D."""
    y_pred = tf.cast(y_pred, tf.float32)
    rank = len(y_pred.shape)
    if rank == 2:
        y_pred = y_pred[:, None, :]
    elif rank != 3:
        raise ValueError(
            "embeddings must have shape [B, D] or [B, V, D] (V views). "
            f"Received shape {tuple(y_pred.shape)}"
        )
    return tf.math.l2_normalize(y_pred, axis=-1)


def _flat_labels(y_true, batch_size_static):
    y_true = tf.convert_to_tensor(y_true)
    if len(y_true.shape) == 2 and y_true.shape[-1] == 1:
        y_true = y_true[:, 0]
    if len(y_true.shape) != 1:
        raise ValueError(
            f"labels must have shape [B] (or [B, 1]). Received shape {tuple(y_true.shape)}"
        )
    if batch_size_static is not None and y_true.shape[0] not in (None, batch_size_static):
        raise ValueError(
            f"labels have {y_true.shape[0]} entries for {batch_size_static} embeddings."
        )
    return y_true


def supervised_contrastive_loss(labels, embeddings, *, temperature=0.07, base_temperature=0.07):
    """Functional form of `SupConLoss`; returns the scalar loss (float32)."""
    z = _as_views(embeddings)
    labels = _flat_labels(labels, z.shape[0])
    batch, views = tf.shape(z)[0], tf.shape(z)[1]
    # View-major order, as the reference: all first views, then all second views.
    z = tf.reshape(tf.transpose(z, [1, 0, 2]), [batch * views, -1])
    labels = tf.tile(labels, [views])
    n = tf.shape(z)[0]

    logits = tf.matmul(z, z, transpose_b=True) / temperature
    self_mask = tf.eye(n, dtype=tf.bool)
    logits = tf.where(self_mask, _MASK_VALUE, logits)
    log_prob = logits - tf.reduce_logsumexp(logits, axis=1, keepdims=True)

    positives = tf.logical_and(
        tf.equal(labels[:, None], labels[None, :]), tf.logical_not(self_mask)
    )
    pos_f = tf.cast(positives, tf.float32)
    n_pos = tf.reduce_sum(pos_f, axis=1)
    has_pos = n_pos > 0
    mean_log_prob_pos = tf.reduce_sum(tf.where(positives, log_prob, 0.0), axis=1) / tf.maximum(
        n_pos, 1.0
    )
    per_anchor = -(temperature / base_temperature) * mean_log_prob_pos
    n_anchors = tf.reduce_sum(tf.cast(has_pos, tf.float32))
    return tf.reduce_sum(tf.where(has_pos, per_anchor, 0.0)) / tf.maximum(n_anchors, 1.0)


@keras.saving.register_keras_serializable(package="medrepro")
class SupConLoss(keras.losses.Loss):
    """Supervised contrastive loss (Khosla et al. 2020; LGE paper Eq. 4).

    Args:
        temperature: float, default 0.07. tau in Eq. 4.
        base_temperature: float, default 0.07. The loss is scaled by
            `temperature / base_temperature` (reference implementation).
        name, reduction, dtype: as `keras.losses.Loss`. The loss is computed in float32
            whatever the model's dtype policy.

    Call args:
        y_true: int labels [B] (or [B, 1]).
        y_pred: embeddings [B, V, D] (V augmented views of each sample) or [B, D].
            L2-normalised inside. With [B, D], positives are other samples of the
            same class only.

    Returns a scalar: the mean over anchors that have at least one positive.

    Example:
        >>> loss = SupConLoss(temperature=0.1)
        >>> loss(labels, tf.stack([proj(view1), proj(view2)], axis=1))
    """

    def __init__(self, temperature=0.07, base_temperature=0.07, name="supcon_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if temperature <= 0 or base_temperature <= 0:
            raise ValueError(
                "temperature and base_temperature must be > 0. Received: "
                f"temperature={temperature}, base_temperature={base_temperature}"
            )
        self.temperature = float(temperature)
        self.base_temperature = float(base_temperature)

    def call(self, y_true, y_pred):
        return supervised_contrastive_loss(
            y_true, y_pred, temperature=self.temperature, base_temperature=self.base_temperature
        )

    def get_config(self):
        config = super().get_config()
        config.update(temperature=self.temperature, base_temperature=self.base_temperature)
        return config
