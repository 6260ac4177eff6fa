"""Experiments 1 and 2 of the thesis (sections 3.2 and 3.3), and the same study on ACDC.

For each group ("cce": cross-entropy alone; "heatmap": MSE + weighted HiResCAM
penalty outside the heart) a Keras Tuner Bayesian search over the learning rate
trains `models_per_group` models with early stopping on the validation loss. Trial
k of either group starts from the weights drawn from the same `init_seed` (or the
same loaded backbone and the same drawn head) and sees the same batch order, so
trial k is the pairing unit of the protocol; each group's search picks its own
learning rates. Each model is evaluated on the test set as soon as it is trained:
accuracy, mean HiResCAM-heart overlap and, in experiment 2, the mean
HiResCAM-marker overlap over the male images (the only images with a marker); then
what the model's evidence depends on (`heatmap_loss.dependence`): the drop in
true-class probability when the heart, its complement or (experiment 2) the marker is
blurred, the deletion / insertion areas of its maps, and, for the group's first kept
model, the cascading-randomisation check on the overlay images.
Every trial and every evaluation (with `init_seed` and training time) goes into the
results store. Models are counted per group as kept (validation accuracy above
the threshold, 0.95 in the thesis), below the filter, or not trained (a non-finite
loss or a validation accuracy not above the majority-class rate).
"""

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

import keras
import keras_tuner
import tensorflow as tf

from heatmap_loss.bundle import group_metadata, write_group_bundle
from heatmap_loss.config import HeatmapLossConfig, experiment_name, study_protocol
from heatmap_loss.dependence import dependence_metrics, randomisation_check
from heatmap_loss.models import HeatmapLossModel, build_classifier, validate_training_arrays
from heatmap_loss.trials import InitialWeights, start_trial, trial_init_seed
from shared.io.run_folder import run_folder_started
from shared.explain import attribution_maps, feature_model, forward_with_maps, mass_inside
from shared.study import Study
from shared.study.trivial import majority_class
from shared.tracking.runs import make_run_dir
from shared.training.tensorboard import tensorboard_callback
from shared.io.atomic import write_json
from shared.tracking.store import mask_url

log = logging.getLogger(__name__)

GROUPS = ("cce", "heatmap")
ENDPOINTS = ("heart_overlap", "test_accuracy", "marker_overlap", "heart_drop",
             "complement_drop")
# Reported per model beside the claims (`heatmap_loss.dependence`), not claimed.
DEPENDENCE_METRICS = ("heart_drop", "complement_drop", "deletion_area", "insertion_area",
                      "marker_drop")
STATUSES = ("kept", "below_filter", "not_trained")


def build_model(config: HeatmapLossConfig, group: str, learning_rate: float, *, num_classes=4,
                channels_last_size=None, jit_compile=False) -> HeatmapLossModel:
    """A compiled model of one group: "cce" (weight 0, cross-entropy) or "heatmap"."""
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}. Received: group={group!r}")
    size = tuple(config.image_size) if channels_last_size is None else tuple(channels_last_size)
    classifier = build_classifier(size + (1,), num_classes=num_classes,
                                  filters=config.filters, dense_units=config.dense_units,
                                  weights=config.backbone_weights,
                                  kernel_initializer=config.kernel_initializer,
                                  preprocessing=config.preprocessing)
    if group == "cce":
        model = HeatmapLossModel(classifier, cam_layer=config.cam_layer, weight=0.0,
                                 method=config.method, classification_loss="cce")
    else:
        model = HeatmapLossModel(classifier, cam_layer=config.cam_layer,
                                 weight=config.heatmap_weight, method=config.method,
                                 classification_loss=config.heatmap_classification_loss)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), jit_compile=jit_compile)
    return model


def initial_weights_of(model: HeatmapLossModel, config: HeatmapLossConfig) -> InitialWeights:
    """What every trial starts from: the loaded backbone (when weights were loaded)."""
    return InitialWeights(model, pretrained=None if config.backbone_weights is None else "vgg16")


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


def overlay_index(labels, per_class: int, num_classes: int) -> np.ndarray:
    """The test images shown in the overlay figures: the first `per_class` of each class."""
    return np.concatenate([np.flatnonzero(labels == k)[:per_class] for k in range(num_classes)])


def raw_maps(model: HeatmapLossModel, images, labels, *, method="hirescam") -> np.ndarray:
    """Unnormalised (ReLU'd) maps of the true class, upsampled to the image grid."""
    return attribution_maps(feature_model(model.classifier, model.cam_layer),
                            tf.constant(images), targets=tf.constant(labels, tf.int32),
                            method=method, upsample_to=images.shape[1:3],
                            normalize=False).numpy()


def model_status(history: dict, val_accuracy: float, *, threshold: float,
                 majority_rate: float) -> str:
    """"not_trained", "below_filter" or "kept" (see the module docstring)."""
    losses = np.asarray(history.get("loss", []) + history.get("val_loss", []), dtype=float)
    if not np.all(np.isfinite(losses)) or not np.isfinite(val_accuracy) \
            or val_accuracy <= majority_rate:
        return "not_trained"
    return "kept" if val_accuracy > threshold else "below_filter"


class GroupHyperModel(keras_tuner.HyperModel):
    """One group's search space (the learning rate) and its per-model evaluation.

    `build` makes the group's model once (one graph trace) and, for every trial,
    gives it the initial weights of the trial's `init_seed` (`start_trial`). `fit`
    trains, times and evaluates the model on the test set, appending one record per
    model to `records` (the trial index is read from the running tuner).

    Args:
        config: HeatmapLossConfig.
        group: "cce" or "heatmap".
        test: dict of test arrays ("images", "heart", "labels", optional "marker",
            "male").
        seed: int. The run's seed; trial k starts from `trial_init_seed(seed, k)`.
        num_classes: int.
        majority_rate: float. Validation accuracy of always predicting the most
            frequent validation class (a model not above it did not train).
        class_weight: dict, optional. Keras class weights (ACDC).
        jit_compile: bool.
        on_best: callable(record, model), optional. Called after a trained trial
            whose validation accuracy beats the group's earlier trials (the model is at
            its best epoch): the run keeps that model's bundle.
    """

    def __init__(self, config, group, test, *, seed, num_classes, majority_rate,
                 class_weight=None, jit_compile=False, on_best=None):
        super().__init__(name=f"heatmap_loss_{group}")
        self.config, self.group, self.test = config, group, test
        self.seed, self.num_classes = int(seed), int(num_classes)
        self.majority_rate = float(majority_rate)
        self.class_weight = class_weight
        self.jit_compile = jit_compile
        self.on_best = on_best
        self.best_val_accuracy = -np.inf
        self.tuner = None
        self.records = []
        self._model = None
        self._start = None
        self._trial = None
        self.overlay_images = overlay_index(test["labels"], config.overlay_per_class, num_classes)
        self.randomised = False
        self.curve_images = overlay_index(test["labels"], config.curve_images_per_class,
                                          num_classes)

    def _trial_index(self) -> int:
        trial = self.tuner.oracle.ongoing_trials.get(self.tuner.tuner_id) if self.tuner else None
        if trial is not None and str(trial.trial_id).isdigit():
            return int(trial.trial_id)
        return len(self.records)

    def build(self, hp):
        low, high = self.config.lr_cce if self.group == "cce" else self.config.lr_heatmap
        learning_rate = hp.Float("learning_rate", low, high, sampling="log")
        if self._model is None:
            self._model = build_model(self.config, self.group, learning_rate,
                                      num_classes=self.num_classes,
                                      jit_compile=self.jit_compile)
            self._start = initial_weights_of(self._model, self.config)
        index = self._trial_index()
        init_seed = trial_init_seed(self.seed, index)
        self._trial = {"trial_index": index, "init_seed": init_seed}
        return start_trial(self._model, self._start, init_seed=init_seed,
                           learning_rate=learning_rate)

    def _dependence(self, model, record):
        """Adds the occlusion drops, curve areas and (first kept model) randomisation.

        Models that did not train are skipped: their weights may be non-finite, and no
        claim compares them."""
        if record["status"] == "not_trained":
            return
        start = time.perf_counter()
        record.update(dependence_metrics(
            model.classifier, self.test, cam_layer=self.config.cam_layer,
            method=self.config.method, blur_sigma=self.config.occlusion_blur_sigma,
            steps=self.config.deletion_steps, curve_images=self.curve_images))
        if record["kept"] and not self.randomised:
            index = self.overlay_images
            record["randomisation"] = randomisation_check(
                model.classifier, self.test["images"][index], self.test["labels"][index],
                cam_layer=self.config.cam_layer, method=self.config.method,
                seed=record["init_seed"])
            self.randomised = True
        record["dependence_time_s"] = time.perf_counter() - start

    def fit(self, hp, model, *args, **kwargs):
        if self.class_weight is not None:
            kwargs["class_weight"] = self.class_weight
        start = time.perf_counter()
        history = model.fit(*args, **kwargs)
        train_time = time.perf_counter() - start
        trial = self.tuner.oracle.ongoing_trials.get(self.tuner.tuner_id) if self.tuner else None
        trial_id = trial.trial_id if trial is not None else str(len(self.records))
        h = history.history
        val_loss = np.asarray(h.get("val_loss", []), dtype=float)
        best = int(np.nanargmin(val_loss)) if val_loss.size and np.isfinite(val_loss).any() \
            else len(h["loss"]) - 1
        regions = {"heart_overlap": self.test["heart"]}
        if "marker" in self.test:
            regions["marker_overlap"] = self.test["marker"]
        scores = evaluate_model(model, self.test["images"], self.test["labels"], regions,
                                method=self.config.method)
        record = {
            "group": self.group, "trial_id": trial_id, "model_id": model_id(self.config.preset, self.seed,
                                                               self.group, trial_id),
            **self._trial,
            "learning_rate": float(hp.get("learning_rate")),
            "epochs": len(h["loss"]), "best_epoch": best + 1,
            "training_time_s": train_time,
            "seconds_per_epoch": train_time / max(1, len(h["loss"])),
            "val_accuracy": float(h["val_accuracy"][best]),
            "val_penalty": float(h["val_penalty"][best]),
            "test_accuracy": scores["accuracy"],
            "heart_overlap": float(np.nanmean(scores["heart_overlap"])),
        }
        if "marker" in self.test:
            male = self.test["male"]
            record["marker_overlap"] = float(np.nanmean(scores["marker_overlap"][male]))
        record["status"] = model_status(h, record["val_accuracy"],
                                        threshold=self.config.val_accuracy_threshold,
                                        majority_rate=self.majority_rate)
        record["kept"] = record["status"] == "kept"
        self._dependence(model, record)
        index = self.overlay_images
        record["maps"] = raw_maps(model, self.test["images"][index], self.test["labels"][index],
                                  method=self.config.method)
        self.records.append(record)
        if self.on_best is not None and record["status"] != "not_trained" \
                and record["val_accuracy"] > self.best_val_accuracy:
            self.best_val_accuracy = record["val_accuracy"]
            self.on_best(record, model)
        log.info("%s trial %s: %s", self.group, trial_id,
                 {k: v for k, v in record.items() if k != "maps"})
        return history


def _record_evaluations(store, name, record):
    extra = {k: record[k] for k in ("trial_id", "trial_index", "init_seed", "learning_rate",
                                    "epochs", "best_epoch", "kept", "status")}
    metrics = ["test_accuracy", "val_accuracy", "heart_overlap", "training_time_s",
               "seconds_per_epoch", "val_penalty"]
    if "marker_overlap" in record:
        metrics.append("marker_overlap")
    metrics += [m for m in ("dependence_time_s",) + DEPENDENCE_METRICS if m in record]
    for metric in metrics:
        value = record[metric]
        if not np.isfinite(value):
            continue
        split = "val" if metric.startswith("val_") else "test"
        store.record_evaluation(name, record["model_id"], metric, value, split=split,
                                group=record["group"], extra=extra)


def trivial_predictors(test, classes=None) -> dict:
    """What a model that learned nothing scores on each endpoint of the test set.

    Accuracy of always predicting the most frequent class; the heart and marker
    overlap of a uniform map (the regions' share of the image; the marker over male
    images, as the endpoint is); the occlusion drops of a model that ignores the image
    (0: nothing replaced changes its output).
    """
    if classes is None:
        from heatmap_loss.phantom import CLASSES as classes
    out = {"test_accuracy": majority_class(test["labels"], classes)[1],
           "heart_overlap": {"name": "uniform map", "value": float(np.mean(test["heart"] > 0))}}
    if "marker" in test and np.any(test["male"]):
        out["marker_overlap"] = {"name": "uniform map",
                                 "value": float(np.mean(test["marker"][test["male"]] > 0))}
    for endpoint in ("heart_drop", "complement_drop"):
        out[endpoint] = {"name": "a model that ignores the image", "value": 0.0}
    return out


def model_id(preset, seed, group, trial_id) -> str:
    """A model's id in the results store, unique per run: `<preset>_s<seed>_<group>-<trial>`
    (two seeds or presets of one study never share a row)."""
    return f"{preset}_s{int(seed)}_{group}-{trial_id}"


def majority_rate(labels) -> float:
    """Share of the most frequent label."""
    return float(np.max(np.bincount(np.asarray(labels, dtype=np.int64))) / len(labels))


def run_study(config: HeatmapLossConfig, splits: dict, *, study_name, classes, source: dict,
              out_dir, store_url, seed=0, progress=True, strategy=None, jit_compile=False,
              class_weight=None, sample_sheet=None, data_block=None, allow_dirty=False) -> Path:
    """Declares the protocol, runs both groups' searches and writes the report.

    Args:
        config: HeatmapLossConfig.
        splits: dict "train", "val", "test" -> arrays ("images", "heart", "labels";
            "marker" and "male" for experiment 2).
        study_name: 1, 2 or "acdc" (`experiment_name`).
        classes: sequence of class names.
        source: dict. How the data were made (goes into the protocol's test set).
        out_dir: Path. The run folder (already checked by the CLI).
        store_url: str. Results store URL.
        seed: int. Seeds the tuner, the init seeds and the overlay draw.
        progress: bool. Keras progress bars.
        strategy: tf.distribute.Strategy, optional.
        jit_compile: bool.
        class_weight: dict, optional. Keras class weights.
        sample_sheet: callable(path), optional. Writes `samples.png`.
        data_block: callable(run folder) -> dict, optional. The claims' `data` block
            (`shared.study.provenance.synthetic_data` / `user_data`); None records none.
        allow_dirty: bool, default False. The user allowed a `powered` / `paper` run on
            a modified source tree (`--allow-dirty`); recorded in `claims.json`.

    Returns:
        Path of report.md.
    """
    from heatmap_loss.report import write_report
    from shared.tracking.store import open_store
    from shared.tracking.tuning import make_tuner

    started = time.perf_counter()
    for split in ("train", "val", "test"):
        s = splits[split]
        validate_training_arrays(s["images"], s["heart"], s["labels"], num_classes=len(classes))
    out = make_run_dir(out_dir, {"config": dataclasses.asdict(config), "study": str(study_name), "seed": seed,
                                 "source": source, "store": mask_url(store_url)})
    has_marker = "marker" in splits["test"]
    protocol = study_protocol(config, study_name, seed, test_set=source, has_marker=has_marker)
    study = Study(protocol, out, allow_dirty=allow_dirty)  # before any model trains
    if data_block is not None:
        study.set_data(data_block(out))
    if sample_sheet is not None:
        sample_sheet(out / "samples.png")
    trivial = trivial_predictors(splits["test"], classes)
    study.record_gate("heart_area", trivial["heart_overlap"]["value"])

    name = experiment_name(study_name)
    store = open_store(store_url, run_dir=out)
    run_folder_started(out)  # every check passed: the folder is this run's now
    store.ensure_experiment(name, {"preset": config.preset, "seed": seed})
    records = []
    train, val = splits["train"], splits["val"]
    chance = majority_rate(val["labels"])
    for group in GROUPS:
        hypermodel = GroupHyperModel(config, group, splits["test"], seed=seed,
                                     num_classes=len(classes), majority_rate=chance,
                                     class_weight=class_weight, jit_compile=jit_compile,
                                     on_best=lambda record, model: write_group_bundle(
                                         out, model.classifier, group_metadata(
                                             config, group=record["group"], classes=classes,
                                             run_dir=out, seed=seed, source=source,
                                             record=record)))
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
                     epochs=config.epochs, batch_size=config.batch_size,
                     callbacks=[stop, keras.callbacks.TerminateOnNaN(),
                                tensorboard_callback(out, group)],
                     verbose=1 if progress else 0)
        for record in hypermodel.records:
            _record_evaluations(store, name, record)
        store.record_evaluation(
            name, model_id(config.preset, seed, group, "all"), "group_training_time_s",
            float(sum(r["training_time_s"] for r in hypermodel.records)), split="train",
            group=group, extra={"models": len(hypermodel.records),
                                **{s: sum(r["status"] == s for r in hypermodel.records)
                                   for s in STATUSES}})
        for record in hypermodel.records:
            if record["kept"] and record["trial_index"] in protocol.units:
                study.record(group, record["trial_index"],
                             {k: record[k] for k in ENDPOINTS
                              if k in record and np.isfinite(record[k])})
        records += hypermodel.records
        initialisation = hypermodel._start.describe() if hypermodel._start else ""

    elapsed = time.perf_counter() - started
    write_json(out / "models.json", [{k: v for k, v in r.items() if k != "maps"}
                                     for r in records])
    claims = study.finish(seed=seed, trivial=trivial)
    index = overlay_index(splits["test"]["labels"], config.overlay_per_class, len(classes))
    return write_report(records, out, study_name=study_name, config=config, elapsed=elapsed,
                        store_url=store_url, claims=claims, classes=classes,
                        overlay_images=splits["test"]["images"][index, ..., 0],
                        overlay_labels=splits["test"]["labels"][index], seed=seed,
                        initialisation=initialisation, has_marker=has_marker)


def run_experiment(config: HeatmapLossConfig, *, experiment: int, out_dir, store_url, seed=0,
                   data_dir=None, progress=True, strategy=None, jit_compile=False,
                   allow_dirty=False) -> Path:
    """Runs experiment 1 or 2 and writes its run folder; returns the path of report.md.

    Args:
        config: HeatmapLossConfig (see `heatmap_loss.config.PRESETS`).
        experiment: int, 1 (sex-dependent anatomy) or 2 (marker square on male images).
        out_dir: str or Path. The run folder.
        store_url: str. Results store URL.
        seed: int, default 0. Seeds the data (seed, seed+1, seed+2 for train, val and
            test), the tuner, each trial's initial weights and the overlay draw.
        data_dir: str or Path, optional. A folder of `train.npz`, `val.npz` and
            `test.npz` written by `medrepro heatmap-loss generate`, used instead of
            generating the images.
        progress: bool. Show Keras progress bars (per model) when True.
        strategy: tf.distribute.Strategy, optional. Models are built and trained
            under it (Keras Tuner's `distribution_strategy`).
        jit_compile: bool, default False. Compile the training steps with XLA.
        allow_dirty: bool, default False. The user allowed a `powered` / `paper` run on
            a modified source tree (`--allow-dirty`); recorded in `claims.json`.
    """
    from heatmap_loss.sources import data_block, synthetic_splits
    from shared.training.seeding import set_global_seed

    if experiment not in (1, 2):
        raise ValueError(f"experiment must be 1 or 2. Received: experiment={experiment!r}")
    if seed is None:
        raise ValueError("run_experiment needs an integer seed. Received: seed=None")
    set_global_seed(seed)
    splits, source, sheet = synthetic_splits(config, experiment=experiment, seed=seed,
                                             data_dir=data_dir)
    from heatmap_loss.phantom import CLASSES

    return run_study(config, splits, study_name=experiment, classes=CLASSES, source=source,
                     out_dir=out_dir, store_url=store_url, seed=seed, progress=progress,
                     strategy=strategy, jit_compile=jit_compile, sample_sheet=sheet,
                     data_block=lambda out: data_block(config, experiment=experiment, seed=seed,
                                                       data_dir=data_dir, run_dir=out),
                     allow_dirty=allow_dirty)


def run_acdc(config: HeatmapLossConfig, root, *, out_dir, store_url, seed=0, task="binary",
             skip_bad_patients=False, progress=True, strategy=None, jit_compile=False,
             allow_dirty=False) -> Path:
    """The same two-group study on ACDC slices (see `heatmap_loss.acdc`).

    Args:
        config: HeatmapLossConfig. Its image size is the model grid.
        root: str or Path. An ACDC `training/` folder (or a folder holding one).
        out_dir, store_url, seed, progress, strategy, jit_compile, allow_dirty: as
            `run_experiment`; `seed` also draws the patient-level train/validation/test
            split.
        task: "binary" (normal vs diseased, thesis), "4class" or "5class".
        skip_bad_patients: bool, default False. Report and skip a patient whose files
            cannot be read instead of stopping.
    """
    from heatmap_loss.acdc import acdc_splits
    from shared.training.seeding import set_global_seed

    if seed is None:
        raise ValueError("run_acdc needs an integer seed. Received: seed=None")
    set_global_seed(seed)
    splits, source, classes, class_weight = acdc_splits(
        root, size=config.image_size, task=task, seed=seed,
        skip_bad_patients=skip_bad_patients)
    from shared.study.provenance import user_data

    # The ACDC folder is only read: its manifest goes into the run folder.
    return run_study(config, splits, study_name="acdc", classes=classes, source=source,
                     out_dir=out_dir, store_url=store_url, seed=seed, progress=progress,
                     strategy=strategy, jit_compile=jit_compile, class_weight=class_weight,
                     data_block=lambda out: user_data(root, out), allow_dirty=allow_dirty)
