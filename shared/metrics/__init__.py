"""Classification metrics with the conventions of the papers.

* `classification`: confusion matrix, per-class precision / recall / F1 /
  specificity, per-class accuracy, the scan-level mode of slice predictions and the
  quadratic weighted kappa.
* `diagnostic`: balanced accuracy, ROC AUC with its DeLong confidence interval and
  the DeLong test of two correlated ROC curves.
"""

from shared.metrics.classification import (
    classification_metrics,
    confusion_matrix,
    per_class_accuracy,
    quadratic_weighted_kappa,
    scan_mode,
)
from shared.metrics.diagnostic import (
    balanced_accuracy,
    delong_paired_test,
    roc_auc_ci,
)

__all__ = [
    "balanced_accuracy",
    "classification_metrics",
    "confusion_matrix",
    "delong_paired_test",
    "per_class_accuracy",
    "quadratic_weighted_kappa",
    "roc_auc_ci",
    "scan_mode",
]
