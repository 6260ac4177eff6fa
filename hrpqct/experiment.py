"""End-to-end reproduction: simulate, grade, compare (the thesis' unwritten experiments).

1. Simulate a cohort of radius and tibia scans with motion (`hrpqct.data`),
   written as AIM files + grades table + projections, and load it back
   (8 equally spaced slices per scan).
2. Operator agreement: quadratic weighted kappa between the simulated raters
   and of each rater with the consensus.
3. QME (Sode et al.): Spearman correlation of QME_SSD / QME_NCC with the
   consensus grade; a QME-threshold grader (thresholds set on the training
   scans so the grade frequencies match) as the non-learned baseline.
4. Baseline (Walle et al.) vs proposed (thesis) network: per arm and seed an
   ensemble of graders trained with Adam, early stopping, class weights and
   rotation + noise augmentation; scans graded as Walle's tool does
   (`hrpqct.grading`); accuracy, per-grade recall, quadratic weighted kappa,
   rescan decision (grade >= 4) sensitivity / specificity, manual-review rate.
5. Statistical comparison of the arms' kappas over the seeds, Grad-CAM of the
   graders on streaked test slices, figures, rows in the results store,
   report.md.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import keras
import numpy as np
from scipy import stats as sstats

from hrpqct.data import generate_dataset, load_dataset
from hrpqct.grading import air_streak_rms, ensemble_scan_grades, predict_votes, prefilter, standardize
from hrpqct.models import CAM_LAYER, NUM_GRADES, build_grader
from shared.metrics import classification_metrics, confusion_matrix, per_class_accuracy, quadratic_weighted_kappa
from shared.cli.progress import progress as progress_bar
from shared.tracking.runs import make_run_dir, write_json
from shared.training.scale import clear_session, strategy_scope
from shared.training.seeding import numpy_rng, set_global_seed

log = logging.getLogger(__name__)

EXPERIMENT = "hrpqct"
ARMS = ("baseline", "proposed")
GRADE_NAMES = [f"grade {g}" for g in range(1, 6)]


def stratified_split(labels, *, val_fraction, test_fraction, seed):
    """Scan indices (train, val, test), each grade split in the given proportions."""
    rng = numpy_rng(seed)
    labels = np.asarray(labels)
    parts = ([], [], [])
    for g in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == g))
        n_test = int(round(len(idx) * test_fraction))
        n_val = int(round(len(idx) * val_fraction))
        if len(idx) >= 3:
            n_test, n_val = max(n_test, 1), max(n_val, 1)
        parts[2].extend(idx[:n_test])
        parts[1].extend(idx[n_test:n_test + n_val])
        parts[0].extend(idx[n_test + n_val:])
    return tuple(np.sort(np.asarray(p, dtype=int)) for p in parts)


def class_weights(labels, *, num_classes=NUM_GRADES, cap=10.0) -> dict:
    """Inverse-frequency class weights (mean 1 over the samples), capped; absent classes get the cap."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=num_classes).astype(float)
    n, k = counts.sum(), np.count_nonzero(counts)
    return {c: float(min(cap, n / (k * counts[c]))) if counts[c] else float(cap) for c in range(num_classes)}


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


def fit_qme_thresholds(qme, grades) -> np.ndarray:
    """Four QME thresholds: sorted training QMEs cut so the grade frequencies match."""
    qme, grades = np.asarray(qme, dtype=float), np.asarray(grades, dtype=int)
    order = np.sort(qme)
    cum = np.cumsum(np.bincount(grades - 1, minlength=5))[:4]
    cuts = []
    for c in cum:
        if c <= 0:
            cuts.append(-np.inf)
        elif c >= len(order):
            cuts.append(np.inf)
        else:
            cuts.append(0.5 * (order[c - 1] + order[c]))
    return np.maximum.accumulate(np.asarray(cuts))


def qme_grades(qme, thresholds) -> np.ndarray:
    """Grade 1 + number of thresholds the QME exceeds."""
    return 1 + np.searchsorted(np.asarray(thresholds), np.asarray(qme, dtype=float), side="left")


def rater_agreement(rater_grades, consensus) -> dict:
    """Pairwise kappas between raters, each rater vs consensus, and the full-consensus fraction."""
    g = np.asarray(rater_grades, dtype=float)
    out = {}
    r = g.shape[1]
    for i in range(r):
        for j in range(i + 1, r):
            ok = ~np.isnan(g[:, i]) & ~np.isnan(g[:, j])
            out[f"kappa_rater{i + 1}_rater{j + 1}"] = float(quadratic_weighted_kappa(
                g[ok, i].astype(int), g[ok, j].astype(int), num_classes=5, min_label=1))
        ok = ~np.isnan(g[:, i])
        out[f"kappa_rater{i + 1}_consensus"] = float(quadratic_weighted_kappa(
            g[ok, i].astype(int), np.asarray(consensus)[ok], num_classes=5, min_label=1))
    full = np.all(g == g[:, :1], axis=1)
    out["full_agreement_fraction"] = float(np.mean(full))
    out["any_disagreement_fraction"] = float(1.0 - np.mean(full))
    return out


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


def _slices(images, idx):
    x = images[idx]
    return x.reshape((-1,) + x.shape[2:] + (1,)).astype(np.float32)


def _scatter_qme(qme_values, grades, path, label):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    jitter = numpy_rng(0).uniform(-0.15, 0.15, len(grades))
    ax.scatter(np.asarray(grades) + jitter, qme_values, s=12, alpha=0.7)
    ax.set_xlabel("consensus grade")
    ax.set_ylabel(label)
    if np.all(np.asarray(qme_values) > 0):
        ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _gradcam_figure(model, images, grades, path, n, title_prefix):
    import tensorflow as tf

    from shared.explain import attribution_maps
    from shared.report.figures import save_overlay_grid

    x = images[:n].astype(np.float32)
    probs = model.predict(x, verbose=0)
    pred = np.argmax(probs, axis=-1)
    maps = attribution_maps(model, tf.constant(x), layer_name=CAM_LAYER, targets=tf.constant(pred, tf.int32),
                            method="gradcam", upsample_to=x.shape[1:3], normalize=True)
    titles = [f"{title_prefix} true {g} pred {p + 1}" for g, p in zip(grades[:n], pred)]
    return save_overlay_grid(x[..., 0], np.asarray(maps), path, titles=titles, ncols=min(4, n))


def _fmt(x):
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"


def run_experiment(config, *, out_dir, store_url=None, seed=0, progress=True, data_dir=None,
                   strategy=None, jit_compile=False, workers=1) -> Path:
    """Runs the whole protocol at `config`; returns the path of report.md.

    Args:
        config: HrpqctConfig.
        out_dir: str or Path. Run folder.
        store_url: str, optional. Results store (None: the default SQLite file).
        seed: int. Base seed (data, splits, models).
        progress: bool. Progress bars.
        data_dir: str or Path, optional. An existing dataset folder in the layout of
            `hrpqct.data` (real or simulated); default: simulate into out_dir/data.
        strategy: tf.distribute.Strategy, optional. Models are built in its scope.
        jit_compile: bool. XLA train steps.
        workers: int, default 1. Processes simulating the cohort.
    """
    from shared.report.figures import save_confusion_matrix, save_image_grid
    from shared.report import write_comparison_report
    from shared.tracking.store import open_store

    t_start = time.perf_counter()
    out = make_run_dir(out_dir, config)
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    if data_dir is None:
        data_dir = out / "data"
        if not (data_dir / "grades.csv").is_file():
            bar = (lambda it: progress_bar(it, desc="simulate scans", enabled=True)) if progress else None
            generate_dataset(data_dir, scans_per_site=config.sites, image_size=config.image_size,
                             oversample=config.oversample, stack_slices=config.stack_slices,
                             n_projections=config.n_projections, field_of_view_mm=config.field_of_view_mm,
                             projection_noise=config.projection_noise, fbp_window=config.fbp_window,
                             grade_counts=config.grade_counts, rater_noise=config.rater_noise, seed=seed,
                             progress=bar, workers=workers)
    data = load_dataset(data_dir, slices_per_scan=config.slices_per_scan, image_size=config.image_size)
    t_data = time.perf_counter() - t_start
    consensus = data["consensus"]
    train_idx, val_idx, test_idx = stratified_split(consensus, val_fraction=config.val_fraction,
                                                    test_fraction=config.test_fraction, seed=seed)
    # Walle's prefilter, then the training slices' mean and standard deviation for all.
    images = prefilter(data["images"], config.prefilter_sigma)
    images = standardize(images, images[train_idx])
    results = {"n_scans": int(len(consensus)), "n_train": int(len(train_idx)), "n_val": int(len(val_idx)),
               "n_test": int(len(test_idx)),
               "grade_counts": {s: np.bincount(consensus[data["sites"] == s], minlength=6)[1:].tolist()
                                for s in np.unique(data["sites"])}}
    results["raters"] = rater_agreement(data["rater_grades"], consensus)
    results["scale"] = {"strategy": "default" if strategy is None else type(strategy).__name__,
                        "replicas": 1 if strategy is None else int(strategy.num_replicas_in_sync),
                        "precision": keras.mixed_precision.global_policy().name, "jit_compile": bool(jit_compile)}

    # QME: correlation with the grade, and the threshold grader.
    if "qme_ssd" in data:
        qres = {}
        for name in ("qme_ssd", "qme_ncc"):
            rho, p = sstats.spearmanr(data[name], consensus)
            qres[f"spearman_{name}"] = float(rho)
            qres[f"spearman_{name}_p"] = float(p)
        fit_idx = np.concatenate([train_idx, val_idx])
        thr = fit_qme_thresholds(data["qme_ssd"][fit_idx], consensus[fit_idx])
        qres["thresholds_ssd"] = thr.tolist()
        qres["test"] = scan_metrics(consensus[test_idx], qme_grades(data["qme_ssd"][test_idx], thr))
        results["qme"] = qres
        _scatter_qme(data["qme_ssd"], consensus, fig_dir / "qme_ssd_vs_grade.png", "QME_SSD")

    # The streaks in the air around the limb: an image statistic the graders could learn from.
    streak = air_streak_rms(data["images"])
    rho, p = sstats.spearmanr(streak, consensus)
    fit_idx = np.concatenate([train_idx, val_idx])
    thr = fit_qme_thresholds(streak[fit_idx], consensus[fit_idx])
    results["streak"] = {
        "spearman": float(rho), "spearman_p": float(p),
        "median_per_grade": [float(np.median(streak[consensus == g])) if (consensus == g).any() else float("nan")
                             for g in range(1, 6)],
        "thresholds": thr.tolist(), "test": scan_metrics(consensus[test_idx], qme_grades(streak[test_idx], thr))}
    if "motion_size" in data:
        results["streak"]["spearman_motion_size"] = float(sstats.spearmanr(streak, data["motion_size"])[0])

    # Example slices, one per grade where present.
    ex_idx = [int(np.flatnonzero(consensus == g)[0]) for g in range(1, 6) if (consensus == g).any()]
    save_image_grid(data["images"][ex_idx, 0], fig_dir / "example_slices.png",
                    titles=[f"grade {consensus[i]} ({data['sites'][i]})" for i in ex_idx], ncols=len(ex_idx))

    x_tr, x_va = _slices(images, train_idx), _slices(images, val_idx)
    s = config.slices_per_scan
    y_tr = np.repeat(consensus[train_idx] - 1, s)
    y_va = np.repeat(consensus[val_idx] - 1, s)
    store = open_store(store_url)
    store.ensure_experiment(EXPERIMENT, config=dataclasses.asdict(config))
    per_arm = {arm: [] for arm in ARMS}
    first = {}
    jobs = [(arm, rep) for arm in ARMS for rep in range(config.seeds)]
    for arm, rep in progress_bar(jobs, desc="ensembles", enabled=progress):
        search_id = store.start_search(EXPERIMENT, f"{config.preset}_{arm}", group=arm,
                                       config=dataclasses.asdict(config))
        t0 = time.perf_counter()
        members, histories = [], []
        for k in range(config.ensemble_size):
            member_seed = seed * 100_003 + rep * 1_009 + k
            model, hist = train_grader(arm, x_tr, y_tr, x_va, y_va, config=config, seed=member_seed,
                                       strategy=strategy, jit_compile=jit_compile)
            members.append(model)
            histories.append(hist)
        votes = predict_votes(members, images[test_idx])
        graded = ensemble_scan_grades(votes, threshold=config.confidence_threshold)
        metrics = scan_metrics(consensus[test_idx], graded["grade"])
        metrics["review_fraction"] = float(np.mean(graded["review"]))
        slice_pred = votes.reshape(len(members), -1)
        metrics["slice_accuracy"] = float(np.mean(slice_pred == np.repeat(consensus[test_idx], s)[None]))
        metrics["epochs"] = float(np.mean([len(h["loss"]) for h in histories]))
        duration = time.perf_counter() - t0
        per_arm[arm].append(metrics)
        model_id = f"{config.preset}_{arm}_seed{seed}_rep{rep}"
        store.record_trial(search_id, model_id, group=arm,
                           hyperparameters={"arm": arm, "rep": rep, "ensemble_size": config.ensemble_size,
                                            "learning_rate": config.learning_rate},
                           metrics={k: v for k, v in metrics.items() if not np.isnan(v)}, duration_s=duration)
        for name in ("kappa", "accuracy", "rescan_sensitivity", "rescan_specificity", "review_fraction"):
            if not np.isnan(metrics[name]):
                store.record_evaluation(EXPERIMENT, model_id, name, metrics[name], split="test", group=arm,
                                        extra={"preset": config.preset})
        if rep == 0:
            first[arm] = {"models": members, "graded": graded, "histories": histories}
        else:
            del members
        clear_session(free_memory=False)

    # Figures of the first ensemble per arm.
    test_cons = consensus[test_idx]
    for arm, item in first.items():
        cm = confusion_matrix(test_cons - 1, item["graded"]["grade"] - 1, num_classes=5)
        results.setdefault("confusion", {})[arm] = cm.tolist()
        save_confusion_matrix(cm, GRADE_NAMES, fig_dir / f"confusion_{arm}.png", title=f"{arm} ensemble (test scans)")
        streaked = test_idx[np.argsort(-test_cons, kind="stable")][: max(1, config.gradcam_slices // 2)]
        cam_x = _slices(images, streaked)[:: max(1, s // 2)][: config.gradcam_slices]
        cam_g = np.repeat(consensus[streaked], 2)[: len(cam_x)]
        try:
            _gradcam_figure(item["models"][0], cam_x, cam_g, fig_dir / f"gradcam_{arm}.png",
                            config.gradcam_slices, arm)
        except Exception as err:  # a figure must not end the run
            log.warning("Grad-CAM figure of %s failed: %s", arm, err)
    results["arms"] = {arm: {"runs": runs, "mean": {k: float(np.nanmean([r[k] for r in runs]))
                                                    for k in runs[0] if not all(np.isnan(r[k]) for r in runs)}}
                       for arm, runs in per_arm.items()}
    groups = {arm: [r["kappa"] for r in runs] for arm, runs in per_arm.items()}
    comparison = write_comparison_report(
        groups, metric="quadratic_weighted_kappa", out_dir=out / "comparison",
        title="HR-pQCT motion grading: baseline (Walle et al.) vs proposed network",
        description=(f"Scan-level quadratic weighted kappa against the rater consensus on "
                     f"{len(test_idx)} simulated test scans; one value per independently trained "
                     f"ensemble of {config.ensemble_size} ({config.seeds} seeds per arm, preset {config.preset})."))
    results["timing_s"] = {"data": t_data, "total": time.perf_counter() - t_start}
    write_json(out / "results.json", results)
    report = _write_report(out, config, results, comparison)
    return report


def _write_report(out, config, results, comparison) -> Path:
    r = results
    lines = [f"# HR-pQCT motion grading ({config.preset} preset)", "",
             f"Simulated cohort: {r['n_scans']} scans ({r['n_train']} train / {r['n_val']} val / "
             f"{r['n_test']} test), {config.image_size} x {config.image_size} slices, "
             f"{config.slices_per_scan} slices per scan, {config.n_projections} views over 180 degrees.", "",
             "Consensus grade counts (grades 1-5): "
             + "; ".join(f"{site}: {counts}" for site, counts in r["grade_counts"].items()), "",
             "## Operator agreement (simulated raters)", "", "| pair | quadratic weighted kappa |", "|---|---|"]
    lines += [f"| {k[6:].replace('_', ' vs ')} | {_fmt(v)} |" for k, v in r["raters"].items() if k.startswith("kappa")]
    lines += ["", f"Scans where the raters disagree: {100 * r['raters']['any_disagreement_fraction']:.0f} % "
              f"(thesis: up to 30 %); full agreement {100 * r['raters']['full_agreement_fraction']:.0f} %.", ""]
    metric_keys = ["accuracy", "kappa", "recall_grade1", "recall_grade2", "recall_grade3", "recall_grade4",
                   "recall_grade5", "rescan_sensitivity", "rescan_specificity"]
    lines += ["## Scan-level grading on the test scans", "",
              "| grader | " + " | ".join(metric_keys) + " | review fraction |",
              "|---" * (len(metric_keys) + 2) + "|"]
    for arm, item in r["arms"].items():
        m = item["mean"]
        lines.append(f"| {arm} (mean of {len(item['runs'])} ensembles) | "
                     + " | ".join(_fmt(m.get(k)) for k in metric_keys) + f" | {_fmt(m.get('review_fraction'))} |")
    st = r["streak"]["test"]
    lines.append("| air-streak RMS thresholds | " + " | ".join(_fmt(st.get(k)) for k in metric_keys) + " | n/a |")
    if "qme" in r:
        q = r["qme"]["test"]
        lines.append("| QME_SSD thresholds | " + " | ".join(_fmt(q.get(k)) for k in metric_keys) + " | n/a |")
        lines += ["", "## Quantitative motion estimates (Sode et al.)", "",
                  f"Spearman correlation with the consensus grade (all scans): QME_SSD "
                  f"rho = {r['qme']['spearman_qme_ssd']:.3f} (p = {r['qme']['spearman_qme_ssd_p']:.2g}), "
                  f"QME_NCC rho = {r['qme']['spearman_qme_ncc']:.3f} (p = {r['qme']['spearman_qme_ncc_p']:.2g}).",
                  "", "![QME vs grade](figures/qme_ssd_vs_grade.png)"]
    lines += ["", "## Streaks in the air around the limb", "",
              "Root mean square of the reconstruction where the smoothed slice is air (`air_streak_rms`), "
              "median per consensus grade 1-5: "
              + ", ".join(_fmt(v) for v in r["streak"]["median_per_grade"])
              + f" / cm; Spearman with the consensus rho = {r['streak']['spearman']:.3f} "
              f"(p = {r['streak']['spearman_p']:.2g})"
              + (f", with the simulated motion size rho = {r['streak']['spearman_motion_size']:.3f}."
                 if "spearman_motion_size" in r["streak"] else ".")]
    lines += ["", "## Figures", "", "![examples](figures/example_slices.png)", ""]
    for arm in r.get("confusion", {}):
        lines += [f"![confusion {arm}](figures/confusion_{arm}.png)",
                  f"![Grad-CAM {arm}](figures/gradcam_{arm}.png)", ""]
    lines += ["## Baseline vs proposed over seeds", "",
              f"See [comparison/report.md]({Path(comparison).relative_to(out)}).", "",
              f"Run time: {r['timing_s']['total']:.0f} s (data {r['timing_s']['data']:.0f} s).", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
