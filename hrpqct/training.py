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
    """Trains one slice grader; returns (model, history dict).

    The model is built and compiled inside `strategy.scope()` (one device when
    None) under the global Keras dtype policy; its softmax computes in float32
    (`hrpqct.models`), and under ``mixed_float16`` Keras' `fit` scales the loss.

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

    set_global_seed(seed)
    with strategy_scope(strategy):
        model = build_grader(arm, x_train.shape[1:], baseline_filters=config.baseline_filters,
                             proposed_filters=config.proposed_filters, dense_units=config.dense_units,
                             activation=config.activation)
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=jit_compile)
    train = dataset_from_arrays(x_train, y_train, batch_size=config.batch_size, seed=seed,
                                augment=_augment(config))
    val = dataset_from_arrays(x_val, y_val, batch_size=config.batch_size, shuffle=False)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
    hist = model.fit(train, validation_data=val, epochs=config.epochs, verbose=0, callbacks=[stop],
                     class_weight=class_weights(y_train, cap=config.class_weight_cap))
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
