"""Pre-training, fine-tuning and evaluation of the BAR frameworks' models.

`ModelBank` builds each classifier and pre-trainer once per run and restores its initial
weights for every fold. `pretrain_encoder` runs a framework's siamese pre-training
(its views and mixers from `make_mixers`, its contrastive loss, the optional L1
reconstruction; Eqs. 2-5); `finetune` trains encoder + MLP head with binary
cross-entropy (Sec. 3); `evaluate` scores precision, recall (AD positive) and accuracy.
"""

import numpy as np

from bar_ad.config import METRICS
from bar_ad.mixing import RegionMixer, cube_partition, make_view_fn


def _contrastive_loss(framework, config):
    from shared.losses import ContinuousInfoNCE, SupConLoss

    if framework.contrastive == "none":
        return None, "soft"
    if framework.contrastive == "continuous":
        sigma = config.sigma if framework.sigma is None else framework.sigma
        return ContinuousInfoNCE(sigma=sigma, temperature=config.temperature,
                                 mode="cross_view",
                                 instance_weight=framework.instance_weight), "soft"
    if framework.contrastive == "infonce":
        # SupCon with one class per sample is SimCLR's InfoNCE (Eq. 1).
        return SupConLoss(temperature=config.temperature,
                          base_temperature=config.temperature), "instance"
    if framework.contrastive == "supcon":
        return SupConLoss(temperature=config.supcon_temperature,
                          base_temperature=config.supcon_temperature), "hard"
    raise ValueError(f"Unknown contrastive kind {framework.contrastive!r}")


def make_mixers(framework, config, atlas):
    """(mixer, masker) RegionMixers for a framework: atlas regions or CutMix cubes."""
    a, b = config.beta(framework)
    masker = RegionMixer(atlas.labels, atlas.brain_mask, alpha=a, beta=b,
                         bam_fraction=config.bam_fraction)
    if framework.regions == "cubes":
        cubes = cube_partition(atlas.shape, config.cutmix_cells)
        mixer = RegionMixer(cubes, atlas.brain_mask, alpha=a, beta=b,
                            bam_fraction=config.bam_fraction)
    else:
        mixer = masker
    return mixer, masker


class ModelBank:
    """Models built once per run and re-initialised for every fold.

    Keras traces a model's train / predict step once; building fresh models for every
    framework and fold would trace again each time (seconds per trace on a CPU, more than
    the training itself in the quick preset). The bank keeps one classifier per encoder
    freezing state and one pre-trainer per (contrastive kind, recon, sigma), stores their
    initial weights, and before each fold restores those weights and zeroes the Adam
    state: every fold starts from the same initialisation, as a fresh model built with
    the run's seed would.

    Args:
        config: `BarConfig`.
        seed: int, default 0. Each model's initialisation is seeded from `seed` and the
            model's kind alone, so a framework's result does not depend on which other
            frameworks ran before it.
        strategy: tf.distribute.Strategy or None. Models are built and compiled in its
            scope (None: the default strategy).
        jit_compile: bool, default False. Compile the train steps with XLA.
    """

    CONTRASTIVE_KINDS = ("none", "infonce", "continuous", "supcon")

    def __init__(self, config, seed=0, *, strategy=None, jit_compile=False):
        if seed is None:
            raise ValueError("ModelBank needs an explicit seed. Received: seed=None")
        self.config = config
        self.seed = int(seed)
        self.strategy = strategy
        self.jit_compile = bool(jit_compile)
        self._classifiers = {}
        self._pretrainers = {}

    def _scope(self):
        from shared.training.scale import strategy_scope

        return strategy_scope(self.strategy)

    def _seed_build(self, offset):
        import keras

        keras.utils.set_random_seed(self.seed * 100 + offset)

    def _encoder(self, name):
        c = self.config
        from bar_ad.models import build_encoder

        return build_encoder(c.grid, patch_size=c.patch_size, width=c.width, depth=c.depth,
                             num_heads=c.num_heads, mlp_dim=c.mlp_dim,
                             class_token=c.class_token, dropout=c.dropout, name=name)

    @staticmethod
    def _reset(model, initial, lr):
        import keras

        model.set_weights(initial)
        opt = model.optimizer
        scaled = isinstance(opt, keras.optimizers.LossScaleOptimizer)
        for v in opt.variables:
            if "learning_rate" in v.path:
                continue
            if scaled and v is opt.dynamic_scale:
                v.assign(opt.initial_scale)  # mixed_float16: restart the loss scale too
                continue
            v.assign(np.zeros(v.shape, v.dtype))
        opt.learning_rate = lr

    def classifier(self, framework, lr):
        """A fresh-initialised classifier (encoder + MLP head), compiled with Adam(lr)."""
        import keras

        from bar_ad.models import build_classifier

        key = framework.freeze_encoder
        if key not in self._classifiers:
            self._seed_build(1 + int(key))
            with self._scope():
                model = build_classifier(self._encoder(f"vit3d_clf_{int(key)}"),
                                         head_units=self.config.head_units, freeze_encoder=key)
                model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy",
                              metrics=["accuracy", keras.metrics.AUC(name="auc")],
                              jit_compile=self.jit_compile)
                model.optimizer.build(model.trainable_variables)
            self._classifiers[key] = (model, model.get_weights())
        model, initial = self._classifiers[key]
        self._reset(model, initial, lr)
        return model

    def pretrainer(self, framework):
        """A fresh-initialised `SiamesePretrainer` for the framework's losses."""
        import keras

        from bar_ad.models import SiamesePretrainer, build_decoder

        c = self.config
        key = (framework.contrastive, framework.recon, framework.sigma, framework.shuffle_labels,
               framework.instance_weight)
        if key not in self._pretrainers:
            self._seed_build(10 + 2 * self.CONTRASTIVE_KINDS.index(framework.contrastive)
                             + int(framework.recon))
            with self._scope():
                decoder = (build_decoder(c.grid, patch_size=c.patch_size, width=c.width,
                                         hidden_channels=c.decoder_hidden)
                           if framework.recon else None)
                loss, label_mode = _contrastive_loss(framework, c)
                model = SiamesePretrainer(
                    self._encoder(f"vit3d_pre_{len(self._pretrainers)}"), decoder, loss,
                    label_mode=label_mode, contrastive_weight=c.contrastive_weight,
                    recon_weight=c.recon_weight, shuffle_labels=framework.shuffle_labels,
                    seed=self.seed)
                model.compile(optimizer=keras.optimizers.Adam(c.pretrain_lr),
                              jit_compile=self.jit_compile)
                model.optimizer.build(model.trainable_variables)
            self._pretrainers[key] = (model, model.get_weights())
        model, initial = self._pretrainers[key]
        self._reset(model, initial, c.pretrain_lr)
        return model


def pretrain_encoder(framework, config, atlas, x, y, *, seed, bank=None, probe=None,
                     callbacks=None):
    """Pre-trains the encoder with the framework's views and losses (Eqs. 2-5).

    Args:
        framework, config, atlas: the run's settings.
        x, y: training volumes [N, D, H, W, 1] and hard labels [N].
        seed: int. Seeds the batch order and every view.
        bank: `ModelBank`, optional (a new one when None).
        probe: array [M, D, H, W, 1], optional. Unaugmented scans held out of the
            pre-training: the history then carries `probe_cls_cosine`, the mean
            pairwise cosine of their [cls] tokens under the pre-trained encoder (the
            collapse check of the arm).
        callbacks: list of keras callbacks, optional (given to `fit`).

    Returns:
        (encoder weights list or None when the framework has no pre-training, history dict)
    """
    from shared.data.pipeline import dataset_from_arrays

    if not framework.pretrain:
        return None, {}
    bank = ModelBank(config) if bank is None else bank
    model = bank.pretrainer(framework)
    mixer, masker = make_mixers(framework, config, atlas)
    view_fn = make_view_fn(framework.views, grid=config.grid, mixer=mixer, masker=masker,
                           use_bam=framework.use_bam, shuffle_blocks=config.shuffle_blocks)
    ds = dataset_from_arrays(x, y.astype(np.float32), batch_size=config.pretrain_batch,
                             shuffle=True, seed=seed, augment=view_fn,
                             drop_remainder=len(x) > config.pretrain_batch)
    hist = model.fit(ds, epochs=config.pretrain_epochs, shuffle=False, verbose=0,
                     callbacks=callbacks)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    if probe is not None and len(probe) >= 2:
        history["probe_cls_cosine"] = probe_cosine(model, probe)
    return model.encoder.get_weights(), history


def probe_cosine(model, volumes, batch_size=8) -> float:
    """Mean pairwise cosine of the [cls] tokens of `volumes` under `model.encoder`."""
    tokens = [np.asarray(model.encoder(volumes[i:i + batch_size], training=False)[0],
                         np.float32) for i in range(0, len(volumes), batch_size)]
    return float(model.mean_pairwise_cosine(np.concatenate(tokens, axis=0)))


def finetune(encoder_weights, framework, config, x, y, *, seed, x_val=None, y_val=None,
             bank=None, extra_callbacks=None):
    """Fine-tunes encoder + MLP head with BCE (Sec. 3); returns (model, history).

    Args:
        encoder_weights: list or None. Pre-trained encoder weights (None: from scratch).
        framework, config: the run's settings.
        x, y: training volumes and hard labels.
        seed: int. Batch order.
        x_val, y_val: optional validation subjects; the epoch best on `config.select_on`
            ("val_loss": lowest BCE, "val_auc": highest AUC) is kept, the first of ties.
        bank: `ModelBank`, optional.
        extra_callbacks: list of keras callbacks, optional (given to `fit` after the
            epoch selection's own).

    Returns:
        (model, history): the history holds the per-epoch curves and, with a validation
        set, `selected_epoch` (1-based, a one-element list like the curves' values).
    """
    import keras

    from shared.data.pipeline import dataset_from_arrays

    bank = ModelBank(config) if bank is None else bank
    lr = config.finetune_lr if framework.pretrain else config.scratch_lr
    model = bank.classifier(framework, lr)
    if encoder_weights is not None:
        encoder = [l for l in model.layers if isinstance(l, keras.Model)][0]
        encoder.set_weights(encoder_weights)
    ds = dataset_from_arrays(x, y.astype(np.float32)[:, None], batch_size=config.finetune_batch,
                             shuffle=True, seed=seed)
    callbacks, val = [], None
    if x_val is not None and len(x_val):
        val = dataset_from_arrays(x_val, y_val.astype(np.float32)[:, None],
                                  batch_size=config.finetune_batch, shuffle=False)
        mode = selection_mode(config.select_on)
        # Patience = the whole budget: nothing stops early, the best epoch is restored.
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=config.select_on, mode=mode, patience=config.finetune_epochs,
            restore_best_weights=True))
    hist = model.fit(ds, epochs=config.finetune_epochs, validation_data=val,
                     callbacks=callbacks + list(extra_callbacks or []), shuffle=False, verbose=0)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    if val is not None:
        history["selected_epoch"] = [selected_epoch(history[config.select_on],
                                                    selection_mode(config.select_on))]
    return model, history


def selection_mode(select_on: str) -> str:
    """"min" for a validation loss, "max" for a validation AUC."""
    modes = {"val_loss": "min", "val_auc": "max"}
    if select_on not in modes:
        raise ValueError(f"select_on must be one of {sorted(modes)}. Received: "
                         f"select_on={select_on!r}")
    return modes[select_on]


def selected_epoch(curve, mode) -> int:
    """The 1-based epoch Keras' EarlyStopping restores: the first best value of `curve`
    (strictly better than every earlier one)."""
    values = np.asarray(curve, float)
    best = int(np.argmin(values) if mode == "min" else np.argmax(values))
    return best + 1


def evaluate(model, x, y, *, batch_size=16):
    """Precision, recall (AD positive) and accuracy at threshold 0.5, in percent, and the
    AUC of the AD probability (NaN when the test set holds one class)."""
    from sklearn.metrics import roc_auc_score

    from shared.metrics import classification_metrics

    prob = model.predict(x, batch_size=batch_size, verbose=0)[:, 0]
    pred = (prob >= 0.5).astype(int)
    scores = classification_metrics(y.astype(int), pred, num_classes=2, average="binary",
                                    positive=1)
    out = {m: 100.0 * scores[m] for m in METRICS}
    both = len(np.unique(y)) == 2
    out["auc"] = float(roc_auc_score(y.astype(int), prob)) if both else float("nan")
    return out
