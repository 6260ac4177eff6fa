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
6. The study: hypotheses and gates declared in `protocol.json` before anything
   trains (`hrpqct.config.study_protocol`, `shared.study`), verdicts in
   `claims.json`, whose table opens report.md.

Every network logs its per-epoch scalars (training loss and accuracy, validation loss
and kappa) under `RUN_DIR/tensorboard/<arm>_unit<u>_member<k>/`; the first network of
each arm's first unit is kept as a bundle, `RUN_DIR/bundles/<arm>/` (`hrpqct.bundle`),
which `medrepro hrpqct predict` reads.

The graders are trained and scored in `hrpqct.training` and grade scans through
`hrpqct.grading`; the figures and report.md are written by `hrpqct.report`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import keras
import numpy as np
from scipy import stats as sstats

from hrpqct.agreement import full_agreement_by_site, leave_one_rater_out_kappa, operator_kappa, rater_agreement
from hrpqct.bundle import write_arm_bundle
from hrpqct.config import ARMS, NONINFERIORITY_MARGIN, study_protocol, unit_seeds
from hrpqct.pipeline import gather_slices
from hrpqct.data import SIMULATION_FILE, generate_dataset, load_dataset
from hrpqct.ensemble import vote_endpoint
from hrpqct.pilot import late_fall
from hrpqct.gates import artefact_motion_spearman, calibration_z
from hrpqct.grading import (air_streak_rms, ensemble_scan_grades, mean_and_std, predict_votes, standardize,
                            threshold_grader)
from hrpqct.report import gradcam_figure, save_curves_figure, scatter_qme, write_report
from hrpqct.training import pooled_rescan, rescan_counts, scan_metrics, train_grader_on_scans
from shared.io.run_folder import run_folder_started
from shared.metrics import confusion_matrix
from shared.cli.progress import progress as progress_bar
from shared.study import Study
from shared.study.claims import write_claims
from shared.study.provenance import synthetic_data, user_data
from shared.tracking.runs import make_run_dir, write_json
from shared.training.scale import clear_session
from shared.training.seeding import numpy_rng
from shared.training.tensorboard import tensorboard_callback

log = logging.getLogger(__name__)

EXPERIMENT = "hrpqct"
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
        if len(idx) >= 3:  # a grade of three scans or more reaches every part asked for
            n_test = max(n_test, 1) if test_fraction > 0 else 0
            n_val = max(n_val, 1) if val_fraction > 0 else 0
        parts[2].extend(idx[:n_test])
        parts[1].extend(idx[n_test:n_test + n_val])
        parts[0].extend(idx[n_test + n_val:])
    # A part asked for that no grade reached (a cohort of a few scans, each grade rarer than
    # three) takes one training scan of the most common training grade.
    for part, fraction in ((2, test_fraction), (1, val_fraction)):
        if fraction > 0 and not parts[part] and len(parts[0]) > 1:
            train = np.asarray(parts[0], dtype=int)
            common = np.bincount(labels[train]).argmax()
            moved = int(train[labels[train] == common][0])
            parts[0].remove(moved)
            parts[part].append(moved)
    return tuple(np.sort(np.asarray(p, dtype=int)) for p in parts)


def held_out_split(labels, *, test_fraction, seed):
    """(pool, test) scan indices: the test scans drawn once, stratified by grade, from `seed`."""
    pool, _, test = stratified_split(labels, val_fraction=0.0, test_fraction=test_fraction, seed=seed)
    return pool, test


def unit_split(labels, pool, *, val_fraction, seed):
    """(train, val) scan indices of one unit: the pool split again, stratified by grade, from `seed`.

    Args:
        labels: int array [scans] of consensus grades.
        pool: int array. The scans that are not test scans.
        val_fraction: float. Fraction of the pool for validation (early stopping).
        seed: int. The unit's split seed.
    """
    pool = np.asarray(pool, dtype=int)
    train, val, _ = stratified_split(np.asarray(labels)[pool], val_fraction=val_fraction, test_fraction=0.0,
                                     seed=seed)
    return pool[train], pool[val]


def trivial_predictors(train_grades, test_grades) -> dict:
    """What grading every test scan with the most common training grade scores.

    A constant grade has quadratic weighted kappa 0 against any consensus (the observed
    and the chance-expected agreement are equal); accuracy is that grade's share of the
    test scans, rescan sensitivity 1 if it is 4 or 5, else 0.
    """
    grade = int(np.bincount(np.asarray(train_grades, int)).argmax())
    test_grades = np.asarray(test_grades, int)
    name = f"always grade {grade}"
    return {"kappa": {"name": name, "value": 0.0},
            "accuracy": {"name": name, "value": float(np.mean(test_grades == grade))},
            "rescan_sensitivity": {"name": name, "value": float(grade >= 4)}}


def _endpoints(metrics, margin) -> dict:
    """The study's endpoints from one ensemble's test metrics (undefined ones left out).

    ``kappa_noninferiority`` is the mean kappa against the leave-one-rater-out references
    (``kappa_loro``) plus the declared non-inferiority margin: H2 compares it with the
    operators' kappa against the same references, so "greater" means "not below the
    operators by more than the margin".
    """
    out = {k: metrics[k] for k in ("kappa", "accuracy", "rescan_sensitivity") if np.isfinite(metrics[k])}
    if np.isfinite(metrics.get("kappa_loro", np.nan)):
        out["kappa_noninferiority"] = metrics["kappa_loro"] + float(margin)
    return out


def _record_validity(study, arm, unit, histories, config) -> None:
    """The declared arm checks of one unit, from its members' validation curves (mean over members)."""
    declared = {c.name for c in study.protocol.validity}
    if "learned_val_kappa" in declared:
        kappa = np.mean([h["val_kappa"][h["best_epoch"] - 1] for h in histories])
        study.record_validity(arm, unit, "learned_val_kappa", kappa, reference=0.0)
    if "baseline_val_loss_settled" in declared and arm == "baseline":
        falls = [late_fall(h["val_loss"], h["epochs_run"]) if h["epochs_run"] >= 4 else np.nan for h in histories]
        study.record_validity(arm, unit, "baseline_val_loss_settled", float(np.mean(falls)))


def training_summary(curves, config) -> dict:
    """The training record kept in the run folder and the claims: budget, selection and, per
    arm and unit, the selected epoch, the epochs run and the per-epoch curves."""
    summary = {"epochs": int(config.epochs), "patience": int(config.patience),
               "selection": "best scan-level validation kappa (earliest on ties)", "curves": {}}
    for arm, by_unit in curves.items():
        summary["curves"][arm] = {str(u): members for u, members in by_unit.items()}
        best = [m["best_epoch"] for members in by_unit.values() for m in members]
        run = [m["epochs_run"] for members in by_unit.values() for m in members]
        summary[f"{arm}_best_epoch"] = {"mean": float(np.mean(best)), "min": int(min(best)), "max": int(max(best)),
                                        "at_cap": int(sum(b == config.epochs for b in best))}
        summary[f"{arm}_epochs_run"] = {"min": int(min(run)), "max": int(max(run))}
        falls = [late_fall(m["val_loss"], m["epochs_run"]) for members in by_unit.values() for m in members
                 if m["epochs_run"] >= 4]
        if falls:
            summary[f"{arm}_val_loss_late_fall"] = {"mean": float(np.mean(falls)), "max": float(np.max(falls))}
    return summary


def run_experiment(config, *, out_dir, store_url=None, seed=0, progress=True, data_dir=None,
                   strategy=None, jit_compile=False, workers=1, max_steps=None, simulated_slices=None,
                   allow_dirty=False) -> Path:
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
        max_steps: int, optional. Training batches per grader (a smoke run: 2).
        simulated_slices: int, optional. Simulate only this many slices per scan and
            write the full stack (a smoke run, see `hrpqct.data.generate_dataset`).
        allow_dirty: bool, default False. The user allowed a `powered` / `paper` run on
            a modified source tree (`--allow-dirty`); recorded in `claims.json`.
    """
    from shared.report.figures import save_confusion_matrix, save_image_grid
    from shared.report import write_comparison_report
    from shared.tracking.store import open_store

    t_start = time.perf_counter()
    out = make_run_dir(out_dir, config)
    simulated = data_dir is None or (Path(data_dir) / SIMULATION_FILE).is_file()
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    generated = data_dir is None
    if generated:
        data_dir = out / "data"
        # Everything that decides the simulated cohort (not the worker count).
        settings = dict(scans_per_site=config.sites, image_size=config.image_size,
                        oversample=config.oversample, stack_slices=config.stack_slices,
                        n_projections=config.n_projections, field_of_view_mm=config.field_of_view_mm,
                        projection_noise=config.projection_noise, fbp_window=config.fbp_window,
                        grade_counts=config.grade_counts, rater_noise=config.rater_noise, seed=seed,
                        slices_per_scan=config.slices_per_scan, simulated_slices=simulated_slices)
        if not (data_dir / "grades.csv").is_file():
            bar = (lambda it: progress_bar(it, desc="simulate scans", enabled=True)) if progress else None
            generate_dataset(data_dir, progress=bar, workers=workers, **settings)
    data = load_dataset(data_dir, slices_per_scan=config.slices_per_scan, image_size=config.model_size,
                        field_of_view_mm=config.field_of_view_mm, prefilter_mm=config.prefilter_mm)
    # The streaks in the air the scans hold (none in a scan cropped to the limb): whether the
    # air-streak gate can be measured is known from the data alone, before the protocol.
    streak = air_streak_rms(data["images"], measured=data["measured"])
    has_air = np.isfinite(streak)
    # protocol.json before any training
    study = Study(study_protocol(config, seed, simulated=simulated,
                                 air_scans=(int(has_air.sum()), len(streak))), out, allow_dirty=allow_dirty)
    study.set_data(synthetic_data("hrpqct.data.generate_dataset", settings) if generated
                   else user_data(data_dir, out))  # a folder only read: its manifest goes into the run folder
    t_data = time.perf_counter() - t_start
    consensus = data["consensus"]
    seeds = unit_seeds(seed, config.seeds, config.ensemble_size)
    # The test scans: drawn once from their own seed, the same for every unit and arm.
    pool_idx, test_idx = held_out_split(consensus, test_fraction=config.test_fraction, seed=seeds["test"])
    val_of_pool = config.val_fraction / max(1e-9, 1.0 - config.test_fraction)
    study.record_gate("test_grades_present", len(np.unique(consensus[test_idx])))
    simulator_gates = {}
    if simulated:
        # The simulator's checks, before any grader: data and oracle only.
        simulator_gates = {
            "consensus_calibration_z": calibration_z(consensus, data["sites"], config.grade_counts),
            "artefact_motion_spearman": (artefact_motion_spearman(data["artefact_rms"], data["motion_size"])
                                         if "artefact_rms" in data else None)}
        study.record_gate("consensus_calibration", simulator_gates["consensus_calibration_z"])
        study.record_gate("artefact_follows_motion", simulator_gates["artefact_motion_spearman"])
    study.record_gate("high_grade_test_scans", int(np.sum(consensus[test_idx] >= 4)))
    results = {"n_scans": int(len(consensus)), "n_pool": int(len(pool_idx)), "n_test": int(len(test_idx)),
               "test_grade_counts": np.bincount(consensus[test_idx], minlength=6)[1:].tolist(),
               "grade_counts": {s: np.bincount(consensus[data["sites"] == s], minlength=6)[1:].tolist()
                                for s in np.unique(data["sites"])},
               "simulator_gates": simulator_gates}
    results["raters"] = rater_agreement(data["rater_grades"], consensus)
    results["raters"]["full_agreement_by_site"] = full_agreement_by_site(data["rater_grades"], data["sites"])
    operators = operator_kappa(data["rater_grades"][test_idx])
    results["operators_test"] = operators
    results["scale"] = {"strategy": "default" if strategy is None else type(strategy).__name__,
                        "replicas": 1 if strategy is None else int(strategy.num_replicas_in_sync),
                        "precision": keras.mixed_precision.global_policy().name, "jit_compile": bool(jit_compile)}

    # The non-learned graders: thresholds on one statistic, fitted on the training and
    # validation scans. The QME (Sode et al.) is the non-learned baseline; thresholds on
    # the air-streak RMS (built the way the simulator makes streaks) and on the simulated
    # motion size (not visible in real data) are ceilings, not competitors.
    fit_idx = pool_idx
    if "qme_ssd" in data:
        qres = {}
        for name in ("qme_ssd", "qme_ncc", "qme_ncc_printed"):
            rho, p = sstats.spearmanr(data[name], consensus)
            qres[f"spearman_{name}"] = float(rho)
            qres[f"spearman_{name}_p"] = float(p)
        grader = threshold_grader(data["qme_ssd"], consensus, fit_idx, test_idx)
        qres["thresholds_ssd"] = grader["thresholds"]
        qres["test"] = grader["test"]
        results["qme"] = qres
        scatter_qme(data["qme_ssd"], consensus, fig_dir / "qme_ssd_vs_grade.png", "QME_SSD")

    # The streaks in the air around the limb: an image statistic the graders could learn from,
    # measured only in the air the scans hold (scans without any are left out and named).
    no_air = np.flatnonzero(~has_air)
    if len(no_air):
        log.warning("%d of %d scan(s) show no air around the limb; the air-streak statistic leaves them out: %s",
                    len(no_air), len(streak), ", ".join(data["scan_ids"][no_air][:10]))
    results["streak"] = {"scans_with_air": int(has_air.sum()), "scans_without_air": data["scan_ids"][no_air].tolist()}
    if has_air.sum() >= 3 and len(np.unique(consensus[has_air])) > 1:
        rho, p = sstats.spearmanr(streak[has_air], consensus[has_air])
        if "air_streak_spearman" in [g.name for g in study.protocol.gates]:
            study.record_gate("air_streak_spearman", None if np.isnan(rho) else float(rho))
        results["streak"].update(spearman=float(rho), spearman_p=float(p), median_per_grade=[
            float(np.nanmedian(streak[consensus == g])) if (has_air & (consensus == g)).any() else float("nan")
            for g in range(1, 6)])
        if has_air[pool_idx].any():
            grader = threshold_grader(streak, consensus, fit_idx, test_idx)
            results["streak"].update(thresholds=grader["thresholds"], test=grader["test"],
                                     test_not_graded=grader["not_graded"])
        if "motion_size" in data:
            results["streak"]["spearman_motion_size"] = float(
                sstats.spearmanr(streak[has_air], data["motion_size"][has_air])[0])
    else:
        results["streak"]["note"] = (f"not measured: {int(has_air.sum())} of {len(streak)} scans show air around "
                                     f"the limb")
    if "motion_size" in data:
        results["motion_ceiling"] = threshold_grader(data["motion_size"], consensus, fit_idx, test_idx)
    if "artefact_rms" in data:
        # What the simulated raters grade: thresholds on it are the ceiling of any grader.
        results["artefact_ceiling"] = threshold_grader(data["artefact_rms"], consensus, fit_idx, test_idx)
    if "artefact_rms" in data:
        results["artefact"] = {"spearman_consensus": float(sstats.spearmanr(data["artefact_rms"], consensus)[0]),
                               "spearman_motion_size": float(sstats.spearmanr(data["artefact_rms"],
                                                                              data["motion_size"])[0])}

    # Example slices, one per grade where present.
    ex_idx = [int(np.flatnonzero(consensus == g)[0]) for g in range(1, 6) if (consensus == g).any()]
    save_image_grid(data["images"][ex_idx, 0], fig_dir / "example_slices.png",
                    titles=[f"grade {consensus[i]} ({data['sites'][i]})" for i in ex_idx], ncols=len(ex_idx))

    # Walle's prefilter was applied by the loader (in mm, `hrpqct.scan_input`); standardised
    # with the mean and standard deviation of the pool (every non-test scan; no test scan
    # enters), in float32 and in place: at the paper preset the slices alone are 9.3 GB. One
    # array serves every unit.
    images = data["images"]
    stats = mean_and_std(images, pool_idx)
    images = standardize(images, stats=stats, out=images)
    s = config.slices_per_scan
    store = open_store(store_url, run_dir=out)
    run_folder_started(out)  # every check passed: the folder is this run's now
    store.ensure_experiment(EXPERIMENT, config=dataclasses.asdict(config))
    per_arm = {arm: [] for arm in ARMS}
    test_votes = {arm: [] for arm in ARMS}
    curves = {arm: {} for arm in ARMS}
    first = {}
    splits = {}
    jobs = [(rep, arm) for rep in range(config.seeds) for arm in ARMS]
    for rep, arm in progress_bar(jobs, desc="ensembles", enabled=progress):
        if rep not in splits:
            splits[rep] = unit_split(consensus, pool_idx, val_fraction=val_of_pool, seed=seeds["split"][rep])
            study.record("operator", rep, {"kappa_noninferiority": operators["kappa_mean"]})
        train_idx, val_idx = splits[rep]
        if not (len(train_idx) and len(val_idx) and len(test_idx)):
            raise ValueError(f"{data_dir / 'grades.csv'}: {len(consensus)} scans give an empty part of the split "
                             f"(train {len(train_idx)}, validation {len(val_idx)}, test {len(test_idx)}); "
                             f"expected at least one scan in each")
        search_id = store.start_search(EXPERIMENT, f"{config.preset}_{arm}", group=arm,
                                       config=dataclasses.asdict(config))
        t0 = time.perf_counter()
        members, histories = [], []
        for k in range(config.ensemble_size):
            model, hist = train_grader_on_scans(arm, images, train_idx, val_idx, consensus, config=config,
                                                seed=seeds["members"][rep][k], strategy=strategy,
                                                jit_compile=jit_compile, max_steps=max_steps,
                                                callbacks=[tensorboard_callback(out, f"{arm}_unit{rep}_member{k}")])
            members.append(model)
            histories.append(hist)
        votes = predict_votes(members, images, index=test_idx)
        test_votes[arm].append(votes)
        graded = ensemble_scan_grades(votes, threshold=config.confidence_threshold)
        metrics = scan_metrics(consensus[test_idx], graded["grade"])
        # H2, like-for-like: against each leave-one-rater-out consensus, as the operators are.
        metrics["kappa_loro"] = leave_one_rater_out_kappa(graded["grade"], data["rater_grades"][test_idx])["kappa_mean"]
        metrics["slice_tie_fraction"] = float(np.mean(graded["slice_ties"]))
        metrics.update(rescan_counts(consensus[test_idx], graded["grade"]))
        metrics["review_fraction"] = float(np.mean(graded["review"]))
        slice_pred = votes.reshape(len(members), -1)
        metrics["slice_accuracy"] = float(np.mean(slice_pred == np.repeat(consensus[test_idx], s)[None]))
        metrics["epochs"] = float(np.mean([h["epochs_run"] for h in histories]))
        metrics["best_epoch"] = float(np.mean([h["best_epoch"] for h in histories]))
        metrics["val_kappa"] = float(np.mean([h["val_kappa"][h["best_epoch"] - 1] for h in histories]))
        curves[arm][rep] = [{"best_epoch": h["best_epoch"], "epochs_run": h["epochs_run"],
                             "loss": h["loss"], "val_loss": h["val_loss"], "val_kappa": h["val_kappa"]}
                            for h in histories]
        _record_validity(study, arm, rep, histories, config)
        metrics["n_train"], metrics["n_val"] = float(len(train_idx)), float(len(val_idx))
        duration = time.perf_counter() - t0
        metrics["duration_s"] = duration
        per_arm[arm].append(metrics)
        study.record(arm, rep, _endpoints(metrics, NONINFERIORITY_MARGIN))
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
            write_arm_bundle(out, arm, members[0], config, seed=seeds["members"][rep][0], unit=rep, stats=stats,
                             simulated=simulated)
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
        cam_x = gather_slices(images, streaked)[:: max(1, s // 2)][: config.gradcam_slices]
        cam_g = np.repeat(consensus[streaked], 2)[: len(cam_x)]
        try:
            gradcam_figure(item["models"][0], cam_x, cam_g, fig_dir / f"gradcam_{arm}.png",
                           config.gradcam_slices, arm)
        except Exception as err:  # a figure must not end the run
            log.warning("Grad-CAM figure of %s failed: %s", arm, err)
    results["arms"] = {arm: {"runs": runs, "mean": {k: float(np.nanmean([r[k] for r in runs]))
                                                    for k in runs[0] if not all(np.isnan(r[k]) for r in runs)}}
                       for arm, runs in per_arm.items()}
    results["rescan"] = {arm: pooled_rescan(runs) for arm, runs in per_arm.items()}
    groups = {arm: [r["kappa"] for r in runs] for arm, runs in per_arm.items()}
    comparison = None if config.seeds < 2 else write_comparison_report(
        groups, metric="quadratic_weighted_kappa", out_dir=out / "comparison",
        title="HR-pQCT motion grading: baseline (Walle et al.) vs proposed network",
        description=(f"Scan-level quadratic weighted kappa against the rater consensus on the same "
                     f"{len(test_idx)} held-out simulated test scans; one value per unit (its own training "
                     f"split and initialisation, shared by both arms), ensembles of {config.ensemble_size}, "
                     f"{config.seeds} units, preset {config.preset}. The claims (claims.json) pair the arms "
                     f"unit by unit; this report treats them as independent groups."))
    # Proposed first: the differences are proposed minus baseline, as the claims' effects.
    results["vote"] = vote_endpoint({arm: test_votes[arm] for arm in ("proposed", "baseline")}, test_cons,
                                    vote_size=config.vote_size,
                                    threshold=config.confidence_threshold)
    training = training_summary(curves, config)
    results["training"] = {k: v for k, v in training.items() if k != "curves"}
    write_json(out / "training_curves.json", training)
    save_curves_figure(curves, fig_dir / "validation_curves.png")
    results["trivial_test"] = trivial_predictors(consensus[pool_idx], consensus[test_idx])
    results["timing_s"] = {"data": t_data, "total": time.perf_counter() - t_start}
    write_json(out / "results.json", results)
    claims = study.claims(seed=seed, trivial=results["trivial_test"])
    claims["training"] = training  # per unit and arm: the epoch kept and the per-epoch curves
    write_claims(out, claims)
    report = write_report(out, config, results, comparison, claims=claims)
    return report
