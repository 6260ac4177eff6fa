"""Deletion and insertion curves of attribution maps, and their normalised areas.

Deletion (Petsiuk et al. 2018, RISE; Samek et al. 2017's "most relevant first"
region perturbation): the pixels are removed in the order of the map, most attributed
first, and the target score is recorded after each step. A map that ranks the model's
evidence first makes the score fall fast: a small area is good. Insertion starts from
the baseline and puts the most attributed pixels back first: a large area is good.

A step removes `floor(i * P / steps)` pixels (i = 0 .. steps, P pixels or voxels per
image); a removed pixel takes the baseline's value in every channel. Ties in a map are
broken by position (row-major order), the same way every time. One step is one forward
pass of the whole batch: the batch is never split per image.

The area is the trapezoid rule over the removed fraction divided by the fraction range,
so it is in the score's units: the mean score along the curve (the "normalised AUC").

Example:
    >>> maps = hirescam(model, x, layer_name="block5_conv3", targets=y)
    >>> curve = deletion_curve(model, x, maps, y, steps=16, baseline="blur")
    >>> curve.area()  # [N], smaller is better for deletion
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from shared.explain.baselines import baseline_images
from shared.explain.scoring import target_scores
from shared.explain.validation import check_images, check_maps, check_positive_int


def curve_area(scores, fractions):
    """Normalised area under curves: trapezoid over `fractions`, divided by their range.

    Args:
        scores: float tensor [N, S] (S >= 2 points per curve).
        fractions: float [S], increasing: the removed (or inserted) fraction at each point.

    Returns:
        float32 tensor [N]: the mean height of each curve.
    """
    scores = tf.cast(tf.convert_to_tensor(scores), tf.float32)
    x = tf.cast(tf.convert_to_tensor(fractions), tf.float32)
    if (len(scores.shape) != 2 or len(x.shape) != 1 or scores.shape[1] != x.shape[0]
            or x.shape[0] < 2):
        raise ValueError(
            "scores must have shape [N, S] and fractions [S], with S >= 2. Received: "
            f"scores.shape={tuple(scores.shape)}, fractions.shape={tuple(x.shape)}"
        )
    dx = x[1:] - x[:-1]
    if bool(tf.reduce_any(dx <= 0.0)):
        raise ValueError(f"fractions must increase. Received: fractions={x.numpy().tolist()}")
    area = tf.reduce_sum(0.5 * (scores[:, 1:] + scores[:, :-1]) * dx, axis=1)
    return area / (x[-1] - x[0])


class PerturbationCurve(NamedTuple):
    """Scores along a perturbation, one curve per image.

    Attributes:
        fractions: float32 [S], the fraction of pixels removed (or inserted) per point.
        scores: float32 [N, S], the target score of each image at each point.
    """

    fractions: tf.Tensor
    scores: tf.Tensor

    def area(self):
        """Normalised area [N], see `curve_area`."""
        return curve_area(self.scores, self.fractions)


def pixel_ranks(maps):
    """Rank of each pixel in its map, 0 for the most attributed; ties by position.

    Args:
        maps: float tensor [N, ...spatial].

    Returns:
        int32 tensor [N, ...spatial].
    """
    flat = tf.reshape(maps, [tf.shape(maps)[0], -1])
    order = tf.argsort(flat, axis=-1, direction="DESCENDING", stable=True)
    # The inverse of a permutation is its argsort.
    return tf.reshape(tf.argsort(order, axis=-1, stable=True), tf.shape(maps))


def removal_counts(num_pixels, steps):
    """Pixels removed at each of the `steps + 1` points: floor(i * P / steps)."""
    return [(i * num_pixels) // steps for i in range(steps + 1)]


def _curve(model, images, maps, targets, steps, baseline, blur_sigma, insert):
    images = check_images(images)
    maps = check_maps(maps, images)
    steps = check_positive_int(steps, "steps")
    base = baseline_images(images, baseline, blur_sigma=blur_sigma)
    ranks = pixel_ranks(maps)[..., None]
    num_pixels = int(np.prod(images.shape[1:-1]))
    counts = removal_counts(num_pixels, steps)
    scores = []
    for k in counts:
        chosen = ranks < k
        x = tf.where(chosen, images, base) if insert else tf.where(chosen, base, images)
        scores.append(target_scores(model, x, targets))
    fractions = tf.constant(np.asarray(counts, np.float32) / num_pixels)
    return PerturbationCurve(fractions, tf.stack(scores, axis=1))


def deletion_curve(model, images, maps, targets, *, steps=16, baseline=0.0, blur_sigma=5.0):
    """Target scores while the most attributed pixels are replaced by the baseline.

    Args:
        model: keras.Model, or a traceable callable images -> outputs.
        images: float [N, H, W, C] or [N, D, H, W, C].
        maps: float [N, h, w] / [N, d, h, w] attributions (resized to the images' grid).
        targets: int class indices [N] (or a scalar) into the model's [N, classes]
            output (its probabilities when it ends in a softmax), or a callable
            `outputs -> [N]` score.
        steps: int >= 1, default 16. The curve has `steps + 1` points, from nothing to
            everything removed.
        baseline: number, "blur" or a tensor of the images' shape, default 0.0. See
            `shared.explain.baselines.baseline_images`.
        blur_sigma: float, default 5.0. Gaussian sigma in pixels for `baseline="blur"`.

    Returns:
        PerturbationCurve: fractions [steps + 1] and scores [N, steps + 1]; `.area()`
        gives the normalised area per image (smaller: the map found the evidence).

    Raises:
        ValueError: images or maps of the wrong shape or non-finite, steps < 1, a bad
            baseline or bad targets.
    """
    return _curve(model, images, maps, targets, steps, baseline, blur_sigma, insert=False)


def insertion_curve(model, images, maps, targets, *, steps=16, baseline=0.0, blur_sigma=5.0):
    """Target scores while the most attributed pixels are put back into the baseline.

    The first point scores the baseline alone, the last the whole image. Arguments as
    `deletion_curve`; a larger area means the map found the evidence.
    """
    return _curve(model, images, maps, targets, steps, baseline, blur_sigma, insert=True)
