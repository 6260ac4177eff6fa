"""Baselines that set a cohort's difficulty: region means, a linear model, one region.

The powered study's gates (`bar_ad.config.study_protocol`) read these on the training
pool only, never on the test set: a logistic regression on the atlas regions' mean
intensities (how far a linear read-out of regional atrophy goes) and the best single
region's AUC (whether the task comes down to one feature).
"""

import numpy as np


def region_means(x, atlas) -> np.ndarray:
    """Mean intensity of every merged atlas region: float [N, R].

    Args:
        x: array [N, D, H, W] or [N, D, H, W, 1] on the atlas grid.
        atlas: `bar_ad.atlas.Atlas`.
    """
    x = np.asarray(x, np.float32)
    if x.ndim == 5:
        x = x[..., 0]
    labels = atlas.labels.ravel()
    flat = x.reshape(len(x), -1)
    counts = np.bincount(labels, minlength=atlas.num_regions + 1)[1:]
    sums = np.stack([np.bincount(labels, weights=row, minlength=atlas.num_regions + 1)[1:]
                     for row in flat])
    return sums / np.maximum(counts, 1)


def linear_baseline_accuracy(features, y, *, n_folds=5, seed=0) -> float:
    """Cross-validated accuracy (%) of a standardised L2 logistic regression.

    Args:
        features: float [N, F]. One row per subject.
        y: int [N]. 0 CN, 1 AD.
        n_folds: int, default 5 (stratified, shuffled with `seed`; fewer when a class
            has fewer subjects).
        seed: int.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(y, int)
    smallest = int(np.bincount(y, minlength=2).min())
    if smallest < 2:
        raise ValueError(f"linear_baseline_accuracy needs 2 subjects of each class. "
                         f"Received: class counts {np.bincount(y, minlength=2).tolist()}")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    folds = StratifiedKFold(n_splits=min(n_folds, smallest), shuffle=True, random_state=seed)
    return 100.0 * float(np.mean(cross_val_score(model, features, y, cv=folds)))


def best_single_feature_auc(features, y) -> tuple:
    """(index, AUC) of the feature that alone separates the classes best.

    The AUC of a feature is taken in its better direction, max(AUC, 1 - AUC).
    """
    from sklearn.metrics import roc_auc_score

    aucs = [roc_auc_score(y, features[:, k]) for k in range(features.shape[1])]
    aucs = np.maximum(aucs, 1.0 - np.asarray(aucs))
    k = int(np.argmax(aucs))
    return k, float(aucs[k])
