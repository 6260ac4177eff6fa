"""Argument checks shared by the attribution metrics: one-line errors a person can act on.

Every check raises `ValueError` with one line that names the argument, what was
expected and what was received (`"masks must ... Received: masks.shape=(2, 5, 5)"`),
as the rest of `shared` does. The checks run eagerly, on values: the metrics are
evaluation code called outside a training step.
"""

from __future__ import annotations

import numbers

import tensorflow as tf

from shared.explain.attribution import resize_maps


def _bad_samples(x):
    """Indices of the samples of `x` (axis 0) that hold a NaN or an infinity."""
    axes = list(range(1, len(x.shape)))
    finite = tf.reduce_all(tf.math.is_finite(x), axis=axes) if axes else tf.math.is_finite(x)
    return tf.where(tf.logical_not(finite))[:, 0].numpy().tolist()


def check_finite(x, name):
    """Raises when `x` holds NaN or infinite values, naming the samples that do."""
    bad = _bad_samples(x)
    if bad:
        raise ValueError(
            f"{name} must be finite. Received: NaN or infinite values in sample(s) {bad}"
        )


def check_images(images, name="images"):
    """Images [N, H, W, C] or volumes [N, D, H, W, C], finite; returned as float32."""
    x = tf.convert_to_tensor(images)
    if x.dtype == tf.bool or x.dtype == tf.string:
        raise ValueError(f"{name} must hold numbers. Received: {name}.dtype={x.dtype.name}")
    x = tf.cast(x, tf.float32)
    if len(x.shape) not in (4, 5) or None in x.shape:
        raise ValueError(
            f"{name} must have a static shape [N, H, W, C] (2D) or [N, D, H, W, C] (3D). "
            f"Received: {name}.shape={tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one sample. Received: {name}.shape="
                         f"{tuple(x.shape)}")
    check_finite(x, name)
    return x


def _spatial_name(images):
    return "[N, H, W]" if len(images.shape) == 4 else "[N, D, H, W]"


def check_maps(maps, images, name="maps"):
    """Maps of `images` ([N, h, w] / [N, d, h, w], a trailing channel of 1 allowed).

    Maps on a coarser grid (Grad-CAM at a feature layer) are resized to the images'
    grid, bilinear in 2D and trilinear in 3D. Returns float32 [N, *spatial].
    """
    m = tf.cast(tf.convert_to_tensor(maps), tf.float32)
    rank = len(images.shape) - 1
    if len(m.shape) == rank + 1 and m.shape[-1] == 1:
        m = m[..., 0]
    if len(m.shape) != rank or m.shape[0] != images.shape[0] or None in m.shape:
        raise ValueError(
            f"{name} must have shape {_spatial_name(images)} (one map per image, any grid) "
            f"for images of shape {tuple(images.shape)}. Received: {name}.shape="
            f"{tuple(m.shape)}"
        )
    check_finite(m, name)
    return resize_maps(m, images.shape[1:-1])


def on_image_grid(values, images, name):
    """`values` as float32 [N, *spatial] on the images' grid ([N, *spatial] or with a
    trailing channel of 1); a one-line ValueError naming `name` otherwise."""
    v = tf.cast(tf.convert_to_tensor(values), tf.float32)
    spatial = tuple(images.shape[:-1])
    if len(v.shape) == len(spatial) + 1 and v.shape[-1] == 1:
        v = v[..., 0]
    if tuple(v.shape) != spatial:
        raise ValueError(
            f"{name} must have shape {spatial} (or with a trailing channel of 1) to match "
            f"images of shape {tuple(images.shape)}. Received: {name}.shape="
            f"{tuple(tf.convert_to_tensor(values).shape)}"
        )
    return v


def check_masks(masks, images, name="masks"):
    """Region masks on the images' grid, values in [0, 1], none of them all zero.

    Accepts [N, *spatial] or [N, *spatial, 1]; returns float32 [N, *spatial].
    """
    m = on_image_grid(masks, images, name)
    check_finite(m, name)
    if bool(tf.reduce_any((m < 0.0) | (m > 1.0))):
        raise ValueError(
            f"{name} must hold values in [0, 1]. Received: values from "
            f"{float(tf.reduce_min(m)):g} to {float(tf.reduce_max(m)):g}"
        )
    axes = list(range(1, len(m.shape)))
    empty = tf.where(tf.reduce_max(m, axis=axes) <= 0.0)[:, 0].numpy().tolist()
    if empty:
        raise ValueError(
            f"{name} must mark at least one pixel of every sample. Received: all-zero "
            f"{name} for sample(s) {empty}"
        )
    return m


def check_positive_int(value, name):
    """An int >= 1 (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an int >= 1. Received: {name}={value!r}")
    return int(value)


def check_non_negative(value, name):
    """A finite float >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
        0.0 <= float(value) < float("inf")
    ):
        raise ValueError(f"{name} must be a finite number >= 0. Received: {name}={value!r}")
    return float(value)


def check_seed(seed):
    """An explicit int seed (None refused: a seed is never silently random)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an int. Received: seed={seed!r}")
    return int(seed)


def check_spatial_sizes(value, images, name):
    """An int or one int per spatial axis, each in [1, that axis's size]; a tuple."""
    spatial = tuple(images.shape[1:-1])
    sizes = (value,) * len(spatial) if isinstance(value, numbers.Integral) else tuple(value)
    if (
        len(sizes) != len(spatial)
        or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) for s in sizes)
        or any(not 1 <= s <= n for s, n in zip(sizes, spatial))
    ):
        raise ValueError(
            f"{name} must be an int or {len(spatial)} ints, each between 1 and the image "
            f"size {spatial}. Received: {name}={value!r}"
        )
    return tuple(int(s) for s in sizes)
