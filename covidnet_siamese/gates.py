"""Data gates: how hard the classes are for a pixel-level logistic regression.

Before any arm is compared, a multinomial logistic regression on the standardised
pixels (downsampled to `side` x `side`, class-balanced weights) is fitted on the
training images and scored on the validation images. Its per-class recall and its
pneumonia <-> COVID-19 confusion must lie inside the bands the preset declares:
a class a linear model on pixels recalls almost perfectly decides a per-class claim
in advance, and without any pneumonia / COVID-19 confusion the paper's question
(which net tells them apart better) cannot arise. No arm is involved.
"""

import warnings

import cv2
import numpy as np

from covidnet_siamese.config import CLASS_NAMES

PNEUMONIA = CLASS_NAMES.index("pneumonia")
COVID = CLASS_NAMES.index("COVID-19")


def _pixels(images, side):
    """Flattened [N, side * side] pixels of [N, S, S, 1] images (INTER_AREA)."""
    return np.stack([cv2.resize(np.asarray(im[..., 0], np.float32), (side, side),
                                interpolation=cv2.INTER_AREA).ravel() for im in images])


def pixel_logistic_gates(x_train, y_train, x_eval, y_eval, *, side=32, seed=0, max_iter=200):
    """Fits the pixel-level logistic regression and returns its gate values.

    Args:
        x_train, y_train: training images [N, S, S, 1] and labels [N].
        x_eval, y_eval: images and labels it is scored on (the validation split).
        side: int, default 32. Side the images are downsampled to.
        seed: int, default 0. Seed of the solver.
        max_iter: int, default 300.

    Returns:
        dict with "recall" (per class, `CLASS_NAMES` order), "min_recall",
        "max_recall", "covid_as_pneumonia" (share of COVID-19 images taken for
        pneumonia), "pneumonia_as_covid" and "covid_pneumonia_confusion" (their mean).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    y_train, y_eval = np.asarray(y_train), np.asarray(y_eval)
    side = int(min(side, x_train.shape[1]))
    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        # A gate needs a fair linear fit, not a converged optimum.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(_pixels(x_train, side), y_train)
    pred = model.predict(_pixels(x_eval, side))
    recall = [float(np.mean(pred[y_eval == c] == c)) if np.any(y_eval == c) else float("nan")
              for c in range(len(CLASS_NAMES))]
    covid_as_pneu = float(np.mean(pred[y_eval == COVID] == PNEUMONIA)) if np.any(y_eval == COVID) else float("nan")
    pneu_as_covid = (float(np.mean(pred[y_eval == PNEUMONIA] == COVID)) if np.any(y_eval == PNEUMONIA)
                     else float("nan"))
    return {"recall": recall, "min_recall": float(np.min(recall)), "max_recall": float(np.max(recall)),
            "covid_as_pneumonia": covid_as_pneu, "pneumonia_as_covid": pneu_as_covid,
            "covid_pneumonia_confusion": float(np.mean([covid_as_pneu, pneu_as_covid]))}
