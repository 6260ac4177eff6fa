"""Simulated operators who grade what the image shows.

Each scan carries an artefact measure computed from its reconstruction
(`hrpqct.data.artefact_rms`: the RMS of the reconstruction minus the motion-free
one, in 1/cm). Rater ``r`` perceives ``measure * exp(bias_r + noise * z)`` with
``z ~ N(0, 1)`` drawn per rater and scan, and grades it on the site's band edges;
the consensus is the rounded (half up) mean of the raters' grades, as in the
thesis' table.

The band edges are calibrated, per site, so that the *consensus* (not a noise-free
grade) has the thesis' grade frequencies (`calibrate_edges`): for fixed perception
draws, the number of scans whose consensus is at most grade ``k`` rises with the
``k``-th edge, so each edge is found by bisection, a few passes over the four
edges. The calibration uses the simulated measure and the rater draws only (no
grader), once per cohort, and the edges are written to the dataset's
``dataset.json``.
"""

from __future__ import annotations

import numpy as np

from hrpqct.motion import round_half_up
from shared.training.seeding import numpy_rng

DEFAULT_BIASES = (-0.1, 0.0, 0.12)
# Perceived size of a still scan's artefact (its measure is 0), far below any edge.
_FLOOR = 1e-9


def perceive(measure, *, seed, noise, biases=DEFAULT_BIASES) -> np.ndarray:
    """What each rater perceives: [scans, raters] = measure * exp(bias + noise * z)."""
    rng = numpy_rng(seed)
    m = np.maximum(np.asarray(measure, dtype=float), _FLOOR)
    z = rng.standard_normal((len(m), len(biases)))
    return m[:, None] * np.exp(np.asarray(biases, dtype=float)[None, :] + float(noise) * z)


def grade(perceived, edges) -> np.ndarray:
    """Grades 1-5 of perceived values on four band edges: 1 + the number of edges reached."""
    return 1 + np.searchsorted(np.asarray(edges, dtype=float), np.asarray(perceived, dtype=float), side="right")


def consensus_of(perceived, edges) -> np.ndarray:
    """Rounded (half up) mean of the raters' grades."""
    return round_half_up(grade(perceived, edges).mean(axis=1))


def calibrate_edges(perceived, target_counts, *, passes=6, steps=50) -> np.ndarray:
    """Four band edges whose consensus grade frequencies match `target_counts`.

    Args:
        perceived: float array [scans, raters] (see `perceive`).
        target_counts: 5 numbers. Relative frequencies of consensus grades 1-5.
        passes: int, default 6. Passes of bisection over the four edges.
        steps: int, default 50. Bisection steps per edge and pass (on log values).

    Returns:
        float array [4], increasing.

    Example:
        One rater perceiving 1, 2, 3, 4, 5 and equal targets -> edges between the
        values (the k-th edge in (k, k + 1]).
    """
    p = np.asarray(perceived, dtype=float)
    target = np.asarray(target_counts, dtype=float)
    if p.ndim != 2 or len(p) == 0:
        raise ValueError(f"perceived must be [scans >= 1, raters]. Received: shape={p.shape}")
    if target.shape != (5,) or np.any(target < 0) or target.sum() <= 0:
        raise ValueError(f"target_counts must be 5 non-negative numbers. Received: {target_counts!r}")
    cum = np.cumsum(target / target.sum())[:4] * len(p) - 1e-9  # 0.6 * 5 is 3.0000000000000004
    logs = np.log(p)
    lo_all, hi_all = logs.min() - 1.0, logs.max() + 1.0
    edges = np.quantile(logs, np.clip(cum / len(p), 0.0, 1.0))
    for _ in range(passes):
        for k in range(4):
            lo = edges[k - 1] if k > 0 else lo_all
            hi = edges[k + 1] if k < 3 else hi_all
            for _ in range(steps):
                mid = 0.5 * (lo + hi)
                trial = edges.copy()
                trial[k] = mid
                below = np.sum(consensus_of(logs, trial) <= k + 1)
                if below < cum[k]:
                    lo = mid
                else:
                    hi = mid
            edges[k] = hi  # the side that reaches the target count
    return np.exp(np.maximum.accumulate(edges))
