"""Group statistics against scipy / statsmodels / hand-worked values."""

import math

import numpy as np
import pytest
from scipy import stats

from shared.stats import (cohens_d, common_language_effect_size, compare_groups, holm_correction,
                          iqr_filter, power_n_per_group)

statsmodels = pytest.importorskip("statsmodels")
from statsmodels.stats.multitest import multipletests  # noqa: E402
from statsmodels.stats.power import TTestIndPower  # noqa: E402

pytestmark = pytest.mark.no_keras


def _normal_groups():
    rng = np.random.default_rng(3)
    return {"cce": rng.normal(0.80, 0.02, 12).tolist(), "heatmap": rng.normal(0.83, 0.02, 10).tolist()}


def _skewed_groups():
    rng = np.random.default_rng(4)
    return {"single": (0.7 + 0.05 * rng.exponential(size=15)).tolist(),
            "siamese": rng.normal(0.76, 0.01, 15).tolist()}


def test_cohens_d_by_hand():
    # means 2 and 5, variances 1 and 1 -> pooled SD 1 -> d = -3
    assert cohens_d([1, 2, 3], [4, 5, 6]) == pytest.approx(-3.0)
    # unequal n: a=[0,2] var 2, b=[1,2,3,4] var 5/3; pooled = (2 + 5)/4 = 1.75
    assert cohens_d([0, 2], [1, 2, 3, 4]) == pytest.approx((1 - 2.5) / math.sqrt(1.75))


def test_cles_equals_scaled_mann_whitney_u():
    a, b = [1, 2, 3, 3], [3, 4, 0.5]
    u = stats.mannwhitneyu(a, b, alternative="two-sided").statistic
    assert common_language_effect_size(a, b) == pytest.approx(u / 12)
    assert common_language_effect_size([2], [1]) == 1.0


def test_iqr_filter_by_hand():
    values = [1, 2, 3, 4, 5, 100]  # median 3.5, q1 2.25, q3 4.75, IQR 2.5
    kept, removed = iqr_filter(values, 1.5)
    assert removed == 1 and kept.tolist() == [1, 2, 3, 4, 5]
    kept, removed = iqr_filter(values, 50)
    assert removed == 0


def test_holm_equals_statsmodels():
    p = [0.01, 0.04, 0.03, 0.2, 0.001]
    assert holm_correction(p) == pytest.approx(multipletests(p, method="holm")[1].tolist())


@pytest.mark.parametrize("d,alpha,power", [(0.2, 0.05, 0.8), (0.5, 0.05, 0.8), (0.8, 0.05, 0.9),
                                           (1.3, 0.01, 0.8), (-0.7, 0.05, 0.8), (3.0, 0.05, 0.8)])
def test_power_equals_statsmodels(d, alpha, power):
    expected = math.ceil(TTestIndPower().solve_power(abs(d), alpha=alpha, power=power,
                                                      alternative="two-sided"))
    assert power_n_per_group(d, alpha=alpha, power=power) == max(2, expected)


def test_power_rejects_zero_effect():
    with pytest.raises(ValueError, match="effect_size"):
        power_n_per_group(0.0)
    with pytest.raises(ValueError, match="power"):
        power_n_per_group(0.5, power=0.01)


def test_two_normal_groups_use_welch_and_match_scipy():
    groups = _normal_groups()
    result = compare_groups(groups)
    a, b = np.array(groups["cce"]), np.array(groups["heatmap"])
    for name, values in groups.items():
        w, p = stats.shapiro(values)
        assert result["groups"][name]["shapiro"]["W"] == pytest.approx(w)
        assert result["groups"][name]["shapiro"]["p_value"] == pytest.approx(p)
    assert result["all_normal"]
    welch = stats.ttest_ind(a, b, equal_var=False)
    assert result["test"]["test"] == "welch_t"
    assert result["test"]["p_value"] == pytest.approx(welch.pvalue)
    assert result["test"]["statistic"] == pytest.approx(welch.statistic)
    c = result["comparisons"][0]
    assert c["cohens_d"] == pytest.approx(cohens_d(a, b))
    assert result["power"]["n_per_group"] == power_n_per_group(c["cohens_d"])
    assert "Welch" in " ".join(result["decision"])
    student = compare_groups(groups, equal_var=True)
    assert student["test"]["test"] == "student_t"
    assert student["test"]["p_value"] == pytest.approx(stats.ttest_ind(a, b).pvalue)


def test_non_normal_group_uses_mann_whitney():
    groups = _skewed_groups()
    result = compare_groups(groups)
    assert not result["groups"]["single"]["shapiro"]["normal"]
    mw = stats.mannwhitneyu(groups["single"], groups["siamese"], alternative="two-sided")
    assert result["test"]["test"] == "mann_whitney_u"
    assert result["test"]["p_value"] == pytest.approx(mw.pvalue)
    assert result["test"]["statistic"] == pytest.approx(mw.statistic)
    c = result["comparisons"][0]
    assert c["cles"] == pytest.approx(mw.statistic / 225)
    for k in ("1.5", "5"):
        fa, _ = iqr_filter(groups["single"], float(k))
        fb, _ = iqr_filter(groups["siamese"], float(k))
        assert c["cohens_d_iqr"][k]["cohens_d"] == pytest.approx(cohens_d(fa, fb))
    assert any("not normal" in s and "Mann-Whitney" in s for s in result["decision"])


def test_three_groups_kruskal_or_anova_with_holm():
    rng = np.random.default_rng(5)
    normal = {"a": rng.normal(0, 1, 10), "b": rng.normal(1, 1, 10), "c": rng.normal(2, 1, 10)}
    result = compare_groups(normal)
    if result["all_normal"]:
        assert result["test"]["test"] == "one_way_anova"
        assert result["test"]["p_value"] == pytest.approx(stats.f_oneway(*normal.values()).pvalue)
    skewed = dict(normal, c=rng.exponential(size=12) ** 3)
    result = compare_groups(skewed)
    assert result["test"]["test"] == "kruskal_wallis"
    assert result["test"]["p_value"] == pytest.approx(stats.kruskal(*skewed.values()).pvalue)
    raw = [stats.mannwhitneyu(skewed[x], skewed[y], alternative="two-sided").pvalue
           for x, y in (("a", "b"), ("a", "c"), ("b", "c"))]
    assert [c["p_value"] for c in result["comparisons"]] == pytest.approx(raw)
    assert [c["p_holm"] for c in result["comparisons"]] == pytest.approx(
        multipletests(raw, method="holm")[1].tolist())


def test_bad_groups_are_named():
    with pytest.raises(ValueError, match="at least 2 groups"):
        compare_groups({"a": [1, 2]})
    with pytest.raises(ValueError, match="group 'b': value at index 1"):
        compare_groups({"a": [1, 2], "b": [1, float("nan")]})
    with pytest.raises(ValueError, match="group 'b': needs at least 2"):
        compare_groups({"a": [1, 2], "b": [1]})
