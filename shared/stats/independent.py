"""Two independent groups summarised for a verdict: effect, bootstrap CI, p, MDE.

The counterpart of `shared.stats.paired.compare_paired` for designs whose arms share
nothing (models trained independently, one per seed and arm).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from shared.stats.power import mde_two_sample
from shared.stats.validation import finite_vector

INDEPENDENT_TESTS = ("mannwhitney", "welch")


def _check(a, b):
    return finite_vector(a, "a", min_size=2), finite_vector(b, "b", min_size=2)


def bootstrap_independent_ci(a, b, *, seed, n_resamples=10000, level=0.95):
    """Percentile bootstrap CI of mean(a) - mean(b), each group resampled on its own.

    Args:
        a, b: sequences of numbers (>= 2 each).
        seed: int. Seed of `numpy.random.default_rng`; required.
        n_resamples: int, default 10000.
        level: float, default 0.95.

    Returns:
        (low, high).
    """
    if seed is None:
        raise ValueError("seed: expected an int (0 is a valid seed), got None")
    a, b = _check(a, b)
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, a.size, size=(n_resamples, a.size))
    ib = rng.integers(0, b.size, size=(n_resamples, b.size))
    diffs = a[ia].mean(axis=1) - b[ib].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(diffs, [tail, 100.0 - tail])
    return float(low), float(high)


def _welch(a, b):
    """mean(a) - mean(b), its standard error and the Welch-Satterthwaite df."""
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    diff = float(a.mean() - b.mean())
    se = float(np.sqrt(va + vb))
    if se == 0:
        return diff, se, float(a.size + b.size - 2)
    return diff, se, float((va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1)))


def compare_independent(a, b, *, test="mannwhitney", seed=0, level=0.95,
                        interval="bootstrap", alternative="two-sided") -> dict:
    """Mean difference, bootstrap CI and a test for two independent groups.

    Args:
        a, b: sequences of numbers (>= 2 each).
        test: str, default "mannwhitney". "mannwhitney" or "welch".
        seed: int, default 0. Seed of the bootstrap.
        level: float, default 0.95.
        interval: str, default "bootstrap". "bootstrap" (`bootstrap_independent_ci`)
            or "welch" (`welch_interval`).
        alternative: str, default "two-sided". "two-sided", "greater" (a above b) or
            "less", as SciPy's `alternative=`.

    Returns:
        dict with n_a, n_b, mean_difference (a - b), ci95, test, statistic, p, note.
    """
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative: expected 'two-sided', 'greater' or 'less', got "
                         f"{alternative!r}")
    if test not in INDEPENDENT_TESTS:
        raise ValueError(f"test must be one of {INDEPENDENT_TESTS}, got {test!r}")
    if interval not in ("bootstrap", "welch"):
        raise ValueError(f"interval: expected 'bootstrap' or 'welch', got {interval!r}")
    a, b = _check(a, b)
    note = None
    diff = float(a.mean() - b.mean())
    if np.ptp(np.concatenate([a, b])) == 0:
        statistic, p, note = 0.0, 1.0, "every value is the same"
    elif test == "welch" and np.ptp(a) == 0 and np.ptp(b) == 0:
        statistic, note = float("inf"), "both groups are constant and differ"
        p = 0.0 if alternative == "two-sided" or (diff > 0) == (alternative == "greater") else 1.0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            if test == "mannwhitney":
                res = stats.mannwhitneyu(a, b, alternative=alternative)
            else:
                res = stats.ttest_ind(a, b, equal_var=False, alternative=alternative)
        statistic, p = float(res.statistic), float(res.pvalue)
    return {"n_a": int(a.size), "n_b": int(b.size), "mean_difference": diff,
            "ci95": list(bootstrap_independent_ci(a, b, seed=seed, level=level)
                         if interval == "bootstrap" else welch_interval(a, b, level=level)),
            "test": test, "statistic": statistic, "p": p, "note": note}


def mde_independent(a, b, *, alpha=0.05, power=0.8, alternative="two-sided") -> float:
    """Minimum detectable mean difference of a two-group design of these sizes.

    Uses the pooled SD of the observed groups and the smaller group's size; a
    one-sided `alternative` sizes a one-sided test.
    """
    a, b = _check(a, b)
    pooled = np.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1))
                     / (a.size + b.size - 2))
    return mde_two_sample(min(a.size, b.size), float(pooled), alpha=alpha, power=power,
                          alternative=alternative)


def tost_independent(a, b, *, margin, alpha=0.05) -> dict:
    """Equivalence of two independent means within +-margin: two one-sided Welch tests.

    H0: |mean(a) - mean(b)| >= margin. Equivalence is shown when both one-sided tests
    reject, i.e. when the larger of their p-values is below alpha (Schuirmann, 1987).

    Args:
        a, b: sequences of numbers (>= 2 each).
        margin: float > 0. The equivalence margin, in the values' units.
        alpha: float, default 0.05.

    Returns:
        dict with p, p_lower, p_upper, equivalent, margin, mean_difference, df.
    """
    if not (np.isfinite(margin) and margin > 0):
        raise ValueError(f"margin: expected a positive number, got {margin!r}")
    a, b = _check(a, b)
    diff, se, df = _welch(a, b)
    if se == 0:
        p_lower = 0.0 if diff > -margin else 1.0
        p_upper = 0.0 if diff < margin else 1.0
    else:
        p_lower = float(stats.t.sf((diff + margin) / se, df))
        p_upper = float(stats.t.cdf((diff - margin) / se, df))
    p = max(p_lower, p_upper)
    return {"p": p, "p_lower": p_lower, "p_upper": p_upper, "equivalent": p < alpha,
            "margin": float(margin), "mean_difference": diff, "df": df}


def welch_interval(a, b, *, level=0.95) -> tuple:
    """The Welch t-interval of mean(a) - mean(b) (Welch-Satterthwaite df)."""
    diff, se, df = _welch(*_check(a, b))
    half = float(stats.t.ppf(0.5 + level / 2, df) * se) if se else 0.0
    return diff - half, diff + half
