"""Training and scoring the slice graders.

`train_grader` trains one network of an ensemble (Adam, early stopping on the validation
loss with the best weights restored, inverse-frequency `class_weights`, rotation and
Gaussian-noise augmentation). `scan_metrics` scores scan grades against the consensus:
accuracy, per-grade recall, quadratic weighted kappa and the rescan decision
(grade >= 4).
"""

from __future__ import annotations

import keras
import numpy as np

from hrpqct.models import NUM_GRADES, build_grader
from shared.metrics import classification_metrics, per_class_accuracy, quadratic_weighted_kappa
from shared.training.scale import strategy_scope
from shared.training.seeding import set_global_seed


def class_weights(labels, *, num_classes=NUM_GRADES, cap=10.0) -> dict:
    """Inverse-frequency class weights (mean 1 over the samples), capped; absent classes get the cap."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=num_classes).astype(float)
    n, k = counts.sum(), np.count_nonzero(counts)
    return {c: float(min(cap, n / (k * counts[c]))) if counts[c] else float(cap) for c in range(num_classes)}


def _augment(config):
    from shared.data.augment2d import Augment2D

    if config.rotation_p <= 0 and config.noise_p <= 0:
        return None
    return Augment2D(flip=0.0, shift_scale_rotate=0.0, perspective=0.0, noise=config.noise_p,
                     rotation=config.rotation_p, max_deg=config.rotation_deg,
                     noise_stddev=config.noise_stddev).pipeline_fn()


def train_grader(arm, x_train, y_train, x_val, y_val, *, config, seed, strategy=None, jit_compile=False):
    """Trains one slice grader on in-memory slices; returns (model, history dict).

    Args:
        arm: "baseline" or "proposed".
        x_train, x_val: float arrays [N, H, W, 1] (prefiltered, standardised slices).
        y_train, y_val: int arrays [N] of grade indices 0-4.
        config: HrpqctConfig (architecture and training fields).
        seed: int. Weight initialisation and batch order.
        strategy: tf.distribute.Strategy, optional. `config.batch_size` is the
            global batch, split over its replicas.
        jit_compile: bool. XLA for the train step.
    """
    from shared.data.pipeline import dataset_from_arrays

    train = dataset_from_arrays(x_train, y_train, batch_size=config.batch_size, seed=seed,
                                augment=_augment(config))
    val = dataset_from_arrays(x_val, y_val, batch_size=config.batch_size, shuffle=False)
    return fit_grader(arm, train, val, input_shape=x_train.shape[1:], train_labels=y_train, config=config,
                      seed=seed, strategy=strategy, jit_compile=jit_compile)


def train_grader_on_scans(arm, images, train_idx, val_idx, grades, *, config, seed, strategy=None,
                          jit_compile=False, max_steps=None):
    """Trains one slice grader on the slices of `train_idx`, gathered batch by batch from `images`.

    Args:
        arm: "baseline" or "proposed".
        images: float32 array [scans, S, H, W] (prefiltered, standardised); not copied.
        train_idx, val_idx: int arrays of scans.
        grades: int array [scans] of consensus grades 1-5 (the labels).
        config, seed, strategy, jit_compile: as in `train_grader`.
        max_steps: int, optional. Stop after this many training batches (a smoke run).
    """
    from hrpqct.pipeline import slice_dataset

    grades = np.asarray(grades, dtype=int)
    s = images.shape[1]
    train = slice_dataset(images, train_idx, grades[train_idx] - 1, batch_size=config.batch_size, shuffle=True,
                          seed=seed, augment=_augment(config))
    val = slice_dataset(images, val_idx, grades[val_idx] - 1, batch_size=config.batch_size, shuffle=False,
                        seed=seed)
    if max_steps is not None:
        train = train.take(int(max_steps))
    return fit_grader(arm, train, val, input_shape=images.shape[2:] + (1,),
                      train_labels=np.repeat(grades[train_idx] - 1, s), config=config, seed=seed,
                      strategy=strategy, jit_compile=jit_compile)


def fit_grader(arm, train, val, *, input_shape, train_labels, config, seed, strategy=None, jit_compile=False):
    """Builds, compiles and fits one grader on tf.data pipelines; returns (model, history dict).

    The model is built and compiled inside `strategy.scope()` (one device when
    None) under the global Keras dtype policy; its softmax computes in float32
    (`hrpqct.models`), and under ``mixed_float16`` Keras' `fit` scales the loss.
    Adam, early stopping on the validation loss with the best weights restored,
    class weights from `train_labels` capped at `config.class_weight_cap`.
    """
    set_global_seed(seed)
    with strategy_scope(strategy):
        model = build_grader(arm, tuple(input_shape), baseline_filters=config.baseline_filters,
                             proposed_filters=config.proposed_filters, dense_units=config.dense_units,
                             activation=config.activation)
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=jit_compile)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
    hist = model.fit(train, validation_data=val, epochs=config.epochs, verbose=0, callbacks=[stop],
                     class_weight=class_weights(train_labels, cap=config.class_weight_cap))
    return model, {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def scan_metrics(y_true, y_pred) -> dict:
    """Accuracy, per-grade recall, quadratic weighted kappa, rescan (grade >= 4) sensitivity/specificity."""
    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    out = {"accuracy": float(np.mean(y_true == y_pred)),
           "kappa": float(quadratic_weighted_kappa(y_true, y_pred, num_classes=5, min_label=1))}
    present = np.bincount(y_true - 1, minlength=5) > 0
    recall = per_class_accuracy(y_true - 1, y_pred - 1, num_classes=5)
    for g in range(5):
        out[f"recall_grade{g + 1}"] = float(recall[g]) if present[g] else float("nan")
    rescan = classification_metrics((y_true >= 4).astype(int), (y_pred >= 4).astype(int), num_classes=2,
                                    average="binary", positive=1)
    out["rescan_sensitivity"] = rescan["recall"] if (y_true >= 4).any() else float("nan")
    out["rescan_specificity"] = rescan["specificity"] if (y_true < 4).any() else float("nan")
    return out


def rescan_counts(y_true, y_pred) -> dict:
    """Counts of the rescan decision (grade >= 4): true/false positives and negatives."""
    t, p = np.asarray(y_true) >= 4, np.asarray(y_pred) >= 4
    return {"rescan_tp": float(np.sum(t & p)), "rescan_fn": float(np.sum(t & ~p)),
            "rescan_tn": float(np.sum(~t & ~p)), "rescan_fp": float(np.sum(~t & p))}


def wilson_interval(successes, n, *, z=1.959964) -> tuple:
    """Wilson score 95 % interval of a proportion (NaN, NaN when n = 0).

    Example:
        8 of 10 -> (0.490, 0.943).
    """
    if n <= 0:
        return float("nan"), float("nan")
    phat = successes / n
    den = 1.0 + z * z / n
    centre = (phat + z * z / (2 * n)) / den
    half = z * np.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / den
    return float(centre - half), float(centre + half)


def pooled_rescan(runs) -> dict:
    """Rescan sensitivity and specificity of one arm with 95 % CIs.

    ``sensitivity_mean`` / ``specificity_mean`` average the units; the Wilson intervals
    are those of the first unit's test scans (one fixed test cohort: the units differ in
    training, not in the scans counted), and ``*_units_range`` gives the spread over units.
    """
    first = runs[0]
    pos = first["rescan_tp"] + first["rescan_fn"]
    neg = first["rescan_tn"] + first["rescan_fp"]
    sens = [r["rescan_tp"] / (r["rescan_tp"] + r["rescan_fn"]) for r in runs if r["rescan_tp"] + r["rescan_fn"]]
    spec = [r["rescan_tn"] / (r["rescan_tn"] + r["rescan_fp"]) for r in runs if r["rescan_tn"] + r["rescan_fp"]]
    return {"positives": int(pos), "negatives": int(neg),
            "sensitivity_mean": float(np.mean(sens)) if sens else float("nan"),
            "specificity_mean": float(np.mean(spec)) if spec else float("nan"),
            "sensitivity_unit0_ci95": wilson_interval(first["rescan_tp"], pos),
            "specificity_unit0_ci95": wilson_interval(first["rescan_tn"], neg),
            "sensitivity_units_range": (float(min(sens)), float(max(sens))) if sens else None,
            "specificity_units_range": (float(min(spec)), float(max(spec))) if spec else None}
