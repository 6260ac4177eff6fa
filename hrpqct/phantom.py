"""Digital phantoms of distal radius and tibia cross-sections for the motion simulator.

Each phantom is a stack of axial slices of linear attenuation coefficients
(1/cm, roughly at HR-pQCT's effective energy) on a square grid covering the
scanner's field of view: air, soft tissue with a subcutaneous fat layer, the
main bone (radius or tibia) with a cortical shell around a trabecular network in
marrow, and the neighbouring bone (ulna or fibula). Shapes are drawn per scan
(size, orientation, outline harmonics, cortical thickness, bone volume fraction),
so no two scans look alike.

The trabecular network is the zero-level band of a band-pass filtered Gaussian
random field (``|field| < t``), which gives connected rod- and plate-like
structures; ``t`` is set per slice so that the band covers the drawn bone volume
fraction. Its feature size is tied to the grid (a few pixels), not to real
micrometres: at the small grids used for quick runs real trabeculae (about
0.1 mm thick, 0.8 mm apart) could not be resolved anyway.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from shared.training.seeding import numpy_rng

SITES = ("radius", "tibia")
# Linear attenuation coefficients in 1/cm (order of magnitude at ~60 keV).
MU_SOFT_TISSUE = 0.20
MU_FAT = 0.17
MU_MARROW = 0.21
MU_TRABECULAR = 0.60
MU_CORTICAL = 0.90


@dataclasses.dataclass
class BoneShape:
    """Outline of one bone in normalised field-of-view units ([-1, 1] across the FOV).

    Attributes:
        center: (x, y) centre.
        radius: mean outer radius.
        harmonics: list of (order, amplitude, phase) outline harmonics.
        cortical_thickness: cortical shell thickness, same units.
        bv_tv: trabecular bone volume fraction inside the marrow space.
    """

    center: tuple
    radius: float
    harmonics: list
    cortical_thickness: float
    bv_tv: float

    def outer_radius(self, phi: np.ndarray) -> np.ndarray:
        r = np.ones_like(phi)
        for order, amp, phase in self.harmonics:
            r = r + amp * np.cos(order * (phi - phase))
        return self.radius * r


def _site_shapes(site: str, rng: np.random.Generator):
    """Draws the main bone, the neighbouring bone and the limb outline for a site."""
    scale = rng.normal(1.0, 0.06)
    turn = rng.uniform(-0.3, 0.3)
    shift = rng.normal(0.0, 0.03, size=2)
    if site == "radius":
        limb = dict(axes=(0.80 * scale, 0.56 * scale), angle=turn)
        main = BoneShape(center=(-0.22 * scale, 0.0), radius=0.30 * scale,
                         harmonics=[(2, rng.uniform(0.15, 0.25), turn),
                                    (3, rng.uniform(0.0, 0.06), rng.uniform(0, 6.28))],
                         cortical_thickness=rng.uniform(0.025, 0.04) * scale, bv_tv=rng.uniform(0.15, 0.25))
        side = BoneShape(center=(0.42 * scale, 0.04), radius=0.11 * scale,
                         harmonics=[(2, rng.uniform(0.05, 0.12), turn)],
                         cortical_thickness=0.035 * scale, bv_tv=rng.uniform(0.15, 0.25))
    elif site == "tibia":
        limb = dict(axes=(0.88 * scale, 0.74 * scale), angle=turn)
        main = BoneShape(center=(-0.12 * scale, 0.05), radius=0.38 * scale,
                         harmonics=[(3, rng.uniform(0.08, 0.15), turn + rng.uniform(-0.2, 0.2)),
                                    (2, rng.uniform(0.0, 0.08), rng.uniform(0, 6.28))],
                         cortical_thickness=rng.uniform(0.04, 0.065) * scale, bv_tv=rng.uniform(0.12, 0.2))
        side = BoneShape(center=(0.55 * scale, -0.18 * scale), radius=0.10 * scale,
                         harmonics=[(2, rng.uniform(0.05, 0.15), turn)],
                         cortical_thickness=0.035 * scale, bv_tv=rng.uniform(0.12, 0.2))
    else:
        raise ValueError(f"site must be one of {SITES}. Received: site={site!r}")
    c, s = np.cos(turn), np.sin(turn)
    for bone in (main, side):
        x, y = bone.center
        bone.center = (c * x - s * y + shift[0], s * x + c * y + shift[1])
    limb["center"] = tuple(shift)
    return limb, main, side


def _trabecular_fields(n_slices, size, feature_px, rng):
    """|band-pass Gaussian field| per slice: a difference of Gaussians (sigma, 2 sigma) of white noise.

    Filtered in the Fourier domain (the field is periodic, which a random
    texture does not mind); one field per slice serves both bones. Slice by slice,
    in float32: at the paper preset's 1024^2 x 168 phantom grid the whole stack in
    float64 would hold 1.4 GB per intermediate. The noise is drawn slice after
    slice, the same numbers as one draw of the whole stack.
    """
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f2 = fy * fy + fx * fx
    sig = float(feature_px)
    transfer = np.exp(-2.0 * np.pi ** 2 * sig ** 2 * f2) - np.exp(-2.0 * np.pi ** 2 * (2.0 * sig) ** 2 * f2)
    out = np.empty((n_slices, size, size), dtype=np.float32)
    for k in range(n_slices):
        noise = rng.standard_normal((size, size))
        out[k] = np.abs(np.fft.irfft2(np.fft.rfft2(noise) * transfer, s=(size, size)))
    return out


def bone_phantom(site: str, size: int, *, n_slices: int, seed, trabecular_px=None) -> np.ndarray:
    """Draws one scan's phantom: a stack of attenuation slices.

    Args:
        site: str. ``"radius"`` or ``"tibia"``.
        size: int. Grid size (pixels across the field of view).
        n_slices: int. Number of axial slices; the outline grows slowly along
            the stack (the distal metaphysis widens towards the joint) and each
            slice has its own trabecular pattern.
        seed: int or np.random.Generator.
        trabecular_px: float, optional. Trabecular feature size in pixels
            (default ``max(1.0, size / 64)``).

    Returns:
        float32 array [n_slices, size, size] of attenuation coefficients (1/cm).
    """
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels. Received: size={size}")
    if n_slices < 1:
        raise ValueError(f"n_slices must be >= 1. Received: n_slices={n_slices}")
    rng = numpy_rng(seed)
    limb, main, side = _site_shapes(site, rng)
    feature = float(max(1.0, size / 64.0)) if trabecular_px is None else float(trabecular_px)
    coords = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    xx, yy = np.meshgrid(coords, coords)  # image[y, x]
    out = np.zeros((n_slices, size, size), dtype=np.float32)
    # Limb: an ellipse with a subcutaneous fat layer.
    lc, ls = np.cos(limb["angle"]), np.sin(limb["angle"])
    lx, ly = xx - limb["center"][0], yy - limb["center"][1]
    u, v = lc * lx + ls * ly, -ls * lx + lc * ly
    rho = np.sqrt((u / limb["axes"][0]) ** 2 + (v / limb["axes"][1]) ** 2)
    fat_depth = rng.uniform(0.04, 0.09)
    fields = _trabecular_fields(n_slices, size, feature, rng)
    for k in range(n_slices):
        grow = 1.0 + 0.06 * (k / max(n_slices - 1, 1) - 0.5)
        img = np.where(rho <= 1.0, MU_SOFT_TISSUE, 0.0)
        img = np.where((rho <= 1.0) & (rho > 1.0 - fat_depth), MU_FAT, img)
        for bone in (main, side):
            bx, by = xx - bone.center[0], yy - bone.center[1]
            r = np.hypot(bx, by)
            outer = bone.outer_radius(np.arctan2(by, bx)) * grow
            inside = r <= outer
            marrow = r <= outer - bone.cortical_thickness
            band, bv_tv = fields[k], bone.bv_tv
            if marrow.any():
                level = np.quantile(band[marrow], bv_tv)
                trab = marrow & (band <= level)
            else:
                trab = marrow
            img = np.where(inside, MU_CORTICAL, img)
            img = np.where(marrow, MU_MARROW, img)
            img = np.where(trab, MU_TRABECULAR, img)
        out[k] = img
    return out


def downsample(volume: np.ndarray, factor: int) -> np.ndarray:
    """Block-averages the last two axes by an integer factor (the oversampled phantom -> grid)."""
    if factor == 1:
        return volume
    s, h, w = volume.shape
    if h % factor or w % factor:
        raise ValueError(f"grid {h}x{w} is not divisible by factor={factor}")
    return volume.reshape(s, h // factor, factor, w // factor, factor).mean(axis=(2, 4))
