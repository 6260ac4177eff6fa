"""Attribution maps and what fraction of them falls inside a region.

* `attribution`: Grad-CAM / HiResCAM as batched, differentiable tensor functions for
  2D and 3D, nested and two-input models (`attribution_maps`, `forward_with_maps`);
* `overlap`: `mass_inside` / `mass_outside` of a map with respect to a mask.

Drawing the maps over images lives in `shared.report.figures`.
"""

from shared.explain.attribution import (
    METHODS,
    attribution_maps,
    feature_model,
    find_layer_path,
    forward_with_maps,
    gradcam,
    hirescam,
    normalize_maps,
    resize_maps,
)
from shared.explain.overlap import mass_inside, mass_outside

__all__ = [
    "METHODS",
    "attribution_maps",
    "feature_model",
    "find_layer_path",
    "forward_with_maps",
    "gradcam",
    "hirescam",
    "mass_inside",
    "mass_outside",
    "normalize_maps",
    "resize_maps",
]
