"""Checks that freeze the simulator before any grader trains: data and oracle only.

The simulator's settings (grid, views, noise, grade bands, rater noise, grade
frequencies) are fixed in the preset and hashed into `protocol.json`; these two
gates check, on the simulated cohort and without any grader, that they do what the
study rests on:

* ``consensus_calibration`` (data): the consensus grade frequencies per site match
  the target table (the thesis' Table, or uniform) within sampling error. The
  statistic is the largest standardised gap over sites and grades,
  ``|observed share - target share| / sqrt(target (1 - target) / n_site)``, the
  binomial z of a share drawn from `n_site` scans; 3 is its declared limit.
* ``artefact_follows_motion`` (oracle): Spearman correlation of the artefact
  measure the raters grade (`hrpqct.data.artefact_rms`) with the simulated motion
  size; the grades then measure motion, not noise.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sstats

from hrpqct import motion

MAX_CALIBRATION_Z = 3.0
MIN_ARTEFACT_MOTION_SPEARMAN = 0.8


def target_shares(site, grade_counts) -> np.ndarray:
    """Target shares of consensus grades 1-5 at `site` ("thesis" or "uniform")."""
    if grade_counts == "uniform":
        counts = np.ones(5)
    elif grade_counts == "thesis":
        counts = np.asarray(motion.THESIS_GRADE_COUNTS[site], dtype=float)
    else:
        raise ValueError(f"grade_counts must be 'thesis' or 'uniform'. Received: {grade_counts!r}")
    return counts / counts.sum()


def calibration_z(consensus, sites, grade_counts) -> float:
    """Largest binomial z of the consensus grade shares against the targets, over sites and grades.

    Args:
        consensus: int array [scans] of grades 1-5.
        sites: str array [scans].
        grade_counts: "thesis" or "uniform".

    Example:
        Ten radius scans with uniform targets and grades 1, 1, 1, 1, 2, 3, 3, 4, 4, 5: grade 1
        holds 0.4 against 0.2, z = 0.2 / sqrt(0.16 / 10) = 1.58, the largest gap.
    """
    consensus, sites = np.asarray(consensus, dtype=int), np.asarray(sites)
    worst = 0.0
    for site in np.unique(sites):
        grades = consensus[sites == site]
        shares = np.bincount(grades - 1, minlength=5)[:5] / len(grades)
        target = target_shares(str(site), grade_counts)
        se = np.sqrt(target * (1.0 - target) / len(grades))
        gap = np.abs(shares - target)
        z = np.where(se > 0, gap / np.where(se > 0, se, 1.0), np.where(gap > 0, np.inf, 0.0))
        worst = max(worst, float(np.max(z)))
    return worst


def artefact_motion_spearman(artefact_rms, motion_size) -> float:
    """Spearman correlation of the graded artefact measure with the simulated motion size."""
    return float(sstats.spearmanr(artefact_rms, motion_size)[0])
