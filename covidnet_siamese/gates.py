"""Data gates: how hard the classes are for a pixel-level logistic regression.

Before any arm is compared, a multinomial logistic regression on the standardised
pixels (downsampled to `side` x `side`, class-balanced weights) is scored by stratified
k-fold cross-validation over the training split: each fold's images are predicted by
the model fitted on the other folds, and the out-of-fold predictions of every training
image are pooled. Its per-class recall and its pneumonia <-> COVID-19 confusion must lie
inside the bands the preset declares: a class a linear model on pixels recalls almost
perfectly decides a per-class claim in advance, and without any pneumonia / COVID-19
confusion the paper's question (which net tells them apart better) cannot arise. No arm
is involved and neither the validation nor the test split is read.

Pooling over the training split is what gives the gate its resolution: the validation
split of `powered` holds 15 COVID-19 films (recall in steps of 0.067), its training
split 60 (steps of 0.017).
"""

import warnings

import cv2
import numpy as np

from covidnet_siamese.config import CLASS_NAMES
from shared.metrics.classification import confusion_matrix

PNEUMONIA = CLASS_NAMES.index("pneumonia")
COVID = CLASS_NAMES.index("COVID-19")


def _pixels(images, side):
    """Flattened [N, side * side] pixels of [N, S, S, 1] images (INTER_AREA)."""
    return np.stack([cv2.resize(np.asarray(im[..., 0], np.float32), (side, side),
                                interpolation=cv2.INTER_AREA).ravel() for im in images])


def gate_values(y_true, y_pred):
    """Gate values of predictions `y_pred` of labels `y_true` (both [N] class indices).

    Returns:
        dict with "recall" (per class, `CLASS_NAMES` order; NaN for an absent class),
        "min_recall", "max_recall", "covid_as_pneumonia" (share of COVID-19 images
        taken for pneumonia), "pneumonia_as_covid" and "covid_pneumonia_confusion"
        (their mean).
    """
    counts = confusion_matrix(y_true, y_pred, num_classes=len(CLASS_NAMES)).astype(float)
    with np.errstate(invalid="ignore"):  # an absent class gives a row of NaN
        rates = counts / counts.sum(axis=1, keepdims=True)
    recall = [float(r) for r in np.diag(rates)]
    covid_as_pneu, pneu_as_covid = float(rates[COVID, PNEUMONIA]), float(rates[PNEUMONIA, COVID])
    return {"recall": recall, "min_recall": float(np.min(recall)), "max_recall": float(np.max(recall)),
            "covid_as_pneumonia": covid_as_pneu, "pneumonia_as_covid": pneu_as_covid,
            "covid_pneumonia_confusion": float(np.mean([covid_as_pneu, pneu_as_covid]))}


def gate_folds(y, folds, seed):
    """The stratified folds of the gate: `StratifiedKFold(folds, shuffle=True, random_state=seed)`."""
    from sklearn.model_selection import StratifiedKFold

    return StratifiedKFold(n_splits=int(folds), shuffle=True, random_state=int(seed)).split(
        np.zeros(len(y)), np.asarray(y))


def pixel_logistic_cv_gates(x_train, y_train, *, folds=5, side=32, seed=0, max_iter=200):
    """Scores the pixel-level logistic regression by cross-validation and returns its gates.

    Args:
        x_train, y_train: training images [N, S, S, 1] and labels [N]; nothing else is read.
        folds: int, default 5. Stratified folds (shuffled with `seed`).
        side: int, default 32. Side the images are downsampled to.
        seed: int, default 0. Seed of the fold assignment and the solver (the data seed).
        max_iter: int, default 200. Solver iterations per fold.

    Returns:
        `gate_values` of the pooled out-of-fold predictions, plus "folds", "images"
        (per class, `CLASS_NAMES` order) and "scored_on" ("training split, out of fold").

    Raises:
        ValueError: a class has fewer images than `folds`.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    y_train = np.asarray(y_train)
    images = [int(np.sum(y_train == c)) for c in range(len(CLASS_NAMES))]
    present = [n for n in images if n]
    if int(folds) < 2 or min(present) < int(folds):
        raise ValueError(f"the gate's {folds}-fold cross-validation needs at least 2 folds and as many "
                         f"training images of every class. Received: images per class={images}")
    side = int(min(side, x_train.shape[1]))
    pixels = _pixels(x_train, side)
    pred = np.full(len(y_train), -1)
    for fit_idx, score_idx in gate_folds(y_train, folds, seed):
        model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings():
            # A gate needs a fair linear fit, not a converged optimum.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(pixels[fit_idx], y_train[fit_idx])
        pred[score_idx] = model.predict(pixels[score_idx])
    return {**gate_values(y_train, pred), "folds": int(folds), "images": images,
            "scored_on": "training split, out of fold"}
