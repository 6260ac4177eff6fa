"""Synthetic 3D LGE-MRI phantoms with known quality, written in the challenge layout.

Each scan is a thorax cross-section stack (X, Y, Z; Z = axial slices) holding the
structures the paper's quality attributes look at:

- left atrium (LA): blood pool (the `laendo` mask) inside a thin wall with patches
  of fibrosis; present in the upper part of the stack only, so the LA detector has
  slices to reject;
- left ventricle: blood pool inside a myocardial shell;
- aorta: a vertical tube with a wall; mitral and aortic valves: thin discs.

Four per-scan parameters set the four attributes (`ScanParameters`):

- myocardium nulling: `myo_ratio`, myocardium / blood-pool intensity (1.1: brighter
  than blood, score 1; 0.05: nulled like background, score 5);
- sharpness: `blur_frac` (Gaussian blur, up to `BLUR_MAX` voxels at 64 px) and
  `ghost_frac` (motion ghosts along the phase-encode axis, up to `GHOST_MAX` of the
  signal);
- aorta / valve enhancement: `wall_enhancement`, wall intensity / blood pool;
- fibrosis quality: `fibrosis_gain`, relative contrast of the fibrotic LA wall
  against the blood pool, seen through the blur.

`attribute_quality` maps parameters to a quality in [0, 1] per attribute (monotone in
each parameter) and `observer_scores` turns that into 1-5 scores with Gaussian rater
noise. Per-scan qualities are drawn with a declared pairwise correlation of their
latent values (`sample_qualities`; the paper states that its attributes correlate
highly with each other and with the fibrosis score), and shifted so that a declared
share of the fibrosis-quality scores is diagnostic (`shift_for_prevalence`).
`oracle_fibrosis_contrast` measures, with the label map, the fibrosis contrast a scan
actually shows: the oracle feature of the signal gate.
"""

import csv
import dataclasses
from pathlib import Path

import numpy as np
from scipy import ndimage, special

from lge_qa import io
from shared.training.seeding import numpy_rng

BLUR_MAX = 2.5  # voxels, for a 64-voxel field of view; scaled with the in-plane size
GHOST_MAX = 0.45
BLOOD = 0.7
TISSUE = 0.28
MYO_RANGE = (1.1, 0.05)  # myo_ratio at quality 0 and 1
WALL_RANGE = (0.25, 1.35)  # wall_enhancement at quality 0 and 1
FIB_RANGE = (-0.65, 0.6)  # fibrosis_gain at quality 0 and 1
SEG_SPLIT = "segmentation"
QA_SPLIT = "quality"
SCORES_FILE = "quality_scores.csv"
PARAMETERS_FILE = "phantom_parameters.csv"


@dataclasses.dataclass
class ScanParameters:
    """Per-scan acquisition parameters that set the four quality attributes."""

    myo_ratio: float
    blur_frac: float
    ghost_frac: float
    wall_enhancement: float
    fibrosis_gain: float


def _lerp(range_, q):
    return range_[0] + (range_[1] - range_[0]) * np.asarray(q, dtype=float)


def _unlerp(range_, v):
    return np.clip((np.asarray(v, dtype=float) - range_[0]) / (range_[1] - range_[0]), 0.0, 1.0)


def parameters_from_quality(q, rng) -> ScanParameters:
    """Inverse of `attribute_quality`: acquisition parameters for qualities q [4] in [0, 1]."""
    q = np.clip(np.asarray(q, dtype=float), 0.0, 1.0)
    q_s = q[1]
    # Split the sharpness loss between blur and ghosting, keeping their mean at 1 - q_s.
    d = rng.uniform(-0.5, 0.5)
    loss = 1.0 - q_s
    blur = np.clip(loss * (1 + d), 0.0, 1.0)
    ghost = np.clip(2 * loss - blur, 0.0, 1.0)
    # Fibrosis quality is what the observer sees: the contrast, dimmed by blur.
    visibility = q[3] / (0.7 + 0.3 * q_s)
    return ScanParameters(
        myo_ratio=float(_lerp(MYO_RANGE, q[0])),
        blur_frac=float(blur),
        ghost_frac=float(ghost),
        wall_enhancement=float(_lerp(WALL_RANGE, q[2])),
        fibrosis_gain=float(_lerp(FIB_RANGE, np.clip(visibility, 0, 1))),
    )


def attribute_quality(params: ScanParameters) -> np.ndarray:
    """Quality in [0, 1] of each attribute (SCORE_COLUMNS order) from the parameters.

    Non-increasing in `myo_ratio`, `blur_frac` and `ghost_frac`; non-decreasing in
    `wall_enhancement` and `fibrosis_gain`.
    """
    q_mn = _unlerp(MYO_RANGE, params.myo_ratio)
    q_s = 1.0 - 0.5 * (np.clip(params.blur_frac, 0, 1) + np.clip(params.ghost_frac, 0, 1))
    q_eat = _unlerp(WALL_RANGE, params.wall_enhancement)
    q_fib = _unlerp(FIB_RANGE, params.fibrosis_gain) * (0.7 + 0.3 * q_s)
    return np.array([q_mn, q_s, q_eat, q_fib], dtype=float)


def observer_scores(params: ScanParameters, rng, *, rater_sd=0.5) -> np.ndarray:
    """1-5 observer scores: round(1 + 4 * quality + N(0, rater_sd)), clipped.

    Args:
        params: ScanParameters.
        rng: numpy Generator (or int seed).
        rater_sd: float, default 0.5. Rater noise in score units; 0 gives the
            noiseless, monotone score.

    Returns:
        int array [4] in SCORE_COLUMNS order.
    """
    rng = numpy_rng(rng)
    q = attribute_quality(params)
    raw = 1.0 + 4.0 * q + (rng.normal(0.0, rater_sd, size=4) if rater_sd > 0 else 0.0)
    return np.clip(np.rint(raw), 1, 5).astype(np.int64)


def sample_qualities(n, rng, *, correlation=0.9, spread=1.0, shift=0.0, target_correlation=None) -> np.ndarray:
    """Correlated per-scan qualities [n, 4] in (0, 1) (SCORE_COLUMNS order, the target last).

    The three auxiliary attributes share a factor z: a_k = sqrt(c) z + sqrt(1 - c) e_k,
    so their latent values correlate with c = `correlation`. The target (fibrosis
    quality) loads on the same factor with b = t / sqrt(c): f = b z + sqrt(1 - b^2) e_4,
    so it correlates with each auxiliary at t = `target_correlation` (t = c: the four
    attributes exchangeable, as before). q = Phi(spread * latent + shift); spread < 1
    concentrates the scores in 2-4.

    Args:
        n: int. Scans.
        rng: numpy Generator or int seed.
        correlation: float in [0, 1], default 0.9. Pairwise latent correlation of the
            three auxiliary attributes.
        spread: float, default 1.0.
        shift: float, default 0.0. Moves every quality up (> 0) or down.
        target_correlation: float, optional. Latent correlation of the target with each
            auxiliary, at most sqrt(correlation) (default: `correlation`).

    Example: correlation 0.8, target_correlation 0.6: auxiliaries that agree with
    each other (score correlation about 0.64) and correlate with the target without
    determining it (about 0.47).
    """
    if not 0.0 <= correlation <= 1.0:
        raise ValueError(f"correlation must lie in [0, 1]. Received: correlation={correlation}")
    t = correlation if target_correlation is None else float(target_correlation)
    if not 0.0 <= t <= np.sqrt(correlation) + 1e-12:
        raise ValueError(f"target_correlation must lie in [0, sqrt(correlation)] = "
                         f"[0, {np.sqrt(correlation):.3f}]. Received: target_correlation={target_correlation}")
    rng = numpy_rng(rng)
    z = rng.normal(size=(n, 1))
    e = rng.normal(size=(n, 4))
    u = np.sqrt(correlation) * z + np.sqrt(1.0 - correlation) * e
    if target_correlation is not None:
        b = t / np.sqrt(correlation) if correlation > 0 else 0.0
        u[:, 3] = b * z[:, 0] + np.sqrt(max(0.0, 1.0 - b * b)) * e[:, 3]
    return special.ndtr(spread * u + shift)


def simulated_scores(n, seed, *, correlation, spread, shift, rater_sd, target_correlation=None) -> np.ndarray:
    """Observer scores [n, 4] of `n` phantom scans, drawn without rendering any image."""
    rng = np.random.default_rng(seed)
    q = sample_qualities(n, rng, correlation=correlation, spread=spread, shift=shift,
                         target_correlation=target_correlation)
    return np.stack([observer_scores(parameters_from_quality(qi, rng), rng, rater_sd=rater_sd) for qi in q])


def shift_for_prevalence(target, *, correlation, spread, rater_sd, score_threshold=3, n=2000, seed=12345,
                         iterations=16, target_correlation=None) -> float:
    """The quality shift at which a share `target` of fibrosis-quality scores is diagnostic.

    Bisection on the share of `simulated_scores(...)[:, 3] >= score_threshold` (the same
    draws at every step, so the share is monotone in the shift). Uses no image and no
    model: a data setting fixed before anything is trained.

    Args:
        target: float in (0, 1). Declared prevalence of "diagnostic".
        correlation, spread, rater_sd, target_correlation: as in `sample_qualities` /
            `observer_scores`.
        score_threshold: int, default 3.
        n: int, default 2000. Simulated scans.
        seed: int, default 12345. Their seed (not the cohort's).
        iterations: int, default 16 (the shift to within 1e-4).

    Returns:
        float shift.
    """
    if not 0.0 < target < 1.0:
        raise ValueError(f"target prevalence must lie in (0, 1). Received: target={target}")

    def share(shift):
        scores = simulated_scores(n, seed, correlation=correlation, spread=spread, shift=shift,
                                  rater_sd=rater_sd, target_correlation=target_correlation)
        return float(np.mean(scores[:, 3] >= score_threshold))

    low, high = -3.0, 3.0
    for _ in range(int(iterations)):
        mid = 0.5 * (low + high)
        if share(mid) < target:
            low = mid
        else:
            high = mid
    return round(0.5 * (low + high), 4)


def oracle_fibrosis_contrast(image, labels) -> float:
    """The fibrosis contrast a scan shows: mean intensity of the fibrotic LA wall over
    the LA blood pool's, read from the rendered image with the label map (an oracle:
    no model sees the labels)."""
    image = np.asarray(image, dtype=float)
    fib, blood = labels == 6, labels == 4
    if not fib.any() or not blood.any():
        return float("nan")
    return float(image[fib].mean() / max(image[blood].mean(), 1e-6))


def _grid(shape):
    nx, ny, nz = shape
    x = np.linspace(-1, 1, nx, dtype=np.float32)[:, None, None]
    y = np.linspace(-1, 1, ny, dtype=np.float32)[None, :, None]
    z = np.linspace(-1, 1, nz, dtype=np.float32)[None, None, :]
    return x, y, z


def _ellipsoid_radius(x, y, z, centre, radii):
    return np.sqrt(((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2
                   + ((z - centre[2]) / radii[2]) ** 2)


def render_scan(params: ScanParameters, shape, rng, *, noise_sd=0.03, fibrosis_extent=28.0):
    """Renders one phantom volume.

    Args:
        params: ScanParameters.
        shape: (X, Y, Z) voxels.
        rng: numpy Generator (or int seed): geometry jitter, fibrosis patches, noise.
        noise_sd: float, default 0.03. Magnitude (Rician) noise level.
        fibrosis_extent: float, default 28. Half-angle (degrees) of each of the 3-6
            fibrotic patches of the LA wall: the size of the fibrosis signal.

    Returns:
        dict with `image` uint8 (X, Y, Z), `la_mask` bool (LA blood pool),
        `labels` uint8 (0 background, 1 tissue, 2 LV blood, 3 LV myocardium,
        4 LA blood, 5 LA wall, 6 fibrosis, 7 aorta lumen, 8 aorta wall / valves).
    """
    rng = numpy_rng(rng)
    shape = tuple(int(s) for s in shape)
    x, y, z = _grid(shape)
    jit = lambda s: rng.uniform(-s, s)  # noqa: E731
    scale = lambda: rng.uniform(0.9, 1.1)  # noqa: E731

    labels = np.zeros(shape, np.uint8)
    body = ((x / 0.92) ** 2 + (y / 0.78) ** 2) <= 1.0
    labels[np.broadcast_to(body, shape)] = 1

    # Left ventricle (lower part of the stack), myocardial shell.
    lv_c = (0.22 + jit(0.05), 0.12 + jit(0.05), -0.35 + jit(0.05))
    lv_r = (0.26 * scale(), 0.24 * scale(), 0.5 * scale())
    rho_lv = _ellipsoid_radius(x, y, z, lv_c, lv_r)
    labels[rho_lv < 1.45] = 3
    labels[rho_lv < 1.0] = 2

    # Aorta: vertical tube from the aortic root up, wall around the lumen.
    ao_c = (-0.05 + jit(0.04), -0.42 + jit(0.04))
    ao_r = 0.11 * scale()
    ao_bottom = -0.25 + jit(0.05)
    rho_ao = np.sqrt((x - ao_c[0]) ** 2 + (y - ao_c[1]) ** 2) / ao_r
    above = z >= ao_bottom
    labels[(rho_ao < 1.45) & above] = 8
    labels[(rho_ao < 1.0) & above] = 7
    # Aortic valve: a thin disc closing the root.
    valve_ao = (rho_ao < 1.45) & (np.abs(z - ao_bottom) < 1.5 / shape[2] + 0.02)
    labels[valve_ao] = 8

    # Left atrium (upper part), wall with fibrotic patches.
    la_c = (-0.22 + jit(0.05), 0.02 + jit(0.05), 0.35 + jit(0.05))
    la_r = (0.3 * scale(), 0.26 * scale(), 0.38 * scale())
    rho_la = _ellipsoid_radius(x, y, z, la_c, la_r)
    wall_thickness = max(0.18, 2.2 / (min(shape[:2]) * 0.5 * min(la_r[:2])))
    wall = (rho_la >= 1.0) & (rho_la < 1.0 + wall_thickness)
    labels[wall] = 5
    n_patches = rng.integers(3, 7)
    dirs = rng.normal(size=(n_patches, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    wx, wy, wz = np.nonzero(wall)
    vec = np.stack([(wx / (shape[0] - 1) * 2 - 1 - la_c[0]) / la_r[0],
                    (wy / (shape[1] - 1) * 2 - 1 - la_c[1]) / la_r[1],
                    (wz / max(shape[2] - 1, 1) * 2 - 1 - la_c[2]) / la_r[2]], axis=1)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True) + 1e-9
    fib = (vec @ dirs.T).max(axis=1) > np.cos(np.deg2rad(fibrosis_extent))
    labels[wx[fib], wy[fib], wz[fib]] = 6
    la_blood = rho_la < 1.0
    labels[la_blood] = 4

    # Mitral valve: a thin disc midway between the LA and LV centres.
    mv_c = tuple((a + b) / 2 for a, b in zip(la_c, lv_c))
    rho_mv = _ellipsoid_radius(x, y, z, mv_c, (0.16, 0.16, max(1.2 / shape[2], 0.04)))
    labels[(rho_mv < 1.0) & ~la_blood] = 8

    blood = BLOOD * rng.uniform(0.92, 1.08)
    lut = np.array([
        0.02,                                   # background (air)
        TISSUE,                                 # body tissue
        blood,                                  # LV blood pool
        blood * params.myo_ratio,               # LV myocardium: nulling
        blood,                                  # LA blood pool
        0.18,                                   # LA wall, healthy
        blood * (1.0 + params.fibrosis_gain),   # LA wall, fibrosis
        blood,                                  # aorta lumen
        blood * params.wall_enhancement,        # aorta wall and valves
    ], dtype=np.float32)
    image = lut[labels]
    image *= 1.0 + 0.04 * rng.standard_normal(shape).astype(np.float32)  # tissue texture

    # Sharpness: in-plane blur, then motion ghosts along the phase-encode (Y) axis.
    sigma = params.blur_frac * BLUR_MAX * shape[0] / 64.0
    if sigma > 0.05:
        image = ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0.0), mode="nearest")
    if params.ghost_frac > 0:
        amp = params.ghost_frac * GHOST_MAX
        k = max(2, shape[1] // 6)
        image = (1 - amp) * image + amp * 0.5 * (np.roll(image, k, axis=1) + np.roll(image, -k, axis=1))
    # Rician magnitude noise.
    re = image + noise_sd * rng.standard_normal(shape).astype(np.float32)
    im = noise_sd * rng.standard_normal(shape).astype(np.float32)
    image = np.sqrt(re ** 2 + im ** 2)
    image = np.clip(image * 200.0, 0, 255).astype(np.uint8)
    return {"image": image, "la_mask": la_blood, "labels": labels}


def generate_dataset(root, *, n_segmentation, n_scored, shape, seed, rater_sd=0.5,
                     correlation=0.9, spread=1.0, shift=0.0, fibrosis_extent=28.0, target_correlation=None,
                     progress=None) -> Path:
    """Writes both cohorts, the scores table and the phantom parameters under `root`.

    Layout: `<root>/segmentation/SEGnnnn/` (masks-only cohort: the 900 scans of the
    LA detector), `<root>/quality/QAnnnn/` (scored cohort: the 196 scans, with
    masks), `<root>/quality_scores.csv` and `<root>/phantom_parameters.csv`.

    Args:
        root: str or Path. Output folder.
        n_segmentation: int. Scans with masks only.
        n_scored: int. Scans with masks and scores.
        shape: (X, Y, Z) voxels per volume.
        seed: int. Everything drawn derives from it.
        rater_sd: float, default 0.5. Observer noise (score units).
        correlation, spread, shift, target_correlation: floats. See `sample_qualities`.
        fibrosis_extent: float, default 28. See `render_scan`.
        progress: callable wrapping an iterable (e.g. shared.progress.progress), optional.

    Returns:
        `root` as a Path.
    """
    if seed is None:
        raise ValueError("generate_dataset needs an explicit seed. Received: seed=None")
    root = Path(root)
    rng = np.random.default_rng(seed)
    cohorts = [(SEG_SPLIT, "SEG", n_segmentation), (QA_SPLIT, "QA", n_scored)]
    scores, rows = {}, []
    for split, prefix, n in cohorts:
        qualities = sample_qualities(n, rng, correlation=correlation, spread=spread, shift=shift,
                                     target_correlation=target_correlation)
        items = range(n) if progress is None else progress(range(n), desc=f"phantom {split}")
        for i in items:
            case_id = f"{prefix}{i:04d}"
            params = parameters_from_quality(qualities[i], rng)
            vol = render_scan(params, shape, rng, fibrosis_extent=fibrosis_extent)
            io.write_case(root / split, case_id, vol["image"], vol["la_mask"],
                          spacing=(0.625 * 576 / shape[0],) * 2 + (2.5 * 44 / shape[2],))
            row = {"case_id": case_id, "split": split, **dataclasses.asdict(params),
                   "oracle_contrast": oracle_fibrosis_contrast(vol["image"], vol["labels"])}
            if split == QA_SPLIT:
                scores[case_id] = observer_scores(params, rng, rater_sd=rater_sd)
                row.update(dict(zip(io.SCORE_COLUMNS, scores[case_id].tolist())))
            rows.append(row)
    fields = (["case_id", "split"] + [f.name for f in dataclasses.fields(ScanParameters)] + ["oracle_contrast"]
              + list(io.SCORE_COLUMNS))
    with (root / PARAMETERS_FILE).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
    # Written last: a complete scores table marks a complete phantom (`resolve_dataset`).
    io.write_scores_csv(root / SCORES_FILE, scores)
    return root


def read_oracle_contrast(root) -> dict:
    """{case_id: oracle fibrosis contrast} from a phantom's parameters table."""
    path = Path(root) / PARAMETERS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; the oracle gate needs a phantom's parameters table")
    with path.open(newline="") as f:
        return {row["case_id"]: float(row["oracle_contrast"]) for row in csv.DictReader(f)
                if row.get("oracle_contrast") not in (None, "")}
