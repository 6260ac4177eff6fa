"""What a design can detect: minimum detectable effects and equivalence tests.

* `mde_paired`, `mde_two_sample`: the smallest mean difference, in the metric's
  units, that a t-test (or, through its asymptotic relative efficiency, a
  Wilcoxon signed-rank test) detects with the given power. Solved exactly with
  the noncentral t distribution, as statsmodels' `TTestPower` /
  `TTestIndPower` do, then multiplied by the SD.
* `mde_proportion_difference`: the same for a proportion (accuracy on n test
  items) against a reference value, with Cohen's arcsine effect size h.
* `tost_paired`: two one-sided paired t-tests, to show that two arms are
  equivalent within a margin (Schuirmann 1987) rather than merely "not
  significantly different".

Alternatives use SciPy's names: "two-sided", "greater", "less". A one-sided
design detects the same magnitude in either direction, so every MDE is >= 0.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

from shared.stats.paired import ALTERNATIVES, _check_level, _paired

# Asymptotic relative efficiency of the Wilcoxon signed-rank test to the t-test
# for normal data (Hodges & Lehmann 1956); G*Power's "A.R.E." method uses it the
# same way, as an effective sample size.
WILCOXON_ARE = 3.0 / math.pi
MDE_TESTS = ("paired_t", "wilcoxon")


def _check_n(n, name, minimum=2):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {n!r}")
    return int(n)


def _check_sd(sd, name):
    try:
        value = float(sd)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: expected a finite standard deviation >= 0, got {sd!r}")
    return value


def _check_alpha_power(alpha, power):
    _check_level(alpha, "alpha")
    _check_level(power, "power")
    if not power > alpha:
        raise ValueError(f"power: expected a value above alpha={alpha}, got {power!r}")


def _t_power(d, nobs, df, alpha, alternative):
    """Power of a t-test with noncentrality d sqrt(nobs) (statsmodels' `ttest_power`)."""
    nc = d * math.sqrt(nobs)
    crit = stats.t.isf(alpha / 2.0 if alternative == "two-sided" else alpha, df)
    upper = stats.nct.sf(crit, df, nc)
    if not math.isfinite(upper):
        upper = 1.0 - stats.nct.cdf(crit, df, nc)
    if not math.isfinite(upper):  # pragma: no cover - both tails failed
        upper = 1.0 if nc > crit else 0.0
    if alternative != "two-sided":
        return upper
    # The rejection region below -crit; for d >= 0 its probability is at most
    # alpha / 2 and SciPy returns NaN where it is far below 1e-16.
    lower = stats.nct.cdf(-crit, df, nc)
    return upper + (lower if math.isfinite(lower) else 0.0)


def _solve_effect(power_of, alpha, power):
    """The d >= 0 with power_of(d) = power (power_of increasing, power_of(0) ~ alpha)."""
    high = 1.0
    while power_of(high) < power:
        high *= 2.0
        if high > 1e6:  # pragma: no cover - only for absurd inputs
            raise ValueError(f"power: {power!r} cannot be reached at alpha={alpha!r}")
    return optimize.brentq(lambda d: power_of(d) - power, 0.0, high, xtol=1e-13, rtol=1e-13)


def mde_paired(n, sd_diff, *, alpha=0.05, power=0.8, alternative="two-sided",
               test="paired_t", ratio=0.0) -> float:
    """Minimum detectable mean paired difference.

    The standardised effect d_z solves power = P(reject | d_z) for a one-sample
    t-test on the n differences (df = n - 1, noncentrality d_z sqrt(n)), the
    same as ``statsmodels.stats.power.TTestPower().solve_power(nobs=n,
    alpha=alpha, power=power)``; the MDE is d_z * sd_diff. For the Wilcoxon
    signed-rank test the sample size is discounted by the asymptotic relative
    efficiency 3 / pi (effective n = 3 n / pi, df = 3 n / pi - 1).

    Args:
        n: int >= 2. Pairs (folds, seeds, cases).
        sd_diff: float >= 0. SD of the paired differences (from a pilot or a
            previous study), in the metric's units.
        alpha: float. Significance level. Defaults to 0.05.
        power: float in (alpha, 1). Defaults to 0.8.
        alternative: str. "two-sided" (default), "greater" or "less".
        test: str. "paired_t" (default) or "wilcoxon".
        ratio: float >= 0, default 0. n_test / n_train when the units re-split one
            pool: the corrected resampled t (`shared.stats.resampled`) has
            noncentrality d_z / sqrt(1 / n + ratio) on n - 1 df.

    Returns:
        float >= 0, in the metric's units (0.0 when sd_diff is 0).

    Example:
        >>> round(mde_paired(10, 0.02), 5)  # 10 folds, SD of differences 0.02
        0.01992
    """
    n = _check_n(n, "n")
    sd_diff = _check_sd(sd_diff, "sd_diff")
    _check_alpha_power(alpha, power)
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative: expected one of {ALTERNATIVES}, got {alternative!r}")
    if test not in MDE_TESTS:
        raise ValueError(f"test: expected one of {MDE_TESTS}, got {test!r}")
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio >= 0):
        raise ValueError(f"ratio: expected n_test / n_train >= 0, got {ratio!r}")
    if sd_diff == 0:
        return 0.0
    nobs = n * WILCOXON_ARE if test == "wilcoxon" else float(n)
    df = nobs - 1.0
    if ratio:
        nobs = 1.0 / (1.0 / nobs + ratio)
    return mde_t(sd_diff, nobs, df, alpha=alpha, power=power, alternative=alternative)


def mde_t(sd, nobs, df, *, alpha=0.05, power=0.8, alternative="two-sided") -> float:
    """Minimum detectable mean of a t-test whose standard error is `sd / sqrt(nobs)`
    with `df` degrees of freedom (a paired, stratified or corrected t-test).

    Args:
        sd: float >= 0. SD of the values (paired differences) the mean is taken over.
        nobs: float > 0. Effective number of observations (`(sd / se) ** 2`).
        df: float > 0. Degrees of freedom of the t reference.
        alpha, power, alternative: as `mde_paired`.
    """
    d = _solve_effect(lambda e: _t_power(e, nobs, df, alpha, alternative), alpha, power)
    return float(d * sd)


def mde_two_sample(n_per_group, sd, *, alpha=0.05, power=0.8,
                   alternative="two-sided") -> float:
    """Minimum detectable difference of means of two independent groups.

    Two groups of n_per_group each with a common (pooled) SD; the effect d
    solves the power of Student's two-sample t-test (df = 2n - 2, noncentrality
    d sqrt(n / 2)), the same as ``TTestIndPower().solve_power(nobs1=n,
    ratio=1, ...)``; the MDE is d * sd.

    Args:
        n_per_group: int >= 2. Units per group.
        sd: float >= 0. Pooled SD, in the metric's units.
        alpha: float. Significance level. Defaults to 0.05.
        power: float in (alpha, 1). Defaults to 0.8.
        alternative: str. "two-sided" (default), "greater" or "less".

    Returns:
        float >= 0 (0.0 when sd is 0).
    """
    n = _check_n(n_per_group, "n_per_group")
    sd = _check_sd(sd, "sd")
    _check_alpha_power(alpha, power)
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative: expected one of {ALTERNATIVES}, got {alternative!r}")
    if sd == 0:
        return 0.0
    d = _solve_effect(lambda e: _t_power(e, n / 2.0, 2.0 * n - 2.0, alpha, alternative),
                      alpha, power)
    return float(d * sd)


def mde_proportion_difference(n, p0, *, alpha=0.05, power=0.8, direction="above") -> float:
    """Minimum detectable difference of a proportion from a reference p0.

    The test is the two-sided one-sample z-test on the arcsine scale: Cohen's
    h = 2 asin(sqrt(p1)) - 2 asin(sqrt(p0)) is approximately normal with SD
    1 / sqrt(n) (Cohen 1988, Ch. 6). h solves
    Phi(h sqrt(n) - z) + Phi(-h sqrt(n) - z) = power with z = Phi^-1(1 - alpha / 2)
    (both rejection tails; equal to statsmodels' ``NormalIndPower()
    .solve_power(nobs1=n, ratio=0, ...)``), and is mapped back to
    p1 = sin^2(asin(sqrt(p0)) +- h / 2). Because the arcsine scale stretches near
    0 and 1, the detectable difference is smaller there.

    Args:
        n: int >= 1. Test items (e.g. cases on which accuracy is measured).
        p0: float in (0, 1). Reference proportion (e.g. the baseline accuracy).
        alpha: float. Two-sided significance level. Defaults to 0.05.
        power: float in (alpha, 1). Defaults to 0.8.
        direction: str. "above" (default; p1 > p0, an improvement) or "below".

    Returns:
        float |p1 - p0| >= 0; math.inf when no proportion in [0, 1] on that
        side of p0 is detectable (p0 too close to the bound for this n).

    Example:
        >>> round(mde_proportion_difference(200, 0.80), 4)  # 200 cases, 80 % baseline
        0.0729
    """
    n = _check_n(n, "n", minimum=1)
    _check_level(p0, "p0")
    _check_alpha_power(alpha, power)
    if direction not in ("above", "below"):
        raise ValueError(f"direction: expected 'above' or 'below', got {direction!r}")
    z = stats.norm.isf(alpha / 2.0)
    root_n = math.sqrt(n)

    def power_of(h):
        return stats.norm.cdf(h * root_n - z) + stats.norm.cdf(-h * root_n - z)

    h = _solve_effect(power_of, alpha, power)
    phi0 = math.asin(math.sqrt(p0))
    phi1 = phi0 + h / 2.0 if direction == "above" else phi0 - h / 2.0
    if not 0.0 <= phi1 <= math.pi / 2.0:
        return math.inf
    return float(abs(math.sin(phi1) ** 2 - p0))


def tost_paired(a, b, *, margin, alpha=0.05) -> dict:
    """Equivalence of two paired arms within +-margin: two one-sided t-tests.

    H0: mean(a - b) <= -margin or >= margin; H1: -margin < mean(a - b) < margin.
    The lower test has p_lower = P(T >= (mean + margin) / se), the upper test
    p_upper = P(T <= (mean - margin) / se), T ~ t(n - 1), se = SD / sqrt(n);
    equivalence is shown when both reject, i.e. when p = max(p_lower, p_upper) <
    alpha. Matches ``statsmodels.stats.weightstats.ttost_paired(a, b, -margin,
    margin)``. With zero spread (all differences equal) each one-sided p is 0.0
    when the mean lies strictly inside the bound and 1.0 otherwise.

    Args:
        a: sequence of float, the first arm.
        b: sequence of float, the second arm, same length and order.
        margin: float > 0. Equivalence margin, in the metric's units.
        alpha: float. Significance level. Defaults to 0.05.

    Returns:
        dict with `test` ("tost_paired"), `p`, `p_lower`, `p_upper`, `t_lower`,
        `t_upper`, `df`, `equivalent` (p < alpha), `margin`, `mean_difference`,
        `n`, `alpha`.
    """
    a, b = _paired(a, b)
    try:
        margin_value = float(margin)
    except (TypeError, ValueError):
        margin_value = math.nan
    if not math.isfinite(margin_value) or margin_value <= 0:
        raise ValueError(f"margin: expected a finite number > 0, got {margin!r}")
    _check_level(alpha, "alpha")
    d = a - b
    n = d.size
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if np.ptp(d) > 0 else 0.0
    df = n - 1
    if sd == 0:
        t_lower = math.inf if mean > -margin_value else -math.inf
        t_upper = -math.inf if mean < margin_value else math.inf
        p_lower = 0.0 if mean > -margin_value else 1.0
        p_upper = 0.0 if mean < margin_value else 1.0
    else:
        se = sd / math.sqrt(n)
        t_lower = (mean + margin_value) / se
        t_upper = (mean - margin_value) / se
        p_lower = float(stats.t.sf(t_lower, df))
        p_upper = float(stats.t.cdf(t_upper, df))
    p = max(p_lower, p_upper)
    return {"test": "tost_paired", "p": p, "p_lower": p_lower, "p_upper": p_upper,
            "t_lower": float(t_lower), "t_upper": float(t_upper), "df": int(df),
            "equivalent": bool(p < alpha), "margin": margin_value,
            "mean_difference": mean, "n": int(n), "alpha": float(alpha)}


def units_for_mde(sesoi, sd_diff, *, alpha=0.05, power=0.8, alternative="two-sided",
                  test="paired_t", max_units=10_000, ratio=0.0) -> int:
    """The fewest paired units whose minimum detectable effect is at most `sesoi`.

    What a `powered` preset needs: given the smallest effect of interest and the SD
    of the paired differences (from a pilot run of the baseline, or the paper's
    spread), how many seeds or folds the study must run for 80 % power.

    Args:
        sesoi: float > 0. Smallest effect of interest, in the metric's units.
        sd_diff: float >= 0. SD of the paired differences.
        alpha, power, alternative, test, ratio: as in `mde_paired` (a hypothesis
            declared one-sided is sized with its one-sided `alternative`).
        max_units: int, default 10000. Upper end of the search.

    Returns:
        int >= 2.

    Raises:
        ValueError: a non-positive sesoi, or no design up to `max_units` suffices.
    """
    if not (isinstance(sesoi, (int, float)) and math.isfinite(sesoi) and sesoi > 0):
        raise ValueError(f"sesoi: expected a positive number, got {sesoi!r}")

    def enough(n):
        return mde_paired(n, sd_diff, alpha=alpha, power=power, alternative=alternative,
                          test=test, ratio=ratio) <= sesoi

    if not enough(max_units):
        raise ValueError(f"sesoi: {sesoi:g} is not detectable with {max_units} units at SD "
                         f"{sd_diff:g}" + (f" (a pool re-split at ratio {ratio:g} bounds the "
                                           f"variance below by ratio * SD^2)" if ratio else ""))
    low, high = 2, max_units
    while low < high:
        mid = (low + high) // 2
        if enough(mid):
            high = mid
        else:
            low = mid + 1
    return low
