"""Paired tests and effect sizes against SciPy, statsmodels and hand-worked values."""

import itertools
import math
import warnings

import numpy as np
import pytest
from scipy import stats

from shared.stats import (
    bootstrap_mean_difference_ci,
    cohens_dz,
    compare_paired,
    friedman_pairwise,
    hodges_lehmann,
    paired_t,
    wilcoxon_signed_rank,
)

multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests

ALTERNATIVES = ("two-sided", "greater", "less")


pytestmark = pytest.mark.no_keras

# SciPy renamed the normal-approximation method "approx" -> "asymptotic" in 1.15.
ASYMPTOTIC = "asymptotic" if tuple(
    int(x) for x in __import__("scipy").__version__.split(".")[:2]) >= (1, 15) else "approx"


def _pairs(n, seed, *, ties=False, zeros=0, shift=0.3):
    """Random paired arms; `ties` rounds the differences, `zeros` sets some to 0."""
    rng = np.random.default_rng(seed)
    # b on a grid of 1/64 and tied differences in halves: a = b + d and a - b
    # are exact in binary floating point, so the ties and zeros survive.
    b = np.round(rng.normal(0.7, 0.05, n) * 64) / 64
    d = rng.normal(shift, 1.0, n)
    if ties:
        d = np.round(d * 2) / 2
    d[:zeros] = 0.0
    return b + d, b


CASES = [(3, 0, False, 0), (3, 1, True, 1), (5, 2, False, 0), (8, 3, True, 2),
         (10, 4, True, 0), (14, 5, True, 3), (20, 6, False, 0), (30, 7, True, 4),
         (60, 8, False, 0), (60, 9, True, 5)]


@pytest.mark.parametrize("n,seed,ties,zeros", CASES)
@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_wilcoxon_equals_scipy(n, seed, ties, zeros, alternative):
    a, b = _pairs(n, seed, ties=ties, zeros=zeros)
    result = wilcoxon_signed_rank(a, b, alternative=alternative)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = stats.wilcoxon(a, b, alternative=alternative)
    assert result["test"] == "wilcoxon"
    assert result["n"] == n
    assert result["n_zero"] == int(np.sum(a - b == 0))
    assert result["statistic"] == pytest.approx(float(expected.statistic))
    assert result["p"] == pytest.approx(float(expected.pvalue), rel=1e-10)
    # The method label names the null distribution scipy used: the normal one
    # gives the same p as asking for it explicitly.
    assert result["method"] in ("exact", "approx")
    asymptotic = stats.wilcoxon(a - b, alternative=alternative, method=ASYMPTOTIC).pvalue
    d = a - b
    has_ties_or_zeros = (d == 0).any() or np.unique(np.abs(d)).size < n
    if n > 50 or (has_ties_or_zeros and n > 13):
        assert result["method"] == "approx"
        assert result["p"] == pytest.approx(asymptotic, rel=1e-10)
    elif not has_ties_or_zeros:
        assert result["method"] == "exact"
        assert result["p"] == pytest.approx(
            stats.wilcoxon(d, alternative=alternative, method="exact").pvalue)


def test_wilcoxon_ties_at_the_permutation_limit():
    # n = 13 with ties: SciPy >= 1.15 enumerates all 2**13 sign flips (exact).
    a, b = _pairs(13, 4, ties=True)
    result = wilcoxon_signed_rank(a, b)
    assert result["p"] == pytest.approx(float(stats.wilcoxon(a, b).pvalue), rel=1e-10)
    if ASYMPTOTIC == "asymptotic":
        assert result["method"] == "exact"


def test_wilcoxon_exact_by_hand():
    # d = 1, 2, 3 all positive: W- = 0, P(W+ = 6) = 1/8 -> two-sided p = 1/4.
    result = wilcoxon_signed_rank([2, 4, 6], [1, 2, 3])
    assert result["statistic"] == 0.0
    assert result["p"] == pytest.approx(0.25)
    assert result["method"] == "exact"
    assert wilcoxon_signed_rank([2, 4, 6], [1, 2, 3], alternative="greater")["p"] == \
        pytest.approx(0.125)


def test_wilcoxon_all_zero_differences_is_p_one_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = wilcoxon_signed_rank([0.8, 0.7, 0.9], [0.8, 0.7, 0.9])
        assert result["p"] == 1.0 and result["statistic"] == 0.0
        assert result["n_zero"] == 3 and "zero" in result["note"]
        for alternative in ALTERNATIVES:
            assert wilcoxon_signed_rank([1, 1], [1, 1], alternative=alternative)["p"] == 1.0
        # Zeros and ties at n = 3, 20 and 60 leak nothing either.
        for n in (3, 20, 60):
            a, b = _pairs(n, n, ties=True, zeros=2)
            wilcoxon_signed_rank(a, b)


@pytest.mark.parametrize("n,seed,ties,zeros", CASES)
@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_paired_t_equals_scipy_and_formula(n, seed, ties, zeros, alternative):
    a, b = _pairs(n, seed, ties=ties, zeros=zeros)
    result = paired_t(a, b, alternative=alternative)
    expected = stats.ttest_rel(a, b, alternative=alternative)
    assert result["statistic"] == pytest.approx(expected.statistic)
    assert result["p"] == pytest.approx(expected.pvalue)
    assert result["df"] == n - 1 and result["n"] == n
    d = a - b
    t = d.mean() / (d.std(ddof=1) / math.sqrt(n))
    assert result["statistic"] == pytest.approx(t)
    if alternative == "two-sided":
        assert result["p"] == pytest.approx(2 * stats.t.sf(abs(t), n - 1))


def test_paired_t_zero_spread():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = paired_t([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
        assert same["p"] == 1.0 and same["statistic"] == 0.0 and "note" in same
        shifted = paired_t([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
        assert shifted["p"] == 0.0 and shifted["statistic"] == math.inf and "note" in shifted
        assert paired_t([2.0, 3.0, 4.0], [1.0, 2.0, 3.0], alternative="greater")["p"] == 0.0
        assert paired_t([2.0, 3.0, 4.0], [1.0, 2.0, 3.0], alternative="less")["p"] == 1.0
        assert paired_t([0.0, 1.0], [1.0, 2.0])["statistic"] == -math.inf
        # Differences equal up to rounding: a finite, very large t, no warning.
        paired_t([0.3, 0.6, 0.7], [0.1, 0.4, 0.5])


def test_hodges_lehmann_by_hand():
    # d = 1, 2, 5: Walsh averages 1, 1.5, 3, 2, 3.5, 5 -> sorted 1 1.5 2 3 3.5 5 -> 2.5
    assert hodges_lehmann([1, 2, 5], [0, 0, 0]) == 2.5
    # d = -1, 0, 4, 2: Walsh -1, -.5, 1.5, .5, 0, 2, 1, 4, 3, 2 -> median (1 + 1.5) / 2
    assert hodges_lehmann([0, 1, 5, 3], [1, 1, 1, 1]) == pytest.approx(1.25)
    # Symmetric differences: the shift is their centre.
    assert hodges_lehmann([3, 4, 5], [0, 0, 0]) == pytest.approx(4.0)


@pytest.mark.parametrize("n,seed,ties,zeros", CASES[:6])
def test_hodges_lehmann_equals_double_loop(n, seed, ties, zeros):
    a, b = _pairs(n, seed, ties=ties, zeros=zeros)
    d = a - b
    walsh = [(d[i] + d[j]) / 2 for i in range(n) for j in range(i, n)]
    assert hodges_lehmann(a, b) == pytest.approx(float(np.median(walsh)))


def test_cohens_dz():
    a, b = _pairs(12, 11)
    d = a - b
    assert cohens_dz(a, b) == pytest.approx(d.mean() / d.std(ddof=1))
    # d = 1, 2, 3: mean 2, SD 1
    assert cohens_dz([1, 2, 3], [0, 0, 0]) == pytest.approx(2.0)
    assert cohens_dz([2, 3], [1, 2]) == math.inf
    assert cohens_dz([1, 2], [2, 3]) == -math.inf
    assert cohens_dz([1, 2], [1, 2]) == 0.0


def test_bootstrap_is_deterministic_and_matches_a_direct_resampling():
    a, b = _pairs(20, 12)
    ci = bootstrap_mean_difference_ci(a, b, seed=0, n_resamples=2000)
    assert ci == bootstrap_mean_difference_ci(a, b, seed=0, n_resamples=2000)
    assert ci != bootstrap_mean_difference_ci(a, b, seed=1, n_resamples=2000)
    d = a - b
    rng = np.random.default_rng(0)
    means = d[rng.integers(0, d.size, size=(2000, d.size))].mean(axis=1)
    assert ci == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
    assert ci[0] < d.mean() < ci[1]
    # Same idea as scipy's percentile bootstrap, with its own random draws.
    reference = stats.bootstrap((d,), np.mean, n_resamples=2000, method="percentile",
                                rng=np.random.default_rng(5)).confidence_interval
    width = ci[1] - ci[0]
    assert ci[0] == pytest.approx(reference.low, abs=0.1 * width)
    assert ci[1] == pytest.approx(reference.high, abs=0.1 * width)


def test_bootstrap_narrows_with_n_and_level():
    widths = []
    for n in (10, 40, 160):
        a, b = _pairs(n, 13)
        low, high = bootstrap_mean_difference_ci(a, b, seed=3, n_resamples=2000)
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    a, b = _pairs(30, 14)
    low90, high90 = bootstrap_mean_difference_ci(a, b, seed=3, n_resamples=2000, level=0.9)
    low95, high95 = bootstrap_mean_difference_ci(a, b, seed=3, n_resamples=2000)
    assert low95 <= low90 < high90 <= high95
    # Constant differences: the interval is that constant.
    assert bootstrap_mean_difference_ci([2, 3, 4], [1, 2, 3], seed=0) == (1.0, 1.0)


def test_bootstrap_large_n_is_blocked_but_deterministic():
    a, b = _pairs(3000, 15)
    ci = bootstrap_mean_difference_ci(a, b, seed=7, n_resamples=1000)
    assert ci == bootstrap_mean_difference_ci(a, b, seed=7, n_resamples=1000)
    assert ci[0] < np.mean(a - b) < ci[1]


def test_bootstrap_seed_is_required():
    with pytest.raises(ValueError, match="seed"):
        bootstrap_mean_difference_ci([1, 2, 3], [0, 0, 0], seed=None)
    with pytest.raises(ValueError, match="seed"):
        bootstrap_mean_difference_ci([1, 2, 3], [0, 0, 0], seed=1.5)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_mean_difference_ci([1, 2, 3], [0, 0, 0], seed=0, n_resamples=0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_mean_difference_ci([1, 2, 3], [0, 0, 0], seed=0, level=95)


def _arms(n, seed, k=4, ties=False):
    rng = np.random.default_rng(seed)
    base = rng.normal(0.8, 0.05, n)
    arms = {f"m{i}": base + rng.normal(0.02 * i, 0.03, n) for i in range(k)}
    if ties:
        arms = {name: np.round(v, 1) for name, v in arms.items()}
    return arms


@pytest.mark.parametrize("n,seed,ties", [(3, 20, False), (3, 21, True), (10, 22, False),
                                         (8, 23, True), (40, 24, False)])
def test_friedman_pairwise_equals_scipy_and_statsmodels(n, seed, ties):
    arms = _arms(n, seed, ties=ties)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = stats.friedmanchisquare(*arms.values())
    result = friedman_pairwise(arms)
    assert result["test"] == "friedman" and result["n"] == n and result["k"] == 4
    if np.isfinite(expected.pvalue):
        assert result["statistic"] == pytest.approx(expected.statistic)
        assert result["p"] == pytest.approx(expected.pvalue)
    pairs = list(itertools.combinations(arms, 2))
    assert [(r["a"], r["b"]) for r in result["pairwise"]] == pairs
    raw = []
    for (x, y), row in zip(pairs, result["pairwise"]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = stats.wilcoxon(arms[x], arms[y])
        p = 1.0 if np.all(arms[x] == arms[y]) else float(reference.pvalue)
        raw.append(p)
        assert row["p"] == pytest.approx(p)
        assert row["mean_difference"] == pytest.approx(np.mean(arms[x] - arms[y]))
    assert [r["p_holm"] for r in result["pairwise"]] == pytest.approx(
        multipletests(raw, method="holm")[1].tolist())


def test_friedman_all_tied_rows_and_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = friedman_pairwise({"a": [1, 2, 3], "b": [1, 2, 3], "c": [1, 2, 3]})
    assert result["p"] == 1.0 and result["statistic"] == 0.0 and "note" in result
    assert all(r["p"] == 1.0 and r["p_holm"] == 1.0 for r in result["pairwise"])
    with pytest.raises(ValueError, match="at least 3 arms"):
        friedman_pairwise({"a": [1, 2], "b": [2, 3]})
    with pytest.raises(ValueError, match="equal lengths"):
        friedman_pairwise({"a": [1, 2, 3], "b": [2, 3], "c": [1, 1, 1]})
    with pytest.raises(ValueError, match=r"arms\['c'\]: value at index 1"):
        friedman_pairwise({"a": [1, 2, 3], "b": [2, 3, 4], "c": [1, float("nan"), 1]})
    with pytest.raises(ValueError, match="arms: expected a dict"):
        friedman_pairwise([[1, 2], [2, 3], [3, 4]])


@pytest.mark.parametrize("test", ["wilcoxon", "paired_t"])
def test_compare_paired_collects_the_pieces(test):
    a, b = _pairs(15, 30, ties=True, zeros=1)
    result = compare_paired(a, b, test=test, seed=4)
    single = (wilcoxon_signed_rank if test == "wilcoxon" else paired_t)(a, b)
    assert result["test"] == test
    assert result["n"] == 15
    assert result["mean_difference"] == pytest.approx(np.mean(a - b))
    assert result["hodges_lehmann"] == hodges_lehmann(a, b)
    assert result["cohens_dz"] == cohens_dz(a, b)
    assert result["ci95"] == list(bootstrap_mean_difference_ci(a, b, seed=4))
    assert result["p"] == single["p"] and result["statistic"] == single["statistic"]
    assert result["method"] in ("exact", "approx")
    with pytest.raises(ValueError, match="test"):
        compare_paired(a, b, test="sign")


@pytest.mark.parametrize("fn", [wilcoxon_signed_rank, paired_t, hodges_lehmann, cohens_dz,
                                compare_paired])
def test_error_paths_name_the_argument(fn):
    with pytest.raises(ValueError, match="a: value at index 1 is nan"):
        fn([1.0, float("nan"), 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="b: value at index 2 is inf"):
        fn([1.0, 2.0, 3.0], [1.0, 2.0, float("inf")])
    with pytest.raises(ValueError, match="equal length, got 3 and 2"):
        fn([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least 2 pairs"):
        fn([1.0], [2.0])
    with pytest.raises(ValueError, match="1-D"):
        fn([[1.0, 2.0]], [[1.0, 2.0]])
    with pytest.raises(ValueError, match="a: expected a sequence of numbers"):
        fn(["x", "y"], [1.0, 2.0])


def test_unknown_alternative():
    with pytest.raises(ValueError, match="alternative"):
        wilcoxon_signed_rank([1, 2, 3], [0, 0, 0], alternative="larger")
    with pytest.raises(ValueError, match="alternative"):
        paired_t([1, 2, 3], [0, 1, 0], alternative="two_sided")
