"""Soft Dice loss and the Dice coefficient (Milletari et al. 2016 form, as MONAI's DiceLoss)."""

import keras
import tensorflow as tf


def _prepare(y_true, y_pred):
    y_true = tf.cast(tf.convert_to_tensor(y_true), tf.float32)
    y_pred = tf.cast(tf.convert_to_tensor(y_pred), tf.float32)
    if len(y_pred.shape) < 2:
        raise ValueError(
            f"y_pred must have a batch axis and at least one more. Received shape {tuple(y_pred.shape)}"
        )
    if len(y_true.shape) == len(y_pred.shape) - 1 and y_pred.shape[-1] == 1:
        y_true = y_true[..., None]
    if len(y_true.shape) != len(y_pred.shape):
        raise ValueError(
            f"y_true and y_pred must have the same rank. Received: y_true {tuple(y_true.shape)}, "
            f"y_pred {tuple(y_pred.shape)}"
        )
    return y_true, y_pred


def _dice(y_true, y_pred, smooth, per_channel):
    rank = len(y_pred.shape)
    axes = list(range(1, rank - 1)) if per_channel else list(range(1, rank))
    inter = tf.reduce_sum(y_true * y_pred, axis=axes)
    denom = tf.reduce_sum(y_true, axis=axes) + tf.reduce_sum(y_pred, axis=axes)
    dice = (2.0 * inter + smooth) / (denom + smooth)
    return tf.reduce_mean(dice, axis=-1) if per_channel else dice


def dice_coefficient(y_true, y_pred, *, smooth=1e-6, threshold=None, per_channel=False):
    """Per-sample Dice `(2|X.Y| + s) / (|X| + |Y| + s)`, shape [B], float32.

    Args:
        y_true: binary masks, [B, ...] (a missing trailing channel axis of 1 is added).
        y_pred: probabilities of the same shape.
        smooth: float, default 1e-6. Added to numerator and denominator: two empty masks
            score 1.
        threshold: float, optional. Binarise `y_pred > threshold` first (a hard Dice).
        per_channel: bool, default False. Dice per last-axis channel, averaged; otherwise
            over every non-batch axis at once.
    """
    y_true, y_pred = _prepare(y_true, y_pred)
    if threshold is not None:
        y_pred = tf.cast(y_pred > threshold, tf.float32)
    return _dice(y_true, y_pred, smooth, per_channel)


@keras.saving.register_keras_serializable(package="medrepro")
class DiceLoss(keras.losses.Loss):
    """Soft Dice loss, `1 - dice` per sample, averaged over the batch.

    Args:
        smooth: float, default 1.0. Laplace smoothing in numerator and denominator.
        from_logits: bool, default False. Apply a sigmoid to `y_pred` first.
        per_channel: bool, default False. Dice per channel (last axis) averaged, as
            MONAI's `DiceLoss` over one-hot channels; otherwise over all non-batch axes.
        name, reduction, dtype: as `keras.losses.Loss`. Computed in float32.
    """

    def __init__(self, smooth=1.0, from_logits=False, per_channel=False, name="dice_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if smooth < 0:
            raise ValueError(f"smooth must be >= 0. Received: smooth={smooth}")
        self.smooth = float(smooth)
        self.from_logits = bool(from_logits)
        self.per_channel = bool(per_channel)

    def call(self, y_true, y_pred):
        y_true, y_pred = _prepare(y_true, y_pred)
        if self.from_logits:
            y_pred = tf.sigmoid(y_pred)
        return 1.0 - _dice(y_true, y_pred, self.smooth, self.per_channel)

    def get_config(self):
        config = super().get_config()
        config.update(smooth=self.smooth, from_logits=self.from_logits, per_channel=self.per_channel)
        return config
