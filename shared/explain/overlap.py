"""How much of an attribution map lies inside a region (the heart, a marker, the lungs).

The overlap metric of the heatmap-loss thesis and the attention shares of the
COVID-Net reproduction; differentiable, so it can sit inside a loss.
"""

from __future__ import annotations

import tensorflow as tf

from shared.explain.attribution import resize_maps


def mass_inside(maps, masks, *, epsilon=1e-8):
    """Fraction of each (ReLU'd) map's mass inside a binary mask.

    The map is resized to the mask's grid first (bilinear for 2D, trilinear for 3D).
    `mass_outside = 1 - mass_inside`. A map with no positive mass gives 0.

    Args:
        maps: tensor [B, h, w] or [B, d, h, w].
        masks: tensor [B, H, W] or [B, D, H, W] (a trailing channel axis of 1 is
            accepted), values in {0, 1} (soft masks work as weights).
        epsilon: float, default 1e-8. Guards the division for empty maps.

    Returns:
        float32 tensor [B].

    Raises:
        ValueError: ranks that are not 3/4, ranks that differ, batch sizes that differ,
            non-finite maps.
    """
    maps = tf.convert_to_tensor(maps)
    masks = tf.convert_to_tensor(masks)
    maps = tf.cast(maps, tf.float32)
    masks = tf.cast(masks, tf.float32)
    if len(maps.shape) not in (3, 4):
        raise ValueError(
            "maps must have shape [B, h, w] or [B, d, h, w]. "
            f"Received shape {tuple(maps.shape)}"
        )
    if len(masks.shape) == len(maps.shape) + 1 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    if len(masks.shape) != len(maps.shape):
        raise ValueError(
            f"masks must have the rank of maps ({len(maps.shape)}), optionally with a "
            f"trailing channel of 1. Received: maps {tuple(maps.shape)}, masks "
            f"{tuple(masks.shape)}"
        )
    if maps.shape[0] is not None and masks.shape[0] is not None:
        if maps.shape[0] != masks.shape[0]:
            raise ValueError(
                f"maps and masks have different batch sizes: {maps.shape[0]} vs "
                f"{masks.shape[0]}"
            )
    if None in masks.shape[1:]:
        raise ValueError(f"masks need a static spatial shape. Received {tuple(masks.shape)}")
    if tf.executing_eagerly():
        if not bool(tf.reduce_all(tf.math.is_finite(maps))):
            raise ValueError("mass_inside: maps contain NaN or infinite values.")
    maps = tf.nn.relu(resize_maps(tf.nn.relu(maps), masks.shape[1:]))
    axes = list(range(1, len(maps.shape)))
    inside = tf.reduce_sum(maps * masks, axis=axes)
    total = tf.reduce_sum(maps, axis=axes)
    return inside / (total + epsilon)


def mass_outside(maps, masks, *, epsilon=1e-8):
    """`1 - mass_inside(maps, masks)`: the fraction of map mass outside the mask."""
    return 1.0 - mass_inside(maps, masks, epsilon=epsilon)
