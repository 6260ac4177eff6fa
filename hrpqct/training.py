"""Training and scoring the slice graders.

`train_grader` trains one network of an ensemble (Adam, inverse-frequency
`class_weights`, rotation and Gaussian-noise augmentation). Both arms get the same epoch
budget: after every epoch `ValidationKappaSelection` grades the validation scans as
Walle's tool does (slice votes, rounded mean), keeps the weights of the epoch with the
best quadratic weighted kappa (the study's endpoint, on validation scans) and restores
them at the end; it stops early only after `patience` epochs without a better kappa, so
``patience >= epochs`` trains every network for the whole budget. The per-epoch curves
(training loss, validation loss and kappa) and the selected epoch come back in the
history. `scan_metrics` scores scan grades against the consensus: accuracy, per-grade
recall, quadratic weighted kappa and the rescan decision (grade >= 4).
"""

from __future__ import annotations

import keras
import numpy as np

from hrpqct.models import NUM_GRADES, build_grader
from shared.metrics import classification_metrics, per_class_accuracy, quadratic_weighted_kappa
from shared.training.inference import predict_in_chunks
from shared.training.scale import strategy_scope
from shared.training.seeding import set_global_seed


def scan_grades_of_slices(probs, slices_per_scan) -> np.ndarray:
    """One network's scan grades (1-5) from its slice probabilities [scans * S, 5]: slice
    votes (most probable grade), scan grade the rounded (half up) mean, as
    `hrpqct.grading.ensemble_scan_grades` grades an ensemble of one."""
    from hrpqct.grading import ensemble_scan_grades

    votes = np.argmax(np.asarray(probs), axis=-1).reshape(1, -1, int(slices_per_scan)) + 1
    return ensemble_scan_grades(votes)["grade"]


class ValidationKappaSelection(keras.callbacks.Callback):
    """Selects the epoch on the validation endpoint: scan-level quadratic weighted kappa.

    After every epoch the validation slices are graded (one forward pass), the scans
    graded from their slice votes (`scan_grades_of_slices`) and scored against the
    consensus; the unweighted validation cross-entropy comes from the same pass. The
    weights of the best-kappa epoch (the earliest on ties) are kept and restored when
    training ends. Training stops after `patience` epochs without a better kappa; with
    ``patience >= epochs`` every epoch runs (equal budgets for every arm).

    Args:
        x_val: float32 array [scans * S, H, W, 1]. Validation slices, scan by scan.
        y_val: int array [scans]. Consensus grade indices 0-4.
        slices_per_scan: int. S.
        patience: int. Epochs without a better kappa before stopping.

    Attributes:
        val_kappa, val_loss: lists, one value per epoch run.
        best_epoch: int. The selected epoch, 1-based.
    """

    def __init__(self, x_val, y_val, *, slices_per_scan, patience):
        super().__init__()
        self.x_val = x_val
        self.y_val = np.asarray(y_val, dtype=int)
        self.slices_per_scan = int(slices_per_scan)
        self.patience = int(patience)
        self.val_kappa, self.val_loss = [], []
        self.best_epoch, self._best_kappa, self._best_weights = 0, -np.inf, None

    def on_epoch_end(self, epoch, logs=None):
        probs = predict_in_chunks(self.model, self.x_val, batch_size=256).astype(np.float64)
        labels = np.repeat(self.y_val, self.slices_per_scan)
        loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0))))
        grades = scan_grades_of_slices(probs, self.slices_per_scan)
        kappa = float(quadratic_weighted_kappa(self.y_val + 1, grades, num_classes=5, min_label=1))
        self.val_loss.append(loss)
        self.val_kappa.append(kappa)
        if logs is not None:
            logs["val_loss"], logs["val_kappa"] = loss, kappa
        if kappa > self._best_kappa:
            self._best_kappa, self.best_epoch = kappa, epoch + 1
            self._best_weights = self.model.get_weights()
        elif epoch + 1 - self.best_epoch >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._best_weights is not None:
            self.model.set_weights(self._best_weights)


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
    # Each validation slice is graded as a scan of one slice.
    return fit_grader(arm, train, (np.asarray(x_val, np.float32), y_val, 1), input_shape=x_train.shape[1:],
                      train_labels=y_train, config=config, seed=seed, strategy=strategy, jit_compile=jit_compile)


def train_grader_on_scans(arm, images, train_idx, val_idx, grades, *, config, seed, strategy=None,
                          jit_compile=False, max_steps=None, callbacks=()):
    """Trains one slice grader on the slices of `train_idx`, gathered batch by batch from `images`.

    Args:
        arm: "baseline" or "proposed".
        images: float32 array [scans, S, H, W] (prefiltered, standardised); not copied.
        train_idx, val_idx: int arrays of scans.
        grades: int array [scans] of consensus grades 1-5 (the labels).
        config, seed, strategy, jit_compile: as in `train_grader`.
        max_steps: int, optional. Stop after this many training batches (a smoke run).
        callbacks: sequence of Keras callbacks, default none. Run after the epoch
            selection (a `shared.training.tensorboard.tensorboard_callback` of the run
            folder logs the selection's validation kappa and loss too).
    """
    from hrpqct.pipeline import gather_slices, slice_dataset

    grades = np.asarray(grades, dtype=int)
    s = images.shape[1]
    train = slice_dataset(images, train_idx, grades[train_idx] - 1, batch_size=config.batch_size, shuffle=True,
                          seed=seed, augment=_augment(config))
    val = (gather_slices(images, val_idx), grades[val_idx] - 1, s)
    if max_steps is not None:
        train = train.take(int(max_steps))
    return fit_grader(arm, train, val, input_shape=images.shape[2:] + (1,),
                      train_labels=np.repeat(grades[train_idx] - 1, s), config=config, seed=seed,
                      strategy=strategy, jit_compile=jit_compile, callbacks=callbacks)


def fit_grader(arm, train, val, *, input_shape, train_labels, config, seed, strategy=None, jit_compile=False,
               callbacks=()):
    """Builds, compiles and fits one grader; returns (model, history dict).

    The model is built and compiled inside `strategy.scope()` (one device when
    None) under the global Keras dtype policy; its softmax computes in float32
    (`hrpqct.models`), and under ``mixed_float16`` Keras' `fit` scales the loss.
    Adam, class weights from `train_labels` capped at `config.class_weight_cap`,
    `config.epochs` epochs with the epoch of the best validation kappa kept
    (`ValidationKappaSelection`, patience `config.patience`).

    Args:
        train: tf.data.Dataset of (slices, grade indices).
        val: (slices [scans * S, H, W, 1], scan grade indices [scans], S).
        callbacks: sequence of Keras callbacks, default none; after the selection's.

    Returns:
        (model, history): the history holds ``loss`` and ``accuracy`` (training, per
        epoch), ``val_loss`` and ``val_kappa`` (per epoch), ``best_epoch`` (1-based) and
        ``epochs_run``.
    """
    set_global_seed(seed)
    with strategy_scope(strategy):
        model = build_grader(arm, tuple(input_shape), baseline_filters=config.baseline_filters,
                             proposed_filters=config.proposed_filters, dense_units=config.dense_units,
                             activation=config.activation)
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=jit_compile)
    x_val, y_val, slices_per_scan = val
    select = ValidationKappaSelection(x_val, y_val, slices_per_scan=slices_per_scan, patience=config.patience)
    hist = model.fit(train, epochs=config.epochs, verbose=0, callbacks=[select, *callbacks],
                     class_weight=class_weights(train_labels, cap=config.class_weight_cap))
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()
               if k not in ("val_loss", "val_kappa")}
    history.update(val_loss=list(select.val_loss), val_kappa=list(select.val_kappa),
                   best_epoch=int(select.best_epoch), epochs_run=len(select.val_kappa))
    return model, history


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
