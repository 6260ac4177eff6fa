"""Classification metrics with the conventions of the papers.

* `classification`: confusion matrix, per-class precision / recall / F1 /
  specificity, per-class accuracy, the scan-level mode of slice predictions and the
  quadratic weighted kappa.
"""

from shared.metrics.classification import (
    classification_metrics,
    confusion_matrix,
    per_class_accuracy,
    quadratic_weighted_kappa,
    scan_mode,
)

__all__ = [
    "classification_metrics",
    "confusion_matrix",
    "per_class_accuracy",
    "quadratic_weighted_kappa",
    "scan_mode",
]
