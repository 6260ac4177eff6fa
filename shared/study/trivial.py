"""Trivial predictors: what a model that learned nothing scores, beside every endpoint."""

from __future__ import annotations

import numpy as np


def majority_class(labels, class_names) -> tuple:
    """The most frequent class of `labels` and the accuracy of always answering it.

    Args:
        labels: sequence of int class indices.
        class_names: sequence of str, by index.

    Returns:
        (index, {"name": "always <class>", "value": accuracy}).
    """
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=len(class_names))
    index = int(np.argmax(counts))
    return index, {"name": f"always {class_names[index]}",
                   "value": float(counts[index] / counts.sum())}
