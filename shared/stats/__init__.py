"""Statistical tests, effect sizes and power.

* `groups`: independent groups of models compared as the heatmap-loss thesis does
  (Shapiro-Wilk, Mann-Whitney / t-test, Kruskal-Wallis / ANOVA, Cohen's d, Holm).
"""

from shared.stats.groups import (
    EFFECT_LABELS,
    TEST_NAMES,
    cohens_d,
    common_language_effect_size,
    compare_groups,
    effect_label,
    holm_correction,
    iqr_filter,
    power_n_per_group,
)

__all__ = [
    "EFFECT_LABELS",
    "TEST_NAMES",
    "cohens_d",
    "common_language_effect_size",
    "compare_groups",
    "effect_label",
    "holm_correction",
    "iqr_filter",
    "power_n_per_group",
]
