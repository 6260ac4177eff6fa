"""Region occlusion on models that read only the region, or only its complement."""

import numpy as np
import pytest
import scipy.ndimage

from shared import explain
from tests.shared.explain._models import linear_model

BIAS = 0.5


def _case(spatial, rng, inside=True):
    """Images, masks and a linear model whose weights lie inside (or outside) the masks."""
    masks = np.zeros((2,) + spatial, np.float32)
    masks[:, 0:3, 0:3] = 1.0
    masks[1].flat[-1] = 1.0  # sample 1's mask also holds a pixel the model ignores
    images = rng.normal(size=(2,) + spatial + (2,)).astype(np.float32)
    # One model serves both samples: it reads what lies inside both masks (or outside both).
    read = masks[0] * masks[1] if inside else (1.0 - masks[0]) * (1.0 - masks[1])
    w = rng.normal(size=spatial + (2,)) * read[..., None]
    model = linear_model(w.reshape(-1, 1), [BIAS], spatial + (2,))
    return model, images, masks, w


@pytest.mark.parametrize("spatial", [(5, 6), (4, 5, 3)], ids=["2d", "3d"])
def test_a_model_that_reads_only_the_region(spatial):
    # Score = w . x + b with w zero outside the region. Replacing the region by 0 leaves
    # b: the drop is the whole w . x. Replacing the complement changes nothing: 0.
    rng = np.random.default_rng(0)
    model, images, masks, w = _case(spatial, rng)
    result = explain.region_occlusion(model, images, masks, 0)
    evidence = (images * w[None]).reshape(2, -1).sum(axis=1)
    np.testing.assert_allclose(result.scores.numpy(), evidence + BIAS, atol=1e-5)
    np.testing.assert_allclose(result.region_drop.numpy(), evidence, atol=1e-5)
    np.testing.assert_array_equal(result.complement_drop.numpy(), [0.0, 0.0])


def test_a_model_that_reads_only_the_complement():
    rng = np.random.default_rng(1)
    model, images, masks, w = _case((5, 6), rng, inside=False)
    result = explain.region_occlusion(model, images, masks, 0)
    evidence = (images * w[None]).reshape(2, -1).sum(axis=1)
    np.testing.assert_array_equal(result.region_drop.numpy(), [0.0, 0.0])
    np.testing.assert_allclose(result.complement_drop.numpy(), evidence, atol=1e-5)


def test_blur_baseline_drop_is_the_evidence_minus_its_blur():
    rng = np.random.default_rng(2)
    model, images, masks, w = _case((8, 9), rng)
    result = explain.region_occlusion(model, images, masks, 0, baseline="blur", blur_sigma=1.0)
    blurred = scipy.ndimage.gaussian_filter(images, sigma=(0, 1.0, 1.0, 0), mode="reflect",
                                            truncate=3.0)
    expected = ((images - blurred) * w[None]).reshape(2, -1).sum(axis=1)
    np.testing.assert_allclose(result.region_drop.numpy(), expected, atol=1e-5)


def test_a_soft_mask_blends_with_the_baseline():
    # Half a mask replaces half of the region's value: half the drop of the full mask.
    rng = np.random.default_rng(3)
    model, images, masks, _ = _case((5, 6), rng)
    full = explain.region_occlusion(model, images, masks, 0)
    half = explain.region_occlusion(model, images, 0.5 * masks, 0)
    np.testing.assert_allclose(half.region_drop.numpy(), 0.5 * full.region_drop.numpy(),
                               atol=1e-5)


def test_a_trailing_channel_axis_on_the_masks_is_accepted():
    rng = np.random.default_rng(4)
    model, images, masks, _ = _case((5, 6), rng)
    a = explain.region_occlusion(model, images, masks, 0)
    b = explain.region_occlusion(model, images, masks[..., None], 0)
    np.testing.assert_array_equal(a.region_drop.numpy(), b.region_drop.numpy())
