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


def prefilter(images, sigma=0.8, *, out=None) -> np.ndarray:
    """Gaussian filter of each slice of [..., H, W] (no smoothing across slices), in float32.

    Args:
        images: array [..., H, W].
        sigma: float, default 0.8. In pixels; 0 or less returns the images as float32.
        out: float32 array like `images`, optional. Written in place (may be `images`
            itself), slice by slice, so the paper preset's cohort is never copied.
    """
    images = np.asarray(images)
    if out is None:
        out = np.empty(images.shape, dtype=np.float32)
    flat_in = images.reshape((-1,) + images.shape[-2:])
    flat_out = out.reshape((-1,) + images.shape[-2:])
    for k in range(len(flat_in)):
        if sigma <= 0:
            flat_out[k] = flat_in[k]
        else:
            flat_out[k] = ndimage.gaussian_filter(flat_in[k].astype(np.float32), float(sigma))
    return out


def mean_and_std(reference, index=None, *, chunk=16) -> tuple:
    """Mean and standard deviation of `reference[index]`, summed in float64 chunk by chunk.

    Args:
        reference: array [N, ...].
        index: int array, optional. Rows of `reference` to use (default all); read
            `chunk` rows at a time, so the selection is never copied whole.
        chunk: int, default 16.

    Returns:
        (mean, standard deviation) as floats.
    """
    reference = np.asarray(reference)
    rows = reference.reshape(len(reference), -1) if reference.ndim > 1 else reference.reshape(-1, 1)
    index = np.arange(len(rows)) if index is None else np.asarray(index, dtype=int)
    n = len(index) * rows.shape[1]
    if n == 0:
        raise ValueError("reference must hold at least one value. Received: an empty array")
    total = 0.0
    for start in range(0, len(index), chunk):
        total += float(rows[index[start:start + chunk]].astype(np.float64).sum())
    mean = total / n
    sq = 0.0  # two passes: the sum of squared deviations, not the cancelling E[x^2] - E[x]^2
    for start in range(0, len(index), chunk):
        sq += float(np.square(rows[index[start:start + chunk]].astype(np.float64) - mean).sum())
    return mean, float(np.sqrt(sq / n))


def standardize(images, reference=None, *, stats=None, out=None) -> np.ndarray:
    """`images` minus the mean of `reference`, divided by its standard deviation, in float32.

    The slices hold attenuation in 1/cm (soft tissue about 0.2, bone up to 1),
    and the motion streaks are a hundredth of that, smaller than the Gaussian
    noise augmentation (stddev 0.02) if it is applied to the raw values.
    Standardising with the training slices' statistics puts the input on a unit
    scale and the augmentation noise below the streaks. The statistics are summed in
    float64 chunk by chunk, the images written in float32 (in place with
    ``out=images``): the paper preset's 1110 x 8 slices of 512^2 are 9.3 GB in float32.

    Args:
        images: float array [..., H, W].
        reference: float array. Usually the training slices.
        stats: (mean, std), optional. Instead of `reference` (see `mean_and_std`).
        out: float32 array like `images`, optional (may be `images`).

    Returns:
        float32 array shaped like `images`.

    Example:
        reference (0, 2) -> mean 1, std 1; images (1, 3) -> (0, 2).
    """
    mean, std = mean_and_std(reference) if stats is None else (float(stats[0]), float(stats[1]))
    images = np.asarray(images)
    if out is None:
        out = np.empty(images.shape, dtype=np.float32)
    scale = np.float32(1.0 / max(std, 1e-6))
    flat_in, flat_out = images.reshape(len(images), -1), out.reshape(len(images), -1)
    for k in range(len(flat_in)):
        flat_out[k] = (flat_in[k] - np.float32(mean)) * scale
    return out


def air_streak_rms(images, *, measured=None, air_level=0.05, sigma=3.0) -> np.ndarray:
    """Root mean square of the reconstruction in the air around the limb, per scan (1/cm).

    A non-learned image statistic of the motion streaks: air has zero
    attenuation, so what a still scan shows there is noise and view-sampling
    error, and motion adds the streaks that filtered back-projection spreads
    across the field. Air pixels are those whose Gaussian-smoothed (`sigma`
    pixels) value is below `air_level`; smoothing averages the streaks (they
    alternate in sign) so the limb's outline alone decides.

    Only air that exists counts: pixels outside the AIM (padding of a cropped scan,
    ``measured`` False) are neither air nor smoothed in (the smoothing is normalised by
    the smoothed mask). A scan without air pixels gets NaN.

    Args:
        images: float array [scans, slices, H, W] of attenuation (1/cm).
        measured: bool array [scans, H, W], optional. Pixels inside the scan's AIM
            (default: all).
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
    out = np.empty(len(images))
    for i in range(len(images)):
        if measured is None:
            smooth = ndimage.gaussian_filter(images[i], (0.0, float(sigma), float(sigma)))
            air = smooth < air_level
        else:
            m = np.asarray(measured[i], dtype=np.float32)
            weight = ndimage.gaussian_filter(m, float(sigma))
            smooth = ndimage.gaussian_filter(images[i] * m, (0.0, float(sigma), float(sigma)))
            with np.errstate(invalid="ignore", divide="ignore"):
                air = (smooth / np.maximum(weight, 1e-6) < air_level) & (m > 0)[None]
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
    """Grade 1 + number of thresholds the QME exceeds; 0 (not graded) where the value is NaN or Inf.

    A scan whose statistic is undefined (an air-streak RMS of a scan without air) is
    flagged rather than graded: a NaN would otherwise sort above every threshold and
    come out grade 5.
    """
    qme = np.asarray(qme, dtype=float)
    grades = 1 + np.searchsorted(np.asarray(thresholds), qme, side="left")
    return np.where(np.isfinite(qme), grades, 0)


def threshold_grader(values, grades, fit_idx, test_idx) -> dict:
    """A non-learned grader: thresholds on one statistic, fitted on `fit_idx`, scored on `test_idx`.

    Scans whose statistic is not finite are left out of the fit and flagged on the test
    set (``not_graded``) instead of graded; the metrics cover the graded test scans.

    Args:
        values: float array [scans]. The statistic (QME, air-streak RMS, motion size).
        grades: int array [scans]. Consensus grades 1-5.
        fit_idx, test_idx: int arrays. Scans the thresholds are fitted on / scored on.

    Returns:
        dict: ``thresholds`` (4 floats), ``test`` (`hrpqct.training.scan_metrics` of
        the graded test scans), ``not_graded`` (count) and ``not_graded_index``.
    """
    from hrpqct.training import scan_metrics

    values, grades = np.asarray(values, dtype=float), np.asarray(grades, dtype=int)
    fit_idx, test_idx = np.asarray(fit_idx, dtype=int), np.asarray(test_idx, dtype=int)
    fit_ok = fit_idx[np.isfinite(values[fit_idx])]
    if len(fit_ok) == 0:
        raise ValueError("threshold_grader: no finite value among the fitting scans")
    thr = fit_qme_thresholds(values[fit_ok], grades[fit_ok])
    pred = qme_grades(values[test_idx], thr)
    graded = pred > 0
    return {"thresholds": thr.tolist(), "test": scan_metrics(grades[test_idx][graded], pred[graded]),
            "not_graded": int(np.sum(~graded)), "not_graded_index": test_idx[~graded].tolist()}


def ensemble_scan_grades(votes, *, threshold=0.75) -> dict:
    """Combines the slice votes of an ensemble into scan grades.

    Args:
        votes: int array [models, scans, slices] of grades 1-5.
        threshold: float, default 0.75. Confidence below it flags the scan.

    Returns:
        dict of arrays over scans: ``grade`` (int), ``confidence`` (float),
        ``review`` (bool), ``slice_grades`` [scans, slices] and ``slice_ties``
        [scans, slices] (bool: two or more grades share the most votes; the lower
        one is taken, which an even ensemble makes common).

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
    ties = (counts == counts.max(axis=-1, keepdims=True)).sum(axis=-1) > 1
    grade = round_half_up(slice_grades.mean(axis=1))
    confidence = (votes == grade[None, :, None]).mean(axis=(0, 2))
    return {"grade": grade, "confidence": confidence, "review": confidence < threshold,
            "slice_grades": slice_grades, "slice_ties": ties}


def predict_votes(models, images, *, index=None, batch_size=64, chunk_scans=32) -> np.ndarray:
    """Slice votes of every model: images [scans, slices, H, W] -> [models, scans, slices] grades 1-5.

    Args:
        models: sequence of Keras models (slice -> probabilities of grades 1-5).
        images: float array [scans, slices, H, W].
        index: int array, optional. Scans to grade (default all), read `chunk_scans` at a
            time so the selection is never copied whole.
        batch_size: int, default 64.
        chunk_scans: int, default 32.
    """
    images = np.asarray(images)
    index = np.arange(len(images)) if index is None else np.asarray(index, dtype=int)
    s = images.shape[1]
    out = np.empty((len(models), len(index), s), dtype=int)
    for start in range(0, len(index), chunk_scans):
        part = index[start:start + chunk_scans]
        flat = images[part].astype(np.float32, copy=False).reshape((len(part) * s,) + images.shape[2:] + (1,))
        for m, model in enumerate(models):
            probs = model.predict(flat, batch_size=batch_size, verbose=0)
            out[m, start:start + len(part)] = np.argmax(probs, axis=-1).reshape(len(part), s) + 1
    return out
