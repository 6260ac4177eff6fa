"""Operator agreement, reported both ways the sources report it.

The literature the thesis cites counts disagreement between *pairs* of raters
("operators disagree in up to 30 % of cases"); the thesis' own table counts scans on
which *all* raters give the same grade (full agreement: 45.2 % of radius and 57 % of
tibia scans). With three raters the two differ: one rater off by a grade makes two
of the three pairs disagree but the scan lose full agreement. Both are computed
here side by side, over the raters a scan actually has (a blank cell is a missing
rater, never a disagreement).
"""

from __future__ import annotations

import numpy as np

from shared.metrics import quadratic_weighted_kappa


def _kappa(a, b) -> float:
    return float(quadratic_weighted_kappa(np.asarray(a, int), np.asarray(b, int), num_classes=5, min_label=1))


def rater_agreement(rater_grades, consensus) -> dict:
    """Pairwise and full agreement of the raters, and each rater against the consensus.

    Args:
        rater_grades: float array [scans, raters] of grades 1-5, NaN = missing.
        consensus: int array [scans].

    Returns:
        dict: ``kappa_raterI_raterJ`` and ``disagreement_raterI_raterJ`` (fraction of the
        scans both graded on which they differ) per pair, ``pairwise_disagreement_fraction``
        (over all rater pairs of all scans), ``kappa_raterI_consensus`` per rater,
        ``full_agreement_fraction`` (scans with at least two raters on which all their
        raters agree), ``any_disagreement_fraction`` (1 minus it) and
        ``scans_with_two_raters``.

    Example:
        Grades (1, 1, 2) and (3, 3, 3): pairs differ on 2 of 6 -> pairwise 1/3; full
        agreement on 1 of 2 scans -> 0.5.
    """
    g = np.asarray(rater_grades, dtype=float)
    if g.ndim != 2:
        raise ValueError(f"rater_grades must be [scans, raters]. Received: shape={g.shape}")
    consensus = np.asarray(consensus)
    out = {}
    n_raters = g.shape[1]
    pairs_differ = pairs_total = 0
    for i in range(n_raters):
        for j in range(i + 1, n_raters):
            ok = ~np.isnan(g[:, i]) & ~np.isnan(g[:, j])
            name = f"rater{i + 1}_rater{j + 1}"
            differ = int(np.sum(g[ok, i] != g[ok, j]))
            pairs_differ += differ
            pairs_total += int(ok.sum())
            out[f"kappa_{name}"] = _kappa(g[ok, i], g[ok, j]) if ok.any() else float("nan")
            out[f"disagreement_{name}"] = differ / ok.sum() if ok.any() else float("nan")
        ok = ~np.isnan(g[:, i])
        out[f"kappa_rater{i + 1}_consensus"] = _kappa(g[ok, i], consensus[ok]) if ok.any() else float("nan")
    out["pairwise_disagreement_fraction"] = pairs_differ / pairs_total if pairs_total else float("nan")
    out["scans_with_two_raters"], out["full_agreement_fraction"] = _full_agreement(g)
    out["any_disagreement_fraction"] = 1.0 - out["full_agreement_fraction"]
    return out


def _full_agreement(g) -> tuple:
    """(scans with at least two raters, fraction of them whose raters all agree)."""
    present = ~np.isnan(g)
    multi = present.sum(axis=1) >= 2
    agree = np.array([len(set(row[p])) == 1 for row, p in zip(g[multi], present[multi])], dtype=bool)
    return int(multi.sum()), (float(agree.mean()) if agree.size else float("nan"))


def full_agreement_by_site(rater_grades, sites) -> dict:
    """`full_agreement_fraction` per site (the thesis' table is per site)."""
    sites = np.asarray(sites)
    g = np.asarray(rater_grades, dtype=float)
    return {str(s): _full_agreement(g[sites == s])[1] for s in np.unique(sites)}


def leave_one_rater_out(rater_grades) -> list:
    """The leave-one-rater-out references: for each rater, the consensus of the others.

    Rater ``r``'s reference is the rounded (half up) mean of the other raters' grades, on
    the scans where ``r`` and at least one other rater graded. Raters with fewer than two
    such scans are left out.

    Args:
        rater_grades: float array [scans, raters], NaN = missing.

    Returns:
        list of dicts: ``rater`` (column index), ``scans`` (bool mask [scans]) and
        ``reference`` (int array over the masked scans).

    Example:
        Raters (1, 1, 2) on a scan: rater 3's reference is round(mean(1, 1)) = 1, rater 1's
        round(mean(1, 2)) = 2 (half up).
    """
    from hrpqct.motion import round_half_up

    g = np.asarray(rater_grades, dtype=float)
    out = []
    for r in range(g.shape[1]):
        others = np.delete(g, r, axis=1)
        ok = ~np.isnan(g[:, r]) & np.any(~np.isnan(others), axis=1)
        if ok.sum() < 2:
            continue
        with np.errstate(invalid="ignore"):
            reference = round_half_up(np.nanmean(others[ok], axis=1)).astype(int)
        out.append({"rater": r, "scans": ok, "reference": reference})
    return out


def operator_kappa(rater_grades) -> dict:
    """The human benchmark: each rater against the consensus of the *other* raters.

    A grader is scored against a consensus it has no part in; a rater scored against a
    consensus that includes its own grade would be flattered. Rater ``r`` is compared
    with its `leave_one_rater_out` reference.

    Args:
        rater_grades: float array [scans, raters], NaN = missing.

    Returns:
        dict: ``kappa_per_rater`` (list) and ``kappa_mean`` (their mean).

    Example:
        Raters (1, 1, 2) on a scan: rater 3 is compared with round(mean(1, 1)) = 1.
    """
    g = np.asarray(rater_grades, dtype=float)
    kappas = [_kappa(g[ref["scans"], ref["rater"]], ref["reference"]) for ref in leave_one_rater_out(g)]
    return {"kappa_per_rater": kappas, "kappa_mean": float(np.mean(kappas)) if kappas else float("nan")}


def leave_one_rater_out_kappa(grades, rater_grades) -> dict:
    """A grader scored like the operators: against each leave-one-rater-out reference.

    H2 pairs the network with the operators on the same references: for each rater r,
    the network's kappa against the consensus of the raters other than r, beside r's own
    kappa against that consensus (`operator_kappa`). A network scored against the full
    consensus, which includes every rater, would meet a less noisy reference than each
    operator does.

    Args:
        grades: int array [scans]. The grader's scan grades.
        rater_grades: float array [scans, raters], NaN = missing.

    Returns:
        dict: ``kappa_per_rater`` (list, one per reference) and ``kappa_mean``.
    """
    grades = np.asarray(grades, dtype=int)
    kappas = [_kappa(grades[ref["scans"]], ref["reference"]) for ref in leave_one_rater_out(rater_grades)]
    return {"kappa_per_rater": kappas, "kappa_mean": float(np.mean(kappas)) if kappas else float("nan")}
