"""Attribution maps, where they fall, and whether they mean what they show.

* `attribution`: Grad-CAM / HiResCAM as batched, differentiable tensor functions for
  2D and 3D, nested and two-input models (`attribution_maps`, `forward_with_maps`);
* `overlap`: `mass_inside` / `mass_outside` of a map with respect to a mask;
* `token_maps`: Grad-CAM / HiResCAM of a vision transformer's patch tokens, on the
  patch grid (`token_maps`, `tokens_to_grid`);
* `reference_maps`: model-agnostic maps, `occlusion_sensitivity` and
  `integrated_gradients`;
* faithfulness metrics, batched over images [N, H, W, C] and volumes [N, D, H, W, C]:
  `deletion` (`deletion_curve`, `insertion_curve`, `curve_area`), `road`
  (`road_curve`, `noisy_linear_imputation`), `region_occlusion`;
* `randomisation`: the cascading model-parameter randomisation sanity check
  (`cascading_randomisation`, `spearman_correlation`);
* `baselines`, `scoring`, `validation`: what a removed pixel becomes, the target score
  of a batch, and the argument checks the metrics share.

Drawing the maps over images lives in `shared.report.figures`. docs/explain.md
describes each metric and what its tests pin.
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
from shared.explain.baselines import baseline_images, gaussian_blur
from shared.explain.deletion import (
    PerturbationCurve,
    curve_area,
    deletion_curve,
    insertion_curve,
    pixel_ranks,
)
from shared.explain.overlap import mass_inside, mass_outside
from shared.explain.randomisation import (
    RandomisationResult,
    cascading_randomisation,
    spearman_correlation,
    weighted_layers,
)
from shared.explain.reference_maps import integrated_gradients, occlusion_sensitivity
from shared.explain.region_occlusion import RegionOcclusion, region_occlusion
from shared.explain.road import neighbour_weights, noisy_linear_imputation, road_curve
from shared.explain.scoring import target_scores
from shared.explain.token_maps import token_maps, tokens_to_grid

__all__ = [
    "METHODS",
    "PerturbationCurve",
    "RandomisationResult",
    "RegionOcclusion",
    "attribution_maps",
    "baseline_images",
    "cascading_randomisation",
    "curve_area",
    "deletion_curve",
    "feature_model",
    "find_layer_path",
    "forward_with_maps",
    "gaussian_blur",
    "gradcam",
    "hirescam",
    "insertion_curve",
    "integrated_gradients",
    "mass_inside",
    "mass_outside",
    "neighbour_weights",
    "noisy_linear_imputation",
    "normalize_maps",
    "occlusion_sensitivity",
    "pixel_ranks",
    "region_occlusion",
    "resize_maps",
    "road_curve",
    "spearman_correlation",
    "target_scores",
    "token_maps",
    "tokens_to_grid",
    "weighted_layers",
]
