"""compare_groups with constant groups: infinite effects, tied Kruskal-Wallis, no warnings."""

import json
import math
import warnings

import numpy as np
import pytest
from scipy import stats

from shared.stats import cohens_d, compare_groups, effect_label


pytestmark = pytest.mark.no_keras


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_cohens_d_of_constant_groups(no_warnings):
    assert cohens_d([1, 1, 1], [2, 2]) == -math.inf
    assert cohens_d([3, 3], [2, 2, 2]) == math.inf
    assert math.isnan(cohens_d([2, 2], [2, 2, 2]))
    # np.var([0.8] * 3) is ~1e-32 in floating point, not 0: still infinite.
    assert cohens_d([0.8, 0.8, 0.8], [0.9, 0.9]) == -math.inf


def test_effect_label_of_infinite_and_undefined_d():
    assert effect_label(math.inf) == "large"
    assert effect_label(-math.inf) == "large"
    assert effect_label(float("nan")) == "undefined"
    assert effect_label(None) == "undefined"
    assert effect_label(0.1) == "negligible" and effect_label(-0.9) == "large"


def test_two_constant_groups_that_differ(no_warnings):
    result = compare_groups({"cce": [0.8, 0.8, 0.8], "heatmap": [0.9, 0.9, 0.9, 0.9]})
    c = result["comparisons"][0]
    assert c["cohens_d"] == -math.inf
    assert c["cohens_d_label"] == "large"
    assert "constant" in c["note"] and "differ" in c["note"]
    assert "undefined" not in c["note"]
    assert result["test"]["note"] == c["note"]
    assert all(v["cohens_d"] == -math.inf for v in c["cohens_d_iqr"].values())
    mw = stats.mannwhitneyu([0.8] * 3, [0.9] * 4, alternative="two-sided")
    assert result["test"]["p_value"] == pytest.approx(mw.pvalue)
    assert result["power"]["n_per_group"] == 2 and result["power"]["achieved_power"] == 1.0
    text = " ".join(result["decision"])
    assert "constant and differ" in text and "(undefined)" not in text
    json.loads(json.dumps(result))  # Python's json writes the infinity as Infinity


def test_two_constant_groups_that_are_equal(no_warnings):
    result = compare_groups({"a": [0.5, 0.5, 0.5], "b": [0.5, 0.5]})
    c = result["comparisons"][0]
    assert c["cohens_d"] is None and c["cohens_d_label"] == "undefined"
    assert "same value" in c["note"]
    assert result["test"]["p_value"] == pytest.approx(1.0)
    assert result["power"]["n_per_group"] is None


def test_kruskal_all_values_equal_is_p_one(no_warnings):
    result = compare_groups({"a": [1.0, 1.0, 1.0], "b": [1.0, 1.0], "c": [1.0, 1.0, 1.0]})
    test = result["test"]
    assert test["test"] == "kruskal_wallis"
    assert test["p_value"] == 1.0 and test["statistic"] == 0.0 and not test["significant"]
    assert "every value of every group" in test["note"]
    assert all(c["p_value"] == pytest.approx(1.0) and c["p_holm"] == pytest.approx(1.0)
               for c in result["comparisons"])
    assert any("every value of every group" in s for s in result["decision"])


def test_kruskal_constant_groups_that_differ(no_warnings):
    groups = {"a": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 2.0], "c": [2.0, 2.0, 2.0, 2.0]}
    result = compare_groups(groups)
    expected = stats.kruskal(*groups.values())
    assert result["test"]["p_value"] == pytest.approx(expected.pvalue)
    assert result["test"]["statistic"] == pytest.approx(expected.statistic)
    assert "note" not in result["test"]
    by_pair = {(c["a"], c["b"]): c for c in result["comparisons"]}
    assert by_pair[("a", "b")]["cohens_d"] == -math.inf
    assert by_pair[("a", "c")]["cohens_d_label"] == "large"
    assert by_pair[("b", "c")]["cohens_d"] is None and "same value" in by_pair[("b", "c")]["note"]
    assert result["power"]["n_per_group"] == 2  # first comparison a vs b is infinite


def test_kruskal_with_some_constant_groups_matches_scipy(no_warnings):
    rng = np.random.default_rng(1)
    groups = {"a": [0.7] * 4, "b": rng.exponential(size=6).tolist(), "c": [0.7] * 3}
    result = compare_groups(groups)
    assert result["test"]["p_value"] == pytest.approx(stats.kruskal(*groups.values()).pvalue)
    assert "same value" in result["comparisons"][1]["note"]  # a vs c
