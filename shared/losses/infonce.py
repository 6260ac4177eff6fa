"""Continuous (y-aware) InfoNCE with an RBF kernel on soft labels.

Eq. 4 of the brain-aware-replacements paper (Seyfioglu et al.), which takes the loss of
Dufumier et al. (MICCAI 2021, "y-aware InfoNCE"):

    L_i = - sum_k [ phi(y_k, y_i) / sum_j phi(y_j, y_i) ] log( exp(theta(t1_i, t2_k))
                                                          / (1/b sum_j exp(theta(t1_i, t2_j))) )

with `phi(a, b) = exp(-||a - b||^2 / (2 sigma^2))` (RBF, sigma = 0.8 in the paper) and
`theta(u, v) = cos(u, v) / temperature` (temperature 0.1 in the y-aware reference).

Two forms are offered:

* ``mode="all"`` (default), the y-aware reference form: the 2B views of both branches are
  anchors and candidates at once (every pair except an anchor with itself), kernel weights
  zero on the diagonal and normalised per row (per anchor, as Eq. 4's denominator
  `sum_j phi(y_j, y_i)`). As sigma -> 0 with distinct labels only the other view of the
  same sample keeps weight, and the loss becomes NT-Xent (SimCLR).
* ``mode="cross_view"``: Eq. 4 exactly as printed: anchors are the first views, candidates
  the second views (`k, j = 1..b`, the positive `k = i` included), with the `1/b` inside
  the logarithm (a constant `log b` that does not change gradients).

The loss is averaged over anchors (the paper's equation is written per anchor).

**What Eq. 4 can reach** (`attainable_minimum`). For one anchor, with w_i the kernel row
normalised over the candidates and p_i = softmax(theta_i), the printed form is

    L_i = - sum_k w_ik log(b p_ik) = CE(w_i, p_i) - log b  >=  H(w_i) - log b,

with equality when p_i = w_i. Collapse (every theta equal, p_i uniform) scores exactly
CE(w_i, 1/b) - log b = 0. On soft labels in [0, 1] with sigma = 0.8 every pair weighs at
least exp(-1 / 1.28) = 0.458, so w_i is nearly uniform, H(w_i) is within a few hundredths
of log b and the best any representation can do is a few hundredths of a nat below
collapse; embeddings that separate the classes put p_i far from w_i and score well
above it. A sharp kernel (sigma 0.1) makes w_i concentrate on same-label candidates and
separation the optimum. In `mode="all"` the bound is H(w_i) over the 2B - 1 candidates.
"""

import keras
import tensorflow as tf

MODES = ("all", "cross_view")
_MASK_VALUE = -1e9


def _labels_2d(y_true):
    y_true = tf.cast(tf.convert_to_tensor(y_true), tf.float32)
    if len(y_true.shape) == 1:
        return y_true[:, None]
    if len(y_true.shape) != 2:
        raise ValueError(
            f"soft labels must have shape [B] or [B, K]. Received shape {tuple(y_true.shape)}"
        )
    return y_true


def rbf_kernel(a, b, sigma):
    """exp(-||a_i - b_j||^2 / (2 sigma^2)) for label rows a [N, K] and b [M, K]."""
    sq = tf.reduce_sum(tf.square(a[:, None, :] - b[None, :, :]), axis=-1)
    return tf.exp(-sq / (2.0 * sigma**2))


def continuous_infonce(labels, embeddings, *, sigma=0.8, temperature=0.1, mode="all"):
    """Functional form of `ContinuousInfoNCE`; returns the scalar loss (float32)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}. Received: mode={mode!r}")
    z = tf.cast(embeddings, tf.float32)
    if len(z.shape) != 3 or z.shape[1] != 2:
        raise ValueError(
            "embeddings must have shape [B, 2, D] (two views per sample). "
            f"Received shape {tuple(z.shape)}"
        )
    y = _labels_2d(labels)
    if z.shape[0] is not None and y.shape[0] is not None and z.shape[0] != y.shape[0]:
        raise ValueError(f"labels have {y.shape[0]} rows for {z.shape[0]} embeddings.")
    z = tf.math.l2_normalize(z, axis=-1)
    z1, z2 = z[:, 0], z[:, 1]
    if mode == "cross_view":
        logits = tf.matmul(z1, z2, transpose_b=True) / temperature
        weights = rbf_kernel(y, y, sigma)
        log_b = tf.math.log(tf.cast(tf.shape(z1)[0], tf.float32))
        log_prob = logits - tf.reduce_logsumexp(logits, axis=1, keepdims=True) + log_b
    else:
        zz = tf.concat([z1, z2], axis=0)
        yy = tf.concat([y, y], axis=0)
        n = tf.shape(zz)[0]
        self_mask = tf.eye(n, dtype=tf.bool)
        logits = tf.where(self_mask, _MASK_VALUE, tf.matmul(zz, zz, transpose_b=True) / temperature)
        weights = tf.where(self_mask, 0.0, rbf_kernel(yy, yy, sigma))
        log_prob = logits - tf.reduce_logsumexp(logits, axis=1, keepdims=True)
        log_prob = tf.where(self_mask, 0.0, log_prob)
    # Normalised per row; the tiny floor only matters if every weight underflows.
    weights = weights / tf.maximum(tf.reduce_sum(weights, axis=1, keepdims=True), 1e-30)
    return -tf.reduce_mean(tf.reduce_sum(weights * log_prob, axis=1))


def instance_infonce(embeddings, *, temperature=0.1):
    """Instance discrimination (NT-Xent, SimCLR): each view's positive is the other view of
    its own sample, every other view of the batch a negative. Embeddings [B, 2, D].

    SupCon with one class per sample is this loss, so it is computed by
    `shared.losses.supcon.supervised_contrastive_loss` on unique labels."""
    from shared.losses.supcon import supervised_contrastive_loss

    return supervised_contrastive_loss(tf.range(tf.shape(embeddings)[0]), embeddings,
                                       temperature=temperature, base_temperature=temperature)


def kernel_targets(labels, *, sigma, mode="cross_view"):
    """The per-anchor target distributions w_i of the loss (rows sum to 1).

    `cross_view`: [B, B], candidate k = 1..b including the anchor's own second view;
    `all`: [2B, 2B] with a zero diagonal.
    """
    y = _labels_2d(labels)
    if mode == "cross_view":
        weights = rbf_kernel(y, y, sigma)
    elif mode == "all":
        yy = tf.concat([y, y], axis=0)
        weights = rbf_kernel(yy, yy, sigma) * (1.0 - tf.eye(tf.shape(yy)[0]))
    else:
        raise ValueError(f"mode must be one of {MODES}. Received: mode={mode!r}")
    return weights / tf.maximum(tf.reduce_sum(weights, axis=1, keepdims=True), 1e-30)


def attainable_minimum(labels, *, sigma=0.8, mode="cross_view"):
    """The lowest value `continuous_infonce` can take on these labels, over all embeddings.

    `cross_view` (Eq. 4 as printed): mean_i H(w_i) - log b; `all`: mean_i H(w_i). It is
    reached where each anchor's softmax equals its kernel row (within what cosine /
    temperature can express). The gap between the loss and this floor, not the loss
    itself, tells how much is left to learn; at sigma 0.8 on labels in [0, 1] the floor
    sits a few hundredths of a nat below collapse (0).
    """
    w = kernel_targets(labels, sigma=sigma, mode=mode)
    entropy = -tf.reduce_sum(tf.where(w > 0, w * tf.math.log(tf.maximum(w, 1e-30)), 0.0), axis=1)
    floor = tf.reduce_mean(entropy)
    if mode == "cross_view":
        floor -= tf.math.log(tf.cast(tf.shape(w)[0], tf.float32))
    return floor


@keras.saving.register_keras_serializable(package="medrepro")
class ContinuousInfoNCE(keras.losses.Loss):
    """Continuous / y-aware InfoNCE with an RBF kernel on soft labels.

    The default `mode="all"` is the y-aware form over both views (every other
    embedding of the batch is a candidate; it reduces to NT-Xent as sigma -> 0).
    BAR's Eq. 4 as printed is `mode="cross_view"`; bar_ad passes it explicitly.

    Args:
        sigma: float, default 0.8. RBF kernel width on the labels (the BAR paper's value).
        temperature: float, default 0.1. Softmax temperature on cosine similarities.
        mode: "all" (default; y-aware reference, reduces to NT-Xent as sigma -> 0) or
            "cross_view" (Eq. 4 as printed: first views against second views).
        instance_weight: float, default 0 (the paper's loss). Adds this multiple of
            `instance_infonce` (NT-Xent): an anchor that keeps every sample apart from the
            others, so the soft-label term shapes a representation that cannot collapse
            (not in the paper; bar_ad's anchored arm).
        name, reduction, dtype: as `keras.losses.Loss`. Computed in float32.

    Call args:
        y_true: soft labels [B] or [B, K], shared by both views of a sample.
        y_pred: embeddings [B, 2, D].
    """

    def __init__(self, sigma=0.8, temperature=0.1, mode="all", instance_weight=0.0,
                 name="continuous_infonce", **kwargs):
        super().__init__(name=name, **kwargs)
        if not instance_weight >= 0:
            raise ValueError(f"instance_weight must be >= 0. Received: "
                             f"instance_weight={instance_weight}")
        if sigma <= 0 or temperature <= 0:
            raise ValueError(
                f"sigma and temperature must be > 0. Received: sigma={sigma}, "
                f"temperature={temperature}"
            )
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}. Received: mode={mode!r}")
        self.sigma = float(sigma)
        self.temperature = float(temperature)
        self.mode = mode
        self.instance_weight = float(instance_weight)

    def call(self, y_true, y_pred):
        loss = continuous_infonce(
            y_true, y_pred, sigma=self.sigma, temperature=self.temperature, mode=self.mode
        )
        if self.instance_weight:
            loss += self.instance_weight * instance_infonce(y_pred, temperature=self.temperature)
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(sigma=self.sigma, temperature=self.temperature, mode=self.mode,
                      instance_weight=self.instance_weight)
        return config
