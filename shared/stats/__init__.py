"""Statistical tests, effect sizes and power.

* `groups`: independent groups of models compared as the heatmap-loss thesis does
  (Shapiro-Wilk, Mann-Whitney / t-test, Kruskal-Wallis / ANOVA, Cohen's d, Holm).
* `paired`: arms measured on the same units (folds, seeds, cases): Wilcoxon
  signed-rank and paired t-tests, Hodges-Lehmann shift, Cohen's d_z, bootstrap CI
  of the mean difference, Friedman test with Holm-corrected pairwise Wilcoxon tests,
  and `compare_paired_arms`, the paired report's numbers over two or more arms.
* `independent`: two independent groups summarised for a verdict (effect, bootstrap
  CI, Mann-Whitney or Welch, TOST, minimum detectable effect).
* `power`: minimum detectable effects (paired, two-sample, proportion), the units a
  powered design needs, and the paired equivalence test (TOST).
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
from shared.stats.paired import (
    bootstrap_mean_difference_ci,
    cohens_dz,
    compare_paired,
    compare_paired_arms,
    friedman_pairwise,
    hodges_lehmann,
    paired_t,
    wilcoxon_signed_rank,
)
from shared.stats.independent import (
    bootstrap_independent_ci,
    compare_independent,
    mde_independent,
    tost_independent,
)
from shared.stats.power import (
    mde_paired,
    mde_t,
    mde_proportion_difference,
    mde_two_sample,
    tost_paired,
    units_for_mde,
)

__all__ = [
    "EFFECT_LABELS",
    "TEST_NAMES",
    "bootstrap_independent_ci",
    "bootstrap_mean_difference_ci",
    "cohens_d",
    "cohens_dz",
    "common_language_effect_size",
    "compare_groups",
    "compare_independent",
    "compare_paired",
    "compare_paired_arms",
    "effect_label",
    "friedman_pairwise",
    "hodges_lehmann",
    "holm_correction",
    "iqr_filter",
    "mde_independent",
    "mde_paired",
    "mde_t",
    "mde_proportion_difference",
    "mde_two_sample",
    "paired_t",
    "power_n_per_group",
    "tost_independent",
    "tost_paired",
    "units_for_mde",
    "wilcoxon_signed_rank",
]
