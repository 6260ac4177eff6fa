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


def train_la_detector(cfg: LgeQaConfig, seg, *, seed, verbose=0, strategy=None, jit_compile=False):
    """Trains the stage-1 U-Net (Adam, BCE + Dice) on masks-only slices. Returns the model.

    `strategy` (a tf.distribute.Strategy, None for the default one) scopes the model's
    construction and compilation; `jit_compile` compiles the train step with XLA."""
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
    model.fit(ds, epochs=cfg.unet_epochs, verbose=verbose)
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
                  metrics={models.QA_OUTPUT: [keras.metrics.MeanSquaredError(name="mse")]},
                  jit_compile=jit_compile)
    return model


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
                 jit_compile=False):
    """Trains a QA model: `cfg.epochs` epochs, early stopping on the validation MSE of the
    QA output (Section 4.3). `train` / `val`: (x, y dict).

    With `cfg.restore_best` the weights of the epoch with the lowest validation MSE
    are restored at the end (the model the validation selects); otherwise the last
    epoch's weights are kept. With `cfg.recalibrate_bn` the batch-norm statistics are
    re-estimated on the un-augmented training slices before each validation and after
    the last epoch (`batchnorm_recalibration`). The model is compiled under
    `strategy`'s scope (that it was built in)."""
    import keras

    from shared.data.pipeline import dataset_from_arrays

    batch = even_batch_size(len(train[0]), cfg.batch_size)
    steps = len(train[0]) // batch
    with strategy_scope(strategy):
        compile_qa_model(model, cfg, steps, multitask=multitask, jit_compile=jit_compile)
    ds = dataset_from_arrays(train[0], train[1], batch_size=batch, seed=seed,
                             augment=_qa_augment_fn(cfg, multitask), drop_remainder=True)
    val_ds = dataset_from_arrays(val[0], val[1], batch_size=cfg.batch_size, shuffle=False)
    stop = keras.callbacks.EarlyStopping(monitor=f"val_{models.QA_OUTPUT}_mse", patience=cfg.patience,
                                         mode="min", restore_best_weights=cfg.restore_best)
    callbacks = [stop]
    if cfg.recalibrate_bn:
        # The weights EarlyStopping keeps after a validation carry that validation's statistics.
        callbacks.append(batchnorm_recalibration(train[0]))
    history = model.fit(ds, validation_data=val_ds, epochs=cfg.epochs, callbacks=callbacks, verbose=verbose)
    return history.history


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


def pretrain_contrastive(encoder, cfg: LgeQaConfig, x, labels, *, seed, verbose=0, strategy=None,
                         jit_compile=False):
    """Step 1 of QA & Contrastive: SupCon pre-training of `encoder` with LARS (Eqs. 4-5).

    With `cfg.pretrain_criterion` > 0 training stops at the first epoch whose mean
    loss reaches `supcon_target_loss` (at most `cfg.pretrain_epochs` epochs); the
    history then holds "target_loss" and "reached". Under a multi-replica `strategy`
    the anchors of each replica are contrasted with the projections of the whole
    global batch (`models.SupConPretrainer`)."""
    import keras

    from shared.training.lars import LARS
    from shared.data.pipeline import dataset_from_arrays

    with strategy_scope(strategy):
        pretrainer = models.SupConPretrainer(encoder, projection_dim=cfg.projection_dim,
                                             temperature=cfg.temperature)
        pretrainer.compile(optimizer=LARS(learning_rate=cfg.lars_learning_rate, momentum=cfg.lars_momentum,
                                          weight_decay=cfg.lars_weight_decay, eta=cfg.lars_eta),
                           jit_compile=jit_compile)
    batch = even_batch_size(len(x), cfg.pretrain_batch_size)
    ds = dataset_from_arrays(x, labels.astype("int32"), batch_size=batch,
                             seed=seed, augment=_two_view_fn(cfg), drop_remainder=True)
    callbacks, target = [], None
    if cfg.pretrain_criterion > 0:
        target = supcon_target_loss(labels, batch_size=batch, criterion=cfg.pretrain_criterion,
                                    temperature=cfg.temperature)

        class StopAtTarget(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if logs and logs.get("loss", np.inf) <= target:
                    self.model.stop_training = True

        callbacks.append(StopAtTarget())
    history = dict(pretrainer.fit(ds, epochs=cfg.pretrain_epochs, verbose=verbose, callbacks=callbacks).history)
    if target is not None:
        history["target_loss"] = target
        history["reached"] = bool(min(history.get("loss", [np.inf])) <= target)
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
                   jit_compile=False):
    """Builds and trains one QA strategy on the selected slices. Returns (model, history).

    `strategy` is the paper's QA training strategy or the control (ARMS); `distribute` the
    tf.distribute.Strategy the models are built and compiled under (None: default)."""
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

    history = {}
    if model is None:  # heads on a frozen encoder
        idx = split_slices["train"]
        if strategy == "contrastive":
            history["pretrain"] = pretrain_contrastive(encoder, cfg, x[idx], labels[case_index[idx]],
                                                       seed=seed, verbose=verbose, strategy=distribute,
                                                       jit_compile=jit_compile)
        if cfg.recalibrate_bn:
            # The frozen encoder's statistics: un-augmented slices, not the two-view batches
            # (for a random encoder: instead of the initial mean 0 / variance 1).
            models.recalibrate_batchnorm(encoder, x[idx])
        with strategy_scope(distribute):
            model = models.build_frozen_qa_model(encoder, latent_dim=cfg.latent_dim, dropout=cfg.dropout,
                                                 qa_input=cfg.qa_input, name=f"qa_{strategy}")
    history["qa"] = fit_qa_model(model, cfg, subset("train"), subset("val"), multitask=multitask,
                                 seed=seed, verbose=verbose, strategy=distribute, jit_compile=jit_compile)
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
