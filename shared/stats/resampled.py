"""Paired comparisons over units that re-split one finite pool: the corrected resampled t.

When every unit (seed) draws its training and test sets from the same pool, the units
share data and their paired differences are positively correlated; the plain paired t
then treats them as independent and its p-values are too small. Nadeau & Bengio (2003,
"Inference for the generalization error", Machine Learning 52) correct the variance of
the mean of J differences from s^2 / J to

    (1 / J + n_test / n_train) * s^2,

with n_test / n_train the ratio of the test and training fractions of each re-split
(Bouckaert & Frank 2004 call the resulting test the "corrected resampled t-test"):

    t = mean(d) / sqrt((1 / J + n_test / n_train) * s^2),   df = J - 1.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from shared.stats.paired import _check_alternative, _check_level, _degenerate_p, _paired
from shared.stats.stratified import p_from_t


def resampling_ratio(train_fraction, test_fraction) -> float:
    """n_test / n_train of a re-split, checked: both fractions in (0, 1], sum <= 1."""
    values = []
    for name, value in (("train_fraction", train_fraction), ("test_fraction", test_fraction)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(value, bool) or not (0 < number <= 1):
            raise ValueError(f"{name}: expected a fraction in (0, 1], got {value!r}")
        values.append(number)
    if values[0] + values[1] > 1 + 1e-9:
        raise ValueError(f"train_fraction + test_fraction: expected at most 1, got "
                         f"{values[0] + values[1]:g}")
    return values[1] / values[0]


def corrected_paired_t(a, b, *, ratio, alternative="two-sided", level=0.95) -> dict:
    """Nadeau-Bengio corrected resampled paired t-test of a - b, with its interval.

    Args:
        a: sequence of float, the first arm, one value per unit.
        b: sequence of float, the second arm, same units and order.
        ratio: float >= 0. n_test / n_train of each re-split (`resampling_ratio`); 0
            gives the plain paired t-test.
        alternative: str. "two-sided" (default), "greater" or "less".
        level: float. Level of the interval (default 0.95; a one-sided test at alpha
            reads the 1 - 2 alpha interval).

    Returns:
        dict with `test` ("paired_t_corrected"), `statistic`, `p`, `df`, `n`,
        `mean_difference`, `se` (corrected), `ratio`, `ci` ([low, high]) and `note` when
        every difference is the same number (then the test is decided by its sign).
    """
    a, b = _paired(a, b)
    _check_alternative(alternative)
    _check_level(level)
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio >= 0):
        raise ValueError(f"ratio: expected n_test / n_train >= 0, got {ratio!r}")
    d = a - b
    n = d.size
    mean = float(d.mean())
    df = n - 1
    sd = float(d.std(ddof=1)) if np.ptp(d) > 0 else 0.0
    se = math.sqrt((1.0 / n + ratio)) * sd
    out = {"test": "paired_t_corrected", "alternative": alternative, "n": int(n), "df": int(df),
           "mean_difference": mean, "se": se, "ratio": float(ratio)}
    if se == 0:
        sign = float(np.sign(mean))
        out.update(statistic=0.0 if sign == 0 else math.copysign(math.inf, mean),
                   p=_degenerate_p(sign, alternative),
                   ci=[mean, mean], note="every paired difference is the same number")
        return out
    t = mean / se
    half = stats.t.ppf(0.5 + level / 2.0, df) * se
    out.update(statistic=float(t), p=p_from_t(t, df, alternative), ci=[mean - half, mean + half])
    return out
