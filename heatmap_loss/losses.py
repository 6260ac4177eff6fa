"""The attribution penalty of the heatmap loss (thesis, chapter 1 and section 4.1.2).

The thesis' heatmap loss is a weighted sum of a classification term (mean squared
error between the one-hot label and the softmax output) and a heatmap term, "the sum
of the heatmap values that lay outside of the heart" for the map of the image's own
class. Here the heatmap term is that sum divided by the map's total positive mass,
i.e. the share of the (ReLU'd) map outside the allowed region, so that it lies in
[0, 1] whatever the scale of the logits:

    L = L_cls(y, p) + weight * mean_b(1 - mass_inside(M_b, allowed_b))

The thesis also proposes the reverse (section 4.1.2): a region the model must look at
(the fatty RV wall for ARV), penalising attribution missing from it. Mode "inside"
implements that as a coverage deficit: with the map scaled to its maximum,
`1 - mean over the required region of min(1, M / max M)`; it is 0 when the map is at
its maximum everywhere in the region and 1 when it is zero there.
"""

import tensorflow as tf

from shared.explain import mass_inside, resize_maps

MODES = ("outside", "inside")


def attribution_penalty(maps, masks, *, mode="outside", epsilon=1e-8):
    """Per-sample heatmap penalty in [0, 1].

    Args:
        maps: float tensor [B, h, w]. Attribution maps (ReLU is applied here).
        masks: tensor [B, H, W] (or [B, H, W, 1]), values in {0, 1}: the allowed
            region (mode "outside") or the required region (mode "inside").
        mode: str, default "outside". "outside": share of map mass outside the
            mask; "inside": coverage deficit of the mask (see module docstring).
        epsilon: float, default 1e-8. Guards divisions for empty maps.

    Returns:
        float32 tensor [B].
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}. Received: mode={mode!r}")
    if mode == "outside":
        return 1.0 - mass_inside(maps, masks, epsilon=epsilon)
    masks = tf.cast(masks, tf.float32)
    if len(masks.shape) == 4:
        masks = masks[..., 0]
    maps = tf.nn.relu(resize_maps(tf.nn.relu(tf.cast(maps, tf.float32)), masks.shape[1:]))
    peak = tf.reduce_max(maps, axis=[1, 2], keepdims=True)
    scaled = tf.minimum(1.0, maps / (peak + epsilon))
    covered = tf.reduce_sum(scaled * masks, axis=[1, 2])
    return 1.0 - covered / (tf.reduce_sum(masks, axis=[1, 2]) + epsilon)
