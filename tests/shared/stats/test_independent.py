import numpy as np
import pytest
from scipy import stats

from shared.stats.independent import (bootstrap_independent_ci, compare_independent,
                                      mde_independent, tost_independent)

pytestmark = pytest.mark.no_keras


@pytest.mark.parametrize("n_a,n_b", [(3, 3), (8, 11), (20, 20)])
def test_tests_match_scipy(n_a, n_b):
    rng = np.random.default_rng(n_a + n_b)
    a, b = np.round(rng.normal(1, 1, n_a), 1), np.round(rng.normal(0, 2, n_b), 1)  # with ties
    mw = compare_independent(a, b, test="mannwhitney")
    welch = compare_independent(a, b, test="welch")
    assert mw["p"] == pytest.approx(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    assert welch["p"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert welch["mean_difference"] == pytest.approx(a.mean() - b.mean())


@pytest.mark.parametrize("margin", [0.2, 0.5, 1.5])
def test_tost_matches_statsmodels(margin):
    from statsmodels.stats.weightstats import ttost_ind

    rng = np.random.default_rng(7)
    a, b = rng.normal(0.1, 0.5, 12), rng.normal(0, 0.8, 9)
    ours = tost_independent(a, b, margin=margin)
    p, lower, upper = ttost_ind(a, b, -margin, margin, usevar="unequal")
    assert ours["p"] == pytest.approx(p)
    assert ours["p_lower"] == pytest.approx(lower[1]) and ours["p_upper"] == pytest.approx(upper[1])


def test_mde_matches_statsmodels_power_solver():
    from statsmodels.stats.power import TTestIndPower

    a = np.array([0.1, 0.4, 0.3, 0.5, 0.2, 0.6])
    b = np.array([0.2, 0.5, 0.1, 0.3, 0.4, 0.3])
    pooled = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    expected = TTestIndPower().solve_power(nobs1=6, alpha=0.05, power=0.8) * pooled
    assert mde_independent(a, b) == pytest.approx(expected, rel=1e-4)


def test_constant_groups_give_a_clear_result_without_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = compare_independent([1.0, 1.0, 1.0], [1.0, 1.0], test="welch")
        apart = compare_independent([1.0, 1.0, 1.0], [2.0, 2.0], test="welch")
    assert same["p"] == 1.0 and same["note"]
    assert apart["p"] == 0.0 and "constant" in apart["note"]


def test_bootstrap_is_seeded_and_covers_the_difference():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1, 1, 30), rng.normal(0, 1, 30)
    ci = bootstrap_independent_ci(a, b, seed=3)
    assert ci == bootstrap_independent_ci(a, b, seed=3)
    assert ci[0] < a.mean() - b.mean() < ci[1]
    with pytest.raises(ValueError, match="seed"):
        bootstrap_independent_ci(a, b, seed=None)
    with pytest.raises(ValueError, match="a: value at index 1 is nan"):
        compare_independent([1.0, float("nan")], [1.0, 2.0])
