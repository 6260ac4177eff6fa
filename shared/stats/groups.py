"""Statistical comparison of groups of models, as the heatmap-loss thesis does it.

For each group (e.g. the models trained with one loss, one per seed) the metric
values are tested for normality with Shapiro-Wilk. Two groups are then compared
with a two-sided Mann-Whitney U test when any group is not normal, otherwise with
a t-test (Welch's by default, Student's on request). The effect is reported as
Cohen's d with the pooled standard deviation, as the common-language effect size,
and as Cohen's d recomputed after removing values further than 1.5 and 5
interquartile ranges from each group's median (outlier-robust variants, reported
separately). A power analysis gives the number of models per group needed to
detect the observed effect.

More than two groups: Kruskal-Wallis (any group not normal) or one-way ANOVA,
followed by the pairwise two-group tests with Holm's correction.

Every result is a plain, JSON-able dict; `decision` lists the decision path in
words, in the order the decisions were taken. Constant groups are answered, not
left undefined: two constant groups that differ have Cohen's d = +-inf (kept as
a float, which Python's json writes as Infinity) and a `note`; when every value
of every group is the same, the omnibus test reports p = 1 with a `note`.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import optimize, stats

EFFECT_LABELS = ((0.2, "negligible"), (0.5, "small"), (0.8, "medium"), (math.inf, "large"))


def _as_groups(groups) -> dict:
    if not isinstance(groups, dict):
        raise ValueError(f"groups: expected a dict of name -> values, got {type(groups).__name__}")
    if len(groups) < 2:
        raise ValueError(f"groups: need at least 2 groups to compare, got {len(groups)} "
                         f"({list(groups)})")
    out = {}
    for name, values in groups.items():
        arr = np.asarray(list(values), dtype=float).ravel()
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise ValueError(f"group {name!r}: value at index {int(bad[0])} is {arr[bad[0]]}; "
                             f"expected finite numbers")
        if arr.size < 2:
            raise ValueError(f"group {name!r}: needs at least 2 values, got {arr.size}")
        out[str(name)] = arr
    return out


def _f(x):
    """A float for JSON (NaN -> None)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _d(x):
    """An effect size for the result: NaN (0/0) -> None, +-inf kept."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def effect_label(d) -> str:
    """Cohen's conventional label of |d|: negligible, small, medium, large.

    An infinite d (constant groups whose values differ) is "large"; None or NaN
    (constant groups with equal values) is "undefined".
    """
    if d is None or math.isnan(d):
        return "undefined"
    for bound, label in EFFECT_LABELS:
        if abs(d) < bound:
            return label
    return "large"


def cohens_d(a, b) -> float:
    """Cohen's d of a minus b with the pooled standard deviation.

    d = (mean(a) - mean(b)) / s_p,  s_p^2 = ((n_a - 1) s_a^2 + (n_b - 1) s_b^2) / (n_a + n_b - 2)

    Returns NaN when both groups have zero variance and equal means; math.inf
    with the sign of the difference when the variance is zero but the means
    differ (the groups are separated without overlap).
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.size < 2 or b.size < 2:
        return float("nan")
    # A constant group has variance 0 exactly: np.var of [0.8] * 3 is ~1e-32, which
    # would turn an infinite d into a huge finite one.
    var_a = a.var(ddof=1) if np.ptp(a) > 0 else 0.0
    var_b = b.var(ddof=1) if np.ptp(b) > 0 else 0.0
    pooled = ((a.size - 1) * var_a + (b.size - 1) * var_b) / (a.size + b.size - 2)
    diff = a.mean() - b.mean()
    if pooled == 0:
        return float("nan") if diff == 0 else math.copysign(math.inf, diff)
    return float(diff / math.sqrt(pooled))


def common_language_effect_size(a, b) -> float:
    """P(a random value of a > a random value of b), ties counted one half.

    Equals U_a / (n_a n_b), the Mann-Whitney statistic of `a` scaled to [0, 1].
    """
    a = np.asarray(a, dtype=float)[:, None]
    b = np.asarray(b, dtype=float)[None, :]
    return float(((a > b).sum() + 0.5 * (a == b).sum()) / (a.size * b.size))


def iqr_filter(values, k: float):
    """Values within k interquartile ranges of the median, and how many were removed."""
    values = np.asarray(values, dtype=float)
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    keep = np.abs(values - median) <= k * (q3 - q1)
    return values[keep], int((~keep).sum())


def holm_correction(p_values) -> list:
    """Holm-Bonferroni adjusted p-values (step-down), in the input order."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p, kind="mergesort")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def _two_sample_power(effect_size, n, alpha):
    """Power of the two-sided two-sample t-test with n per group (noncentral t)."""
    df = 2 * n - 2
    nc = abs(effect_size) * math.sqrt(n / 2.0)
    crit = stats.t.isf(alpha / 2.0, df)
    upper = stats.nct.sf(crit, df, nc)
    lower = stats.nct.cdf(-crit, df, nc)
    # SciPy's noncentral t returns NaN for tail values far below 1e-300 / far above.
    upper = 1.0 if not math.isfinite(upper) else upper
    lower = 0.0 if not math.isfinite(lower) else lower
    return float(min(1.0, upper + lower))


def power_n_per_group(effect_size, *, alpha=0.05, power=0.8) -> int:
    """Models needed per group for a two-sided two-sample t-test.

    Solves power(n) = `power` for the noncentral t distribution with
    df = 2n - 2 and noncentrality |d| sqrt(n / 2) (the formula of statsmodels'
    TTestIndPower with ratio 1), and rounds up.

    Args:
        effect_size: float. Cohen's d (sign ignored), non-zero and finite.
        alpha: float. Two-sided significance level. Defaults to 0.05.
        power: float. Desired power, in (alpha, 1). Defaults to 0.8.

    Returns:
        int, at least 2.
    """
    if effect_size is None or not math.isfinite(float(effect_size)) or effect_size == 0:
        raise ValueError(f"effect_size: expected a finite non-zero Cohen's d, got {effect_size!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: expected a value in (0, 1), got {alpha!r}")
    if not alpha < power < 1:
        raise ValueError(f"power: expected a value in (alpha={alpha}, 1), got {power!r}")
    d = abs(float(effect_size))

    def gap(n):
        return _two_sample_power(d, n, alpha) - power

    low = 2.0
    if gap(low) >= 0:
        return 2
    high = 4.0
    while gap(high) < 0:
        high *= 2
        if high > 1e9:
            raise ValueError(f"effect_size {effect_size!r} is too small: more than 1e9 per group")
    n = optimize.brentq(gap, low, high, xtol=1e-10)
    return max(2, int(math.ceil(n - 1e-9)))


def _describe(values, alpha):
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    sd = values.std(ddof=1) if np.ptp(values) > 0 else 0.0  # not ~1e-16 for constants
    out = {"n": int(values.size), "mean": _f(values.mean()), "sd": _f(sd),
           "median": _f(median), "q1": _f(q1), "q3": _f(q3), "iqr": _f(q3 - q1),
           "min": _f(values.min()), "max": _f(values.max())}
    if values.size >= 3 and np.ptp(values) > 0:
        w, p = stats.shapiro(values)
        out["shapiro"] = {"W": _f(w), "p_value": _f(p), "normal": bool(p > alpha)}
    else:
        reason = "fewer than 3 values" if values.size < 3 else "all values equal"
        out["shapiro"] = {"W": None, "p_value": None, "normal": False, "note":
                          f"not testable ({reason}); treated as not normal"}
    return out


def _pair(name_a, a, name_b, b, *, parametric, equal_var, iqr_filters):
    if parametric:
        res = stats.ttest_ind(a, b, equal_var=equal_var)
        test = "student_t" if equal_var else "welch_t"
        df = getattr(res, "df", None)
        out = {"test": test, "statistic": _f(res.statistic), "p_value": _f(res.pvalue),
               "df": _f(df)}
    else:
        res = stats.mannwhitneyu(a, b, alternative="two-sided")
        out = {"test": "mann_whitney_u", "statistic": _f(res.statistic),
               "p_value": _f(res.pvalue)}
    d = cohens_d(a, b)
    out.update({
        "a": name_a, "b": name_b,
        "mean_difference": _f(a.mean() - b.mean()),
        "cohens_d": _d(d), "cohens_d_label": effect_label(d),
        "cles": common_language_effect_size(a, b),
        "cohens_d_iqr": {},
    })
    for k in iqr_filters:
        fa, ra = iqr_filter(a, k)
        fb, rb = iqr_filter(b, k)
        dk = cohens_d(fa, fb)
        out["cohens_d_iqr"][_kkey(k)] = {"k": float(k), "cohens_d": _d(dk),
                                         "label": effect_label(dk),
                                         "removed": {name_a: ra, name_b: rb},
                                         "n": {name_a: int(fa.size), name_b: int(fb.size)}}
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        if a[0] == b[0]:
            out["note"] = (f"{name_a} and {name_b} are both constant with the same value "
                           f"{a[0]:.6g}: no difference; Cohen's d is undefined (0/0)")
        else:
            out["note"] = (f"{name_a} and {name_b} are both constant and differ ({a[0]:.6g} vs "
                           f"{b[0]:.6g}): the groups do not overlap, so Cohen's d is "
                           f"{'+' if d > 0 else '-'}infinite (large)")
    return out


def _kkey(k) -> str:
    return f"{float(k):g}"


def _fmt_p(p):
    if p is None:
        return "undefined"
    return f"{p:.3g}" if p >= 1e-4 else f"{p:.2e}"


def _fmt(x, digits=3):
    return "undefined" if x is None else f"{x:.{digits}g}"


TEST_NAMES = {"mann_whitney_u": "two-sided Mann-Whitney U test",
              "welch_t": "two-sided Welch t-test", "student_t": "two-sided Student t-test",
              "kruskal_wallis": "Kruskal-Wallis H test", "one_way_anova": "one-way ANOVA"}


def compare_groups(groups, *, alpha=0.05, equal_var=False, iqr_filters=(1.5, 5.0),
                   power=0.8) -> dict:
    """Compares the metric values of two or more groups.

    Args:
        groups: dict name -> sequence of floats (e.g. one accuracy per trained
            model). At least 2 groups of at least 2 finite values each.
        alpha: float. Significance level of every test. Defaults to 0.05.
        equal_var: bool. Student's t-test (pooled variance) instead of Welch's.
            Defaults to False.
        iqr_filters: tuple of float. Cohen's d is recomputed after removing the
            values further than k IQRs from each group's median, for each k.
        power: float. Target power of the sample-size analysis. Defaults to 0.8.

    Returns:
        dict (JSON-able) with `groups` (descriptives + Shapiro-Wilk), `all_normal`,
        `test` (the omnibus / two-group test), `comparisons` (the pairwise
        results: test, p-value, Holm-adjusted p-value, Cohen's d, CLES,
        IQR-filtered d), `power` and `decision` (list of sentences).
    """
    data = _as_groups(groups)
    names = list(data)
    described = {name: _describe(values, alpha) for name, values in data.items()}
    all_normal = all(g["shapiro"]["normal"] for g in described.values())
    decision = []
    parts = []
    for name in names:
        sw = described[name]["shapiro"]
        if sw["p_value"] is None:
            parts.append(f"{name}: {sw['note']}")
        else:
            parts.append(f"{name}: W = {sw['W']:.3f}, p = {_fmt_p(sw['p_value'])} "
                         f"({'normal' if sw['normal'] else 'not normal'})")
    decision.append(f"Shapiro-Wilk normality test per group at alpha = {alpha:g}: "
                    + "; ".join(parts) + ".")
    parametric = all_normal
    pair_test = ("student_t" if equal_var else "welch_t") if parametric else "mann_whitney_u"

    result = {"alpha": float(alpha), "equal_var": bool(equal_var),
              "iqr_filters": [float(k) for k in iqr_filters], "group_names": names,
              "groups": described, "all_normal": bool(all_normal)}

    if len(names) == 2:
        if parametric:
            decision.append(f"Both groups are normal, so they are compared with a "
                            f"{TEST_NAMES[pair_test]}"
                            + (" (equal variances assumed on request)." if equal_var
                               else " (variances not assumed equal)."))
        else:
            decision.append("At least one group is not normal, so the groups are compared "
                            "with a two-sided Mann-Whitney U test.")
        comparison = _pair(names[0], data[names[0]], names[1], data[names[1]],
                           parametric=parametric, equal_var=equal_var, iqr_filters=iqr_filters)
        comparison["p_holm"] = comparison["p_value"]
        comparison["significant"] = bool(comparison["p_value"] is not None
                                         and comparison["p_value"] < alpha)
        test = {k: comparison[k] for k in ("test", "statistic", "p_value")}
        if "df" in comparison:
            test["df"] = comparison["df"]
        if "note" in comparison:
            test["note"] = comparison["note"]
        test["significant"] = comparison["significant"]
        comparisons = [comparison]
    else:
        arrays = [data[n] for n in names]
        if parametric:
            omnibus = "one_way_anova"
            decision.append(f"All {len(names)} groups are normal, so they are compared with a "
                            f"one-way ANOVA, followed by pairwise {TEST_NAMES[pair_test]}s.")
        else:
            omnibus = "kruskal_wallis"
            decision.append(f"At least one of the {len(names)} groups is not normal, so they "
                            f"are compared with a Kruskal-Wallis H test, followed by pairwise "
                            f"two-sided Mann-Whitney U tests.")
        all_tied = np.ptp(np.concatenate(arrays)) == 0
        if all_tied:
            # Only reachable without normal groups. H is 0/0 (every value tied);
            # SciPy returns NaN with a RuntimeWarning.
            statistic, p_value = 0.0, 1.0
        else:
            res = stats.f_oneway(*arrays) if parametric else stats.kruskal(*arrays)
            statistic, p_value = res.statistic, res.pvalue
        test = {"test": omnibus, "statistic": _f(statistic), "p_value": _f(p_value),
                "significant": bool(_f(p_value) is not None and p_value < alpha)}
        if all_tied:
            test["note"] = (f"every value of every group equals {arrays[0][0]:.6g}: no "
                            f"difference; the H statistic is 0/0, reported as 0 with p = 1")
        comparisons = [
            _pair(a, data[a], b, data[b], parametric=parametric, equal_var=equal_var,
                  iqr_filters=iqr_filters)
            for a, b in itertools.combinations(names, 2)]
        raw = [c["p_value"] if c["p_value"] is not None else 1.0 for c in comparisons]
        for c, p_adj in zip(comparisons, holm_correction(raw)):
            c["p_holm"] = _f(p_adj)
            c["significant"] = bool(p_adj < alpha)
    result["test"] = test
    result["comparisons"] = comparisons

    verdict = "significant" if test["significant"] else "not significant"
    stat_text = f"statistic = {_fmt(test['statistic'], 4)}"
    if test.get("df") is not None:
        stat_text += f", df = {test['df']:.3g}"
    decision.append(f"{TEST_NAMES[test['test']]}: {stat_text}, p = {_fmt_p(test['p_value'])} "
                    f"{'<' if test['significant'] else '>='} alpha = {alpha:g}: the difference "
                    f"is {verdict}.")
    if len(comparisons) > 1 and "note" in test:
        decision.append(f"Note: {test['note']}.")
    if len(comparisons) > 1:
        for c in comparisons:
            decision.append(
                f"{c['a']} vs {c['b']}: {TEST_NAMES[c['test']]} p = {_fmt_p(c['p_value'])}, "
                f"Holm-adjusted p = {_fmt_p(c['p_holm'])} "
                f"({'significant' if c['significant'] else 'not significant'}).")
    for c in comparisons:
        iqr_text = "; ".join(
            f"beyond {v['k']:g} IQR: d = {_fmt(v['cohens_d'])} "
            f"({sum(v['removed'].values())} value(s) removed)"
            for v in c["cohens_d_iqr"].values())
        decision.append(
            f"Effect {c['a']} - {c['b']}: Cohen's d (pooled SD) = {_fmt(c['cohens_d'])} "
            f"({c['cohens_d_label']}); common-language effect size = {c['cles']:.3f} (a random "
            f"{c['a']} value exceeds a random {c['b']} value with this probability)"
            + (f"; after removing values {iqr_text}." if iqr_text else "."))
        if "note" in c:
            decision.append(f"Note: {c['note']}.")

    # Sample size needed to detect the observed effect of the first comparison.
    d_obs = comparisons[0]["cohens_d"]
    n_have = min(g["n"] for g in described.values())
    if d_obs is not None and math.isinf(d_obs):
        # Constant groups that differ: no spread to overcome, the smallest design
        # (2 per group) separates them with certainty.
        result["power"] = {"comparison": f"{comparisons[0]['a']} vs {comparisons[0]['b']}",
                           "effect_size": d_obs, "alpha": float(alpha), "power": float(power),
                           "n_per_group": 2, "n_smallest_group": n_have, "achieved_power": 1.0,
                           "note": "infinite effect (constant groups that differ)"}
        decision.append(f"Power analysis ({result['power']['comparison']}): the effect is "
                        f"infinite (constant groups that differ), so 2 models per group "
                        f"suffice; the smallest group has {n_have}.")
    elif d_obs is not None and d_obs != 0:
        n_needed = power_n_per_group(d_obs, alpha=alpha, power=power)
        result["power"] = {"comparison": f"{comparisons[0]['a']} vs {comparisons[0]['b']}",
                           "effect_size": d_obs, "alpha": float(alpha), "power": float(power),
                           "n_per_group": n_needed, "n_smallest_group": n_have,
                           "achieved_power": _f(_two_sample_power(d_obs, n_have, alpha))}
        decision.append(
            f"Power analysis ({result['power']['comparison']}): detecting |d| = "
            f"{abs(d_obs):.3g} with power {power:g} at alpha "
            f"{alpha:g} (two-sided t-test) needs {n_needed} models per group; the smallest group "
            f"has {n_have} (achieved power {result['power']['achieved_power']:.2f}).")
    else:
        result["power"] = {"comparison": f"{comparisons[0]['a']} vs {comparisons[0]['b']}",
                           "effect_size": d_obs, "alpha": float(alpha), "power": float(power),
                           "n_per_group": None, "n_smallest_group": n_have,
                           "achieved_power": None}
        decision.append("Power analysis: the observed effect is zero or undefined, so no "
                        "sample size can detect it.")
    result["decision"] = decision
    return result
