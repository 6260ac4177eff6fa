"""What a removed pixel becomes: a constant value or a blurred copy of the image.

Deletion, insertion, region occlusion and occlusion sensitivity all replace part of an
image by a declared baseline. A constant (0 after normalisation, the image mean) is the
usual choice; a blurred copy (Petsiuk et al. 2018, RISE, whose insertion metric starts
from a blurred image) removes detail while keeping intensities in range. The blur is a
separable Gaussian with reflected borders, the same filter as
`scipy.ndimage.gaussian_filter(mode="reflect", truncate=3.0)`, in 2D and 3D.
"""

from __future__ import annotations

import math
import numbers

import tensorflow as tf

BLUR = "blur"


def _gaussian_kernel(sigma):
    radius = int(3.0 * sigma + 0.5)
    t = tf.range(-radius, radius + 1, dtype=tf.float32)
    k = tf.exp(-0.5 * (t / sigma) ** 2)
    return k / tf.reduce_sum(k), radius


def gaussian_blur(images, sigma):
    """Gaussian blur over the spatial axes of images [N, H, W, C] or volumes [N, D, H, W, C].

    Each channel is blurred on its own; borders are reflected ("symmetric": d c b a | a b
    c d). The kernel is truncated at `int(3 * sigma + 0.5)` pixels, and at the axis
    length minus one where an axis is shorter.

    Args:
        images: float tensor [N, H, W, C] or [N, D, H, W, C].
        sigma: float > 0, in pixels (the same on every spatial axis).

    Returns:
        float32 tensor of the shape of `images`.
    """
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not (
        0.0 < float(sigma) < math.inf
    ):
        raise ValueError(f"blur_sigma must be a finite number > 0. Received: blur_sigma={sigma!r}")
    x = tf.cast(tf.convert_to_tensor(images), tf.float32)
    rank = len(x.shape)
    kernel, radius = _gaussian_kernel(float(sigma))
    for axis in range(1, rank - 1):
        length = x.shape[axis]
        r = min(radius, length - 1) if length > 1 else 0
        if r == 0:
            continue
        k = kernel[radius - r: radius + r + 1]
        k = k / tf.reduce_sum(k)
        # The blurred axis goes last, everything else into the batch of a 1D convolution.
        perm = [a for a in range(rank) if a != axis] + [axis]
        moved = tf.transpose(x, perm)
        flat = tf.reshape(moved, [-1, length, 1])
        padded = tf.pad(flat, [[0, 0], [r, r], [0, 0]], mode="SYMMETRIC")
        out = tf.nn.conv1d(padded, k[:, None, None], stride=1, padding="VALID")
        out = tf.reshape(out, tf.shape(moved))
        x = tf.transpose(out, [perm.index(a) for a in range(rank)])
    return x


def baseline_images(images, baseline, *, blur_sigma=5.0):
    """The images every pixel of which is "removed": a constant, a blur, or given.

    Args:
        images: float32 tensor [N, H, W, C] or [N, D, H, W, C] (checked by the caller).
        baseline: a number (every pixel and channel becomes it), "blur" (a Gaussian blur
            of each image, `blur_sigma` pixels), or a tensor of the images' shape.
        blur_sigma: float, default 5.0 (RISE's blur). Used only with "blur".

    Returns:
        float32 tensor of the shape of `images`.

    Raises:
        ValueError: a baseline that is none of the three, non-finite or of another shape.
    """
    if isinstance(baseline, str):
        if baseline != BLUR:
            raise ValueError(
                f"baseline must be a number, {BLUR!r} or a tensor of the images' shape. "
                f"Received: baseline={baseline!r}"
            )
        return gaussian_blur(images, blur_sigma)
    if isinstance(baseline, numbers.Real) and not isinstance(baseline, bool):
        if not math.isfinite(float(baseline)):
            raise ValueError(f"baseline must be finite. Received: baseline={baseline!r}")
        return tf.fill(tf.shape(images), tf.constant(float(baseline), tf.float32))
    try:
        b = tf.cast(tf.convert_to_tensor(baseline), tf.float32)
    except (TypeError, ValueError):
        raise ValueError(
            f"baseline must be a number, {BLUR!r} or a tensor of the images' shape. "
            f"Received: baseline of type {type(baseline).__name__}"
        ) from None
    if tuple(b.shape) != tuple(images.shape):
        raise ValueError(
            f"baseline must have the images' shape {tuple(images.shape)}. Received: "
            f"baseline.shape={tuple(b.shape)}"
        )
    if not bool(tf.reduce_all(tf.math.is_finite(b))):
        raise ValueError("baseline must be finite. Received: NaN or infinite values in baseline")
    return b
