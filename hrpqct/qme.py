"""Quantitative motion estimates (Sode et al. 2011; thesis Eqs. 2.1-2.2).

In parallel-beam geometry the projection at 180 degrees is the mirror image
(along the detector) of the projection at 0 degrees. Subject motion between
the first and the last view breaks that symmetry. Sode et al. compare the two
with a similarity measure and normalise by the similarity between the 0-degree
view and its neighbour (0.24 degrees on the XtremeCT: 750 views over 180
degrees), which accounts for bone size, density and positioning.
"""

from __future__ import annotations

import numpy as np


def ssd(f, g) -> float:
    """Sum of squared intensity differences (thesis Eq. 2.1, left)."""
    f = np.asarray(f, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    return float(np.sum((f - g) ** 2))


def ncc(f, g) -> float:
    """Normalised cross-correlation without mean removal (thesis Eq. 2.1, right)."""
    f = np.asarray(f, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    den = np.sqrt(np.sum(f * f) * np.sum(g * g))
    if den == 0.0:
        raise ValueError("NCC of an all-zero projection is undefined")
    return float(np.sum(f * g) / den)


def mirror(projection) -> np.ndarray:
    """Mirrors a projection image [..., detector] along the detector axis.

    Detector bin ``i`` and ``D - 1 - i`` sit symmetrically about the rotation
    axis (see `hrpqct.tomography`), so this maps the 180-degree view onto the
    0-degree view of a static object.
    """
    return np.asarray(projection)[..., ::-1]


def quantitative_motion_estimates(p0, p_next, p180, *, epsilon=1e-12) -> dict:
    """QME_SSD and QME_NCC of one scan (thesis Eq. 2.2).

    Args:
        p0: array [..., D]. Projection at 0 degrees (rows = slices, any shape
            whose last axis is the detector).
        p_next: array like `p0`. The neighbouring view (0.24 degrees on the
            XtremeCT; one angular step of the acquisition here).
        p180: array like `p0`. Projection at 180 degrees (not yet mirrored).
        epsilon: float, default 1e-12. Guards the SSD ratio of identical views.

    Returns:
        dict with ``qme_ssd = SSD(0, mirrored 180) / SSD(0, next)``,
        ``qme_ncc = 100 * sqrt(NCC(0, mirrored 180) / NCC(0, next))`` and the
        four raw similarities. Without motion ``qme_ssd`` is close to 0 only
        when the neighbouring views differ; it grows with motion, while
        ``qme_ncc`` falls below its no-motion value.
    """
    p0 = np.asarray(p0)
    p_next = np.asarray(p_next)
    p180 = np.asarray(p180)
    if not (p0.shape == p_next.shape == p180.shape):
        raise ValueError(f"projections must share a shape. Received: {p0.shape}, {p_next.shape}, {p180.shape}")
    m180 = mirror(p180)
    ssd_180, ssd_next = ssd(p0, m180), ssd(p0, p_next)
    ncc_180, ncc_next = ncc(p0, m180), ncc(p0, p_next)
    return {
        "qme_ssd": ssd_180 / max(ssd_next, epsilon),
        "qme_ncc": 100.0 * float(np.sqrt(max(ncc_180, 0.0) / ncc_next)),
        "ssd_180": ssd_180, "ssd_next": ssd_next, "ncc_180": ncc_180, "ncc_next": ncc_next,
    }


def qme_from_sinogram(sinogram) -> dict:
    """QMEs from a full acquisition [views, slices, D] spanning 0..180 degrees inclusive."""
    sinogram = np.asarray(sinogram)
    if sinogram.ndim != 3 or sinogram.shape[0] < 3:
        raise ValueError(f"sinogram must be [views >= 3, slices, bins]. Received: shape={sinogram.shape}")
    return quantitative_motion_estimates(sinogram[0], sinogram[1], sinogram[-1])
