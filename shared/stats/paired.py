"""Paired comparisons: two (or more) arms measured on the same units.

A comparison is paired when its arms share what varies: the same folds, the same
seeds and data splits, or the same test cases. The unit of analysis is then the
difference ``d_i = a_i - b_i`` of each pair, not the two samples.

* `wilcoxon_signed_rank` and `paired_t`: the test of the differences, as
  `scipy.stats.wilcoxon` / `scipy.stats.ttest_rel`, with the degenerate cases
  (every difference zero, or every difference equal) answered with a note
  instead of a NaN and a RuntimeWarning.
* `hodges_lehmann`, `cohens_dz`, `bootstrap_mean_difference_ci`: the size of the
  difference, robust, standardised and with a percentile-bootstrap interval.
* `friedman_pairwise`: three or more arms, Friedman test then pairwise Wilcoxon
  signed-rank tests with Holm's correction (Demsar 2006, "Statistical comparisons
  of classifiers over multiple data sets", Sec. 3.2.2, with Wilcoxon tests as
  the post-hoc comparisons instead of the Nemenyi test).
* `compare_paired`: the one summary a verdict reads.
* `compare_paired_arms`: every number of a paired report over two or more arms
  (both tests per pair, Holm across pairs, Friedman first for three or more).

Every result is a plain dict of Python floats, ints and strings.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import scipy
from scipy import stats

from shared.stats.groups import holm_correction
from shared.stats.validation import finite_vector

ALTERNATIVES = ("two-sided", "less", "greater")
PAIRED_TESTS = ("wilcoxon", "paired_t")

# Since SciPy 1.15 (scipy/scipy#21567) `wilcoxon(method="auto")` enumerates all
# 2**n sign flips (an exact permutation test) for n <= 13 with ties or zeros;
# older versions fall back to the normal approximation there.
_SCIPY_VERSION = tuple(int(part) for part in scipy.__version__.split(".")[:2])
_PERMUTATION_MAX_N = 13 if _SCIPY_VERSION >= (1, 15) else 0
_EXACT_MAX_N = 50


def _paired(a, b, *, min_n: int = 2):
    """Validated float arrays a and b of equal length >= min_n."""
    a = finite_vector(a, "a")
    b = finite_vector(b, "b")
    if a.size != b.size:
        raise ValueError(f"a and b: expected paired values of equal length, got {a.size} and "
                         f"{b.size}")
    if a.size < min_n:
        raise ValueError(f"a: expected at least {min_n} pairs, got {a.size}")
    return a, b


def _check_alternative(alternative):
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative: expected one of {ALTERNATIVES}, got {alternative!r}")


def _check_level(level, name="level"):
    try:
        ok = not isinstance(level, bool) and 0 < float(level) < 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name}: expected a probability in (0, 1), got {level!r}")


def _degenerate_p(sign: float, alternative: str) -> float:
    """p of a test whose statistic is +-inf (sign != 0) or exactly null (sign 0)."""
    if sign == 0:
        return 1.0
    if alternative == "two-sided":
        return 0.0
    return 0.0 if (sign > 0) == (alternative == "greater") else 1.0


def _wilcoxon_method(d: np.ndarray) -> str:
    """Which null distribution `scipy.stats.wilcoxon(method="auto")` uses for d."""
    nonzero = np.abs(d[d != 0])
    zeros_or_ties = nonzero.size < d.size or np.unique(nonzero).size < nonzero.size
    if d.size > _EXACT_MAX_N:
        return "approx"
    if not zeros_or_ties or d.size <= _PERMUTATION_MAX_N:
        return "exact"
    return "approx"


def wilcoxon_signed_rank(a, b, *, alternative="two-sided") -> dict:
    """Wilcoxon signed-rank test of the paired differences a - b.

    `scipy.stats.wilcoxon` with its defaults: zero differences dropped
    (``zero_method="wilcox"``) and ``method="auto"``. "auto" uses the exact null
    distribution when n <= 50 without ties or zeros; with ties or zeros it
    enumerates all 2**n sign flips when n <= 13 (SciPy >= 1.15, also exact) and
    uses the normal approximation otherwise, as it does for every n > 50.

    Args:
        a: sequence of float, the first arm (one value per pairing unit).
        b: sequence of float, the second arm, same length and order.
        alternative: str. "two-sided" (default), "greater" (a - b shifted above
            0) or "less".

    Returns:
        dict with `test` ("wilcoxon"), `statistic` (scipy's: min(W+, W-) when
        two-sided, W+ otherwise), `p`, `n` (pairs), `n_zero` (zero differences),
        `method` ("exact" or "approx"), and `note` when every difference is zero
        (then p = 1.0 and statistic 0.0).

    Raises:
        ValueError: a or b not finite, unequal lengths, fewer than 2 pairs, or
            an unknown alternative.
    """
    a, b = _paired(a, b)
    _check_alternative(alternative)
    d = a - b
    n_zero = int(np.count_nonzero(d == 0))
    out = {"test": "wilcoxon", "alternative": alternative, "n": int(d.size), "n_zero": n_zero}
    if n_zero == d.size:
        out.update(statistic=0.0, p=1.0, method="exact",
                   note="every paired difference is zero: no evidence of a difference, p = 1")
        return out
    with warnings.catch_warnings():
        # Older SciPy warns when it switches from the exact to the normal null
        # distribution; the switch is reported in `method` instead.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        res = stats.wilcoxon(d, alternative=alternative)
    out.update(statistic=float(res.statistic), p=float(res.pvalue), method=_wilcoxon_method(d))
    return out


def paired_t(a, b, *, alternative="two-sided") -> dict:
    """Paired t-test of the mean difference a - b (`scipy.stats.ttest_rel`).

    When every difference is the same number the standard deviation is zero and
    t is undefined (0/0) or infinite: the result is p = 1.0 when that number is
    0 and p = 0.0 when it is not (for a one-sided test: 0.0 in the tested
    direction, 1.0 in the other), with a `note`.

    Args:
        a: sequence of float, the first arm.
        b: sequence of float, the second arm, same length and order.
        alternative: str. "two-sided" (default), "greater" or "less".

    Returns:
        dict with `test` ("paired_t"), `statistic` (t), `p`, `n`, `df` (n - 1)
        and, in the degenerate case, `note`.

    Raises:
        ValueError: a or b not finite, unequal lengths, fewer than 2 pairs, or
            an unknown alternative.
    """
    a, b = _paired(a, b)
    _check_alternative(alternative)
    d = a - b
    out = {"test": "paired_t", "alternative": alternative, "n": int(d.size),
           "df": int(d.size - 1)}
    if np.ptp(d) == 0:
        mean = float(d[0])
        sign = float(np.sign(mean))
        out.update(statistic=0.0 if sign == 0 else math.copysign(math.inf, mean),
                   p=_degenerate_p(sign, alternative),
                   note=("every paired difference is zero: no difference, p = 1" if sign == 0
                         else f"every paired difference equals {mean:.6g} (zero spread): the "
                              f"difference is certain, t is infinite"))
        return out
    with warnings.catch_warnings():
        # "Precision loss ... nearly identical" when the differences agree to
        # rounding error; t is then very large, which is the right answer.
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_rel(a, b, alternative=alternative)
    out.update(statistic=float(res.statistic), p=float(res.pvalue))
    return out


def hodges_lehmann(a, b) -> float:
    """Hodges-Lehmann estimate of the paired shift: median of the Walsh averages.

    The Walsh averages are (d_i + d_j) / 2 for all i <= j of the differences
    d = a - b (n (n + 1) / 2 of them, so memory grows as n**2). It is the
    estimate that goes with the Wilcoxon signed-rank test.

    Args:
        a: sequence of float, the first arm.
        b: sequence of float, the second arm, same length and order.

    Returns:
        float.

    Example:
        >>> hodges_lehmann([1, 2, 5], [0, 0, 0])  # Walsh: 1, 1.5, 3, 2, 3.5, 5
        2.5
    """
    a, b = _paired(a, b)
    d = a - b
    i, j = np.triu_indices(d.size)
    return float(np.median((d[i] + d[j]) / 2.0))


def cohens_dz(a, b) -> float:
    """Cohen's d_z: mean of the differences a - b over their SD (ddof = 1).

    Returns +-inf when every difference is the same non-zero number, 0.0 when
    every difference is zero.
    """
    a, b = _paired(a, b)
    d = a - b
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if np.ptp(d) > 0 else 0.0
    if sd == 0:
        return 0.0 if mean == 0 else math.copysign(math.inf, mean)
    return mean / sd


def bootstrap_mean_difference_ci(a, b, *, seed, n_resamples=10000, level=0.95) -> tuple:
    """Percentile-bootstrap confidence interval of the mean paired difference.

    Pairs (not the two arms separately) are resampled with replacement, so the
    correlation between the arms is kept. The interval is the (1 - level) / 2
    and (1 + level) / 2 percentiles (linear interpolation) of the resampled
    means.

    Args:
        a: sequence of float, the first arm.
        b: sequence of float, the second arm, same length and order.
        seed: int (0 is a valid seed). Required: the same seed gives the same
            interval. Passed to `numpy.random.default_rng`.
        n_resamples: int. Bootstrap resamples. Defaults to 10000.
        level: float. Confidence level in (0, 1). Defaults to 0.95.

    Returns:
        tuple of float (low, high).

    Raises:
        ValueError: bad a / b, seed None or not an int, n_resamples < 1, level
            outside (0, 1).
    """
    a, b = _paired(a, b)
    if seed is None or isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: expected an int (it makes the interval reproducible), "
                         f"got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) \
            or n_resamples < 1:
        raise ValueError(f"n_resamples: expected a positive int, got {n_resamples!r}")
    _check_level(level)
    d = a - b
    rng = np.random.default_rng(int(seed))
    # Resample in blocks of about 2**20 indices; the block size depends on n only,
    # so the draws (and the interval) are a function of the seed and the data.
    block = max(1, (1 << 20) // d.size)
    means = np.empty(int(n_resamples))
    for start in range(0, int(n_resamples), block):
        stop = min(int(n_resamples), start + block)
        means[start:stop] = d[rng.integers(0, d.size, size=(stop - start, d.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.percentile(means, [100.0 * tail, 100.0 * (1.0 - tail)])
    return float(low), float(high)


def friedman_pairwise(arms: dict, *, alpha=0.05) -> dict:
    """Friedman test over three or more paired arms, then pairwise Wilcoxon tests.

    Each arm holds one value per pairing unit (fold, seed, case), all arms in the
    same unit order. The omnibus test is `scipy.stats.friedmanchisquare`; every
    pair of arms is then compared with `wilcoxon_signed_rank` and the pairwise
    p-values are adjusted with Holm's step-down method.

    When every unit gives the same value to all arms the Friedman statistic is
    0/0: the result is statistic 0.0 and p = 1.0 with a `note`.

    Args:
        arms: dict name -> sequence of float, at least 3 arms of equal length
            (at least 2 units).
        alpha: float. Significance level for the `significant` flags. Defaults
            to 0.05.

    Returns:
        dict with `test` ("friedman"), `statistic`, `p`, `n` (units), `k` (arms),
        `alpha`, `significant`, and `pairwise`: one dict per pair in the order of
        `itertools.combinations(arms, 2)` with `a`, `b`, `p`, `p_holm`,
        `mean_difference` (a - b), `statistic`, `method`, `significant`
        (p_holm < alpha).

    Raises:
        ValueError: arms not a dict of at least 3 arms, arms of unequal length,
            non-finite values, alpha outside (0, 1).
    """
    if not isinstance(arms, dict):
        raise ValueError(f"arms: expected a dict of name -> values, got {type(arms).__name__}")
    if len(arms) < 3:
        raise ValueError(f"arms: expected at least 3 arms for a Friedman test, got {len(arms)} "
                         f"({list(arms)}); compare two arms with compare_paired")
    _check_level(alpha, "alpha")
    data = {str(name): finite_vector(values, f"arms[{name!r}]") for name, values in arms.items()}
    lengths = {name: v.size for name, v in data.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"arms: expected every arm to hold one value per pairing unit (equal "
                         f"lengths), got {lengths}")
    names = list(data)
    n = next(iter(lengths.values()))
    if n < 2:
        raise ValueError(f"arms: expected at least 2 pairing units, got {n}")
    table = np.column_stack([data[name] for name in names])
    out = {"test": "friedman", "n": int(n), "k": len(names), "alpha": float(alpha)}
    if np.all(np.ptp(table, axis=1) == 0):
        out.update(statistic=0.0, p=1.0,
                   note="every unit gives the same value to all arms: no difference, p = 1")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = stats.friedmanchisquare(*table.T)
        out.update(statistic=float(res.statistic), p=float(res.pvalue))
    out["significant"] = bool(out["p"] < alpha)
    pairwise = []
    for name_a, name_b in itertools.combinations(names, 2):
        res = wilcoxon_signed_rank(data[name_a], data[name_b])
        pairwise.append({"a": name_a, "b": name_b, "p": res["p"],
                         "mean_difference": float(np.mean(data[name_a] - data[name_b])),
                         "statistic": res["statistic"], "method": res["method"]})
    for row, p_adj in zip(pairwise, holm_correction([row["p"] for row in pairwise])):
        row["p_holm"] = float(p_adj)
        row["significant"] = bool(p_adj < alpha)
    out["pairwise"] = pairwise
    return out


def compare_paired(a, b, *, test="wilcoxon", alternative="two-sided", seed=0,
                   level=0.95, interval="bootstrap") -> dict:
    """Everything a verdict needs about a paired difference a - b, in one dict.

    Args:
        a: sequence of float, the first arm (e.g. the new model, per fold).
        b: sequence of float, the second arm (e.g. the baseline), same order.
        test: str. "wilcoxon" (default, `wilcoxon_signed_rank`) or "paired_t".
        alternative: str. "two-sided" (default), "greater" or "less".
        seed: int. Seed of the bootstrap interval. Defaults to 0.
        level: float. Level of the interval. Defaults to 0.95.
        interval: str. "bootstrap" (default, `bootstrap_mean_difference_ci`) or
            "t" (`t_interval_mean_difference`).

    Returns:
        dict with `n`, `mean_difference`, `hodges_lehmann`, `cohens_dz`, `ci95`
        ([low, high], the chosen interval of the mean difference at `level`), `level`, `test`, `alternative`, `statistic`, `p`, `method`
        ("exact" or "approx" for Wilcoxon; "exact" for the t-test, whose t
        distribution is exact under normal differences), and `note` /
        `n_zero` / `df` where the test gives them.

    Raises:
        ValueError: bad inputs (see the functions above) or an unknown test.
    """
    if test not in PAIRED_TESTS:
        raise ValueError(f"test: expected one of {PAIRED_TESTS}, got {test!r}")
    if interval not in ("bootstrap", "t"):
        raise ValueError(f"interval: expected 'bootstrap' or 't', got {interval!r}")
    a, b = _paired(a, b)
    result = (wilcoxon_signed_rank if test == "wilcoxon" else paired_t)(
        a, b, alternative=alternative)
    low, high = (bootstrap_mean_difference_ci(a, b, seed=seed, level=level) if interval == "bootstrap"
                 else t_interval_mean_difference(a, b, level=level))
    out = {"n": int(a.size), "mean_difference": float(np.mean(a - b)),
           "hodges_lehmann": hodges_lehmann(a, b), "cohens_dz": cohens_dz(a, b),
           "ci95": [low, high], "level": float(level), "test": result["test"],
           "alternative": alternative, "statistic": result["statistic"], "p": result["p"],
           "method": result.get("method", "exact")}
    for key in ("n_zero", "df", "note"):
        if key in result:
            out[key] = result[key]
    return out


def t_interval_mean_difference(a, b, *, level=0.95) -> tuple:
    """The t-interval of the mean paired difference a - b (df = n - 1).

    The interval of the paired t-test; at a few pairs it is far wider than a
    percentile bootstrap, whose coverage collapses there (3 pairs give 10 distinct
    resamples).
    """
    a, b = _paired(a, b)
    d = a - b
    half = stats.t.ppf(0.5 + level / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    return float(d.mean() - half), float(d.mean() + half)


def compare_paired_arms(arms: dict, *, alpha=0.05, level=0.95) -> dict:
    """Two or more arms measured on the same units: every number of a paired report.

    For each pair of arms (in the order of `itertools.combinations(arms, 2)`): the
    Wilcoxon signed-rank test and the paired t-test of the differences a - b, their
    mean with the t-interval at `level`, the Hodges-Lehmann shift, Cohen's d_z and a
    Shapiro-Wilk test of the differences (which says whether the t-test's normality
    assumption is tenable). With three or more arms the Friedman test
    (`friedman_pairwise`) comes first, and each test's pairwise p-values are
    Holm-adjusted across the pairs; with two arms the adjusted p is the raw one.

    Args:
        arms: dict name -> sequence of float, one value per unit, every arm in the
            same unit order; at least 2 arms and 2 units.
        alpha: float. Significance level of the `significant` flags. Defaults to 0.05.
        level: float. Level of the interval of each mean difference. Defaults to 0.95.

    Returns:
        dict with `alpha`, `level`, `n` (units), `arms` (names), `descriptives`
        (name -> n, mean, sd, median), `friedman` (statistic, p, significant, and
        `note` when every unit ties; None for two arms) and `pairs`: one dict per
        pair with `a`, `b`, `n`, `mean_difference`, `ci` ([low, high]),
        `hodges_lehmann`, `cohens_dz`, `shapiro` (W, p, normal; None with a `note`
        below 3 differences or when they are all equal), `wilcoxon` and `paired_t`
        (the results of `wilcoxon_signed_rank` / `paired_t` plus `p_holm` and
        `significant`).

    Raises:
        ValueError: arms not a dict of at least 2 arms of equal length >= 2, values
            not finite, alpha or level outside (0, 1).
    """
    if not isinstance(arms, dict) or len(arms) < 2:
        raise ValueError(f"arms: expected a dict of at least 2 arms (name -> values), got "
                         f"{arms if not isinstance(arms, dict) else list(arms)!r:.80}")
    _check_level(alpha, "alpha")
    _check_level(level)
    data = {str(name): finite_vector(values, f"arms[{name!r}]") for name, values in arms.items()}
    lengths = {name: v.size for name, v in data.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"arms: expected every arm to hold one value per pairing unit (equal "
                         f"lengths), got {lengths}")
    n = next(iter(lengths.values()))
    if n < 2:
        raise ValueError(f"arms: expected at least 2 pairing units, got {n}")
    names = list(data)
    out = {"alpha": float(alpha), "level": float(level), "n": int(n), "arms": names,
           "descriptives": {name: {"n": int(v.size), "mean": float(v.mean()),
                                   "sd": float(v.std(ddof=1)) if np.ptp(v) > 0 else 0.0,
                                   "median": float(np.median(v))}
                            for name, v in data.items()},
           "friedman": None}
    if len(names) >= 3:
        omnibus = friedman_pairwise(data, alpha=alpha)
        out["friedman"] = {k: omnibus[k] for k in ("statistic", "p", "significant", "note")
                           if k in omnibus}
    pairs = []
    for name_a, name_b in itertools.combinations(names, 2):
        a, b = data[name_a], data[name_b]
        d = a - b
        low, high = t_interval_mean_difference(a, b, level=level)
        if d.size >= 3 and np.ptp(d) > 0:
            w, p = stats.shapiro(d)
            shapiro = {"W": float(w), "p": float(p), "normal": bool(p > alpha)}
        else:
            shapiro = {"W": None, "p": None, "normal": None,
                       "note": "fewer than 3 differences" if d.size < 3
                       else "every difference is equal"}
        pairs.append({"a": name_a, "b": name_b, "n": int(d.size),
                      "mean_difference": float(d.mean()), "ci": [low, high],
                      "hodges_lehmann": hodges_lehmann(a, b), "cohens_dz": cohens_dz(a, b),
                      "shapiro": shapiro, "wilcoxon": wilcoxon_signed_rank(a, b),
                      "paired_t": paired_t(a, b)})
    for test in ("wilcoxon", "paired_t"):
        for pair, p_adj in zip(pairs, holm_correction([pair[test]["p"] for pair in pairs])):
            pair[test]["p_holm"] = float(p_adj)
            pair[test]["significant"] = bool(p_adj < alpha)
    out["pairs"] = pairs
    return out
