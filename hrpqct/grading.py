"""Scan-level grading the way Walle et al.'s released tool does it.

Every graded slice is smoothed by a Gaussian prefilter (sigma 0.8 voxels) and
scored by each network of an ensemble. Each network votes one grade per slice
(its most probable grade). Per scan:

* slice grade = the grade most networks voted for (ties go to the lower grade);
* scan grade = the rounded (half up) mean of its slice grades;
* confidence = the fraction of all votes (networks x slices) equal to the scan
  grade;
* scans whose confidence is below the threshold (75 %) are flagged for manual
  review.

The non-learned graders grade a scan by thresholds on one statistic, the QME
(`hrpqct.qme`) or the air-streak RMS (`air_streak_rms`): `fit_qme_thresholds` cuts the
training scans' sorted values so the grade frequencies match, `qme_grades` applies them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from hrpqct.motion import round_half_up


def prefilter(images, sigma=0.8) -> np.ndarray:
    """Gaussian filter of each slice of [..., H, W] (no smoothing across slices)."""
    images = np.asarray(images, dtype=np.float32)
    if sigma <= 0:
        return images
    sig = (0.0,) * (images.ndim - 2) + (float(sigma), float(sigma))
    return ndimage.gaussian_filter(images, sig).astype(np.float32)


def standardize(images, reference) -> np.ndarray:
    """`images` minus the mean of `reference`, divided by its standard deviation.

    The slices hold attenuation in 1/cm (soft tissue about 0.2, bone up to 1),
    and the motion streaks are a hundredth of that, smaller than the Gaussian
    noise augmentation (stddev 0.02) if it is applied to the raw values.
    Standardising with the training slices' statistics puts the input on a unit
    scale and the augmentation noise below the streaks.

    Args:
        images: float array [..., H, W].
        reference: float array. Usually the training slices.

    Returns:
        float32 array shaped like `images`.

    Example:
        reference (0, 2) -> mean 1, std 1; images (1, 3) -> (0, 2).
    """
    reference = np.asarray(reference, dtype=np.float64)
    if reference.size == 0:
        raise ValueError("reference must hold at least one value. Received: an empty array")
    std = float(reference.std())
    return ((np.asarray(images, dtype=np.float64) - reference.mean()) / max(std, 1e-6)).astype(np.float32)


def air_streak_rms(images, *, air_level=0.05, sigma=3.0) -> np.ndarray:
    """Root mean square of the reconstruction in the air around the limb, per scan (1/cm).

    A non-learned image statistic of the motion streaks: air has zero
    attenuation, so what a still scan shows there is noise and view-sampling
    error, and motion adds the streaks that filtered back-projection spreads
    across the field. Air pixels are those whose Gaussian-smoothed (`sigma`
    pixels) value is below `air_level`; smoothing averages the streaks (they
    alternate in sign) so the limb's outline alone decides.

    Args:
        images: float array [scans, slices, H, W] of attenuation (1/cm).
        air_level: float, default 0.05 (soft tissue is about 0.2 / cm).
        sigma: float, default 3.0.

    Returns:
        float array [scans]: RMS over the air pixels of all slices of the scan.

    Example:
        A scan whose air pixels hold +0.01 and -0.01 in equal numbers -> 0.01.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be [scans, slices, H, W]. Received: shape={images.shape}")
    smooth = ndimage.gaussian_filter(images, (0.0, 0.0, float(sigma), float(sigma)))
    out = np.empty(len(images))
    for i in range(len(images)):
        air = smooth[i] < air_level
        out[i] = float(np.sqrt(np.mean(images[i][air].astype(np.float64) ** 2))) if air.any() else float("nan")
    return out


def fit_qme_thresholds(qme, grades) -> np.ndarray:
    """Four QME thresholds: sorted training QMEs cut so the grade frequencies match."""
    qme, grades = np.asarray(qme, dtype=float), np.asarray(grades, dtype=int)
    order = np.sort(qme)
    cum = np.cumsum(np.bincount(grades - 1, minlength=5))[:4]
    cuts = []
    for c in cum:
        if c <= 0:
            cuts.append(-np.inf)
        elif c >= len(order):
            cuts.append(np.inf)
        else:
            cuts.append(0.5 * (order[c - 1] + order[c]))
    return np.maximum.accumulate(np.asarray(cuts))


def qme_grades(qme, thresholds) -> np.ndarray:
    """Grade 1 + number of thresholds the QME exceeds."""
    return 1 + np.searchsorted(np.asarray(thresholds), np.asarray(qme, dtype=float), side="left")


def ensemble_scan_grades(votes, *, threshold=0.75) -> dict:
    """Combines the slice votes of an ensemble into scan grades.

    Args:
        votes: int array [models, scans, slices] of grades 1-5.
        threshold: float, default 0.75. Confidence below it flags the scan.

    Returns:
        dict of arrays over scans: ``grade`` (int), ``confidence`` (float),
        ``review`` (bool), and ``slice_grades`` [scans, slices].

    Example:
        Two models, one scan of two slices voting (2, 3) and (2, 3): slice grades
        (2, 3), mean 2.5 -> grade 3, confidence 2 / 4 = 0.5 -> review.
    """
    votes = np.asarray(votes)
    if votes.ndim != 3:
        raise ValueError(f"votes must be [models, scans, slices]. Received: shape={votes.shape}")
    if votes.size and (votes.min() < 1 or votes.max() > 5):
        raise ValueError(f"votes must be grades 1-5. Received: range {votes.min()}..{votes.max()}")
    counts = np.stack([(votes == g).sum(axis=0) for g in range(1, 6)], axis=-1)  # [scans, slices, 5]
    slice_grades = np.argmax(counts, axis=-1) + 1  # argmax picks the first (lowest) on ties
    grade = round_half_up(slice_grades.mean(axis=1))
    confidence = (votes == grade[None, :, None]).mean(axis=(0, 2))
    return {"grade": grade, "confidence": confidence, "review": confidence < threshold,
            "slice_grades": slice_grades}


def predict_votes(models, images, *, batch_size=64) -> np.ndarray:
    """Slice votes of every model: images [scans, slices, H, W] -> [models, scans, slices] grades 1-5."""
    images = np.asarray(images, dtype=np.float32)
    n, s = images.shape[:2]
    flat = images.reshape((n * s,) + images.shape[2:] + (1,))
    out = []
    for model in models:
        probs = model.predict(flat, batch_size=batch_size, verbose=0)
        out.append(np.argmax(probs, axis=-1).reshape(n, s) + 1)
    return np.stack(out)
