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
