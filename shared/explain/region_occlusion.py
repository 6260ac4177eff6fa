"""Region occlusion: how much the target score depends on a given region, and on the rest.

A map can sit on the heart while the model's decision rests elsewhere. Replacing the
region (the heart, a marker, an artefact) by the baseline and reading the score drop
asks the model directly; replacing the complement asks whether the region alone keeps
the decision (the "confidence change" of pytorch-grad-cam's metrics, and the
preservation / deletion pair of Fong & Vedaldi 2017, with a given mask instead
of a learned one).

Masks may be soft: a pixel with mask value m becomes `(1 - m) * image + m * baseline`
for the region, and `m * image + (1 - m) * baseline` for the complement.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from shared.explain.baselines import baseline_images
from shared.explain.scoring import target_scores
from shared.explain.validation import check_images, check_masks


class RegionOcclusion(NamedTuple):
    """Target scores of the images as they are, and with the region or its complement replaced.

    Attributes:
        scores: float32 [N], the images as given.
        region_replaced: float32 [N], the region replaced by the baseline.
        complement_replaced: float32 [N], everything but the region replaced.
    """

    scores: tf.Tensor
    region_replaced: tf.Tensor
    complement_replaced: tf.Tensor

    @property
    def region_drop(self):
        """`scores - region_replaced` [N]: positive when the region supports the target."""
        return self.scores - self.region_replaced

    @property
    def complement_drop(self):
        """`scores - complement_replaced` [N]: near 0 when the region alone keeps the score."""
        return self.scores - self.complement_replaced


def region_occlusion(model, images, masks, targets, *, baseline=0.0, blur_sigma=5.0):
    """Score change when a region, and when its complement, is replaced by the baseline.

    Three batched forward passes: the images, the images with the region replaced, and
    with its complement replaced.

    Args:
        model: keras.Model, or a traceable callable images -> outputs.
        images: float [N, H, W, C] or [N, D, H, W, C].
        masks: [N, H, W] / [N, D, H, W] (a trailing channel of 1 allowed) on the images'
            grid, values in [0, 1], 1 inside the region; every mask marks at least one
            pixel.
        targets: int class indices [N] (or a scalar), or a callable `outputs -> [N]`;
            see `shared.explain.scoring.target_scores`.
        baseline: number, "blur" or a tensor of the images' shape, default 0.0.
        blur_sigma: float, default 5.0, for `baseline="blur"`.

    Returns:
        RegionOcclusion with `scores`, `region_replaced`, `complement_replaced` and the
        properties `region_drop`, `complement_drop` (all [N]).

    Raises:
        ValueError: masks of another shape than the images' grid, all-zero masks,
            values outside [0, 1], non-finite images or masks, bad targets or baseline.
    """
    images = check_images(images)
    masks = check_masks(masks, images)[..., None]
    base = baseline_images(images, baseline, blur_sigma=blur_sigma)
    region_out = (1.0 - masks) * images + masks * base
    complement_out = masks * images + (1.0 - masks) * base
    return RegionOcclusion(
        target_scores(model, images, targets),
        target_scores(model, region_out, targets),
        target_scores(model, complement_out, targets),
    )
