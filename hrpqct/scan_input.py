"""From any AIM stack to the graders' input: one declared way for simulated and real scans.

Real XtremeCT evaluation AIMs are cropped to the limb, rarely square and at 60.7 um (II)
or 82 um (I); the simulated ones are square at the preset's grid. Every scan goes through
`model_input`, in this order:

1. **Find the limb**: the graded slices' mean, smoothed by a Gaussian of `LIMB_SMOOTH_MM`,
   above `LIMB_LEVEL` (1/cm; soft tissue is about 0.2, fat 0.17, air 0); the largest
   connected region is the limb, its centroid the centre. No such pixel: the scan is
   refused (`LimbNotFound`).
2. **Field**: a square of `field_of_view_mm` centred on the limb (its corner snapped to a
   whole source pixel, so a scan already at the output pixel size is copied, not
   interpolated). Pixels outside the AIM are air (0) and marked as not measured (the
   ``measured`` mask), so the air-streak statistic reads only air that exists.
3. **Prefilter and resample**: a Gaussian of `prefilter_mm` (Walle: 0.8 voxels of
   60.7 um = 0.0486 mm) in the source's pixels, combined with the anti-aliasing Gaussian
   of a downsampling ((factor - 1) / 2 output-to-source pixels, as scikit-image's
   ``resize``), then linear interpolation onto `image_size` x `image_size` pixels of
   ``field_of_view_mm / image_size``.

An AIM smaller than `MIN_SLICE_PIXELS` on a side is refused before any of this.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

LIMB_LEVEL = 0.1
LIMB_SMOOTH_MM = 1.0
MIN_SLICE_PIXELS = 16


class LimbNotFound(ValueError):
    """No pixel of the graded slices reaches the soft-tissue level."""


def limb_centre(slices, pixel_mm) -> tuple:
    """(row, column) centroid, in source pixels, of the limb in slices [S, y, x] (1/cm).

    Args:
        slices: float array [S, y, x] of attenuation.
        pixel_mm: (y, x) floats. Pixel size in mm.

    Raises:
        LimbNotFound: no smoothed pixel reaches `LIMB_LEVEL`.
    """
    mean = np.asarray(slices, dtype=np.float32).mean(axis=0)
    sigma = (LIMB_SMOOTH_MM / float(pixel_mm[0]), LIMB_SMOOTH_MM / float(pixel_mm[1]))
    smooth = ndimage.gaussian_filter(mean, sigma, mode="nearest")
    labels, n = ndimage.label(smooth > LIMB_LEVEL)
    if n == 0:
        raise LimbNotFound(f"no limb: no pixel of the graded slices' mean reaches {LIMB_LEVEL} / cm "
                           f"(soft tissue is about 0.2; largest value {float(smooth.max()):.3g})")
    sizes = np.bincount(labels.ravel())[1:]
    rows, cols = np.nonzero(labels == 1 + int(np.argmax(sizes)))
    return float(rows.mean()), float(cols.mean())


def model_input(slices, pixel_mm, *, field_of_view_mm, image_size=None, prefilter_mm=0.0) -> tuple:
    """The graders' input from slices of any in-plane size (module docstring).

    Args:
        slices: float array [S, y, x] of attenuation (1/cm).
        pixel_mm: float or (y, x) floats. The AIM's element size in mm.
        field_of_view_mm: float. Side of the square field centred on the limb.
        image_size: int, optional. Output pixels per side; default: the field at the
            source's pixel size (no resampling).
        prefilter_mm: float, default 0. Gaussian prefilter sigma in mm (0: none).

    Returns:
        (float32 array [S, n, n], bool array [n, n] ``measured``: the output pixel lies
        inside the AIM).

    Raises:
        ValueError: fewer than `MIN_SLICE_PIXELS` pixels on a side.
        LimbNotFound: see `limb_centre`.

    Example:
        A 128 x 128 scan at 0.625 mm, field 80 mm, image_size 128, the limb at the
        centre: returned unchanged, every pixel measured.
    """
    slices = np.asarray(slices, dtype=np.float32)
    if slices.ndim != 3:
        raise ValueError(f"slices must be [S, y, x]. Received: shape={slices.shape}")
    if min(slices.shape[1:]) < MIN_SLICE_PIXELS:
        raise ValueError(f"expected slices of at least {MIN_SLICE_PIXELS} x {MIN_SLICE_PIXELS} pixels. "
                         f"Received: {slices.shape[1]} x {slices.shape[2]}")
    src = np.broadcast_to(np.asarray(pixel_mm, dtype=float), (2,))
    if not (np.all(np.isfinite(src)) and np.all(src > 0)):
        raise ValueError(f"element size must be finite and positive (mm). Received: {tuple(src)}")
    if image_size is None:
        n = int(round(field_of_view_mm / src[1]))
        out_mm = np.full(2, field_of_view_mm / n)
    else:
        n = int(image_size)
        out_mm = np.full(2, field_of_view_mm / n)
    step = out_mm / src  # output pixel in source pixels, per axis
    centre = limb_centre(slices, src)
    # Corner of the field in source pixels, snapped to a whole pixel.
    origin = [round(c - (n - 1) / 2.0 * s) for c, s in zip(centre, step)]
    coords = [o + np.arange(n) * s for o, s in zip(origin, step)]
    measured = ((coords[0] >= -1e-6) & (coords[0] <= slices.shape[1] - 1 + 1e-6))[:, None] & \
               ((coords[1] >= -1e-6) & (coords[1] <= slices.shape[2] - 1 + 1e-6))[None, :]
    sigma = [np.hypot(prefilter_mm / p, max(0.0, (s - 1.0) / 2.0)) for p, s in zip(src, step)]
    grid = np.meshgrid(coords[0], coords[1], indexing="ij")
    out = np.empty((len(slices), n, n), dtype=np.float32)
    for k, sl in enumerate(slices):
        if max(sigma) > 0:
            sl = ndimage.gaussian_filter(sl, sigma, mode="nearest")
        out[k] = ndimage.map_coordinates(sl, grid, order=1, mode="constant", cval=0.0)
    out[:, ~measured] = 0.0
    return out, measured
