"""End-to-end reproduction of Table 1 (and the ablations) of the BAR paper.

For every framework and subject-level fold: (optionally) pre-train the siamese ViT with
its views and losses, fine-tune encoder + MLP head with binary cross-entropy on the
hard labels, and score precision / recall / accuracy of AD (positive class) on the
held-out fold. Writes the run folder (config, per-fold results, figures, report.md, a
statistical comparison of the frameworks) and one row per fold and metric into the
results store.
"""

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from bar_ad.atlas import load_atlas
from bar_ad.config import (ABLATIONS, FRAMEWORKS, PAPER_ABLATIONS, PAPER_TABLE1, TABLE1,
                           BarConfig, get_framework)
from bar_ad.data import load_adni, subject_folds, subject_holdout, write_adni_cohort
from bar_ad.mixing import RegionMixer, cube_partition, make_view_fn
from bar_ad.phantom import CohortGenerator, CohortSpec

log = logging.getLogger(__name__)
METRICS = ("precision", "recall", "accuracy")


def experiment_name(config: BarConfig) -> str:
    """Store experiment name: `bar_ad` for the paper preset, `bar_ad_<preset>` otherwise."""
    return "bar_ad" if config.preset == "paper" else f"bar_ad_{config.preset}"


def generation_shape(config: BarConfig):
    """Grid the synthetic scans are written on (isotropic `gen_voxel_mm` over the brain box)."""
    from bar_ad.atlas import BRAIN_BOX_MM

    return tuple(max(8, int(round((hi - lo) / config.gen_voxel_mm))) for lo, hi in BRAIN_BOX_MM)


def generate_cohort(config: BarConfig, root, *, seed=0, progress=None, spec=None) -> Path:
    """Writes the synthetic cohort of `config` in the ADNI layout under `root`.

    Args:
        config: `BarConfig` (n_ad, n_cn, scans_per_subject, gen_voxel_mm, atlas_source).
        root: str or Path.
        seed: int.
        progress: callable wrapping an iterable, optional.
        spec: `CohortSpec`, optional; overrides the config's sizes when given.

    Returns:
        Path of the collection CSV.
    """
    atlas = load_atlas(generation_shape(config), source=config.atlas_source)
    if spec is None:
        spec = CohortSpec(n_ad=config.n_ad, n_cn=config.n_cn,
                          scans_per_subject=tuple(config.scans_per_subject))
    generator = CohortGenerator(atlas, spec)
    return write_adni_cohort(root, generator.subjects(seed), atlas, seed=seed, progress=progress)


def _contrastive_loss(framework, config):
    from shared.losses import ContinuousInfoNCE, SupConLoss

    if framework.contrastive == "none":
        return None, "soft"
    if framework.contrastive == "continuous":
        sigma = config.sigma if framework.sigma is None else framework.sigma
        return ContinuousInfoNCE(sigma=sigma, temperature=config.temperature,
                                 mode="cross_view"), "soft"
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
                              metrics=["accuracy"], jit_compile=self.jit_compile)
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
        key = (framework.contrastive, framework.recon, framework.sigma)
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
                    recon_weight=c.recon_weight)
                model.compile(optimizer=keras.optimizers.Adam(c.pretrain_lr),
                              jit_compile=self.jit_compile)
                model.optimizer.build(model.trainable_variables)
            self._pretrainers[key] = (model, model.get_weights())
        model, initial = self._pretrainers[key]
        self._reset(model, initial, c.pretrain_lr)
        return model


def pretrain_encoder(framework, config, atlas, x, y, *, seed, bank=None):
    """Pre-trains the encoder with the framework's views and losses (Eqs. 2-5).

    Args:
        framework, config, atlas: the run's settings.
        x, y: training volumes [N, D, H, W, 1] and hard labels [N].
        seed: int. Seeds the batch order and every view.
        bank: `ModelBank`, optional (a new one when None).

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
    hist = model.fit(ds, epochs=config.pretrain_epochs, shuffle=False, verbose=0)
    return model.encoder.get_weights(), {k: [float(v) for v in vals]
                                         for k, vals in hist.history.items()}


def finetune(encoder_weights, framework, config, x, y, *, seed, x_val=None, y_val=None,
             bank=None):
    """Fine-tunes encoder + MLP head with BCE (Sec. 3); returns (model, history).

    Args:
        encoder_weights: list or None. Pre-trained encoder weights (None: from scratch).
        framework, config: the run's settings.
        x, y: training volumes and hard labels.
        seed: int. Batch order.
        x_val, y_val: optional validation subjects; the epoch with the lowest validation
            loss is kept.
        bank: `ModelBank`, optional.
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
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=config.finetune_epochs, restore_best_weights=True))
    hist = model.fit(ds, epochs=config.finetune_epochs, validation_data=val,
                     callbacks=callbacks, shuffle=False, verbose=0)
    return model, {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def evaluate(model, x, y, *, batch_size=16):
    """Precision, recall (AD positive) and accuracy at threshold 0.5, in percent."""
    from shared.metrics import classification_metrics

    prob = model.predict(x, batch_size=batch_size, verbose=0)[:, 0]
    pred = (prob >= 0.5).astype(int)
    scores = classification_metrics(y.astype(int), pred, num_classes=2, average="binary",
                                    positive=1)
    return {m: 100.0 * scores[m] for m in METRICS}


def center_volumes(x, train_idx):
    """Subtracts the training scans' voxel-wise mean volume and divides by their std.

    For pixel-wise aligned scans the mean brain is shared by every input; removing it
    leaves the subject's deviation from it (anatomy, atrophy). Only training scans
    enter the statistics.

    Returns:
        float32 array like `x`.
    """
    ref = x[train_idx].astype(np.float32)
    mean = ref.mean(axis=0, keepdims=True)
    std = float((ref - mean).std())
    return ((x - mean) / max(std, 1e-6)).astype(np.float32)


def run_fold(framework, config, atlas, data, train_idx, test_idx, *, seed, bank=None):
    """Pre-train (if any), fine-tune and test one framework on one fold."""
    x, y = data["x"], data["y"]
    if config.center_inputs:
        x = center_volumes(x, train_idx)
    tr, val = train_idx, np.array([], int)
    if config.val_fraction > 0:
        tr, val = subject_holdout(train_idx, data["subjects"], y,
                                  fraction=config.val_fraction, seed=seed)
    start = time.perf_counter()
    weights, pre_hist = pretrain_encoder(framework, config, atlas, x[tr], y[tr], seed=seed,
                                         bank=bank)
    pre_s = time.perf_counter() - start
    model, ft_hist = finetune(weights, framework, config, x[tr], y[tr], seed=seed + 1,
                              x_val=x[val] if len(val) else None,
                              y_val=y[val] if len(val) else None, bank=bank)
    scores = evaluate(model, x[test_idx], y[test_idx])
    return dict(scores=scores, pretrain_history=pre_hist, finetune_history=ft_hist,
                pretrain_s=pre_s, total_s=time.perf_counter() - start,
                n_train=int(len(tr)), n_val=int(len(val)), n_test=int(len(test_idx)))


def mixing_figure(atlas, data, config, path, *, seed=0):
    """Grid of axial mid-slices: anchor, partner, BAR mix and CutMix mix with soft labels."""
    import tensorflow as tf

    from shared.report.figures import save_image_grid

    y = data["y"]
    ad, cn = np.flatnonzero(y == 1)[:2], np.flatnonzero(y == 0)[:2]
    # Alternate AD and CN so that most partners (a cyclic shift) have the other label.
    picks = [int(i) for pair in zip(ad, cn) for i in pair] or [int(i) for i in np.arange(min(4, len(y)))]
    x = data["x"][picks].astype(np.float32)
    labels = y[picks].astype(np.float32)
    bar = RegionMixer(atlas.labels, atlas.brain_mask, alpha=1.0, beta=1.0)
    cut = RegionMixer(cube_partition(atlas.shape, config.cutmix_cells), atlas.brain_mask,
                      alpha=1.0, beta=1.0)
    s = tf.constant([seed, 7], tf.int32)
    bar_x, bar_y, bar_d = bar.mix(tf.constant(x), labels, s, return_details=True)
    cut_x, cut_y, _ = cut.mix(tf.constant(x), labels, s, return_details=True)
    bar_bam = bar.bam(bar_x, s + 1, bar_d["selected"])
    z = config.grid // 2 - config.grid // 16
    images, titles = [], []
    partner = bar_d["partner"].numpy()
    name = {0: "CN", 1: "AD"}
    for i in range(len(picks)):
        j = int(partner[i])
        images += [np.rot90(x[i, :, :, z, 0]), np.rot90(x[j, :, :, z, 0]),
                   np.rot90(bar_x.numpy()[i, :, :, z, 0]), np.rot90(bar_bam.numpy()[i, :, :, z, 0]),
                   np.rot90(cut_x.numpy()[i, :, :, z, 0])]
        titles += [f"X_i ({name[int(labels[i])]})", f"X_j ({name[int(labels[j])]})",
                   f"BAR y={float(bar_y[i]):.2f}", "BAR + BAM", f"CutMix y={float(cut_y[i]):.2f}"]
    save_image_grid(images, path, titles=titles, ncols=5)
    return Path(path)


def _curves_figure(result, path, title):
    from shared.report.figures import plot_history

    hist = {}
    for key, vals in result["pretrain_history"].items():
        hist[f"pretrain_{key}"] = vals
    for key, vals in result["finetune_history"].items():
        hist[f"finetune_{key}"] = vals
    if hist:
        plot_history(hist, path, title=title)
        return Path(path)
    return None


def summarize(results):
    """{framework: {metric: (mean, std)}} over folds (std with ddof=0 for 1 fold)."""
    table = {}
    for fw, folds in results.items():
        table[fw] = {}
        for m in METRICS:
            vals = np.array([f["scores"][m] for f in folds], float)
            table[fw][m] = (float(vals.mean()), float(vals.std(ddof=1) if len(vals) > 1 else 0.0))
    return table


def _fmt(pair):
    return f"{pair[0]:.1f} ± {pair[1]:.1f}"


def claim_checks(table):
    """The paper's claims evaluated on our table (accuracy means)."""
    acc = {fw: v["accuracy"][0] for fw, v in table.items()}
    checks = []
    if "bar_recon" in acc and len(acc) > 1:
        best = max(acc, key=acc.get)
        checks.append(("BAR + recon has the best accuracy", best == "bar_recon",
                       f"best: {best} ({acc[best]:.1f})"))
    sup = [acc[f] for f in ("cutmix", "cutmix_recon", "bar", "bar_recon") if f in acc]
    ssl = [acc[f] for f in ("ssl_contrastive", "ssl_recon", "ssl_contrastive_recon") if f in acc]
    if sup and ssl:
        checks.append(("supervised pre-training ahead of self-supervised",
                       np.mean(sup) > np.mean(ssl),
                       f"{np.mean(sup):.1f} vs {np.mean(ssl):.1f}"))
    if ssl and "scratch" in acc:
        checks.append(("self-supervised pre-training ahead of scratch",
                       np.mean(ssl) > acc["scratch"], f"{np.mean(ssl):.1f} vs {acc['scratch']:.1f}"))
    for a, b in (("bar", "cutmix"), ("bar_recon", "cutmix_recon")):
        if a in acc and b in acc:
            checks.append((f"{a} ahead of {b}", acc[a] > acc[b], f"{acc[a]:.1f} vs {acc[b]:.1f}"))
    return checks


def _record(store_url, config, results, log_fn):
    from shared.tracking.store import StoreUnreachableError, open_store

    try:
        store = open_store(store_url)
        name = experiment_name(config)
        store.ensure_experiment(name, config=dataclasses.asdict(config))
        for fw, folds in results.items():
            for k, fold in enumerate(folds):
                for m in METRICS:
                    store.record_evaluation(
                        name, f"{fw}_fold{k}", m, fold["scores"][m], split="test", group=fw,
                        extra={"fold": k, "preset": config.preset, "seed": fold["seed"]})
        store.close()
        return True
    except StoreUnreachableError as err:
        log_fn(f"results store unreachable, rows not recorded: {err}")
        return False


def run_experiment(config: BarConfig, out_dir, *, store_url=None, frameworks=None, seed=0,
                   data_root=None, progress=True, strategy=None, jit_compile=False,
                   precision="float32") -> Path:
    """Runs the reproduction and writes `<out_dir>/report.md`.

    Args:
        config: `BarConfig`.
        out_dir: str or Path. Run folder.
        store_url: str or None. Results store (None: the default SQLite file).
        frameworks: sequence of framework names (default `config.frameworks`).
        seed: int. Base seed (data generation, folds, training).
        data_root: str or Path, optional. An ADNI folder (real or synthetic) to use instead
            of generating the synthetic cohort into `<out_dir>/data`.
        progress: bool. Show progress bars.
        strategy: tf.distribute.Strategy or None. Build and train every model under it.
        jit_compile: bool, default False. XLA-compile the train steps.
        precision: str. The dtype policy in force (set by the caller with
            `shared.scale.set_precision`); recorded in the run folder.

    Returns:
        Path of report.md.
    """
    from shared.cli.progress import progress as bar
    from shared.tracking.runs import make_run_dir, write_json

    frameworks = tuple(config.frameworks if frameworks is None else frameworks)
    for fw in frameworks:
        get_framework(fw)
    replicas = 1 if strategy is None else int(strategy.num_replicas_in_sync)
    out = make_run_dir(out_dir, dict(config=dataclasses.asdict(config), frameworks=frameworks,
                                     seed=seed, data_root=data_root, replicas=replicas,
                                     precision=precision, jit_compile=bool(jit_compile)))
    t0 = time.perf_counter()
    if data_root is None:
        data_root = out / "data"
        if not any(Path(data_root).glob("*.csv")):
            generate_cohort(config, data_root, seed=seed,
                            progress=(lambda it: bar(it, desc="generate", enabled=progress)))
    atlas = load_atlas(config.grid, source=config.atlas_source)
    data = load_adni(data_root, atlas, progress=lambda it: bar(it, desc="load", enabled=progress))
    folds = subject_folds(data["subjects"], data["y"], n_folds=config.n_folds, seed=seed)
    if config.folds_run is not None:
        folds = folds[: int(config.folds_run)]
    results = {fw: [] for fw in frameworks}
    jobs = [(fw, k) for fw in frameworks for k in range(len(folds))]
    from shared.training.scale import clear_session
    from shared.training.seeding import set_global_seed

    clear_session()  # keeps the --precision policy
    set_global_seed(seed)
    bank = ModelBank(config, seed=seed, strategy=strategy, jit_compile=jit_compile)
    for fw, k in bar(jobs, desc="bar-ad", enabled=progress, unit="fold"):
        train_idx, test_idx = folds[k]
        fold_seed = seed * 1000 + 10 * k
        res = run_fold(get_framework(fw), config, atlas, data, train_idx, test_idx,
                       seed=fold_seed, bank=bank)
        res["seed"] = fold_seed
        res["fold"] = k
        results[fw].append(res)
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    mixing_figure(atlas, data, config, figures / "bar_vs_cutmix.png", seed=seed)
    curve_paths = {}
    for fw in frameworks:
        p = _curves_figure(results[fw][0], figures / f"curves_{fw}.png", FRAMEWORKS[fw].label)
        if p is not None:
            curve_paths[fw] = p
    table = summarize(results)
    write_json(out / "results.json", dict(table=table, folds=results,
                                          n_scans=int(len(data["y"])),
                                          n_subjects=int(len(np.unique(data["subjects"]))),
                                          n_ad_scans=int(data["y"].sum()),
                                          atlas=atlas.source, num_regions=atlas.num_regions,
                                          seconds=time.perf_counter() - t0))
    notes = []
    recorded = _record(store_url, config, results, notes.append)
    stats_md = None
    if len(frameworks) > 1 and all(len(v) > 1 for v in results.values()):
        from shared.report import write_comparison_report

        stats_md = write_comparison_report(
            {fw: [f["scores"]["accuracy"] for f in results[fw]] for fw in frameworks},
            metric="accuracy", out_dir=out / "stats",
            title="BAR reproduction: accuracy per framework",
            description=f"Fold accuracies (%) of each framework, preset `{config.preset}`.",
            provenance={"experiment": experiment_name(config), "store": store_url})
    report = write_report(out, config, table, results, data, atlas, frameworks,
                          curve_paths=curve_paths, stats_md=stats_md, recorded=recorded,
                          notes=notes, seconds=time.perf_counter() - t0)
    return report


def write_report(out, config, table, results, data, atlas, frameworks, *, curve_paths,
                 stats_md, recorded, notes, seconds):
    """Writes report.md: our Table 1 beside the paper's, claim checks, figures."""
    n_sub = len(np.unique(data["subjects"]))
    ad_sub = len(np.unique(data["subjects"][data["y"] == 1]))
    folds = len(next(iter(results.values())))
    lines = [
        "# BAR (Brain-Aware Replacements) reproduction",
        "",
        f"Preset `{config.preset}`: {len(data['y'])} scans of {n_sub} subjects "
        f"({ad_sub} AD, {n_sub - ad_sub} CN) on a {config.grid}^3 grid; atlas: {atlas.source}, "
        f"{atlas.num_regions} merged regions; ViT patch {config.patch_size}, width "
        f"{config.width}, depth {config.depth}; {folds} subject-level fold(s) of "
        f"{config.n_folds}; {seconds / 60:.1f} min.",
        "",
        "| framework | precision | recall | accuracy | paper precision | paper recall | paper accuracy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for fw in frameworks:
        ours = table[fw]
        paper = PAPER_TABLE1.get(fw)
        if paper is not None:
            ref = [_fmt(p) for p in paper]
        elif fw in PAPER_ABLATIONS:
            ref = ["-", "-", f"{PAPER_ABLATIONS[fw]:.1f}"]
        else:
            ref = ["-", "-", "-"]
        lines.append(f"| {FRAMEWORKS[fw].label} | " + " | ".join(_fmt(ours[m]) for m in METRICS)
                     + " | " + " | ".join(ref) + " |")
    lines += ["", "Mean ± standard deviation over folds, in percent; AD is the positive class.",
              ""]
    checks = claim_checks(table)
    if checks:
        lines += ["## The paper's claims on this run", ""]
        for text, ok, detail in checks:
            lines.append(f"- {text}: {'yes' if ok else 'no'} ({detail})")
        lines.append("")
    lines += ["## Figures", "", "![BAR and CutMix mixes with soft labels](figures/bar_vs_cutmix.png)",
              ""]
    for fw, p in curve_paths.items():
        lines += [f"![training curves: {FRAMEWORKS[fw].label}](figures/{p.name})", ""]
    if stats_md is not None:
        lines += [f"Statistical comparison of the frameworks: [stats/report.md]"
                  f"({Path(stats_md).relative_to(out).as_posix()})", ""]
    lines.append("Results store: " + ("rows recorded." if recorded else "not recorded."))
    lines += [f"- {n}" for n in notes]
    path = Path(out) / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


__all__ = ["run_experiment", "generate_cohort", "run_fold", "summarize", "claim_checks",
           "experiment_name", "TABLE1", "ABLATIONS"]
