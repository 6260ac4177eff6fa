"""Minimum detectable effects and TOST against statsmodels."""

import math

import numpy as np
import pytest
from scipy import stats

from shared.stats import (
    mde_paired,
    mde_proportion_difference,
    mde_two_sample,
    tost_paired,
)

sm_power = pytest.importorskip("statsmodels.stats.power")
NormalIndPower, TTestIndPower, TTestPower = (sm_power.NormalIndPower, sm_power.TTestIndPower,
                                             sm_power.TTestPower)
proportion_effectsize = pytest.importorskip("statsmodels.stats.proportion").proportion_effectsize
ttost_paired = pytest.importorskip("statsmodels.stats.weightstats").ttost_paired

SM_ALTERNATIVE = {"two-sided": "two-sided", "greater": "larger", "less": "smaller"}


pytestmark = pytest.mark.no_keras


# (n, alpha, power) where statsmodels' own solver converges; it stops at its
# search bound (or short of the root) for n = 2-3 at alpha 0.01, power 0.9.
DESIGNS = [(2, 0.05, 0.8), (3, 0.05, 0.8), (10, 0.05, 0.8), (50, 0.05, 0.8), (3, 0.1, 0.5),
           (10, 0.1, 0.5), (10, 0.01, 0.9), (50, 0.01, 0.9)]


@pytest.mark.parametrize("n,alpha,power", DESIGNS)
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_mde_paired_equals_statsmodels(n, alpha, power, alternative):
    sd = 0.03
    sm_alternative = SM_ALTERNATIVE[alternative]
    expected = abs(TTestPower().solve_power(nobs=n, alpha=alpha, power=power,
                                            alternative=sm_alternative))
    mde = mde_paired(n, sd, alpha=alpha, power=power, alternative=alternative)
    # statsmodels' root finder stops at a relative error of about 1e-6.
    assert mde == pytest.approx(expected * sd, rel=1e-5)
    # The design has the requested power at the MDE (statsmodels' power function).
    effect = mde / sd if alternative != "less" else -mde / sd
    achieved = TTestPower().power(effect, nobs=n, alpha=alpha, alternative=sm_alternative)
    if np.isfinite(achieved):  # statsmodels returns NaN when a tail underflows
        assert achieved == pytest.approx(power, abs=1e-9)


def test_mde_paired_tiny_design_by_simulation():
    # n = 3 at alpha 0.01 and power 0.9, where statsmodels' solver fails: the
    # fraction of simulated paired t-tests that reject at the MDE is 0.9.
    mde = mde_paired(3, 1.0, alpha=0.01, power=0.9)
    d = np.random.default_rng(0).normal(mde, 1.0, size=(200_000, 3))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(3))
    rejected = np.mean(2 * stats.t.sf(np.abs(t), 2) < 0.01)
    assert rejected == pytest.approx(0.9, abs=0.004)  # 6 binomial SDs


@pytest.mark.parametrize("n", [3, 10, 40])
def test_mde_paired_wilcoxon_uses_the_are(n):
    effective = n * 3 / math.pi
    expected = TTestPower().solve_power(nobs=effective, alpha=0.05, power=0.8)
    mde = mde_paired(n, 2.0, test="wilcoxon")
    assert mde == pytest.approx(2.0 * expected, rel=1e-6)
    assert mde > mde_paired(n, 2.0)  # the rank test needs a larger difference


def test_mde_paired_edge_cases_and_errors():
    assert mde_paired(10, 0.0) == 0.0
    assert mde_paired(40, 1.0) < mde_paired(10, 1.0)
    with pytest.raises(ValueError, match="n: expected an integer >= 2"):
        mde_paired(1, 1.0)
    with pytest.raises(ValueError, match="n: expected an integer"):
        mde_paired(10.5, 1.0)
    with pytest.raises(ValueError, match="sd_diff"):
        mde_paired(10, -1.0)
    with pytest.raises(ValueError, match="sd_diff"):
        mde_paired(10, float("nan"))
    with pytest.raises(ValueError, match="power"):
        mde_paired(10, 1.0, power=0.01)
    with pytest.raises(ValueError, match="alpha"):
        mde_paired(10, 1.0, alpha=0.0)
    with pytest.raises(ValueError, match="test"):
        mde_paired(10, 1.0, test="sign")
    with pytest.raises(ValueError, match="alternative"):
        mde_paired(10, 1.0, alternative="larger")


@pytest.mark.parametrize("n", [2, 3, 8, 30])
@pytest.mark.parametrize("alternative", ["two-sided", "greater"])
def test_mde_two_sample_equals_statsmodels(n, alternative):
    expected = TTestIndPower().solve_power(nobs1=n, ratio=1.0, alpha=0.05, power=0.8,
                                           alternative=SM_ALTERNATIVE[alternative])
    mde = mde_two_sample(n, 0.5, alternative=alternative)
    assert mde == pytest.approx(0.5 * expected, rel=1e-5)
    achieved = TTestIndPower().power(mde / 0.5, nobs1=n, alpha=0.05, ratio=1.0,
                                     alternative=SM_ALTERNATIVE[alternative])
    if np.isfinite(achieved):
        assert achieved == pytest.approx(0.8, abs=1e-9)
    assert mde_two_sample(n, 0.0) == 0.0
    with pytest.raises(ValueError, match="n_per_group"):
        mde_two_sample(1, 0.5)
    with pytest.raises(ValueError, match="sd"):
        mde_two_sample(5, float("inf"))


@pytest.mark.parametrize("n,p0", [(50, 0.5), (200, 0.8), (1000, 0.9), (30, 0.1)])
def test_mde_proportion_equals_statsmodels(n, p0):
    h = NormalIndPower().solve_power(nobs1=n, ratio=0, alpha=0.05, power=0.8)
    above = mde_proportion_difference(n, p0)
    below = mde_proportion_difference(n, p0, direction="below")
    # Cohen's h between p0 +- mde and p0 is the statsmodels effect size ...
    assert proportion_effectsize(p0 + above, p0) == pytest.approx(h, rel=1e-6)
    assert proportion_effectsize(p0, p0 - below) == pytest.approx(h, rel=1e-6)
    # ... and the one-sample normal test has exactly the requested power there.
    power = NormalIndPower().power(proportion_effectsize(p0 + above, p0), nobs1=n,
                                   alpha=0.05, ratio=0)
    assert power == pytest.approx(0.8, abs=1e-8)
    if p0 == 0.5:
        assert above == pytest.approx(below)


def test_mde_proportion_by_hand_and_bounds():
    # p0 = 0.5, large n: h ~ (1.95996 + 0.84162) / sqrt(n) and p1 - p0 ~ h / 2.
    n = 10000
    assert mde_proportion_difference(n, 0.5) == pytest.approx((1.959964 + 0.841621) / 100 / 2,
                                                              rel=1e-3)
    # 10 items against 99 %: nothing above p0 is detectable.
    assert mde_proportion_difference(10, 0.99) == math.inf
    with pytest.raises(ValueError, match="p0"):
        mde_proportion_difference(100, 1.0)
    with pytest.raises(ValueError, match="n: expected an integer >= 1"):
        mde_proportion_difference(0, 0.5)
    with pytest.raises(ValueError, match="direction"):
        mde_proportion_difference(100, 0.5, direction="up")


def _pairs(n, seed, *, ties=False):
    rng = np.random.default_rng(seed)
    b = rng.normal(0.8, 0.05, n)
    a = b + rng.normal(0.005, 0.02, n)
    if ties:
        a, b = np.round(a, 2), np.round(b, 2)
    return a, b


@pytest.mark.parametrize("n,seed,ties", [(3, 0, False), (3, 1, True), (12, 2, True),
                                         (40, 3, False)])
@pytest.mark.parametrize("margin", [0.005, 0.02, 0.1])
def test_tost_equals_statsmodels(n, seed, ties, margin):
    a, b = _pairs(n, seed, ties=ties)
    p, (t1, p1, df1), (t2, p2, df2) = ttost_paired(a, b, -margin, margin)
    result = tost_paired(a, b, margin=margin)
    assert result["p"] == pytest.approx(p)
    assert result["p_lower"] == pytest.approx(p1) and result["p_upper"] == pytest.approx(p2)
    assert result["t_lower"] == pytest.approx(t1) and result["t_upper"] == pytest.approx(t2)
    assert result["df"] == df1 == df2
    assert result["equivalent"] == (p < 0.05)
    assert result["mean_difference"] == pytest.approx(np.mean(a - b))
    assert result["margin"] == margin


def test_tost_zero_spread_and_errors():
    # Differences exactly 0.25 (binary fractions): zero spread.
    inside = tost_paired([1.0, 2.0, 3.0], [0.75, 1.75, 2.75], margin=0.5)
    assert inside["p"] == 0.0 and inside["equivalent"]
    outside = tost_paired([1.0, 2.0, 3.0], [0.75, 1.75, 2.75], margin=0.25)
    assert outside["p"] == 1.0 and not outside["equivalent"]
    with pytest.raises(ValueError, match="margin"):
        tost_paired([1, 2, 3], [1, 2, 4], margin=0)
    with pytest.raises(ValueError, match="margin"):
        tost_paired([1, 2, 3], [1, 2, 4], margin=None)
    with pytest.raises(ValueError, match="a: value at index 0 is nan"):
        tost_paired([float("nan"), 2, 3], [1, 2, 4], margin=1)
    with pytest.raises(ValueError, match="equal length"):
        tost_paired([1, 2, 3], [1, 2], margin=1)


@pytest.mark.parametrize("sesoi,sd", [(0.05, 0.05), (0.02, 0.05), (0.1, 0.03)])
def test_units_for_mde_is_the_smallest_sufficient_design(sesoi, sd):
    from statsmodels.stats.power import TTestPower

    from shared.stats.power import mde_paired, units_for_mde

    n = units_for_mde(sesoi, sd)
    assert mde_paired(n, sd) <= sesoi
    assert n == 2 or mde_paired(n - 1, sd) > sesoi
    assert n == max(2, math.ceil(TTestPower().solve_power(effect_size=sesoi / sd, alpha=0.05,
                                                           power=0.8)))
    assert units_for_mde(sesoi, sd, test="wilcoxon") >= n


def test_mde_t_is_the_paired_mde_at_the_same_n():
    from shared.stats import mde_paired, mde_t

    # A paired t-test on 12 units with SD 0.078: nobs 12, df 11.
    assert mde_t(0.078, 12.0, 11.0, alternative="greater") == pytest.approx(
        mde_paired(12, 0.078, alternative="greater"), rel=1e-12)
