"""Bad inputs of the attribution metrics: one-line ValueErrors naming the argument."""

import numpy as np
import pytest

from shared import explain
from tests.shared.explain._models import region_mean_model

REGION = np.zeros((4, 4), np.float32)
REGION[:2, :2] = 1.0
IMAGES = np.ones((2, 4, 4, 1), np.float32)
MAPS = np.stack([REGION, 1.0 - REGION])
MASKS = np.stack([REGION, REGION])


@pytest.fixture(scope="module")
def model():
    return region_mean_model(REGION)


def _with_nan(x, index):
    x = np.array(x, np.float32)
    x[index] = np.nan
    return x


CASES = {
    "masks of the wrong shape": (
        lambda m: explain.region_occlusion(m, IMAGES, np.ones((2, 4, 5)), 0),
        r"^masks must have shape \(2, 4, 4\) .* images of shape \(2, 4, 4, 1\)\. "
        r"Received: masks\.shape=\(2, 4, 5\)$"),
    "masks of another batch size": (
        lambda m: explain.region_occlusion(m, IMAGES, MASKS[:1], 0),
        r"^masks must have shape \(2, 4, 4\) .*Received: masks\.shape=\(1, 4, 4\)$"),
    "all-zero masks": (
        lambda m: explain.region_occlusion(m, IMAGES, np.stack([REGION, 0 * REGION]), 0),
        r"^masks must mark at least one pixel of every sample\. Received: all-zero masks "
        r"for sample\(s\) \[1\]$"),
    "masks outside [0, 1]": (
        lambda m: explain.region_occlusion(m, IMAGES, 2 * MASKS, 0),
        r"^masks must hold values in \[0, 1\]\. Received: values from 0 to 2$"),
    "non-finite masks": (
        lambda m: explain.region_occlusion(m, IMAGES, _with_nan(MASKS, (1, 0, 0)), 0),
        r"^masks must be finite\. Received: NaN or infinite values in sample\(s\) \[1\]$"),
    "non-finite maps (deletion)": (
        lambda m: explain.deletion_curve(m, IMAGES, _with_nan(MAPS, (0, 1, 1)), 0),
        r"^maps must be finite\. Received: NaN or infinite values in sample\(s\) \[0\]$"),
    "non-finite maps (ROAD)": (
        lambda m: explain.road_curve(m, IMAGES, _with_nan(MAPS, (1, 3, 3)), 0),
        r"^maps must be finite\. Received: NaN or infinite values in sample\(s\) \[1\]$"),
    "infinite maps (insertion)": (
        lambda m: explain.insertion_curve(
            m, IMAGES, MAPS + np.array([np.inf, -np.inf])[:, None, None], 0),
        r"^maps must be finite\. Received: NaN or infinite values in sample\(s\) \[0, 1\]$"),
    "non-finite images": (
        lambda m: explain.deletion_curve(m, _with_nan(IMAGES, (1, 0, 0, 0)), MAPS, 0),
        r"^images must be finite\. Received: NaN or infinite values in sample\(s\) \[1\]$"),
    "maps of the wrong rank": (
        lambda m: explain.deletion_curve(m, IMAGES, MAPS[:, None], 0),
        r"^maps must have shape \[N, H, W\] .*Received: maps\.shape=\(2, 1, 4, 4\)$"),
    "maps of another batch size": (
        lambda m: explain.deletion_curve(m, IMAGES, MAPS[:1], 0),
        r"^maps must have shape \[N, H, W\] .*Received: maps\.shape=\(1, 4, 4\)$"),
    "images without a channel axis": (
        lambda m: explain.deletion_curve(m, IMAGES[..., 0], MAPS, 0),
        r"^images must have a static shape \[N, H, W, C\] .*Received: "
        r"images\.shape=\(2, 4, 4\)$"),
    "steps of 0": (
        lambda m: explain.deletion_curve(m, IMAGES, MAPS, 0, steps=0),
        r"^steps must be an int >= 1\. Received: steps=0$"),
    "an unknown baseline": (
        lambda m: explain.deletion_curve(m, IMAGES, MAPS, 0, baseline="grey"),
        r"^baseline must be a number, 'blur' or a tensor .*Received: baseline='grey'$"),
    "a baseline of another shape": (
        lambda m: explain.region_occlusion(m, IMAGES, MASKS, 0, baseline=np.zeros((2, 4, 4))),
        r"^baseline must have the images' shape \(2, 4, 4, 1\)\. Received: "
        r"baseline\.shape=\(2, 4, 4\)$"),
    "a non-positive blur sigma": (
        lambda m: explain.deletion_curve(m, IMAGES, MAPS, 0, baseline="blur", blur_sigma=0),
        r"^blur_sigma must be a finite number > 0\. Received: blur_sigma=0$"),
    "targets out of range": (
        lambda m: explain.deletion_curve(m, IMAGES, MAPS, [0, 2]),
        r"^targets must lie in \[0, 2\)\. Received: \[0, 2\]$"),
    "an unknown ROAD order": (
        lambda m: explain.road_curve(m, IMAGES, MAPS, 0, order="random"),
        r"^order must be one of .*Received: order='random'$"),
    "a ROAD fraction of 1": (
        lambda m: explain.road_curve(m, IMAGES, MAPS, 0, fractions=(0.5, 1.0)),
        r"^fractions must be increasing numbers in \[0, 1\)\. Received: "
        r"fractions=\(0\.5, 1\.0\)$"),
    "no seed": (
        lambda m: explain.road_curve(m, IMAGES, MAPS, 0, seed=None),
        r"^seed must be an int\. Received: seed=None$"),
    "removed pixels of the wrong shape": (
        lambda m: explain.noisy_linear_imputation(IMAGES, np.ones((2, 3, 4))),
        r"^removed must have shape \(2, 4, 4\) .*Received: removed\.shape=\(2, 3, 4\)$"),
    "a patch larger than the image": (
        lambda m: explain.occlusion_sensitivity(m, IMAGES, 0, patch_size=5),
        r"^patch_size must be an int or 2 ints, each between 1 and the image size "
        r"\(4, 4\)\. Received: patch_size=5$"),
    "an unknown randomisation layer": (
        lambda m: explain.cascading_randomisation(
            m, IMAGES, 0, lambda mm, x, t: x[..., 0], seed=0, layers=["nope"]),
        r"^No layer named 'nope' in model 'linear'\. Available layers: "),
    "randomisation without a seed": (
        lambda m: explain.cascading_randomisation(m, IMAGES, 0, lambda mm, x, t: x[..., 0],
                                                  seed=None),
        r"^seed must be an int\. Received: seed=None$"),
    "non-finite trained maps": (
        lambda m: explain.cascading_randomisation(
            m, IMAGES, 0, lambda mm, x, t: x[..., 0] * np.nan, seed=0),
        r"^maps of the trained model must be finite\. Received: NaN or infinite values in "
        r"sample\(s\) \[0, 1\]$"),
    "curves and fractions that disagree": (
        lambda m: explain.curve_area(np.zeros((2, 3)), [0.0, 1.0]),
        r"^scores must have shape \[N, S\] and fractions \[S\], with S >= 2\. Received: "),
    "spearman of different shapes": (
        lambda m: explain.spearman_correlation(np.zeros((2, 3)), np.zeros((2, 4))),
        r"^a and b must have the same shape \[N, \.\.\.\]\. Received: "),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_gives_one_line_naming_the_argument(model, case):
    call, pattern = CASES[case]
    with pytest.raises(ValueError, match=pattern) as info:
        call(model)
    assert "\n" not in str(info.value)
