"""Experiments 1 and 2 of the thesis, end to end (sections 3.2 and 3.3).

For each group ("cce": cross-entropy alone; "heatmap": MSE + weighted HiResCAM
penalty outside the heart) a Keras Tuner Bayesian search over the learning rate
trains `models_per_group` models with early stopping on the validation loss. Each
model is evaluated on a separate test set as soon as it is trained: accuracy, mean
HiResCAM-heart overlap (share of the map of the true class inside the heart) and, in
experiment 2, the mean HiResCAM-marker overlap on male images. Every trial and every
evaluation (with training time) goes into the results store. Models whose
validation accuracy exceeds the threshold are compared between groups with
`shared.report.write_comparison_report` (Shapiro-Wilk, then Mann-Whitney U or a
t-test, Cohen's d, common-language effect size, IQR-filtered d).
"""

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

import keras
import keras_tuner
import tensorflow as tf

from heatmap_loss.config import HeatmapLossConfig, study_protocol
from heatmap_loss.data import model_arrays, save_sample_sheet
from heatmap_loss.models import HeatmapLossModel, build_classifier, validate_training_arrays
from heatmap_loss.phantom import CLASSES, generate
from shared.explain import feature_model, forward_with_maps, mass_inside
from shared.study import Study, claims_markdown
from shared.study.trivial import majority_class
from shared.tracking.runs import git_revision, make_run_dir, write_json
from shared.tracking.store import mask_url

log = logging.getLogger(__name__)

GROUPS = ("cce", "heatmap")


def experiment_name(experiment: int) -> str:
    return f"heatmap_loss_exp{experiment}"


def build_model(config: HeatmapLossConfig, group: str, learning_rate: float, *,
                jit_compile=False) -> HeatmapLossModel:
    """A compiled model of one group: "cce" (weight 0, cross-entropy) or "heatmap"."""
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}. Received: group={group!r}")
    classifier = build_classifier(tuple(config.image_size) + (1,), num_classes=len(CLASSES),
                                  filters=config.filters, dense_units=config.dense_units,
                                  weights=config.backbone_weights,
                                  kernel_initializer=config.kernel_initializer)
    if group == "cce":
        model = HeatmapLossModel(classifier, cam_layer=config.cam_layer, weight=0.0,
                                 method=config.method, classification_loss="cce")
    else:
        model = HeatmapLossModel(classifier, cam_layer=config.cam_layer,
                                 weight=config.heatmap_weight, method=config.method,
                                 classification_loss=config.heatmap_classification_loss)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), jit_compile=jit_compile)
    return model


def evaluate_model(model: HeatmapLossModel, images, labels, regions: dict, *, method="hirescam",
                   batch_size=128) -> dict:
    """Test accuracy and per-image attribution overlaps of one model.

    Args:
        model: HeatmapLossModel.
        images: float32 [N, H, W, 1]. labels: int [N].
        regions: dict name -> binary masks [N, H, W]; the overlap is the share of
            the (ReLU'd) map of the true class inside the region (`mass_inside`).
        method: "hirescam" or "gradcam".
        batch_size: int.

    Returns:
        dict: "accuracy" (float), "predictions" [N], and one [N] array per region.
    """
    fm = feature_model(model.classifier, model.cam_layer)
    predictions, overlaps = [], {name: [] for name in regions}
    for start in range(0, len(images), batch_size):
        part = slice(start, start + batch_size)
        logits, maps = forward_with_maps(fm, tf.constant(images[part]),
                                         tf.constant(labels[part], tf.int32),
                                         method=method, training=False)
        predictions.append(np.argmax(logits.numpy(), axis=-1))
        for name, masks in regions.items():
            overlaps[name].append(mass_inside(maps, masks[part]).numpy())
    predictions = np.concatenate(predictions)
    out = {"accuracy": float(np.mean(predictions == labels)), "predictions": predictions}
    out.update({name: np.concatenate(v) for name, v in overlaps.items()})
    return out


def save_class_overlays(model: HeatmapLossModel, images, labels, path, *, per_class, title,
                        method="hirescam") -> Path:
    """Normalised HiResCAM overlays of `per_class` test images of each class (rows)."""
    from shared.explain import attribution_maps
    from shared.report.figures import save_overlay_grid

    index = np.concatenate([np.flatnonzero(labels == k)[:per_class] for k in range(len(CLASSES))])
    maps = attribution_maps(feature_model(model.classifier, model.cam_layer),
                            tf.constant(images[index]), targets=tf.constant(labels[index], tf.int32),
                            method=method, upsample_to=images.shape[1:3], normalize=True).numpy()
    titles = [f"{title}: {CLASSES[labels[i]]}" for i in index]
    return save_overlay_grid(images[index, ..., 0], maps, path, titles=titles, ncols=per_class)


def reinitialise(model: keras.Model, learning_rate: float) -> keras.Model:
    """Gives a compiled model fresh initial weights, a reset optimizer and a new rate.

    Every kernel and bias is redrawn from its layer's initializer (from the Keras
    global random state, so runs stay seeded) and the optimizer's slots and step
    counter are zeroed. The model is then equivalent to a newly built one, but its
    compiled training and evaluation functions are kept: tracing a graph that holds
    the second-order attribution terms costs more than training a small model.
    """
    def walk(layer):
        yield layer
        for sub in getattr(layer, "layers", []):
            yield from walk(sub)

    for layer in walk(model):
        for attr, init in (("kernel", "kernel_initializer"), ("bias", "bias_initializer")):
            variable = getattr(layer, attr, None)
            initializer = getattr(layer, init, None)
            if variable is not None and initializer is not None:
                variable.assign(initializer(variable.shape, dtype=variable.dtype))
    for variable in model.optimizer.variables:
        variable.assign(tf.zeros(variable.shape, dtype=variable.dtype))
    model.optimizer.learning_rate = learning_rate
    return model


class GroupHyperModel(keras_tuner.HyperModel):
    """One group's search space (the learning rate) and its per-model evaluation.

    `build` makes the group's model once and afterwards re-initialises it for every
    trial (`reinitialise`), so each trial is a fresh model without a new graph trace.
    `fit` trains, times and then evaluates the model on the test set, appending one
    record per model to `records` (the trial id is read from the running tuner).
    """

    def __init__(self, config, group, test, experiment, figure_dir, jit_compile=False):
        super().__init__(name=f"heatmap_loss_{group}")
        self.config, self.group, self.test = config, group, test
        self.experiment = experiment
        self.figure_dir = Path(figure_dir)
        self.tuner = None
        self.records = []
        self._model = None
        self.jit_compile = jit_compile

    def build(self, hp):
        low, high = self.config.lr_cce if self.group == "cce" else self.config.lr_heatmap
        learning_rate = hp.Float("learning_rate", low, high, sampling="log")
        if self._model is None:
            self._model = build_model(self.config, self.group, learning_rate,
                                      jit_compile=self.jit_compile)
            return self._model
        return reinitialise(self._model, learning_rate)

    def fit(self, hp, model, *args, **kwargs):
        start = time.perf_counter()
        history = model.fit(*args, **kwargs)
        train_time = time.perf_counter() - start
        trial = self.tuner.oracle.ongoing_trials.get(self.tuner.tuner_id) if self.tuner else None
        trial_id = trial.trial_id if trial is not None else str(len(self.records))
        h = history.history
        best = int(np.argmin(h["val_loss"])) if h.get("val_loss") else len(h["loss"]) - 1
        regions = {"heart_overlap": self.test["heart"]}
        if self.experiment == 2:
            regions["marker_overlap"] = self.test["marker"]
        scores = evaluate_model(model, self.test["images"], self.test["labels"], regions,
                                method=self.config.method)
        record = {
            "group": self.group, "trial_id": trial_id, "model_id": f"{self.group}-{trial_id}",
            "learning_rate": float(hp.get("learning_rate")),
            "epochs": len(h["loss"]), "best_epoch": best + 1,
            "training_time_s": train_time,
            "seconds_per_epoch": train_time / max(1, len(h["loss"])),
            "val_accuracy": float(h["val_accuracy"][best]),
            "val_penalty": float(h["val_penalty"][best]),
            "test_accuracy": scores["accuracy"],
            "heart_overlap": float(np.mean(scores["heart_overlap"])),
        }
        if self.experiment == 2:
            male = self.test["male"]
            record["marker_overlap"] = float(np.mean(scores["marker_overlap"][male]))
        record["kept"] = record["val_accuracy"] > self.config.val_accuracy_threshold
        if record["kept"] and not any(r["kept"] for r in self.records):
            self.figure_dir.mkdir(parents=True, exist_ok=True)
            record["overlay"] = str(save_class_overlays(
                model, self.test["images"], self.test["labels"],
                self.figure_dir / f"overlays_{self.group}.png",
                per_class=self.config.overlay_per_class, title=self.group,
                method=self.config.method))
        self.records.append(record)
        log.info("%s trial %s: %s", self.group, trial_id, record)
        return history


def _record_evaluations(store, name, record):
    extra = {k: record[k] for k in ("trial_id", "learning_rate", "epochs", "best_epoch", "kept")}
    metrics = ["test_accuracy", "val_accuracy", "heart_overlap", "training_time_s",
               "seconds_per_epoch", "val_penalty"]
    if "marker_overlap" in record:
        metrics.append("marker_overlap")
    for metric in metrics:
        split = "val" if metric.startswith("val_") else "test"
        store.record_evaluation(name, record["model_id"], metric, record[metric], split=split,
                                group=record["group"], extra=extra)


def run_experiment(config: HeatmapLossConfig, *, experiment: int, out_dir, store_url, seed=0,
                   progress=True, strategy=None, jit_compile=False) -> Path:
    """Runs experiment 1 or 2 and writes its run folder; returns the path of report.md.

    Args:
        config: HeatmapLossConfig (see `heatmap_loss.config.PRESETS`).
        experiment: int, 1 (sex-dependent anatomy) or 2 (marker square on male images).
        out_dir: str or Path. The run folder.
        store_url: str. Results store URL.
        seed: int, default 0. Seeds the data (seed, seed+1, seed+2), the tuner and Keras.
        progress: bool. Show Keras progress bars (per model) when True.
        strategy: tf.distribute.Strategy, optional. Models are built and trained
            under it (Keras Tuner's `distribution_strategy`).
        jit_compile: bool, default False. Compile the training steps with XLA.
    """
    from shared.report import write_comparison_report
    from shared.training.seeding import set_global_seed
    from shared.tracking.store import open_store
    from shared.tracking.tuning import make_tuner

    if experiment not in (1, 2):
        raise ValueError(f"experiment must be 1 or 2. Received: experiment={experiment!r}")
    if seed is None:
        raise ValueError("run_experiment needs an integer seed. Received: seed=None")
    set_global_seed(seed)
    out = make_run_dir(out_dir, {"config": dataclasses.asdict(config), "experiment": experiment,
                                 "seed": seed, "store": mask_url(store_url)})
    study = Study(study_protocol(config, experiment, seed), out)  # before any training
    name = experiment_name(experiment)
    started = time.perf_counter()

    splits = {}
    for offset, (split, n) in enumerate((("train", config.n_train), ("val", config.n_val),
                                         ("test", config.n_test))):
        data = generate(n, experiment=experiment, seed=seed + offset)
        if split == "train":
            save_sample_sheet(data, out / "samples.png")
        splits[split] = model_arrays(data, config.image_size)
    for split in ("train", "val"):
        s = splits[split]
        validate_training_arrays(s["images"], s["heart"], s["labels"], num_classes=len(CLASSES))
    trivial = trivial_predictors(splits["test"])
    study.record_gate("heart_area", trivial["heart_overlap"]["value"])

    store = open_store(store_url)
    store.ensure_experiment(name, {"preset": config.preset, "seed": seed})
    records = []
    train, val = splits["train"], splits["val"]
    for group in GROUPS:
        hypermodel = GroupHyperModel(config, group, splits["test"], experiment, out / "figures",
                                     jit_compile=jit_compile)
        extra = {} if strategy is None else {"distribution_strategy": strategy}
        tuner = make_tuner(
            "bayesian", hypermodel, objective=config.objective,
            max_trials=config.models_per_group, store=store, experiment=name,
            search_name=f"{name}_{config.preset}_s{seed}_{group}", group=group,
            directory=out / "tuner", seed=seed, overwrite=True, keep_best=1, **extra,
        )
        hypermodel.tuner = tuner
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience,
                                             restore_best_weights=True)
        tuner.search((train["images"], train["heart"]), train["labels"],
                     validation_data=((val["images"], val["heart"]), val["labels"]),
                     epochs=config.epochs, batch_size=config.batch_size, callbacks=[stop],
                     verbose=1 if progress else 0)
        for record in hypermodel.records:
            _record_evaluations(store, name, record)
        store.record_evaluation(
            name, f"{group}-all", "group_training_time_s",
            float(sum(r["training_time_s"] for r in hypermodel.records)), split="train",
            group=group, extra={"models": len(hypermodel.records)})
        records += hypermodel.records
        kept = [r for r in hypermodel.records if r["kept"]]
        for unit, record in enumerate(kept):
            study.record(group, unit, {k: record[k] for k in ENDPOINTS if k in record})

    elapsed = time.perf_counter() - started
    write_json(out / "models.json", records)
    claims = study.finish(seed=seed, revision=git_revision(), trivial=trivial)
    return write_report(records, out, experiment=experiment, config=config, elapsed=elapsed,
                        store_url=store_url, write_comparison_report=write_comparison_report,
                        claims=claims)


ENDPOINTS = ("heart_overlap", "test_accuracy", "marker_overlap")


def trivial_predictors(test) -> dict:
    """What a model that learned nothing scores on each endpoint of the test set.

    Accuracy of always predicting the most frequent class; the heart and marker
    overlap of a uniform map (the regions' share of the image; the marker over male
    images, as the endpoint is).
    """
    out = {"test_accuracy": majority_class(test["labels"], CLASSES)[1],
           "heart_overlap": {"name": "uniform map", "value": float(np.mean(test["heart"] > 0))}}
    if np.any(test["male"]):
        out["marker_overlap"] = {"name": "uniform map",
                                 "value": float(np.mean(test["marker"][test["male"]] > 0))}
    return out


def _fmt(x, digits=3):
    return "-" if x is None else (f"{x:.{digits}g}" if isinstance(x, float) else str(x))


def write_report(records, out: Path, *, experiment, config, elapsed, store_url,
                 write_comparison_report, claims) -> Path:
    """Writes the comparison sub-reports, the overlap figure and report.md."""
    kept = {g: [r for r in records if r["group"] == g and r["kept"]] for g in GROUPS}
    metrics = ["heart_overlap", "test_accuracy"] + (["marker_overlap"] if experiment == 2 else [])
    summaries, links = {}, []
    for metric in metrics:
        groups = {g: [r[metric] for r in kept[g]] for g in GROUPS}
        if min(len(v) for v in groups.values()) < 2:
            summaries[metric] = None
            continue
        path = write_comparison_report(
            groups, metric=metric, out_dir=out / metric,
            title=f"Experiment {experiment}: {metric} by loss ({config.preset} preset)",
            description=("Models with validation accuracy above "
                         f"{config.val_accuracy_threshold}; one value per model."),
            provenance={"store": mask_url(store_url), "experiment": experiment_name(experiment)})
        import json

        summaries[metric] = json.loads((out / metric / "report.json").read_text())["comparison"]
        links.append(f"- [{metric}]({path.relative_to(out).as_posix()})")

    lines = [f"# Heatmap loss, experiment {experiment} ({config.preset} preset)", "",
             claims_markdown(claims),
             f"{len(records)} models trained in {elapsed / 60:.1f} min; kept (validation "
             f"accuracy > {config.val_accuracy_threshold}): "
             + ", ".join(f"{g} {len(kept[g])}" for g in GROUPS) + ".", "",
             f"Images {config.image_size[0]} x {config.image_size[1]}, VGG16 filters "
             f"{tuple(config.filters)}, {config.n_train}/{config.n_val}/{config.n_test} "
             f"train/val/test images, heatmap weight {config.heatmap_weight}, "
             f"{config.method}.", "", "## Comparison of kept models", "",
             "| metric | cce median | heatmap median | test | p | Cohen's d | CLES |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: |"]
    for metric in metrics:
        s = summaries[metric]
        med = {g: (float(np.median([r[metric] for r in kept[g]])) if kept[g] else None)
               for g in GROUPS}
        if s is None:
            lines.append(f"| {metric} | {_fmt(med['cce'])} | {_fmt(med['heatmap'])} | "
                         "too few models | - | - | - |")
            continue
        c = s["comparisons"][0]
        lines.append(f"| {metric} | {_fmt(med['cce'])} | {_fmt(med['heatmap'])} | {c.get('test')} | "
                     f"{_fmt(c.get('p_value'))} | {_fmt(c.get('cohens_d'))} | "
                     f"{_fmt(c.get('cles'))} |")
    if experiment == 2 and summaries.get("marker_overlap"):
        c = summaries["marker_overlap"]["comparisons"][0]
        iqr = ", ".join(f"{v['k']:g} IQR: {_fmt(v['cohens_d'])}"
                        for v in c.get("cohens_d_iqr", {}).values())
        lines += ["", f"Cohen's d of the marker overlap after removing values beyond k IQRs "
                      f"from each group's median: {iqr}."]
    lines += ["", "Detailed reports (normality tests, decision path, figures):", ""] + links
    fig = _overlap_figure(records, out / "figures" / "overlap_distributions.png", experiment)
    lines += ["", "## Figures", "", "![Samples](samples.png)", "",
              f"![Overlap distributions]({fig.relative_to(out).as_posix()})", ""]
    for g in GROUPS:
        overlay = next((r.get("overlay") for r in records if r["group"] == g and r.get("overlay")), None)
        if overlay:
            lines += [f"Normalised HiResCAM of one {g} model (rows: classes):", "",
                      f"![{g} overlays]({Path(overlay).relative_to(out).as_posix()})", ""]
    lines += ["## Every model", "",
              "| group | trial | lr | epochs | time s | val acc | test acc | heart overlap"
              + (" | marker overlap" if experiment == 2 else "") + " | kept |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---:"
              + (" | ---:" if experiment == 2 else "") + " | --- |"]
    for r in records:
        lines.append(f"| {r['group']} | {r['trial_id']} | {r['learning_rate']:.2e} | {r['epochs']} | "
                     f"{r['training_time_s']:.1f} | {r['val_accuracy']:.3f} | {r['test_accuracy']:.3f} | "
                     f"{r['heart_overlap']:.3f}"
                     + (f" | {r['marker_overlap']:.2e}" if experiment == 2 else "")
                     + f" | {'yes' if r['kept'] else 'no'} |")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _overlap_figure(records, path, experiment):
    """Strip plots of each model's overlaps per group (kept models filled, others hollow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ["heart_overlap"] + (["marker_overlap"] if experiment == 2 else [])
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for i, g in enumerate(GROUPS):
            for kept, style in ((True, "o"), (False, "x")):
                vals = [r[metric] for r in records if r["group"] == g and r["kept"] == kept]
                jitter = np.linspace(-0.1, 0.1, len(vals)) if vals else []
                ax.plot(np.full(len(vals), i) + jitter, vals, style, alpha=0.8,
                        label=f"{g}{'' if kept else ' (not kept)'}")
        ax.set_xticks(range(len(GROUPS)), GROUPS)
        ax.set_ylabel(f"mean {metric.replace('_', ' ')} per model")
        if metric == "marker_overlap":
            ax.set_yscale("symlog", linthresh=1e-6)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
