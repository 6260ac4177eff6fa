"""End-to-end reproduction of Sultan et al.: LA detector, three QA strategies, Table 2, Figs. 2-3.

`run_experiment(cfg, ...)`:

1. writes the phantom dataset (unless `data_root` already holds one, e.g. real data);
2. stage 1: trains the U-Net LA detector on the masks-only cohort, selects the LA
   slices of the scored scans (`io.select_slices`, threshold t), reports its Dice and
   slice-selection precision / recall;
3. stage 2, per repetition: splits the scored scans (test `cfg.test_scans`, the rest
   90:10 train / validation), trains each strategy on the selected slices, predicts the
   test slices, takes each scan's mode, and computes precision, recall, F1 and
   specificity of the fibrosis-quality label (positive = diagnostic);
4. writes results-store rows, a statistical comparison of the strategies
   (`shared.report`), HiResCAM overlays (Baseline vs Multi-Task, Fig. 2), an embedding
   plot (UMAP, or PCA without umap-learn, Fig. 3) and `report.md`.
"""

import logging
import time
import warnings
from pathlib import Path

import numpy as np

from lge_qa import io, models, phantom
from lge_qa.config import STRATEGIES, LgeQaConfig
from shared.training.scale import strategy_scope

log = logging.getLogger(__name__)

EXPERIMENT = "lge_qa"
DETECTOR_EXPERIMENT = "lge_qa_detector"
METRICS = ("precision", "recall", "f1", "specificity")
STRATEGY_TITLES = {"baseline": "QA", "multitask": "Multi-Task QA", "contrastive": "QA & Contrastive"}
PAPER_TABLE2 = {
    "baseline": {"precision": (0.60, 0.05), "recall": (0.90, 0.15), "f1": (0.71, 0.05), "specificity": (0.38, 0.20)},
    "multitask": {"precision": (0.63, 0.07), "recall": (0.90, 0.12), "f1": (0.73, 0.04), "specificity": (0.44, 0.24)},
    "contrastive": {"precision": (0.65, 0.07), "recall": (0.94, 0.08), "f1": (0.76, 0.05), "specificity": (0.48, 0.17)},
}


# ----------------------------------------------------------------------------- data


def ensure_dataset(cfg: LgeQaConfig, data_root, *, progress=None) -> Path:
    """Writes the phantom under `data_root` unless a scores table is already there."""
    root = Path(data_root)
    if (root / phantom.SCORES_FILE).is_file():
        return root
    log.info("writing phantom dataset to %s", root)
    return phantom.generate_dataset(
        root, n_segmentation=cfg.n_segmentation, n_scored=cfg.n_scored, shape=cfg.volume_shape,
        seed=cfg.seed, rater_sd=cfg.rater_sd, correlation=cfg.quality_correlation,
        spread=cfg.quality_spread, shift=cfg.quality_shift, progress=progress,
    )


def split_scans(n_scans, *, test_scans, val_fraction, seed):
    """Random scan-level split: `test_scans` for testing, the rest `1 - val_fraction : val_fraction`.

    Returns:
        dict of int index arrays "train", "val", "test".
    """
    if test_scans >= n_scans - 1:
        raise ValueError(f"test_scans={test_scans} leaves no scans to train on ({n_scans} scans)")
    order = np.random.default_rng(seed).permutation(n_scans)
    test, rest = order[:test_scans], order[test_scans:]
    n_val = max(1, int(round(val_fraction * len(rest))))
    return {"train": np.sort(rest[n_val:]), "val": np.sort(rest[:n_val]), "test": np.sort(test)}


def _slice_targets(labels_per_scan, case_index, masks=None):
    """Per-slice target dict from scan-level binary labels [n_scans, 4]."""
    lab = labels_per_scan[case_index].astype("float32")
    y = {name: lab[:, k:k + 1] for k, name in enumerate(models.OUTPUTS)}
    if masks is not None:
        y[models.MASK_OUTPUT] = masks.astype("float32")
    return y


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


def detect_slices(probabilities, case_index, case_ids, threshold, *, fallback_top=3):
    """Slices of each scan whose LA probability exceeds `threshold` (Section 3.1).

    A scan with no such slice raises in `io.select_slices`; here it is kept with its
    `fallback_top` most probable slices and a warning, so one weak detection does not
    drop a scored scan.

    Returns:
        bool array [N] over all slices: selected or not.
    """
    selected = np.zeros(len(case_index), bool)
    for i, case_id in enumerate(case_ids):
        idx = np.flatnonzero(case_index == i)
        try:
            keep = io.select_slices(probabilities[idx], threshold, case_id=case_id)
        except ValueError as err:
            warnings.warn(f"{err}; keeping its {fallback_top} most probable slices", stacklevel=2)
            peak = probabilities[idx].reshape(len(idx), -1).max(axis=1)
            keep = np.argsort(-peak)[:fallback_top]
        selected[idx[keep]] = True
    return selected


def detector_metrics(probabilities, masks, selected, threshold) -> dict:
    """Dice of the thresholded masks over all slices, slice-selection precision / recall."""
    pred = probabilities > threshold
    truth = masks > 0
    inter = float(np.logical_and(pred, truth).sum())
    denom = float(pred.sum() + truth.sum())
    dice = 2 * inter / denom if denom > 0 else 1.0
    has_la = truth.reshape(len(truth), -1).any(axis=1)
    tp = float(np.sum(selected & has_la))
    precision = tp / max(1.0, float(selected.sum()))
    recall = tp / max(1.0, float(has_la.sum()))
    return {"dice": dice, "slice_precision": precision, "slice_recall": recall,
            "selected_slices": int(selected.sum()), "la_slices": int(has_la.sum())}


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


def pretrain_contrastive(encoder, cfg: LgeQaConfig, x, labels, *, seed, verbose=0, strategy=None,
                         jit_compile=False):
    """Step 1 of QA & Contrastive: SupCon pre-training of `encoder` with LARS (Eqs. 4-5).

    Under a multi-replica `strategy` the anchors of each replica are contrasted with the
    projections of the whole global batch (`models.SupConPretrainer`)."""
    from shared.training.lars import LARS
    from shared.data.pipeline import dataset_from_arrays

    with strategy_scope(strategy):
        pretrainer = models.SupConPretrainer(encoder, projection_dim=cfg.projection_dim,
                                             temperature=cfg.temperature)
        pretrainer.compile(optimizer=LARS(learning_rate=cfg.lars_learning_rate, momentum=cfg.lars_momentum,
                                          weight_decay=cfg.lars_weight_decay, eta=cfg.lars_eta),
                           jit_compile=jit_compile)
    ds = dataset_from_arrays(x, labels.astype("int32"), batch_size=even_batch_size(len(x), cfg.pretrain_batch_size),
                             seed=seed, augment=_two_view_fn(cfg), drop_remainder=True)
    history = pretrainer.fit(ds, epochs=cfg.pretrain_epochs, verbose=verbose)
    return history.history


def build_strategy_model(strategy, cfg: LgeQaConfig):
    """A fresh encoder + heads for one strategy (the contrastive encoder still untrained)."""
    encoder = models.build_encoder(cfg.image_size, filters=cfg.encoder_filters, blocks=cfg.encoder_blocks,
                                   weights=cfg.encoder_weights)
    models.set_batchnorm_momentum(encoder, cfg.bn_momentum)
    if strategy == "baseline":
        model = models.build_qa_model(encoder, latent_dim=cfg.latent_dim, dropout=cfg.dropout,
                                      name="qa_baseline")
    elif strategy == "multitask":
        model = models.build_qa_model(encoder, latent_dim=cfg.latent_dim, dropout=cfg.dropout, decoder=True,
                                      name="qa_multitask")
    elif strategy == "contrastive":
        return None, encoder
    else:
        raise ValueError(f"strategy must be one of {STRATEGIES}. Received: strategy={strategy!r}")
    models.set_batchnorm_momentum(model, cfg.bn_momentum)  # the decoder's too
    return model, encoder


def train_strategy(strategy, cfg: LgeQaConfig, data, split_slices, *, seed, verbose=0, distribute=None,
                   jit_compile=False):
    """Builds and trains one QA strategy on the selected slices. Returns (model, history).

    `strategy` is the paper's QA training strategy (STRATEGIES); `distribute` the
    tf.distribute.Strategy the models are built and compiled under (None: default)."""
    from shared.training.seeding import set_global_seed

    set_global_seed(seed)
    with strategy_scope(distribute):
        model, encoder = build_strategy_model(strategy, cfg)
    multitask = strategy == "multitask"
    x, labels, case_index, masks = data["images"], data["labels"], data["case_index"], data["masks"]

    def subset(name):
        idx = split_slices[name]
        return x[idx], _slice_targets(labels, case_index[idx], masks[idx] if multitask else None)

    history = {}
    if strategy == "contrastive":
        idx = split_slices["train"]
        history["pretrain"] = pretrain_contrastive(encoder, cfg, x[idx], labels[case_index[idx]],
                                                   seed=seed, verbose=verbose, strategy=distribute,
                                                   jit_compile=jit_compile)
        if cfg.recalibrate_bn:
            # The frozen encoder's statistics: un-augmented slices, not the two-view batches.
            models.recalibrate_batchnorm(encoder, x[idx])
        with strategy_scope(distribute):
            model = models.build_frozen_qa_model(encoder, latent_dim=cfg.latent_dim, dropout=cfg.dropout)
    history["qa"] = fit_qa_model(model, cfg, subset("train"), subset("val"), multitask=multitask,
                                 seed=seed, verbose=verbose, strategy=distribute, jit_compile=jit_compile)
    return model, history


def evaluate_scans(model, x, case_index, scan_labels, *, batch_size=256):
    """Per-slice QA predictions, scan label = mode; metrics with diagnostic = positive.

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
    return {k: float(v) for k, v in metrics.items()}, prob, per_scan


# ----------------------------------------------------------------------------- figures


def save_cam_figure(models_by_strategy, x, case_index, scan_labels, slice_prob, path, *, n_scans, layer_name):
    """Fig. 2: HiResCAM of the QA output, Baseline vs Multi-Task, on the same test slices."""
    import tensorflow as tf

    from shared.explain import attribution_maps
    from shared.report.figures import save_overlay_grid

    scans = sorted(set(case_index.tolist()))[:n_scans]
    picks = []
    for s in scans:
        idx = np.flatnonzero(case_index == s)
        picks.append(idx[len(idx) // 2])
    picks = np.asarray(picks)
    images, heatmaps, titles = [], [], []
    for strategy in ("baseline", "multitask"):
        model = models_by_strategy[strategy]
        xb = tf.convert_to_tensor(x[picks])
        pred = (slice_prob[strategy][picks] >= 0.5).astype("float32")
        pred_t = tf.constant(pred)

        def target(outputs, pred_t=pred_t):
            p = outputs[models.QA_OUTPUT][:, 0]
            return pred_t * p + (1.0 - pred_t) * (1.0 - p)

        maps = attribution_maps(model, xb, layer_name=layer_name, targets=target, method="hirescam",
                                upsample_to=x.shape[1:3], normalize=True)
        for j, i in enumerate(picks):
            images.append(x[i, ..., 0])
            heatmaps.append(np.asarray(maps[j]))
            titles.append(f"{STRATEGY_TITLES[strategy]}: true {scan_labels[case_index[i]]}, pred {int(pred[j])}")
    save_overlay_grid(images, heatmaps, path, titles=titles, ncols=len(picks))
    return path


def project_2d(embeddings, *, seed, method="umap"):
    """UMAP (umap-learn) when asked for and installed, else PCA. Returns ([N, 2], method name)."""
    umap = None
    if method == "umap":
        try:
            import umap
        except ImportError:
            umap = None
    if umap is not None and len(embeddings) > 10:
        reducer = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(embeddings) - 1))
        return reducer.fit_transform(embeddings), "UMAP"
    centred = embeddings - embeddings.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T, "PCA"


def save_embedding_figure(models_by_strategy, x, qa_labels, path, *, seed, method="umap"):
    """Fig. 3: 2D projection of each strategy's encoder embedding, coloured by QA label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strategies = [s for s in STRATEGIES if s in models_by_strategy]
    fig, axes = plt.subplots(1, len(strategies), figsize=(4 * len(strategies), 4), squeeze=False)
    used = "PCA"
    for ax, strategy in zip(axes[0], strategies):
        emb = models.embedding_model(models_by_strategy[strategy]).predict(x, verbose=0)
        xy, used = project_2d(np.asarray(emb, dtype="float64"), seed=seed, method=method)
        for label, colour, name in ((0, "tab:red", "non-diagnostic"), (1, "tab:blue", "diagnostic")):
            sel = qa_labels == label
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, c=colour, label=name, alpha=0.7)
        ax.set_title(f"{STRATEGY_TITLES[strategy]} ({used})")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path, used


# ----------------------------------------------------------------------------- driver


def summarise(results) -> dict:
    """{strategy: {metric: (mean, std)}} over repetitions (std with ddof=1 when n > 1)."""
    out = {}
    for strategy, reps in results.items():
        out[strategy] = {}
        for metric in METRICS:
            values = np.asarray([r[metric] for r in reps], dtype=float)
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            out[strategy][metric] = (float(values.mean()), std)
    return out


def table_markdown(summary) -> str:
    """Our Table 2 beside the paper's."""
    lines = ["| Method | " + " | ".join(m.capitalize() for m in METRICS) + " |",
             "|---|" + "---|" * len(METRICS)]
    for strategy, stats in summary.items():
        ours = " | ".join(f"{stats[m][0]:.2f} ± {stats[m][1]:.2f}" for m in METRICS)
        lines.append(f"| {STRATEGY_TITLES[strategy]} (ours) | {ours} |")
        paper = PAPER_TABLE2[strategy]
        lines.append(f"| {STRATEGY_TITLES[strategy]} (paper) | "
                     + " | ".join(f"{paper[m][0]:.2f} ± {paper[m][1]:.2f}" for m in METRICS) + " |")
    return "\n".join(lines)


def run_experiment(cfg: LgeQaConfig, *, out_dir, store_url=None, data_root=None, strategies=None,
                   progress=True, verbose=0, distribute=None, jit_compile=False) -> dict:
    """Runs the whole reproduction and writes its run folder.

    Args:
        cfg: LgeQaConfig.
        out_dir: str or Path. The run folder.
        store_url: str, optional. Results store URL (None: the default SQLite store).
        data_root: str or Path, optional. Dataset root in the challenge layout; default
            `<out_dir>/data`, where the phantom is written if absent.
        strategies: sequence of str, optional. Subset of STRATEGIES (default cfg.strategies).
        progress: bool, default True. Progress bars.
        verbose: int, default 0. Keras fit verbosity.
        distribute: tf.distribute.Strategy, optional. Every network is built and
            compiled in its scope (None: the default strategy). Set the dtype policy
            before calling (`shared.scale.configure`).
        jit_compile: bool, default False. Compile the train steps with XLA.

    Returns:
        dict with "summary", "results", "detector", "report" (path of report.md), "figures".
    """
    from shared.cli.progress import progress as pbar
    from shared.tracking.runs import make_run_dir, write_json
    from shared.training.seeding import set_global_seed

    strategies = tuple(cfg.strategies if strategies is None else strategies)
    for s in strategies:
        if s not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}. Received: {s!r}")
    t0 = time.time()
    out = make_run_dir(out_dir, {**cfg.to_dict(), "strategies": list(strategies)})
    data_root = Path(data_root) if data_root is not None else out / "data"
    wrap = (lambda it, desc: pbar(it, desc=desc, enabled=progress))
    ensure_dataset(cfg, data_root, progress=lambda it, desc: wrap(it, desc))

    # Stage 1: LA detector.
    set_global_seed(cfg.seed)
    seg = io.load_cohort(data_root / phantom.SEG_SPLIT, size=cfg.image_size)
    scores = io.read_scores_csv(data_root / phantom.SCORES_FILE)
    qa = io.load_cohort(data_root / phantom.QA_SPLIT, size=cfg.image_size, scores=scores, require_mask=False)
    detector = train_la_detector(cfg, seg, seed=cfg.seed, verbose=verbose, strategy=distribute,
                                 jit_compile=jit_compile)
    prob = detector.predict(qa["images"], batch_size=256, verbose=0)
    selected = detect_slices(prob, qa["case_index"], qa["case_ids"], cfg.detection_threshold)
    det = detector_metrics(prob, qa["masks"], selected, cfg.detection_threshold)
    log.info("LA detector: %s", det)

    labels = io.binarise_scores(qa["scores"], cfg.score_threshold)
    # Scans without a stored LA mask fall back to the detector's mask for the multi-task decoder.
    masks = qa["masks"].copy()
    for i in np.flatnonzero(~qa["has_mask"]):
        idx = qa["case_index"] == i
        masks[idx] = (prob[idx] > cfg.detection_threshold).astype(masks.dtype)
    data = {"images": qa["images"][selected], "masks": masks[selected],
            "case_index": qa["case_index"][selected], "labels": labels}
    n_scans = len(qa["case_ids"])

    results = {s: [] for s in strategies}
    figures = {}
    keep_models, keep_probs, rep0_split = {}, {}, None
    steps = [(r, s) for r in range(cfg.repetitions) for s in strategies]
    for r, strategy in wrap(steps, "lge-qa"):
        split = split_scans(n_scans, test_scans=cfg.test_scans, val_fraction=cfg.val_fraction,
                            seed=cfg.seed + 1000 * r)
        split_slices = {k: np.flatnonzero(np.isin(data["case_index"], v)) for k, v in split.items()}
        ts = time.time()
        model, history = train_strategy(strategy, cfg, data, split_slices, seed=cfg.seed + r, verbose=verbose,
                                        distribute=distribute, jit_compile=jit_compile)
        test_idx = split_slices["test"]
        metrics, slice_prob, _ = evaluate_scans(model, data["images"][test_idx], data["case_index"][test_idx],
                                                {i: int(labels[i, 3]) for i in split["test"]})
        metrics["epochs"] = len(history["qa"].get("loss", []))
        metrics["seconds"] = time.time() - ts
        if "pretrain" in history:
            # Eq. 5 per pre-training epoch (mean over its batches), for metrics.json.
            metrics["pretrain_loss"] = [float(v) for v in history["pretrain"].get("loss", [])]
        results[strategy].append(metrics)
        log.info("repetition %d %s: %s", r, strategy, metrics)
        if r == 0:
            keep_models[strategy], keep_probs[strategy], rep0_split = model, slice_prob, split_slices
    write_json(out / "metrics.json", {"detector": det, "results": results})

    summary = summarise(results)
    store_rows = _record(store_url, cfg, results, det, strategies)

    # Figures from the first repetition (the paper shows its first iteration too).
    test_idx = rep0_split["test"]
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    x_test, ci_test = data["images"][test_idx], data["case_index"][test_idx]
    if "baseline" in keep_models and "multitask" in keep_models:
        layer = [ly.name for ly in keep_models["baseline"].layers if ly.name.endswith("_out")
                 and ly.name.startswith("conv")][-1]
        figures["hirescam"] = save_cam_figure(
            keep_models, x_test, ci_test, {i: int(labels[i, 3]) for i in range(n_scans)}, keep_probs,
            fig_dir / "fig2_hirescam.png", n_scans=cfg.cam_scans, layer_name=layer)
    figures["embedding"], projection = save_embedding_figure(
        keep_models, x_test, labels[ci_test, 3], fig_dir / "fig3_embedding.png", seed=cfg.seed,
        method=cfg.projection)

    stats_paths = {}
    if len(strategies) > 1 and cfg.repetitions > 1:
        from shared.report import write_comparison_report

        for metric in ("f1", "specificity"):
            stats_paths[metric] = write_comparison_report(
                {s: [r[metric] for r in results[s]] for s in strategies}, metric=metric,
                out_dir=out / f"stats_{metric}", title=f"LGE QA strategies: {metric}",
                description=f"Test-set {metric} of the fibrosis-quality label over {cfg.repetitions} repetitions.")

    report = _write_report(out, cfg, strategies, summary, det, figures, projection, stats_paths,
                           time.time() - t0, store_rows)
    return {"summary": summary, "results": results, "detector": det, "report": report,
            "figures": figures, "stats": stats_paths}


def _record(store_url, cfg, results, det, strategies):
    from shared.tracking.store import open_store

    store = open_store(store_url)
    try:
        store.ensure_experiment(EXPERIMENT, cfg.to_dict())
        store.ensure_experiment(DETECTOR_EXPERIMENT, cfg.to_dict())
        n = 0
        for metric in ("dice", "slice_precision", "slice_recall"):
            store.record_evaluation(DETECTOR_EXPERIMENT, f"unet_seed{cfg.seed}", metric, det[metric],
                                    group="unet", extra={"threshold": cfg.detection_threshold})
            n += 1
        for strategy in strategies:
            for r, metrics in enumerate(results[strategy]):
                for metric in METRICS + ("accuracy",):
                    if metric in metrics:
                        store.record_evaluation(EXPERIMENT, f"{strategy}_seed{cfg.seed}_rep{r}", metric,
                                                metrics[metric], group=strategy,
                                                extra={"repetition": r, "n_scored": cfg.n_scored,
                                                       "epochs": metrics.get("epochs")})
                        n += 1
        return n
    finally:
        store.close()


def _write_report(out, cfg, strategies, summary, det, figures, projection, stats_paths, seconds, store_rows):
    lines = [
        "# LGE-MRI quality assessment (Sultan et al.): reproduction run",
        "",
        f"{cfg.n_scored} scored scans, {cfg.n_segmentation} masks-only scans, slices {cfg.image_size} px, "
        f"{cfg.repetitions} repetitions, test split {cfg.test_scans} scans. Run time {seconds:.0f} s; "
        f"{store_rows} rows written to the results store.",
        "",
        "## Stage 1: left-atrium detector",
        "",
        f"Threshold t = {cfg.detection_threshold}: Dice {det['dice']:.3f}, slice-selection precision "
        f"{det['slice_precision']:.3f}, recall {det['slice_recall']:.3f} "
        f"({det['selected_slices']} slices selected, {det['la_slices']} contain the LA).",
        "",
        "## Stage 2: Table 2 (fibrosis-quality label, diagnostic = positive; mean ± std)",
        "",
        table_markdown(summary),
        "",
    ]
    if stats_paths:
        lines += ["Statistical comparisons: "
                  + ", ".join(f"[{m}]({Path(p).relative_to(out)})" for m, p in stats_paths.items()), ""]
    if "hirescam" in figures:
        lines += ["## Fig. 2: HiResCAM, Baseline vs Multi-Task", "",
                  f"![HiResCAM]({Path(figures['hirescam']).relative_to(out)})", ""]
    lines += [f"## Fig. 3: encoder embeddings ({projection})", "",
              f"![embeddings]({Path(figures['embedding']).relative_to(out)})", ""]
    if projection != "UMAP" and cfg.projection == "umap":
        lines += ["umap-learn is not installed; PCA is shown instead (`pip install umap-learn`).", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
