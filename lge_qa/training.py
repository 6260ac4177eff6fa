"""Training and evaluation of Sultan et al.'s networks: the LA detector and the QA strategies.

Stage 1: `train_la_detector` trains the U-Net (Adam, BCE + Dice) and `detector_metrics`
scores it (Dice, slice-selection precision / recall). Stage 2: `train_strategy` builds
(`build_strategy_model`) and trains one QA strategy: `fit_qa_model` (Eq. 1, Adam with
cosine annealing, early stopping on the validation MSE, flip / perspective /
shift-scale-rotate augmentation) and, for QA & Contrastive, `pretrain_contrastive`
(SupCon with LARS, Eqs. 4-5) first. `evaluate_scans` predicts the test slices and scores
each scan's mode. Training batches have an even size (`even_batch_size`).
"""

import numpy as np

from lge_qa import models
from lge_qa.config import ARMS, CONTROL, LgeQaConfig
from shared.training.scale import strategy_scope


def even_batch_size(n_samples, batch_size) -> int:
    """The training batch size actually used: at most `n_samples`, and even.

    Training batches are built with `drop_remainder=True` at an even size because
    TensorFlow 2.21's oneDNN CPU kernels corrupt the heap (the process aborts) in the
    backward pass of these ResNets for odd batch sizes (9, 15, 17, 25, 45 seen;
    even sizes fine). Dropping the remainder loses under one batch per epoch, a
    different one each epoch since the order is reshuffled.
    """
    b = min(int(batch_size), int(n_samples))
    b -= b % 2
    if b < 2:
        raise ValueError(f"need at least 2 training samples. Received: {n_samples}")
    return b


# ----------------------------------------------------------------------------- stage 1


def train_la_detector(cfg: LgeQaConfig, seg, *, seed, verbose=0, strategy=None, jit_compile=False,
                      callbacks=()):
    """Trains the stage-1 U-Net (Adam, BCE + Dice) on masks-only slices. Returns the model.

    `strategy` (a tf.distribute.Strategy, None for the default one) scopes the model's
    construction and compilation; `jit_compile` compiles the train step with XLA;
    `callbacks` (default none) are passed to `fit` (a run's TensorBoard callback)."""
    import keras

    from shared.losses import DiceLoss
    from shared.data.pipeline import dataset_from_arrays

    x, m = seg["images"], seg["masks"].astype("float32")
    if cfg.unet_max_slices and len(x) > cfg.unet_max_slices:
        pick = np.random.default_rng(seed).choice(len(x), cfg.unet_max_slices, replace=False)
        x, m = x[pick], m[pick]
    dice = DiceLoss()

    def loss(y_true, y_pred):
        return keras.losses.binary_crossentropy(y_true, y_pred, axis=(1, 2, 3)) + dice(y_true, y_pred)

    with strategy_scope(strategy):
        model = models.build_la_detector(cfg.image_size, filters=cfg.unet_filters)
        models.set_batchnorm_momentum(model, cfg.bn_momentum)
        model.compile(optimizer=keras.optimizers.Adam(cfg.unet_learning_rate), loss=loss,
                      jit_compile=jit_compile)
    ds = dataset_from_arrays(x, m, batch_size=even_batch_size(len(x), cfg.unet_batch_size), seed=seed,
                             drop_remainder=True)
    model.fit(ds, epochs=cfg.unet_epochs, verbose=verbose, callbacks=list(callbacks))
    return model


def detector_metrics(probabilities, masks, selected, threshold, *, has_mask=None) -> dict:
    """Dice of the thresholded masks, slice-selection precision / recall.

    Args:
        probabilities: [N, H, W, 1] LA probabilities of the slices.
        masks: [N, H, W, 1] stored LA masks (zeros where a scan has none).
        selected: bool [N]. Slices the detector kept.
        threshold: float. The paper's t.
        has_mask: bool [N], optional. Slices of scans that have a stored mask; only
            those are scored (a scan without a mask is not a scan with an empty one).
            Default: every slice.

    Returns:
        dict with "dice", "slice_precision", "slice_recall" (None when no slice has
        a mask), "selected_slices", "la_slices" and "scored_slices".
    """
    keep = np.ones(len(probabilities), bool) if has_mask is None else np.asarray(has_mask, bool)
    if not keep.any():
        return {"dice": None, "slice_precision": None, "slice_recall": None,
                "selected_slices": int(np.sum(selected)), "la_slices": 0, "scored_slices": 0}
    pred = probabilities[keep] > threshold
    truth = masks[keep] > 0
    sel = np.asarray(selected, bool)[keep]
    inter = float(np.logical_and(pred, truth).sum())
    denom = float(pred.sum() + truth.sum())
    dice = 2 * inter / denom if denom > 0 else 1.0
    has_la = truth.reshape(len(truth), -1).any(axis=1)
    tp = float(np.sum(sel & has_la))
    precision = tp / max(1.0, float(sel.sum()))
    recall = tp / max(1.0, float(has_la.sum()))
    return {"dice": dice, "slice_precision": precision, "slice_recall": recall,
            "selected_slices": int(sel.sum()), "la_slices": int(has_la.sum()),
            "scored_slices": int(keep.sum())}


# ----------------------------------------------------------------------------- stage 2


def _augmenter(cfg):
    from shared.data.augment2d import Augment2D

    p = cfg.augment_p
    return Augment2D(flip=p, shift_scale_rotate=p, perspective=p)


def _qa_augment_fn(cfg, with_mask):
    aug = _augmenter(cfg)

    def augment(x, y, seed):
        if with_mask:
            x, mask = aug(x, seed, masks=y[models.MASK_OUTPUT])
            y = dict(y)
            y[models.MASK_OUTPUT] = mask
            return x, y
        return aug(x, seed), y

    return augment


def _two_view_fn(cfg):
    import tensorflow as tf

    aug = _augmenter(cfg)

    def augment(x, y, seed):
        seeds = tf.random.experimental.stateless_split(seed, 2)
        return tf.stack([aug(x, seeds[0]), aug(x, seeds[1])], axis=1), y

    return augment


def compile_qa_model(model, cfg: LgeQaConfig, steps_per_epoch, *, multitask, jit_compile=False):
    """Adam + cosine annealing; Eq. 1 (mean BCE over the four outputs), plus Dice (Eq. 3)."""
    import keras

    from shared.losses import DiceLoss

    schedule = keras.optimizers.schedules.CosineDecay(
        cfg.learning_rate, decay_steps=max(1, cfg.epochs * steps_per_epoch))
    losses = {name: keras.losses.BinaryCrossentropy() for name in models.OUTPUTS}
    weights = {name: 1.0 / len(models.OUTPUTS) for name in models.OUTPUTS}
    if multitask:
        losses[models.MASK_OUTPUT] = DiceLoss()
        weights[models.MASK_OUTPUT] = 1.0
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=losses, loss_weights=weights,
                  metrics={models.QA_OUTPUT: [keras.metrics.MeanSquaredError(name="mse"),
                                              keras.metrics.AUC(name="auc")]},
                  jit_compile=jit_compile)
    return model


def monitored_quantity(cfg: LgeQaConfig) -> tuple:
    """(log key, mode) early stopping reads: the validation AUC of the QA output (max) or
    its validation MSE (min). A training draw whose prior differs from the validation
    set's first learns that prior, which raises the validation MSE while the ranking still
    improves; the AUC does not see the prior (issue 32: with the MSE such a draw kept
    epoch 1)."""
    return f"val_{models.QA_OUTPUT}_{cfg.stop_monitor}", ("max" if cfg.stop_monitor == "auc" else "min")


def early_stopping(cfg: LgeQaConfig):
    """The early-stopping callback of QA training (`monitored_quantity`, `cfg.patience`,
    restoring the best epoch with `cfg.restore_best`)."""
    import keras

    monitor, mode = monitored_quantity(cfg)
    return keras.callbacks.EarlyStopping(monitor=monitor, patience=cfg.patience, mode=mode,
                                         restore_best_weights=cfg.restore_best)


def batchnorm_recalibration(images, *, batch_size=256):
    """Keras callback: `models.recalibrate_batchnorm` on `images` before every validation
    and at the end of training.

    Training uses batch statistics of augmented batches; validation and testing use the
    moving averages, which after a short schedule (and under the geometric
    augmentation's zero padding) differ from the statistics of un-augmented slices.
    Re-estimating them before each validation makes the validation MSE, the epoch
    early stopping keeps and the test predictions use the same statistics. Training
    itself is unchanged (its forward passes use batch statistics)."""
    import keras

    class BatchNormRecalibration(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            models.recalibrate_batchnorm(self.model, images, batch_size=batch_size)

        def on_train_end(self, logs=None):
            models.recalibrate_batchnorm(self.model, images, batch_size=batch_size)

    return BatchNormRecalibration()


def fit_qa_model(model, cfg: LgeQaConfig, train, val, *, multitask, seed, verbose=0, strategy=None,
                 jit_compile=False, callbacks=()):
    """Trains a QA model: `cfg.epochs` epochs, early stopping on the validation AUC (or MSE,
    `cfg.stop_monitor`) of the QA output (Section 4.3). `train` / `val`: (x, y dict).

    With `cfg.restore_best` the weights of the best validation epoch are restored at the end (the model the validation selects); otherwise the last
    epoch's weights are kept. With `cfg.recalibrate_bn` the batch-norm statistics are
    re-estimated on the un-augmented training slices before each validation and after
    the last epoch (`batchnorm_recalibration`). The model is compiled under
    `strategy`'s scope (that it was built in). `callbacks` (default none) run after
    early stopping and the recalibration (a run's TensorBoard callback logs the epoch's
    validation metrics too).

    Returns:
        the Keras history dict plus "best_epoch" (1-based, the epoch whose weights are kept).
    """
    from shared.data.pipeline import dataset_from_arrays

    batch = even_batch_size(len(train[0]), cfg.batch_size)
    steps = len(train[0]) // batch
    with strategy_scope(strategy):
        compile_qa_model(model, cfg, steps, multitask=multitask, jit_compile=jit_compile)
    ds = dataset_from_arrays(train[0], train[1], batch_size=batch, seed=seed,
                             augment=_qa_augment_fn(cfg, multitask), drop_remainder=True)
    val_ds = dataset_from_arrays(val[0], val[1], batch_size=cfg.batch_size, shuffle=False)
    stop = early_stopping(cfg)
    extra, callbacks = list(callbacks), [stop]
    if cfg.recalibrate_bn:
        # The weights EarlyStopping keeps after a validation carry that validation's statistics.
        callbacks.append(batchnorm_recalibration(train[0]))
    callbacks = [*callbacks, *extra]
    history = dict(model.fit(ds, validation_data=val_ds, epochs=cfg.epochs, callbacks=callbacks,
                             verbose=verbose).history)
    epochs = len(history.get("loss", []))
    history["best_epoch"] = int(stop.best_epoch) + 1 if cfg.restore_best else epochs
    return history


def supcon_target_loss(labels, *, batch_size, criterion, temperature, views=2) -> float:
    """The Eq. 5 loss at which SupCon pre-training stops: the collapsed value minus
    `criterion` times the gap to the closed-form minimum (`models.supcon_bounds`, the
    sum of the per-label minima, for a batch with the training labels' class shares).

    Args:
        labels: int [N, K] binary training labels (K label columns).
        batch_size: int. The pre-training batch.
        criterion: float in (0, 1). Share of the gap to cover.
        temperature: float.
        views: int, default 2.
    """
    labels = np.asarray(labels)
    chance, minimum = 0.0, 0.0
    for k in range(labels.shape[1]):
        # A batch with the labels' class shares: the expected composition of a random batch.
        positives = int(round(float(np.mean(labels[:, k])) * batch_size))
        batch = np.r_[np.ones(positives, int), np.zeros(batch_size - positives, int)]
        bounds = models.supcon_bounds(batch, views=views, temperature=temperature)
        chance += bounds["chance"]
        minimum += bounds["minimum"]
    return float(chance - criterion * (chance - minimum))


def supcon_shared_target(labels, *, batch_size, criterion, temperature, seed, views=2, steps=1500) -> dict:
    """The Eq. 5 loss at which SupCon pre-training stops, reachable by construction.

    The collapsed value is K log(V B - 1) for K label columns; the floor is the lowest
    value one embedding shared by the K terms reaches on a batch of `batch_size` rows of
    `labels` (`models.supcon_sum_free_minimum`, projections optimised directly). The
    target is `criterion` of the way from the first to the second, so any `criterion` in
    (0, 1] names a value some embedding reaches. (`supcon_target_loss`, the earlier
    target, measured the gap to the sum of per-label minima, which one shared embedding
    cannot reach when the labels disagree.)

    Args:
        labels: int [N, K] binary training labels.
        batch_size: int. The pre-training batch (at most N).
        criterion: float in (0, 1].
        temperature: float.
        seed: int. Which rows form the reference batch, and the optimiser's start.
        views: int, default 2.
        steps: int, default 1500. Adam steps of the floor's estimate.

    Returns:
        dict with "collapsed", "shared_minimum" and "target".
    """
    if not 0.0 < criterion <= 1.0:
        raise ValueError(f"criterion must lie in (0, 1]. Received: criterion={criterion}")
    labels = np.asarray(labels)
    batch_size = min(int(batch_size), len(labels))
    rows = np.random.default_rng(int(seed)).choice(len(labels), batch_size, replace=False)
    collapsed = labels.shape[1] * float(np.log(views * batch_size - 1))
    floor = models.supcon_sum_free_minimum(labels[rows].astype("int32"), views=views, temperature=temperature,
                                           steps=steps, seed=int(seed))
    return {"collapsed": collapsed, "shared_minimum": floor,
            "target": float(collapsed - criterion * (collapsed - floor))}


def pretrain_schedule(cfg: LgeQaConfig, total_steps):
    """LARS learning rate: linear warm-up over `cfg.pretrain_warmup` of the steps to
    `cfg.lars_learning_rate`, then cosine decay to 0 (SimCLR / SupCon's schedule)."""
    import keras

    warmup = int(round(cfg.pretrain_warmup * total_steps))
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, total_steps - warmup), warmup_target=cfg.lars_learning_rate,
        warmup_steps=warmup)


def pretrain_budget(n_slices, cfg: LgeQaConfig) -> dict:
    """Batch, steps per pass over the slices and total LARS steps of pre-training.

    The batch is `cfg.pretrain_batch_size` cut to the slices available (and even,
    `even_batch_size`); a pass is ceil(N / batch) steps, the batches running across pass
    boundaries so that no slice is left out. Total: `cfg.pretrain_steps`, or
    `cfg.pretrain_epochs` passes when that is 0."""
    batch = even_batch_size(n_slices, cfg.pretrain_batch_size)
    per_pass = -(-int(n_slices) // batch)
    total = int(cfg.pretrain_steps) if cfg.pretrain_steps else int(cfg.pretrain_epochs) * per_pass
    total = -(-total // per_pass) * per_pass  # whole passes: the schedule ends with the last step
    if total < 1:
        raise ValueError(f"SupCon pre-training needs pretrain_steps or pretrain_epochs > 0. Received: "
                         f"pretrain_steps={cfg.pretrain_steps}, pretrain_epochs={cfg.pretrain_epochs}")
    return {"batch": batch, "steps_per_pass": per_pass, "total_steps": total}


def pretrain_contrastive(encoder, cfg: LgeQaConfig, x, labels, *, seed, verbose=0, strategy=None,
                         jit_compile=False, callbacks=()):
    """Step 1 of QA & Contrastive: SupCon pre-training of `encoder` with LARS (Eqs. 4-5).

    `pretrain_budget` LARS steps with warm-up and cosine decay (`pretrain_schedule`). With
    `cfg.pretrain_criterion` > 0 the history holds "target_loss" (`supcon_shared_target`),
    "shared_minimum", "collapsed", "reached" and "reached_step" (LARS steps at the end of
    the first pass whose mean loss reached the target; None if none did); with
    `cfg.pretrain_stop_at_target` training also stops there, otherwise it runs the whole
    budget. "steps" counts the LARS steps taken.
    Under a multi-replica `strategy` the anchors of each replica are contrasted with the
    projections of the whole global batch (`models.SupConPretrainer`). `callbacks`
    (default none) are passed to `fit` after the stopping rule's."""
    import keras

    from shared.training.lars import LARS
    from shared.data.pipeline import dataset_from_arrays

    budget = pretrain_budget(len(x), cfg)
    extra, callbacks = list(callbacks), []
    with strategy_scope(strategy):
        pretrainer = models.SupConPretrainer(encoder, projection_dim=cfg.projection_dim,
                                             temperature=cfg.temperature)
        pretrainer.compile(optimizer=LARS(learning_rate=pretrain_schedule(cfg, budget["total_steps"]),
                                          momentum=cfg.lars_momentum, weight_decay=cfg.lars_weight_decay,
                                          eta=cfg.lars_eta),
                           jit_compile=jit_compile)
    ds = dataset_from_arrays(x, labels.astype("int32"), batch_size=budget["batch"], seed=seed,
                             augment=_two_view_fn(cfg), repeat=True, drop_remainder=True)
    target = None
    if cfg.pretrain_criterion > 0:
        target = supcon_shared_target(labels, batch_size=budget["batch"], criterion=cfg.pretrain_criterion,
                                      temperature=cfg.temperature, seed=seed)

        class WatchTarget(keras.callbacks.Callback):
            reached_step = None

            def on_epoch_end(self, epoch, logs=None):
                if logs and logs.get("loss", np.inf) <= target["target"]:
                    if self.reached_step is None:
                        self.reached_step = (epoch + 1) * budget["steps_per_pass"]
                    if cfg.pretrain_stop_at_target:
                        self.model.stop_training = True

        watch = WatchTarget()
        callbacks.append(watch)
    callbacks += extra
    passes = budget["total_steps"] // budget["steps_per_pass"]
    history = dict(pretrainer.fit(ds, epochs=passes, steps_per_epoch=budget["steps_per_pass"], verbose=verbose,
                                  callbacks=callbacks).history)
    history["steps"] = int(pretrainer.optimizer.iterations)
    history["batch"] = budget["batch"]
    if target is not None:
        history["target_loss"] = target["target"]
        history["shared_minimum"] = target["shared_minimum"]
        history["collapsed"] = target["collapsed"]
        history["reached"] = bool(min(history.get("loss", [np.inf])) <= target["target"])
        history["reached_step"] = watch.reached_step
    return history


def build_strategy_model(strategy, cfg: LgeQaConfig):
    """A fresh encoder + heads for one arm (`ARMS`).

    "baseline" trains its encoder end to end or, with `cfg.baseline_encoder ==
    "frozen"`, only the heads on the frozen encoder (the paper's frozen features; with
    `cfg.encoder_weights=None` these are random features, the same network as the
    "frozen_random" control). For "contrastive" and "frozen_random" the model is None
    here: the encoder is frozen after pre-training / batch-norm estimation
    (`train_strategy`)."""
    encoder = models.build_encoder(cfg.image_size, filters=cfg.encoder_filters, blocks=cfg.encoder_blocks,
                                   weights=cfg.encoder_weights)
    models.set_batchnorm_momentum(encoder, cfg.bn_momentum)
    if strategy == "baseline" and cfg.baseline_encoder == "end_to_end":
        model = models.build_qa_model(encoder, latent_dim=cfg.latent_dim, dropout=cfg.dropout,
                                      qa_input=cfg.qa_input, name="qa_baseline")
    elif strategy == "multitask":
        model = models.build_qa_model(encoder, latent_dim=cfg.latent_dim, dropout=cfg.dropout, decoder=True,
                                      qa_input=cfg.qa_input, name="qa_multitask")
    elif strategy in ("baseline", "contrastive", CONTROL):
        return None, encoder
    else:
        raise ValueError(f"strategy must be one of {ARMS}. Received: strategy={strategy!r}")
    models.set_batchnorm_momentum(model, cfg.bn_momentum)  # the decoder's too
    return model, encoder


def _slice_targets(labels_per_scan, case_index, masks=None):
    """Per-slice target dict from scan-level binary labels [n_scans, 4]."""
    lab = labels_per_scan[case_index].astype("float32")
    y = {name: lab[:, k:k + 1] for k, name in enumerate(models.OUTPUTS)}
    if masks is not None:
        y[models.MASK_OUTPUT] = masks.astype("float32")
    return y


def train_strategy(strategy, cfg: LgeQaConfig, data, split_slices, *, seed, verbose=0, distribute=None,
                   jit_compile=False, callbacks_for=None):
    """Builds and trains one QA strategy on the selected slices. Returns (model, history).

    `strategy` is the paper's QA training strategy or the control (ARMS); `distribute` the
    tf.distribute.Strategy the models are built and compiled under (None: default);
    `callbacks_for` (optional) maps a training stage, "pretrain" (SupCon) or "qa", to the
    Keras callbacks that stage's `fit` adds (a run's TensorBoard callbacks; None: none)."""
    from shared.training.seeding import set_global_seed

    set_global_seed(seed)
    if cfg.max_train_slices and len(split_slices["train"]) > cfg.max_train_slices:
        pick = np.random.default_rng(seed).choice(split_slices["train"], cfg.max_train_slices, replace=False)
        split_slices = {**split_slices, "train": np.sort(pick)}
    with strategy_scope(distribute):
        model, encoder = build_strategy_model(strategy, cfg)
    multitask = strategy == "multitask"
    x, labels, case_index, masks = data["images"], data["labels"], data["case_index"], data["masks"]

    def subset(name):
        idx = split_slices[name]
        return x[idx], _slice_targets(labels, case_index[idx], masks[idx] if multitask else None)

    stage = (lambda name: []) if callbacks_for is None else callbacks_for
    history = {}
    if model is None:  # heads on a frozen encoder
        idx = split_slices["train"]
        if strategy == "contrastive":
            history["pretrain"] = pretrain_contrastive(encoder, cfg, x[idx], labels[case_index[idx]],
                                                       seed=seed, verbose=verbose, strategy=distribute,
                                                       jit_compile=jit_compile, callbacks=stage("pretrain"))
        if cfg.recalibrate_bn:
            # The frozen encoder's statistics: un-augmented slices, not the two-view batches
            # (for a random encoder: instead of the initial mean 0 / variance 1).
            models.recalibrate_batchnorm(encoder, x[idx])
        with strategy_scope(distribute):
            model = models.build_frozen_qa_model(encoder, latent_dim=cfg.latent_dim, dropout=cfg.dropout,
                                                 qa_input=cfg.qa_input, name=f"qa_{strategy}")
    history["qa"] = fit_qa_model(model, cfg, subset("train"), subset("val"), multitask=multitask,
                                 seed=seed, verbose=verbose, strategy=distribute, jit_compile=jit_compile,
                                 callbacks=stage("qa"))
    return model, history


def scan_auc(slice_prob, case_index, scan_labels) -> float:
    """Scan-level ROC AUC: each scan scored by the mean QA probability of its slices
    (NaN when the scans hold one class only)."""
    from sklearn.metrics import roc_auc_score

    scans = sorted(scan_labels)
    score = np.asarray([np.mean(slice_prob[case_index == s]) for s in scans])
    y = np.asarray([scan_labels[s] for s in scans])
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, score))


def evaluate_scans(model, x, case_index, scan_labels, *, batch_size=256):
    """Per-slice QA predictions, scan label = mode; metrics with diagnostic = positive,
    and the scan-level AUC (`scan_auc`).

    Returns:
        (metrics dict, slice probabilities [N], scan predictions dict case -> label).
    """
    from shared.metrics import classification_metrics, scan_mode

    out = model.predict(x, batch_size=batch_size, verbose=0)
    prob = np.asarray(out[models.QA_OUTPUT]).reshape(-1)
    slice_pred = (prob >= 0.5).astype(int)
    per_scan = scan_mode(slice_pred, case_index)
    scans = sorted(per_scan)
    y_true = np.asarray([scan_labels[s] for s in scans])
    y_pred = np.asarray([per_scan[s] for s in scans])
    metrics = classification_metrics(y_true, y_pred, average="binary", positive=1)
    metrics = {k: float(v) for k, v in metrics.items()}
    metrics["auc"] = scan_auc(prob, np.asarray(case_index), {s: scan_labels[s] for s in scans})
    return metrics, prob, per_scan
