"""The declared secondary endpoint "vote": Walle's ensemble built from the units' networks.

Walle et al. grade a scan with an ensemble of 10 networks (slice votes, confidence = the
share of votes equal to the scan grade, review below 75 %). Training an ensemble per unit
and arm would multiply the study's cost by its size, so the study's units, which train one
network each on their own split with their own seeds, are grouped: the networks of
`vote_size` consecutive units (odd, default 3: a slice vote between two grades cannot tie)
grade the fixed test scans together through `hrpqct.grading.ensemble_scan_grades`. Units
left over after the last full group are not used. The endpoint is descriptive (no
verdict): with 12 units there are 4 votes per arm.
"""

from __future__ import annotations

import numpy as np

from hrpqct.grading import ensemble_scan_grades


def vote_groups(n_units, vote_size) -> list:
    """Consecutive groups of `vote_size` unit indices; a remainder is left out.

    Example:
        vote_groups(7, 3) -> [[0, 1, 2], [3, 4, 5]]
    """
    vote_size = int(vote_size)
    if vote_size < 1 or vote_size % 2 == 0:
        raise ValueError(f"vote_size must be odd and >= 1 (an even vote ties). Received: vote_size={vote_size}")
    return [list(range(g * vote_size, (g + 1) * vote_size)) for g in range(int(n_units) // vote_size)]


def vote_metrics(votes, consensus, *, threshold=0.75) -> dict:
    """Walle's grading of one vote [models, scans, slices] scored against `consensus` [scans].

    Returns:
        dict: `hrpqct.training.scan_metrics` plus ``review_fraction`` (scans below the
        confidence threshold), ``slice_tie_fraction`` (slices whose top vote is shared)
        and ``models``.
    """
    from hrpqct.training import scan_metrics

    graded = ensemble_scan_grades(votes, threshold=threshold)
    out = scan_metrics(consensus, graded["grade"])
    out["review_fraction"] = float(np.mean(graded["review"]))
    out["slice_tie_fraction"] = float(np.mean(graded["slice_ties"]))
    out["models"] = int(np.asarray(votes).shape[0])
    return out


def vote_endpoint(votes_by_arm, consensus, *, vote_size, threshold=0.75) -> dict:
    """The vote endpoint of every arm, group by group, and the arms' paired differences.

    Args:
        votes_by_arm: dict arm -> list over units of int arrays [members, scans, slices].
        consensus: int array [scans]. The test scans' consensus grades.
        vote_size: int, odd. Units per vote.
        threshold: float, default 0.75. Confidence below it flags a scan for review.

    Returns:
        dict: ``groups`` (lists of units), ``arms`` {arm: {"groups": [metrics...],
        "mean": {metric: mean over groups}}}, and with two arms ``difference`` {metric:
        list of the first arm minus the second per group} and ``difference_of`` (the two
        arms, in that order).
    """
    arms = list(votes_by_arm)
    n_units = min(len(v) for v in votes_by_arm.values())
    groups = vote_groups(n_units, vote_size)
    out = {"vote_size": int(vote_size), "groups": groups, "arms": {}}
    for arm in arms:
        rows = [vote_metrics(np.concatenate([votes_by_arm[arm][u] for u in g], axis=0), consensus,
                             threshold=threshold) for g in groups]
        keys = [k for k in (rows[0] if rows else {}) if k != "models"]
        out["arms"][arm] = {"groups": rows, "mean": {k: float(np.nanmean([r[k] for r in rows])) for k in keys
                                                     if not all(np.isnan(r[k]) for r in rows)}}
    if len(arms) == 2 and groups:
        a, b = (out["arms"][arm]["groups"] for arm in arms)
        out["difference_of"] = arms
        out["difference"] = {k: [float(x[k] - y[k]) for x, y in zip(a, b)]
                             for k in ("kappa", "accuracy", "rescan_sensitivity", "review_fraction")}
    return out
