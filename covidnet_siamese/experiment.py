"""End-to-end reproduction of "Siamesifying the COVID-Net".

Steps (paper Sections 3.1-3.3):

1. COVIDx data (synthetic by default, written in the real layout and read back by the
   real loader), preprocessed as Section 3.1; a second copy with the borders cropped.
2. Grid search of learning rate x batch size for both nets (Table 2), rows in the store.
3. Final runs with the best values for every seed: the siamese net (three-way
   validation, test by class templates), the single net, and the single net on
   cropped images; each keeps its best-validation weights.
4. Test accuracy, per-class accuracy, confusion matrices, training curves.
5. Grad-CAM of the single net, of the siamese twin (target: similarity to the
   predicted class's template) and of the cropped single net; the share of each map
   on the image border, on the (synthetic) artefacts and on the lungs.
6. Statistics over seeds (`shared.report.write_comparison_report`) and `report.md`.
"""

import logging
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from covidnet_siamese.config import CLASS_NAMES, study_protocol
from covidnet_siamese.data import border_mask, generate_covidx, load_covidx, load_masks
from covidnet_siamese.models import gradcam_layer_name, template_contrast
from covidnet_siamese.gates import pixel_logistic_cv_gates
from covidnet_siamese.inference import write_arm_bundle
from covidnet_siamese.search import grid_search
from covidnet_siamese.training import (class_templates, dead_unit_totals, dead_units, decision_scores, embed,
                                       fit_siamese, fit_single, new_siamese, new_single, predict_siamese,
                                       predicted_classes)
from shared.io.run_folder import run_folder_started
from shared.cli.progress import progress
from shared.io.atomic import write_text
from shared.study import Study, claims_markdown
from shared.study.provenance import synthetic_data, user_data
from shared.study.trivial import majority_class
from shared.tracking.runs import make_run_dir, write_json
from shared.training.scale import clear_session, strategy_scope
from shared.training.seeding import numpy_rng, set_global_seed
from shared.training.tensorboard import tensorboard_callback

log = logging.getLogger(__name__)

EXPERIMENT = "covidnet_siamese"
PAPER = {
    "test_accuracy": {"siamese": 0.87, "single": 0.81, "single_cropped": 0.78},
    "best": {"siamese": (1e-4, 32, 0.736), "single": (1e-4, 16, 0.795)},
}
ARMS = ("siamese", "single", "single_cropped")


# ---------------------------------------------------------------------------
# Grad-CAM
# ---------------------------------------------------------------------------
def single_gradcam(model, x, targets, *, layer_name, batch_size=64):
    """Grad-CAM maps [N, S, S] of the single net for class `targets` (class-discriminative)."""
    from shared.explain import attribution_maps, feature_model

    fm = feature_model(model, layer_name)
    size = x.shape[1:3]
    maps = []
    for i in range(0, len(x), batch_size):
        maps.append(attribution_maps(fm, tf.constant(x[i:i + batch_size]),
                                     targets=tf.constant(targets[i:i + batch_size], tf.int32),
                                     method="gradcam", upsample_to=size).numpy())
    return np.concatenate(maps) if maps else np.zeros((0,) + tuple(size), np.float32)


def siamese_gradcam(siamese, x, targets, templates, *, layer_name, batch_size=64):
    """Grad-CAM maps [N, S, S] of the siamese twin, class-discriminative.

    The score of image i is the contrast before the sigmoid between its similarity to
    the template of class `targets[i]` and to the most similar other template
    (`models.template_contrast`; Section 3.2.2's templates), so the map shows what
    makes the image look like that class rather than the runner-up. Scoring the
    similarity itself gave near-identical maps for every template on a trained net
    (saturated sigmoid features). The layer sits inside the nested twin model.
    """
    from shared.explain import attribution_maps, feature_model

    fm = feature_model(siamese.get_layer("twin"), layer_name)
    size = x.shape[1:3]
    tmpl = tf.constant(np.asarray(templates, np.float32))
    maps = []
    for i in range(0, len(x), batch_size):
        tgt = tf.constant(np.asarray(targets[i:i + batch_size]), tf.int32)

        def score(embeddings, tgt=tgt):
            return template_contrast(siamese, embeddings, tmpl, tgt)

        maps.append(attribution_maps(fm, tf.constant(x[i:i + batch_size]), targets=score,
                                     method="gradcam", upsample_to=size).numpy())
    return np.concatenate(maps) if maps else np.zeros((0,) + tuple(size), np.float32)


def attention_lift(maps, regions) -> float:
    """Mean over images of (share of map mass in the region) / (share of the image it covers).

    1 is what a uniform map gets; above 1 the map favours the region. Computed per
    image in the image's own frame, so a region's size does not inflate the score.

    Args:
        maps: [N, S, S] non-negative maps.
        regions: [N, S, S] bool masks, each non-empty.
    """
    from shared.explain import mass_inside

    regions = np.asarray(regions, bool)
    area = regions.reshape(len(regions), -1).mean(axis=1)
    if np.any(area <= 0):
        raise ValueError("attention_lift needs a non-empty region on every image")
    share = mass_inside(maps, regions.astype(np.float32)).numpy()
    return float(np.mean(share / area))


def occlusion_blur_sigma(image_size: int) -> float:
    """Sigma of the blur that replaces a region in `border_occlusion`: RISE's 5 px at the
    paper's 224 px input, scaled with the grid (1.43 px at 64 px)."""
    return 5.0 * float(image_size) / 224.0


def border_occlusion(model, x, targets, border, artefacts=None, *, blur_sigma, batch_size=64) -> dict:
    """How much a single net's decision rests on the border band and on the artefacts.

    H3 reads where the Grad-CAM map lies; this asks the net itself, as a secondary
    measure beside it (`shared.explain.region_occlusion`): the drop in the softmax
    probability of class `targets` (the predicted class, as the maps use) when the
    border band, and on the films that carry one the artefacts, are replaced by a
    Gaussian blur of the film. A blur, not a constant: a flat band or patch would be an
    edge no training film has. A net that ignores the border loses nothing.

    Args:
        model: keras.Model, films [N, S, S, 1] -> class probabilities [N, classes].
        x: float32 [N, S, S, 1], the films (full frame).
        targets: int [N].
        border: [S, S] mask of the border band (`data.border_mask`).
        artefacts: bool [N, S, S], optional. Artefact masks of the films.
        blur_sigma: float > 0, in pixels.
        batch_size: int, default 64.

    Returns:
        dict: "border_drop" (mean over the films), "border_complement_drop" (everything
        but the band blurred), and with `artefacts` "artefact_drop" (mean over the films
        that carry one; NaN when none does) and "artefact_images".
    """
    from shared.explain import region_occlusion

    x = np.asarray(x, np.float32)
    targets = np.asarray(targets)

    def drops(images, labels, masks):
        region, complement = [], []
        for i in range(0, len(images), batch_size):
            part = slice(i, i + batch_size)
            result = region_occlusion(model, images[part], masks[part], labels[part],
                                      baseline="blur", blur_sigma=blur_sigma)
            region.append(result.region_drop.numpy())
            complement.append(result.complement_drop.numpy())
        return np.concatenate(region), np.concatenate(complement)

    bands = np.broadcast_to(np.asarray(border, np.float32), x.shape[:3])
    band, rest = drops(x, targets, bands)
    out = {"border_drop": float(np.mean(band)), "border_complement_drop": float(np.mean(rest))}
    if artefacts is not None:
        artefacts = np.asarray(artefacts, bool)
        has = artefacts.reshape(len(artefacts), -1).any(axis=1)
        out["artefact_images"] = int(has.sum())
        out["artefact_drop"] = (float(np.mean(drops(x[has], targets[has],
                                                    artefacts[has].astype(np.float32))[0]))
                                if has.any() else float("nan"))
    return out


def validation_artefact_lift(model, data, val_pred, val_artefacts, *, layer_name) -> float:
    """The single net's artefact lift on the validation films that carry an artefact
    (Grad-CAM of its predicted class): the baseline of H3's headroom check. NaN when no
    validation film carries one."""
    has = np.asarray(val_artefacts).reshape(len(val_artefacts), -1).any(axis=1)
    if not has.any():
        return float("nan")
    maps = single_gradcam(model, data.x_val[has], np.asarray(val_pred)[has], layer_name=layer_name)
    return attention_lift(maps, np.asarray(val_artefacts)[has])


def gradcam_subset(n_test, n_images, seed) -> np.ndarray:
    """Sorted indices of the test images that get Grad-CAM maps (all when `n_images` is None).

    A fixed random draw from the data seed, so every arm and seed is scored on the same
    images (the attention endpoints stay paired).
    """
    if n_images is None or n_images >= n_test:
        return np.arange(n_test)
    return np.sort(numpy_rng(seed).choice(n_test, size=int(n_images), replace=False))


def map_shares(maps, *, border=None, artefacts=None, lungs=None):
    """Mean share of Grad-CAM mass on the border band, the artefacts and the lungs.

    The artefact share is averaged over the images that carry an artefact only;
    `artefact_area` and `lung_area` are the shares of the image those regions cover
    (what a uniform map would get).
    """
    from shared.explain import mass_inside

    out = {}
    if border is not None:
        out["border"] = float(np.mean(mass_inside(maps, np.broadcast_to(border, maps.shape)).numpy()))
        out["border_lift"] = out["border"] / float(np.mean(border)) if np.mean(border) > 0 else float("nan")
    if artefacts is not None:
        has = artefacts.reshape(len(artefacts), -1).any(axis=1)
        out["artefact"] = (float(np.mean(mass_inside(maps[has], artefacts[has].astype(np.float32)).numpy()))
                           if has.any() else float("nan"))
        out["artefact_images"] = int(has.sum())
        # The share a uniform map would put there, for comparison.
        out["artefact_area"] = float(artefacts[has].mean()) if has.any() else float("nan")
        out["artefact_lift"] = attention_lift(maps[has], artefacts[has]) if has.any() else float("nan")
    if lungs is not None:
        out["lung"] = float(np.mean(mass_inside(maps, lungs.astype(np.float32)).numpy()))
        out["lung_area"] = float(lungs.mean())
    return out


# ---------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------
def _evaluate(y_true, y_pred):
    from shared.metrics import confusion_matrix, per_class_accuracy

    cm = np.asarray(confusion_matrix(y_true, y_pred, len(CLASS_NAMES)))
    called = cm.sum(axis=0)
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "per_class_accuracy": [float(v) for v in per_class_accuracy(y_true, y_pred, len(CLASS_NAMES))],
        # Precision is NaN for a class the net never gives.
        "per_class_precision": [float(cm[c, c] / called[c]) if called[c] else float("nan")
                                for c in range(len(CLASS_NAMES))],
        "predicted_share": [float(v) for v in called / max(len(y_pred), 1)],
        "confusion_matrix": cm.tolist(),
    }


def _endpoints(metrics) -> dict:
    """The endpoints of the study's hypotheses, from one arm's test metrics."""
    out = {"accuracy": metrics["accuracy"],
           "covid_recall": metrics["per_class_accuracy"][CLASS_NAMES.index("COVID-19")]}
    lift = metrics.get("attention_full_frame", {}).get("artefact_lift")
    if lift is not None and np.isfinite(lift):
        out["artefact_lift"] = lift
    return out


def trivial_predictors(y_test, border) -> dict:
    """What a model that learned nothing scores on each endpoint.

    Accuracy and COVID-19 recall of predicting the majority class for every image;
    the artefact lift of a uniform map (1 by definition).
    """
    majority, accuracy = majority_class(y_test, CLASS_NAMES)
    return {
        "accuracy": accuracy,
        "covid_recall": {"name": accuracy["name"],
                         "value": float(majority == CLASS_NAMES.index("COVID-19"))},
        "artefact_lift": {"name": "uniform map", "value": 1.0},
    }


def _record(store, arm, seed, preset, metrics, shares, *, base_seed=0):
    # Unique per run: the base seed too, since base seeds 0 and 1 share unit seeds.
    model_id = f"{preset}-s{base_seed}-{arm}-seed{seed}"
    store.record_evaluation(EXPERIMENT, model_id, "test_accuracy", metrics["accuracy"], split="test",
                            group=arm, extra={"seed": seed, "preset": preset})
    for name, acc in zip(CLASS_NAMES, metrics["per_class_accuracy"]):
        store.record_evaluation(EXPERIMENT, model_id, f"test_accuracy_{name}", acc, split="test",
                                group=arm, extra={"seed": seed, "preset": preset})
    for key, value in shares.items():
        if key in ("border", "artefact", "lung") and np.isfinite(value):
            store.record_evaluation(EXPERIMENT, model_id, f"gradcam_{key}_share", value, split="test",
                                    group=arm, extra={"seed": seed, "preset": preset})


def data_files(data_root, *split_files) -> list:
    """What a run on a user's COVIDx folder reads: every file under the folder and the
    split files given from elsewhere (`--train-split`, `--test-split`), as absolute paths.

    Args:
        data_root: str or Path. The COVIDx folder.
        *split_files: str, Path or None. Split files; None (the folder's own) is skipped.
    """
    files = {path.resolve() for path in Path(data_root).rglob("*") if path.is_file()}
    files |= {Path(f).resolve() for f in split_files if f is not None}
    return sorted(files)


def run_experiment(config, out_dir, *, store_url=None, seed=0, data_root=None, show_progress=True,
                   strategy=None, train_split_file=None, test_split_file=None, on_error="raise",
                   allow_dirty=False):
    """Runs the whole reproduction and writes `report.md` into `out_dir`.

    Args:
        config: `CovidNetSiameseConfig`.
        out_dir: str or Path. Run folder.
        store_url: str, optional. Results store (None: the default SQLite file).
        seed: int, default 0. Seed of the data, the validation draw and the search;
            the final runs use `config.seeds` offset by `seed`.
        data_root: str or Path, optional. A COVIDx folder; None generates synthetic
            data into `<out_dir>/covidx`.
        show_progress: bool, default True.
        strategy: tf.distribute.Strategy, optional. Every model (search trials and
            final runs) is built, trained and evaluated under it; None: the default.
        train_split_file / test_split_file: optional split files (default
            `<data_root>/train_split.txt`, `test_split.txt`).
        on_error: "raise" (default) or "skip": unreadable images and bad split-file
            lines are left out and listed in `skipped.json` and the report.
        allow_dirty: bool, default False. The user allowed a `powered` / `paper` run on
            a modified source tree (`--allow-dirty`); recorded in `claims.json`.

    Returns:
        Path of the Markdown report.
    """
    from shared.tracking.store import open_store

    start = time.perf_counter()
    out = make_run_dir(out_dir, config)
    # protocol.json before any training
    study = Study(study_protocol(config, seed), out, allow_dirty=allow_dirty)
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    steps = 3 + 3 * len(config.seeds) + 2
    bar = progress(total=steps, desc=f"covidnet-siamese {config.name}", enabled=show_progress)

    synthetic = data_root is None
    if synthetic:
        data_root = out / "covidx"
        settings = dict(counts=config.counts, size=config.raw_size, seed=seed, difficulty=config.difficulty)
        generate_covidx(data_root, **settings)
        study.set_data(synthetic_data("covidnet_siamese.phantom.generate_covidx", settings))
    load = dict(size=config.image_size, val_fraction=config.val_fraction, seed=seed, on_error=on_error,
                train_split_file=train_split_file, test_split_file=test_split_file,
                val_counts=config.counts["val"])
    data = load_covidx(data_root, **load)
    cropped = load_covidx(data_root, crop_fraction=config.crop_fraction, **load)
    if not synthetic:  # the folder is only read: its manifest goes into the run folder
        study.set_data(user_data(data_root, out, files=data_files(data_root, train_split_file,
                                                                  test_split_file)))
    if data.skipped:
        write_json(out / "skipped.json", [{"line": n, "path": p, "reason": why} for n, p, why in data.skipped])
    masks = {}
    if (Path(data_root) / "masks" / "test").is_dir():
        masks["full"] = load_masks(data_root, "test", data.test_entries, size=config.image_size)
        masks["cropped"] = load_masks(data_root, "test", cropped.test_entries, size=config.image_size,
                                      crop_fraction=config.crop_fraction)
        val_masks = load_masks(data_root, "train", data.val_entries, size=config.image_size)
    else:
        val_masks = None
    counts = {name: {split: int(np.sum(y == c)) for split, y in
                     (("train", data.y_train), ("val", data.y_val), ("test", data.y_test))}
              for c, name in enumerate(CLASS_NAMES)}
    study.record_gate("covid_test_images", counts["COVID-19"]["test"])
    gates = pixel_logistic_cv_gates(data.x_train, data.y_train, folds=config.gate_folds, seed=seed)
    study.record_gate("lr_min_recall", gates["min_recall"])
    study.record_gate("lr_max_recall", gates["max_recall"])
    study.record_gate("lr_covid_pneumonia_confusion", gates["covid_pneumonia_confusion"])
    write_json(out / "gates.json", gates)
    bar.update(1)

    store = open_store(store_url, run_dir=out)
    run_folder_started(out)  # every check passed: the folder is this run's now
    store.ensure_experiment(EXPERIMENT, config)
    best = {}
    for net in ("single", "siamese"):
        if config.run_search:
            best[net] = grid_search(net, config, data, store=store, experiment=EXPERIMENT,
                                    directory=out / "tuner", seed=seed, strategy=strategy, run_dir=out)
        else:
            best[net] = {"learning_rate": config.default_learning_rate, "batch_size": config.default_batch_size[net],
                         "best_val_accuracy": None, "trials": []}
        bar.update(1)
    write_json(out / "search.json", best)

    layer = gradcam_layer_name(config.depths)
    border = border_mask(config.image_size, config.crop_fraction)
    cam = gradcam_subset(len(data.y_test), config.gradcam_images, seed)
    masks = {key: (lung[cam], art[cam]) for key, (lung, art) in masks.items()}
    _, val_majority = majority_class(data.y_val, CLASS_NAMES)
    baseline_val_lift = []
    results = {arm: [] for arm in ARMS}
    keep = {}
    for i, run_seed in enumerate(config.seeds):
        run_seed = int(run_seed) + int(seed)
        for arm in ARMS:
            set_global_seed(run_seed)
            arm_data = cropped if arm == "single_cropped" else data
            net = "siamese" if arm == "siamese" else "single"
            lr, batch = best[net]["learning_rate"], best[net]["batch_size"]
            t_arm = time.perf_counter()
            with strategy_scope(strategy):  # the session is cleared outside it, below
                if arm == "siamese":
                    model = new_siamese(config, lr)
                    hist, kb = fit_siamese(model, arm_data, batch_size=batch,
                                           epochs=config.final_epochs_siamese,
                                           n_pairs=config.final_pairs_per_epoch,
                                           n_trials=config.three_way_trials, seed=run_seed,
                                           select_on=config.select_siamese,
                                           callbacks=[tensorboard_callback(out, f"{arm}_seed{run_seed}")])
                    templates = class_templates(embed(model, arm_data.x_train), arm_data.y_train)
                    val_pred, _ = predict_siamese(model, arm_data.x_val, templates)
                    pred, _ = predict_siamese(model, arm_data.x_test, templates)
                    maps = siamese_gradcam(model, arm_data.x_test[cam], pred[cam], templates, layer_name=layer)
                else:
                    model = new_single(config, lr)
                    hist, kb = fit_single(model, arm_data, batch_size=batch,
                                          epochs=config.final_epochs_single, seed=run_seed,
                                          select_on=config.select_single,
                                          callbacks=[tensorboard_callback(out, f"{arm}_seed{run_seed}")])
                    val_pred = predicted_classes(model, arm_data.x_val)
                    pred = np.argmax(model.predict(arm_data.x_test, batch_size=64, verbose=0), axis=1)
                    maps = single_gradcam(model, arm_data.x_test[cam], pred[cam], layer_name=layer)
                    templates = None
                if arm == "single_cropped":
                    # H3 compares both nets on the same (full-frame) test images: the
                    # cropped net sees them standardised with its own statistics.
                    x_full = ((data.x_test[cam] * data.std + data.mean) - cropped.mean) / cropped.std
                    full_pred = np.argmax(model.predict(x_full, batch_size=64, verbose=0), axis=1)
                    full_maps = single_gradcam(model, x_full.astype(np.float32), full_pred, layer_name=layer)
                else:
                    full_maps = maps
                occlusion = {}
                if arm != "siamese":  # H3's nets, on the same full-frame films as its maps
                    t_occ = time.perf_counter()
                    occlusion = border_occlusion(
                        model, data.x_test[cam] if arm == "single" else x_full,
                        pred[cam] if arm == "single" else full_pred, border,
                        artefacts=masks["full"][1] if "full" in masks else None,
                        blur_sigma=occlusion_blur_sigma(config.image_size))
                    occlusion["seconds"] = time.perf_counter() - t_occ
                dead = dead_units(model, arm_data.x_val)
                if arm == "single" and val_masks is not None:
                    baseline_val_lift.append(validation_artefact_lift(model, data, val_pred, val_masks[1],
                                                                      layer_name=layer))
            val_scores = dict(decision_scores(arm_data.y_val, val_pred), majority_rate=val_majority["value"])
            study.record_validity(arm, run_seed, "learned_val_accuracy", val_scores["accuracy"],
                                  reference=val_majority["value"])
            study.record_validity(arm, run_seed, "not_collapsed_onto_one_class", val_scores["largest_class_share"])
            metrics = _evaluate(arm_data.y_test, pred)
            mk = masks.get("cropped" if arm == "single_cropped" else "full")
            shares = map_shares(maps, border=border, artefacts=mk[1] if mk else None,
                                lungs=mk[0] if mk else None)
            full = masks.get("full")
            metrics.update({"seed": run_seed, "best_epoch": kb.best_epoch, "best_val": kb.best,
                            "attention": shares, "validation": val_scores,
                            "dead_units": {name: list(v) for name, v in dead.items()},
                            "dead_unit_totals": {k: list(v) for k, v in dead_unit_totals(dead).items()},
                            "attention_full_frame": map_shares(full_maps, border=border, artefacts=full[1],
                                                               lungs=full[0]) if full else {},
                            "occlusion_full_frame": occlusion,
                            "seconds": time.perf_counter() - t_arm})
            results[arm].append(metrics)
            study.record(arm, run_seed, _endpoints(metrics))
            write_json(out / "results.json", results)  # kept up to date: a long run can be read early
            _record(store, arm, run_seed, config.name, metrics, shares, base_seed=seed)
            if i == 0:
                keep[arm] = {"model": model, "history": hist.history, "pred": pred, "maps": maps,
                             "templates": templates, "data": arm_data, "cam": cam}
                write_arm_bundle(out, arm, model, arm_data, config, templates, seed=run_seed)
            else:
                clear_session()  # keeps the --precision policy
            bar.update(1)
    write_json(out / "results.json", results)
    if baseline_val_lift:
        study.record_headroom("H3", ceiling=1.0, baseline=float(np.nanmean(baseline_val_lift)))

    figures = _figures(config, keep, results, fig_dir, seed)
    bar.update(1)
    stats = _stats(results, out)
    bar.update(1)
    bar.close()
    claims = study.finish(seed=seed,
                          trivial=trivial_predictors(data.y_test, border))
    report = _write_report(out, config, best, results, counts, figures, stats, claims, gates=gates,
                           skipped=data.skipped, synthetic=synthetic, seconds=time.perf_counter() - start, store=store,
                           strategy=strategy or tf.distribute.get_strategy())
    return report


def _figures(config, keep, results, fig_dir, seed):
    from shared.report.figures import plot_history, save_confusion_matrix, save_overlay_grid

    figures = {}
    for arm, k in keep.items():
        cm = np.asarray(results[arm][0]["confusion_matrix"])
        path = fig_dir / f"confusion_{arm}.png"
        save_confusion_matrix(cm, list(CLASS_NAMES), path)
        figures[f"confusion_{arm}"] = path.name
        path = fig_dir / f"history_{arm}.png"
        plot_history(k["history"], path)
        figures[f"history_{arm}"] = path.name
    # The same random test images per class for all three models (Figures 7-8).
    # Positions inside the Grad-CAM subset (`cam`), which is the same for every arm.
    rng = numpy_rng(seed)
    cam = keep["single"]["cam"]
    y_cam = keep["single"]["data"].y_test[cam]
    picks = np.concatenate([rng.choice(np.flatnonzero(y_cam == c),
                                       size=min(config.gradcam_per_class, int(np.sum(y_cam == c))),
                                       replace=False) for c in range(len(CLASS_NAMES))])
    for arm, k in keep.items():
        d = k["data"]
        images = d.x_test[cam[picks], ..., 0] * d.std + d.mean
        titles = [f"{CLASS_NAMES[y_cam[j]]} -> {CLASS_NAMES[k['pred'][cam[j]]]}" for j in picks]
        path = fig_dir / f"gradcam_{arm}.png"
        save_overlay_grid(images, k["maps"][picks], path, titles=titles, ncols=max(1, config.gradcam_per_class))
        figures[f"gradcam_{arm}"] = path.name
    return figures


def _stats(results, out):
    from shared.report import write_comparison_report

    stats = {}
    groups = {arm: [r["accuracy"] for r in results[arm]] for arm in ARMS}
    if all(len(v) >= 2 for v in groups.values()):
        path = write_comparison_report(
            groups, metric="test_accuracy", out_dir=out / "stats_accuracy",
            title="Test accuracy over seeds: siamese vs single vs single on cropped images",
            description="One value per final run (seed); best-validation weights of each run.")
        stats["accuracy"] = path.relative_to(out).as_posix()
        lung = {arm: [r["attention"].get("lung", float("nan")) for r in results[arm]] for arm in ARMS}
        if all(np.all(np.isfinite(v)) for v in lung.values()):
            path = write_comparison_report(
                lung, metric="gradcam_lung_share", out_dir=out / "stats_attention",
                title="Share of the Grad-CAM map on the lungs, over seeds",
                description="Mean over the test images of each run; the cropped net is scored in its own frame.")
            stats["attention"] = path.relative_to(out).as_posix()
    return stats


def _mean_sd(values):
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], float)
    if len(values) == 0:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def occlusion_lines(results, config) -> list:
    """The report's table of `border_occlusion` (H3's nets), mean ± SD over seeds."""
    arms = [arm for arm in ARMS if any(r.get("occlusion_full_frame") for r in results.get(arm, []))]
    if not arms:
        return []
    lines = ["", "Region occlusion, secondary to H3 (not a claim): on the same full-frame films, the drop "
             "in the probability of the predicted class when a region is replaced by a Gaussian blur of "
             f"the film (sigma {occlusion_blur_sigma(config.image_size):.2f} px). The map can sit on the "
             "border while the decision does not rest there; this asks the net. 0 = the net ignores "
             "the region.", "",
             "| net | border band blurred | all but the band blurred | artefacts blurred (films with one) "
             "| seconds |", "| --- | ---: | ---: | ---: | ---: |"]
    for arm in arms:
        rows = [r["occlusion_full_frame"] for r in results[arm] if r.get("occlusion_full_frame")]
        lines.append(f"| {arm} | " + " | ".join(_mean_sd([o.get(k, np.nan) for o in rows]) for k in (
            "border_drop", "border_complement_drop", "artefact_drop", "seconds")) + " |")
    return lines


def summarize(results):
    """Means over seeds of the headline numbers and the three claims, as a dict."""
    mean = {arm: float(np.mean([r["accuracy"] for r in results[arm]])) for arm in ARMS}
    per_class = {arm: np.mean([r["per_class_accuracy"] for r in results[arm]], axis=0).tolist() for arm in ARMS}
    covid = CLASS_NAMES.index("COVID-19")
    def nanmean(values):
        values = np.asarray(values, float)
        return float(np.mean(values[np.isfinite(values)])) if np.isfinite(values).any() else float("nan")

    att = {arm: {k: nanmean([r["attention"].get(k, np.nan) for r in results[arm]])
                 for k in ("border", "border_lift", "artefact", "lung", "artefact_area", "lung_area")}
           for arm in ARMS}
    for arm in ARMS:
        att[arm]["full_frame_artefact_lift"] = nanmean([r.get("attention_full_frame", {}).get("artefact_lift", np.nan)
                                                        for r in results[arm]])
    return {
        "test_accuracy": mean,
        "per_class_accuracy": per_class,
        "attention": att,
        "claims": {
            "siamese_above_single": mean["siamese"] > mean["single"],
            "single_better_on_covid": per_class["single"][covid] > per_class["siamese"][covid],
            "cropping_reduces_artefact_attention": bool(att["single_cropped"]["full_frame_artefact_lift"]
                                                        < att["single"]["full_frame_artefact_lift"])
            if np.isfinite(att["single_cropped"]["full_frame_artefact_lift"])
            and np.isfinite(att["single"]["full_frame_artefact_lift"]) else None,
        },
    }


def _write_report(out, config, best, results, counts, figures, stats, claims, *, gates, skipped, synthetic,
                  seconds, store, strategy):
    summary = summarize(results)
    write_json(out / "summary.json", summary)
    n = len(config.seeds)
    lines = [
        f"# Siamesifying the COVID-Net: reproduction ({config.name} preset)",
        "",
        claims_markdown(claims),
        f"Data: {'synthetic chest X-rays in the COVIDx layout' if synthetic else 'COVIDx'}, "
        f"{config.image_size} x {config.image_size}; PEPX trunk nf = {config.nf}, depths {list(config.depths)}; "
        f"{n} seed(s) per arm; {seconds / 60:.1f} min.",
        "",
        f"Precision policy `{keras.mixed_precision.global_policy().name}`, "
        f"{strategy.num_replicas_in_sync} replica(s) "
        f"(`{type(strategy).__name__}`), XLA {'on' if config.jit_compile else 'off'}.",
        "",
        "| split | " + " | ".join(CLASS_NAMES) + " |",
        "| --- | " + " | ".join("---:" for _ in CLASS_NAMES) + " |",
    ]
    for split in ("train", "val", "test"):
        lines.append(f"| {split} | " + " | ".join(str(counts[c][split]) for c in CLASS_NAMES) + " |")
    recall = ", ".join(f"{name} {v:.2f}" for name, v in zip(CLASS_NAMES, gates["recall"]))
    lines += ["", f"Pixel-level logistic regression (data gate, {gates['folds']}-fold cross-validation over the "
              f"training split, out of fold): recall {recall}; "
              f"COVID-19 taken for pneumonia {gates['covid_as_pneumonia']:.2f}, pneumonia for COVID-19 "
              f"{gates['pneumonia_as_covid']:.2f} (`gates.json`)."]
    if skipped:
        lines += ["", f"Skipped {len(skipped)} unreadable image(s) or bad split-file line(s) "
                      f"(listed in `skipped.json`)."]
    lines += ["", "## Grid search (Table 2)", "",
              "| net | best lr | best batch | best validation score (the kept-epoch criterion) | paper |",
              "| --- | ---: | ---: | ---: | --- |"]
    for net in ("siamese", "single"):
        b = best[net]
        p = PAPER["best"][net]
        val = "-" if b["best_val_accuracy"] is None else f"{b['best_val_accuracy']:.3f}"
        lines.append(f"| {net} | {b['learning_rate']:g} | {b['batch_size']} | {val} | "
                     f"{p[0]:g} / {p[1]} / {p[2]:.3f} |")
    lines += ["", "## Test accuracy (Table 3), mean ± SD over seeds", "",
              "| net | ours | paper | " + " | ".join(CLASS_NAMES) + " |",
              "| --- | ---: | ---: | " + " | ".join("---:" for _ in CLASS_NAMES) + " |"]
    for arm in ARMS:
        pc = summary["per_class_accuracy"][arm]
        lines.append(f"| {arm} | {_mean_sd([r['accuracy'] for r in results[arm]])} | "
                     f"{PAPER['test_accuracy'][arm]:.2f} | " + " | ".join(f"{v:.3f}" for v in pc) + " |")
    att = summary["attention"]
    lines += ["", "## Where the Grad-CAM maps lie (test set, mean over seeds)", "",
              f"Border band: the outer {config.crop_fraction:.0%} on each side "
              f"({1 - (1 - 2 * config.crop_fraction) ** 2:.0%} of the image: the share a uniform map would get). "
              "Artefact share: over images that carry an artefact. In brackets: the share of the image the "
              "region covers (what a uniform map would get). The cropped net is scored in its own frame.",
              "", "| net | border | artefacts | lungs |", "| --- | ---: | ---: | ---: |"]
    for arm in ARMS:
        a = att[arm]
        lines.append(f"| {arm} | {a['border']:.3f} | {a['artefact']:.3f} ({a['artefact_area']:.3f}) | "
                     f"{a['lung']:.3f} ({a['lung_area']:.3f}) |")
    lines += ["", "Attention lift on the artefacts (share of the map on the artefacts over the share of the "
              "image they cover; 1 = a uniform map), every net on the same full-frame test images (H3):", "",
              "| net | artefact lift |", "| --- | ---: |"]
    lines += [f"| {arm} | {att[arm]['full_frame_artefact_lift']:.2f} |" for arm in ARMS]
    lines += occlusion_lines(results, config)
    lines += ["", "## COVID-19 calls (H2), mean over seeds", "",
              "| net | COVID-19 recall | COVID-19 precision | films called COVID-19 | true share |",
              "| --- | ---: | ---: | ---: | ---: |"]
    true_share = counts["COVID-19"]["test"] / max(sum(counts[c]["test"] for c in CLASS_NAMES), 1)
    for arm in ARMS:
        covid = CLASS_NAMES.index("COVID-19")
        lines.append(f"| {arm} | {_mean_sd([r['per_class_accuracy'][covid] for r in results[arm]])} | "
                     f"{_mean_sd([r['per_class_precision'][covid] for r in results[arm]])} | "
                     f"{_mean_sd([r['predicted_share'][covid] for r in results[arm]])} | {true_share:.3f} |")
    lines += ["", "## Validation at the kept epoch (arm validity), mean over seeds", "",
              f"Kept epoch: single nets by `{config.select_single}`, siamese net by `{config.select_siamese}`. "
              f"Each arm's own decision rule on the whole validation split; always normal scores "
              f"{results['single'][0]['validation']['majority_rate']:.3f}.", "",
              "| net | accuracy | balanced accuracy | largest class share | kept epoch |",
              "| --- | ---: | ---: | ---: | --- |"]
    for arm in ARMS:
        lines.append(f"| {arm} | {_mean_sd([r['validation']['accuracy'] for r in results[arm]])} | "
                     f"{_mean_sd([r['validation']['balanced_accuracy'] for r in results[arm]])} | "
                     f"{_mean_sd([r['validation']['largest_class_share'] for r in results[arm]])} | "
                     + ", ".join(str(r["best_epoch"] + 1) for r in results[arm]) + " |")
    lines += ["", "Dead units (ReLU units zero on every validation image), mean and range over seeds; "
              "per layer in `results.json`:", "", "| net | dense head | convolutions |", "| --- | --- | --- |"]
    for arm in ARMS:
        cells = []
        for kind in ("dense", "conv"):
            dead = [r["dead_unit_totals"][kind][0] for r in results[arm]]
            total = results[arm][0]["dead_unit_totals"][kind][1]
            cells.append(f"{np.mean(dead):.1f} of {total} ({min(dead)}-{max(dead)})" if total else "-")
        lines.append(f"| {arm} | {cells[0]} | {cells[1]} |")
    c = summary["claims"]
    lines += ["", "## Claims in numbers (means over seeds)", "",
              f"- Siamese overall test accuracy above the single net's (paper 0.87 vs 0.81): "
              f"**{'yes' if c['siamese_above_single'] else 'no'}** "
              f"({summary['test_accuracy']['siamese']:.3f} vs {summary['test_accuracy']['single']:.3f}).",
              f"- Single net better on COVID-19: **{'yes' if c['single_better_on_covid'] else 'no'}** "
              f"({summary['per_class_accuracy']['single'][2]:.3f} vs {summary['per_class_accuracy']['siamese'][2]:.3f}).",
              f"- Cropping reduces attention on artefacts: **{ {True: 'yes', False: 'no', None: 'n/a'}[c['cropping_reduces_artefact_attention']] }** "
              f"(artefact lift on full-frame images {att['single']['full_frame_artefact_lift']:.2f} -> "
              f"{att['single_cropped']['full_frame_artefact_lift']:.2f}; own-frame artefact share "
              f"{att['single']['artefact']:.3f} -> {att['single_cropped']['artefact']:.3f}; "
              f"lung share {att['single']['lung']:.3f} -> {att['single_cropped']['lung']:.3f}).",
              "", "## Figures", ""]
    for key, name in figures.items():
        lines.append(f"![{key}](figures/{name})")
        lines.append("")
    if stats:
        lines += ["## Statistics over seeds", ""]
        for key, rel in stats.items():
            lines.append(f"- [{key}]({rel})")
        lines.append("")
    lines += [f"Results store: `{store.masked_url}`, experiment `{EXPERIMENT}`.", ""]
    path = out / "report.md"
    write_text(path, "\n".join(lines))
    return path
