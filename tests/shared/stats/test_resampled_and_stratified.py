"""The corrected resampled t and the tests that combine runs, against hand values and
independent references (statsmodels' OLS, SciPy's Wilcoxon)."""

import math

import numpy as np
import pytest
from scipy import stats

from shared.stats.power import mde_paired
from shared.stats.resampled import corrected_paired_t, resampling_ratio
from shared.stats.stratified import stratified_paired_t, stratified_signed_rank

pytestmark = pytest.mark.no_keras


def test_corrected_resampled_t_matches_the_hand_computed_value():
    # d = 1, 2, 3, 4: mean 2.5, s^2 = 5/3; train 0.8, test 0.2 -> ratio 1/4;
    # se^2 = (1/4 + 1/4) * 5/3 = 5/6; t = 2.5 / sqrt(5/6) = 2.7386128; df = 3
    result = corrected_paired_t([1, 2, 3, 4], [0, 0, 0, 0],
                                ratio=resampling_ratio(0.8, 0.2))
    assert result["statistic"] == pytest.approx(2.7386127875258306, rel=1e-12)
    assert result["df"] == 3
    # the t CDF with 3 df in closed form: F(t) = 1/2 + (x / (1 + x^2) + atan x) / pi,
    # x = t / sqrt(3); here x^2 = 2.5
    x = math.sqrt(2.5)
    assert result["p"] == pytest.approx(2 * (0.5 - (x / 3.5 + math.atan(x)) / math.pi),
                                        rel=1e-10)
    half = 3.182446305284263 * math.sqrt(5 / 6)  # t_{3, 0.975}
    assert result["ci"] == pytest.approx([2.5 - half, 2.5 + half])


def test_ratio_zero_is_the_plain_paired_t():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.8, 0.05, 9), rng.normal(0.75, 0.05, 9)
    for alternative in ("two-sided", "greater", "less"):
        ours = corrected_paired_t(a, b, ratio=0.0, alternative=alternative)
        ref = stats.ttest_rel(a, b, alternative=alternative)
        assert ours["p"] == pytest.approx(ref.pvalue, rel=1e-10)
        assert ours["statistic"] == pytest.approx(ref.statistic, rel=1e-10)


def test_the_correction_raises_the_mde():
    plain = mde_paired(10, 0.05, alternative="greater")
    corrected = mde_paired(10, 0.05, alternative="greater", ratio=0.25)
    # noncentrality shrinks by sqrt((1/10) / (1/10 + 1/4)): the MDE grows by about that
    assert corrected > plain * 1.8


@pytest.mark.parametrize("train,test", [(0, 0.2), (0.9, 0.2), (0.8, -0.1), ("a", 0.2)])
def test_bad_fractions_are_refused(train, test):
    with pytest.raises(ValueError, match="fraction"):
        resampling_ratio(train, test)


def test_stratified_paired_t_matches_the_hand_computed_example():
    # run A: 0.1, 0.2, 0.3 (mean 0.2, s^2 0.01); run B: 0.0, 0.2, 0.4 (mean 0.2, s^2 0.04)
    # effect 0.2; pooled s^2 = (2 * 0.01 + 2 * 0.04) / 4 = 0.025; se = sqrt(0.025 / 6)
    result = stratified_paired_t([[0.1, 0.2, 0.3], [0.0, 0.2, 0.4]])
    se = math.sqrt(0.025 / 6)
    assert result["effect"] == pytest.approx(0.2)
    assert result["df"] == 4 and result["se"] == pytest.approx(se)
    assert result["statistic"] == pytest.approx(0.2 / se)
    assert result["p"] == pytest.approx(2 * stats.t.sf(0.2 / se, 4))


def test_stratified_paired_t_equals_ols_with_one_intercept_per_run():
    import statsmodels.api as sm

    rng = np.random.default_rng(4)
    strata = [rng.normal(0.03, 0.05, 6), rng.normal(0.01, 0.02, 9), rng.normal(0.05, 0.04, 4)]
    y = np.concatenate(strata)
    X = np.zeros((y.size, 3))
    start = 0
    for k, s in enumerate(strata):
        X[start:start + s.size, k] = 1.0
        start += s.size
    weights = np.array([s.size for s in strata]) / y.size
    ols = sm.OLS(y, X).fit().t_test(weights[None, :])
    ours = stratified_paired_t(strata)
    assert ours["effect"] == pytest.approx(float(ols.effect[0]))
    assert ours["se"] == pytest.approx(float(ols.sd[0, 0]))
    assert ours["p"] == pytest.approx(float(ols.pvalue))
    summaries = [{"n": s.size, "mean": s.mean(), "sd": s.std(ddof=1)} for s in strata]
    assert stratified_paired_t(summaries)["p"] == pytest.approx(ours["p"])


def test_one_stratum_is_the_paired_t_and_the_tost():
    from shared.stats.power import tost_paired

    d = np.array([0.01, -0.02, 0.015, 0.0, 0.005, -0.01])
    ours = stratified_paired_t([d], alternative="greater", margin=0.03)
    assert ours["p"] == pytest.approx(stats.ttest_1samp(d, 0, alternative="greater").pvalue)
    assert ours["p_tost"] == pytest.approx(tost_paired(d, np.zeros(6), margin=0.03)["p"])


def test_stratified_signed_rank_on_one_run_is_scipys_normal_approximation():
    d = np.array([0.3, -0.1, 0.2, 0.2, 0.5, 0.0, -0.4, 0.6, 0.1, 0.7])
    ref = stats.wilcoxon(d, method="approx", correction=False, alternative="greater")
    ours = stratified_signed_rank([d], alternative="greater")
    assert ours["p"] == pytest.approx(ref.pvalue, rel=1e-10)


def test_stratified_signed_rank_sums_the_runs_by_hand():
    # run A: 1, 2, 3 -> W+ = 6, E = 3, Var = 3*4*7/24 = 3.5
    # run B: -1, 2  -> W+ = 2, E = 1.5, Var = 2*3*5/24 = 1.25
    # z = (8 - 4.5) / sqrt(4.75)
    ours = stratified_signed_rank([[1, 2, 3], [-1, 2]], alternative="greater")
    z = 3.5 / math.sqrt(4.75)
    assert ours["statistic"] == 8 and ours["z"] == pytest.approx(z)
    assert ours["p"] == pytest.approx(stats.norm.sf(z))
