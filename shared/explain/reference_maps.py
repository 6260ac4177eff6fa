"""Model-agnostic reference maps beside Grad-CAM / HiResCAM, batched, 2D and 3D.

* `occlusion_sensitivity` (Zeiler & Fergus 2014): a patch slides over the
  image, is replaced by the baseline, and the target score's drop is credited to every
  pixel of the patch; a pixel's value is the mean drop over the patches that cover it.
  Needs only forward passes, so it applies to any model (the 3D ViT included).
* `integrated_gradients` (Sundararajan et al. 2017; its Riemann-sum
  approximation, here with the trapezoid rule): `(x - x') * integral of
  dS/dx along the straight path from the baseline x' to x`. Its sum over pixels and
  channels equals `S(x) - S(x')` up to the quadrature error ("completeness").

Both return [N, H, W] / [N, D, H, W] float32 maps on the images' grid (channels summed
for integrated gradients), ready for the deletion, insertion and ROAD metrics.
"""

from __future__ import annotations

import itertools

import numpy as np
import tensorflow as tf

from shared.explain.attribution import _scores
from shared.explain.baselines import baseline_images
from shared.explain.scoring import forward_fn, target_gradients, target_scores
from shared.explain.validation import check_images, check_positive_int, check_spatial_sizes


def patch_starts(size, patch, stride):
    """Start of each patch along one axis: every `stride`, the last one flush with the end."""
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def _patch_masks(spatial, patch, positions):
    """float32 [G, *spatial]: 1 inside each patch of `positions`."""
    masks = np.zeros((len(positions),) + tuple(spatial), np.float32)
    for g, start in enumerate(positions):
        masks[(g,) + tuple(slice(s, s + p) for s, p in zip(start, patch))] = 1.0
    return masks


def occlusion_sensitivity(model, images, targets, *, patch_size, stride=None, baseline=0.0,
                          blur_sigma=5.0, positions_per_call=16):
    """Occlusion map: mean score drop of the patches that cover each pixel.

    Patches start every `stride` pixels along each axis, with a last patch flush with the
    far border, so every pixel is covered. Each forward pass scores
    `positions_per_call` patch positions for the whole batch at once.

    Args:
        model: keras.Model, or a traceable callable images -> outputs.
        images: float [N, H, W, C] or [N, D, H, W, C].
        targets: int class indices [N] (or a scalar), or a callable `outputs -> [N]`,
            see `shared.explain.scoring.target_scores`.
        patch_size: int, or one int per spatial axis.
        stride: int or one per axis, default `patch_size` (patches that tile the image).
        baseline: number, "blur" or a tensor of the images' shape, default 0.0.
        blur_sigma: float, default 5.0, for `baseline="blur"`.
        positions_per_call: int, default 16. Patch positions per forward pass (the pass
            holds `positions_per_call * N` images).

    Returns:
        float32 tensor [N, H, W] or [N, D, H, W]: positive where hiding the pixel's
        patches lowers the score.
    """
    images = check_images(images)
    patch = check_spatial_sizes(patch_size, images, "patch_size")
    stride = patch if stride is None else check_spatial_sizes(stride, images, "stride")
    per_call = check_positive_int(positions_per_call, "positions_per_call")
    base = baseline_images(images, baseline, blur_sigma=blur_sigma)
    spatial = tuple(images.shape[1:-1])
    n = images.shape[0]
    reference = target_scores(model, images, targets)
    positions = list(itertools.product(
        *(patch_starts(s, p, st) for s, p, st in zip(spatial, patch, stride))
    ))
    forward = forward_fn(model)
    total = tf.zeros([n, int(np.prod(spatial))], tf.float32)
    count = np.zeros(int(np.prod(spatial)), np.float32)
    for first in range(0, len(positions), per_call):
        masks = _patch_masks(spatial, patch, positions[first: first + per_call])
        g = masks.shape[0]
        hidden = tf.constant(masks)[:, None, ..., None] > 0.5  # [G, 1, *spatial, 1]
        x = tf.where(hidden, base[None], images[None])
        x = tf.reshape(x, (g * n,) + tuple(images.shape[1:]))
        outputs = forward(x)
        drops = tf.stack([
            reference - tf.cast(_scores(
                tf.nest.map_structure(lambda o: o[i * n: (i + 1) * n], outputs), targets
            ), tf.float32)
            for i in range(g)
        ])  # [G, N]
        flat = masks.reshape(g, -1)
        total += tf.matmul(drops, tf.constant(flat), transpose_a=True)
        count += flat.sum(axis=0)
    return tf.reshape(total / tf.constant(count)[None], (n,) + spatial)


def integrated_gradients(model, images, targets, *, baseline=0.0, steps=32, blur_sigma=5.0,
                         sum_channels=True):
    """Integrated gradients from the baseline to each image, batched over the images.

    `IG = (x - x') * sum_i w_i dS/dx (x' + a_i (x - x'))` with `a_i = i / steps` and
    trapezoid weights (`w_0 = w_steps = 1 / (2 steps)`, else `1 / steps`): exact for
    scores whose gradient is linear along the path (linear and quadratic models). One
    gradient pass of the whole batch per point.

    Args:
        model: keras.Model, or a traceable callable images -> outputs.
        images: float [N, H, W, C] or [N, D, H, W, C].
        targets: int class indices [N] (or a scalar), or a traceable callable
            `outputs -> [N]`.
        baseline: number, "blur" or a tensor of the images' shape, default 0.0.
        steps: int >= 1, default 32. Intervals of the path (steps + 1 gradient passes).
        blur_sigma: float, default 5.0, for `baseline="blur"`.
        sum_channels: bool, default True. Sum over channels ([N, *spatial]) or keep them
            ([N, *spatial, C]).

    Returns:
        float32 tensor [N, H, W] / [N, D, H, W] (or with channels).
    """
    images = check_images(images)
    steps = check_positive_int(steps, "steps")
    base = baseline_images(images, baseline, blur_sigma=blur_sigma)
    target_scores(model, images, targets)  # checks the targets against the outputs
    delta = images - base
    total = tf.zeros_like(images)
    for i in range(steps + 1):
        weight = (0.5 if i in (0, steps) else 1.0) / steps
        _, grads = target_gradients(model, base + (i / steps) * delta, targets)
        total += weight * grads
    attributions = delta * total
    return tf.reduce_sum(attributions, axis=-1) if sum_channels else attributions
