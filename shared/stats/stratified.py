"""One test over the units of several independent runs, stratified by run.

Runs of one design at different seeds are replications: each draws its own data, so
runs are independent strata, while the units inside a run are paired comparisons of
the same arms. The combined tests keep each run's own level (a run whose units all
sit higher is not mistaken for an effect) and pool the evidence:

* `stratified_paired_t`: the mean difference weighted by units,
  mu = sum_k n_k m_k / N, tested against the pooled within-run variance
  s_p^2 = sum_k (n_k - 1) s_k^2 / (N - K) on N - K degrees of freedom; equal to an
  ordinary least-squares fit with one intercept per run, testing the unit-weighted
  mean of the intercepts. A run whose units re-split one pool carries its
  Nadeau-Bengio ratio r_k: Var(mu) = s_p^2 sum_k (n_k / N)^2 (1 / n_k + r_k).
* `stratified_signed_rank`: the sum over runs of the Wilcoxon signed-rank statistics
  W+ (zeros dropped, mid-ranks for ties), standardised by the summed null means and
  variances (normal approximation, no continuity correction); one stratum gives
  `scipy.stats.wilcoxon(d, method="approx", correction=False)`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from shared.stats.paired import _check_alternative, _check_level, _degenerate_p


def p_from_t(t, df, alternative) -> float:
    """The p of a t statistic on df degrees of freedom for SciPy's `alternative`."""
    if alternative == "two-sided":
        return float(min(1.0, 2.0 * stats.t.sf(abs(t), df)))
    return float(stats.t.sf(t, df) if alternative == "greater" else stats.t.cdf(t, df))


def _summaries(strata):
    rows = []
    for k, stratum in enumerate(strata):
        if isinstance(stratum, dict):
            n, mean, sd = int(stratum["n"]), float(stratum["mean"]), float(stratum["sd"])
            ratio = float(stratum.get("ratio", 0.0))
        else:
            d = np.asarray(stratum, dtype=float)
            if d.ndim != 1 or not np.all(np.isfinite(d)):
                raise ValueError(f"strata[{k}]: expected a vector of finite differences")
            n, mean = int(d.size), float(d.mean()) if d.size else math.nan
            sd, ratio = (float(d.std(ddof=1)) if d.size > 1 else 0.0), 0.0
        if n < 2:
            raise ValueError(f"strata[{k}]: expected at least 2 units, got {n}")
        rows.append((n, mean, sd, ratio))
    if not rows:
        raise ValueError("strata: expected at least one run")
    return rows


def stratified_paired_t(strata, *, alternative="two-sided", level=0.95, ratios=None,
                        margin=None) -> dict:
    """The combined paired t-test over runs (strata), with its interval.

    Args:
        strata: list, one entry per run: a vector of paired differences (first arm
            minus second), or a dict {"n", "mean", "sd"[, "ratio"]} summarising one.
        alternative: str. "two-sided" (default), "greater" or "less".
        level: float. Level of the interval, default 0.95.
        ratios: list of float, optional. Per run, the Nadeau-Bengio ratio
            n_test / n_train when its units re-split one pool (default 0 each).
        margin: float, optional. Also give the TOST p for equivalence within +-margin.

    Returns:
        dict with `effect` (unit-weighted mean difference), `se`, `df` (N - K),
        `statistic`, `p`, `ci` ([low, high]), `n` (N units), `runs` (K), `sd_pooled`
        and, with a margin, `p_tost`.
    """
    _check_alternative(alternative)
    _check_level(level)
    rows = _summaries(strata)
    if ratios is not None:
        if len(ratios) != len(rows):
            raise ValueError(f"ratios: expected one per run ({len(rows)}), got {len(ratios)}")
        rows = [(n, m, s, float(r)) for (n, m, s, _), r in zip(rows, ratios)]
    n_total = sum(r[0] for r in rows)
    df = n_total - len(rows)
    effect = sum(n * m for n, m, _, _ in rows) / n_total
    pooled = math.sqrt(sum((n - 1) * s * s for n, _, s, _ in rows) / df)
    se = pooled * math.sqrt(sum((n / n_total) ** 2 * (1.0 / n + r) for n, _, _, r in rows))
    out = {"test": "stratified_paired_t", "alternative": alternative, "n": int(n_total),
           "runs": len(rows), "df": int(df), "effect": float(effect), "sd_pooled": pooled,
           "se": float(se)}
    if se == 0:
        sign = float(np.sign(effect))
        out.update(statistic=0.0 if sign == 0 else math.copysign(math.inf, effect),
                   p=_degenerate_p(sign, alternative),
                   ci=[effect, effect])
        if margin is not None:
            out["p_tost"] = 0.0 if abs(effect) < margin else 1.0
        return out
    t = effect / se
    half = stats.t.ppf(0.5 + level / 2.0, df) * se
    out.update(statistic=float(t), p=p_from_t(t, df, alternative),
               ci=[float(effect - half), float(effect + half)])
    if margin is not None:
        out["p_tost"] = max(float(stats.t.sf((effect + margin) / se, df)),
                            float(stats.t.cdf((effect - margin) / se, df)))
    return out


def _signed_rank_moments(d):
    """W+, its null mean and variance (zeros dropped, tie-corrected) for one run."""
    d = np.asarray(d, dtype=float)
    d = d[d != 0]
    n = d.size
    if n == 0:
        return 0.0, 0.0, 0.0
    ranks = stats.rankdata(np.abs(d))
    w_plus = float(ranks[d > 0].sum())
    _, counts = np.unique(np.abs(d), return_counts=True)
    variance = n * (n + 1) * (2 * n + 1) / 24.0 - float(np.sum(counts ** 3 - counts)) / 48.0
    return w_plus, n * (n + 1) / 4.0, variance


def stratified_signed_rank(strata, *, alternative="two-sided") -> dict:
    """The stratified Wilcoxon signed-rank test: per-run W+ summed over runs.

    Args:
        strata: list of vectors of paired differences, one per run.
        alternative: str. "two-sided" (default), "greater" or "less".

    Returns:
        dict with `statistic` (sum of W+), `z`, `p`, `n` (units), `runs`.
    """
    _check_alternative(alternative)
    moments = [_signed_rank_moments(np.asarray(s, dtype=float)) for s in strata]
    if not moments:
        raise ValueError("strata: expected at least one run")
    w = sum(m[0] for m in moments)
    mean = sum(m[1] for m in moments)
    variance = sum(m[2] for m in moments)
    n = int(sum(np.asarray(s).size for s in strata))
    if variance == 0:
        return {"test": "stratified_signed_rank", "statistic": w, "z": 0.0, "p": 1.0, "n": n,
                "runs": len(moments), "alternative": alternative}
    z = (w - mean) / math.sqrt(variance)
    if alternative == "two-sided":
        p = 2.0 * stats.norm.sf(abs(z))
    else:
        p = stats.norm.sf(z) if alternative == "greater" else stats.norm.cdf(z)
    return {"test": "stratified_signed_rank", "statistic": float(w), "z": float(z),
            "p": float(min(1.0, p)), "n": n, "runs": len(moments), "alternative": alternative}
