"""End-to-end reproduction of Table 1 (and the ablations) of the BAR paper.

For every framework and subject-level fold: (optionally) pre-train the siamese ViT with
its views and losses, fine-tune encoder + MLP head with binary cross-entropy on the
hard labels, and score precision / recall / accuracy of AD (positive class) on the
held-out fold. Writes the run folder (config, per-fold results, figures, report.md, a
statistical comparison of the frameworks) and one row per fold and metric into the
results store. The paper's claims are declared in `protocol.json` before anything trains
(`bar_ad.config.study_protocol`, `shared.study`), tested fold by fold, and written to
`claims.json`.

The models are built, trained and evaluated in `bar_ad.training`; the figures, the
table and report.md are written by `bar_ad.report`.
"""

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from bar_ad.atlas import load_atlas
from bar_ad.bundle import centering_stats, write_framework_bundle
from bar_ad.config import (ABLATIONS, FRAMEWORKS, METRICS, POWERED_CLAIMS, PROBE_SCANS, TABLE1,
                           BarConfig, declared_claims, get_framework, study_protocol,
                           study_units)
from bar_ad.data import (draw_splits, load_adni, subject_folds, subject_holdout,
                         write_adni_cohort)
from bar_ad.phantom import CohortGenerator, CohortSpec
from bar_ad.region_reliance import reliance_figure
from bar_ad.report import (collapse_figure, collapse_rows, curves_figure, mixing_figure,
                           paired_rows, summarize, write_report)
from bar_ad.training import ModelBank, evaluate, finetune, pretrain_encoder
from shared.io.run_folder import run_folder_started
from shared.training.tensorboard import tensorboard_callback
from shared.tracking.sink import SPOOL_FILE, ResultsSink

log = logging.getLogger(__name__)


def experiment_name(config: BarConfig) -> str:
    """Store experiment name: `bar_ad` for the paper preset, `bar_ad_<preset>` otherwise."""
    return "bar_ad" if config.preset == "paper" else f"bar_ad_{config.preset}"


def generation_shape(config: BarConfig):
    """Grid the synthetic scans are written on (isotropic `gen_voxel_mm` over the brain box)."""
    from bar_ad.atlas import BRAIN_BOX_MM

    return tuple(max(8, int(round((hi - lo) / config.gen_voxel_mm))) for lo, hi in BRAIN_BOX_MM)


def cohort_spec(config: BarConfig) -> CohortSpec:
    """The synthetic cohort's sizes and effect sizes of `config`."""
    return CohortSpec(n_ad=config.n_ad, n_cn=config.n_cn,
                      scans_per_subject=tuple(config.scans_per_subject),
                      ad_atrophy=config.ad_atrophy, severity=tuple(config.severity),
                      region_std=config.region_std, ad_region_jitter=config.ad_region_jitter)


def cohort_settings(config: BarConfig, seed) -> dict:
    """What decides the cohort `generate_cohort(config, seed=seed)` writes: its spec,
    grid, atlas and seed."""
    return {"spec": cohort_spec(config), "grid": generation_shape(config),
            "atlas_source": config.atlas_source, "seed": int(seed)}


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
    generator = CohortGenerator(atlas, cohort_spec(config) if spec is None else spec)
    return write_adni_cohort(root, generator.subjects(seed), atlas, seed=seed, progress=progress)


def center_volumes(x, train_idx):
    """Subtracts the training scans' voxel-wise mean volume and divides by their std.

    For pixel-wise aligned scans the mean brain is shared by every input; removing it
    leaves the subject's deviation from it (anatomy, atrophy). Only training scans
    enter the statistics.

    Returns:
        float32 array like `x`.
    """
    mean, std = centering_stats(x, train_idx)
    return ((x - mean) / std).astype(np.float32)


def run_fold(framework, config, atlas, data, train_idx, test_idx, *, seed, bank=None,
             probe_idx=None, val_idx=None, explain=False, callbacks_for=None, on_model=None):
    """Pre-train (if any), fine-tune and test one framework on one fold.

    `probe_idx`: scans held out of the unit's pre-training whose [cls] cosine checks the
    pre-trained encoder for collapse (default: the validation subjects, else up to
    `PROBE_SCANS` training scans). `val_idx`: scans outside the training draw on which
    the fine-tuning epoch is selected (the "draws" design); otherwise `val_fraction` of
    the training subjects is held out for it. `explain`: also measure which atlas regions
    the trained classifier relies on (`bar_ad.region_reliance`, on test scans).
    `callbacks_for(stage)` ("pretrain", "finetune") gives extra Keras callbacks
    (TensorBoard); `on_model(model, center)` is called with the fine-tuned classifier
    and the centring statistics ((mean volume, std), or None without `center_inputs`)
    before the test, to keep it as a bundle."""
    x, y = data["x"], data["y"]
    center = None
    if config.center_inputs:
        center = centering_stats(x, train_idx)
        x = ((x - center[0]) / center[1]).astype(np.float32)
    extra = (lambda stage: []) if callbacks_for is None else callbacks_for
    tr, val = train_idx, np.array([], int)
    if val_idx is not None:
        val = np.asarray(val_idx, int)
    elif config.val_fraction > 0:
        tr, val = subject_holdout(train_idx, data["subjects"], y,
                                  fraction=config.val_fraction, seed=seed)
    if probe_idx is None:
        probe_idx = val if len(val) >= 2 else tr[:PROBE_SCANS]
    start = time.perf_counter()
    weights, pre_hist = pretrain_encoder(framework, config, atlas, x[tr], y[tr], seed=seed,
                                         bank=bank, probe=x[np.asarray(probe_idx, int)],
                                         callbacks=extra("pretrain") or None)
    pre_s = time.perf_counter() - start
    probe_cosine = pre_hist.pop("probe_cls_cosine", None)  # one value, not a per-epoch curve
    model, ft_hist = finetune(weights, framework, config, x[tr], y[tr], seed=seed + 1,
                              x_val=x[val] if len(val) else None,
                              y_val=y[val] if len(val) else None, bank=bank,
                              extra_callbacks=extra("finetune"))
    if on_model is not None:
        on_model(model, center)
    scores = evaluate(model, x[test_idx], y[test_idx])
    reliance = None
    if explain and config.reliance_scans > 0:
        from bar_ad.region_reliance import region_reliance

        reliance = region_reliance(model, x[test_idx], y[test_idx], atlas,
                                   x[tr].mean(axis=0), max_scans=config.reliance_scans,
                                   seed=seed)
    selected = ft_hist.pop("selected_epoch", [None])[0]
    return dict(scores=scores, pretrain_history=pre_hist, finetune_history=ft_hist,
                probe_cls_cosine=probe_cosine, selected_epoch=selected,
                region_reliance=reliance,
                pretrain_s=pre_s, total_s=time.perf_counter() - start,
                n_train=int(len(tr)), n_val=int(len(val)), n_test=int(len(test_idx)))


def held_out_probe(pool, train_idx, *, seed) -> np.ndarray:
    """Up to `PROBE_SCANS` pool scans outside the unit's training draw (never the test
    set), the same for every arm of the unit."""
    rest = np.setdiff1d(np.asarray(pool, int), np.asarray(train_idx, int))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(rest, size=min(PROBE_SCANS, len(rest)), replace=False))


def held_out_validation(pool, train_idx, subjects, labels, *, size, seed) -> np.ndarray:
    """Every scan of `size` pool subjects outside the unit's training draw, stratified by
    label (never the test set), the same for every arm of the unit: the fine-tuning epoch
    is selected on them. Empty when `size` is 0.

    Raises:
        ValueError: fewer than `size` pool subjects are outside the draw.
    """
    if size <= 0:
        return np.array([], int)
    subjects, labels = np.asarray(subjects), np.asarray(labels)
    rest = np.setdiff1d(np.asarray(pool, int), np.asarray(train_idx, int))
    names, first = np.unique(subjects[rest], return_index=True)
    if size > len(names):
        raise ValueError(f"val_subjects={size} is more than the {len(names)} pool subjects "
                         "outside the training draw")
    name_label = labels[rest][first]
    rng = np.random.default_rng([seed, 104729])
    counts = np.round(np.array([np.mean(name_label == c) for c in (0, 1)]) * size).astype(int)
    counts[1] = size - counts[0]
    picked = np.concatenate([rng.choice(names[name_label == c], size=k, replace=False)
                             for c, k in zip((0, 1), counts)])
    return np.sort(rest[np.isin(subjects[rest], picked)])


def trivial_predictor(y, folds) -> dict:
    """Accuracy (%) of answering each fold's training majority class, mean over the test folds."""
    y = np.asarray(y, int)
    majority = [int(np.bincount(y[tr], minlength=2).argmax()) for tr, _ in folds]
    acc = [100.0 * float(np.mean(y[te] == m)) for m, (_, te) in zip(majority, folds)]
    name = {0: "always CN", 1: "always AD"}[majority[0]] if len(set(majority)) == 1 \
        else "training-fold majority class"
    return {"accuracy": {"name": name, "value": float(np.mean(acc))}}


def open_results_sink(store_url, config, out):
    """Opens the results store before anything trains; an unreachable one spools.

    Rows then go to `<run folder>/results.spool.jsonl`, pushed later with
    `medrepro store sync --spool <run folder>/results.spool.jsonl --store URL`.
    """
    sink = ResultsSink.open(store_url, out)
    sink.ensure_experiment(experiment_name(config), dataclasses.asdict(config))
    return sink


def has_claims(config, frameworks) -> bool:
    """Whether a claim of the run's design compares two of `frameworks`."""
    if config.design == "draws":
        return any(c[1] in frameworks and c[2] in frameworks for c in POWERED_CLAIMS)
    return bool(declared_claims(frameworks))


def difficulty_gates(data, atlas, test_idx, pool_idx, *, seed=0) -> dict:
    """The powered study's gate values, from the training pool only (never the test set).

    Returns:
        dict(test_subjects, linear_baseline_min and linear_baseline_max (the same value:
        the cross-validated accuracy, %, of a logistic regression on the region means),
        best_single_region_auc).
    """
    from bar_ad.baselines import best_single_feature_auc, linear_baseline_accuracy, region_means

    subjects = data["subjects"]
    pool_subjects, first = np.unique(subjects[pool_idx], return_index=True)
    features = region_means(data["x"][pool_idx], atlas)
    # One row per subject: the mean of its scans' region means.
    rows = np.stack([features[subjects[pool_idx] == s].mean(axis=0) for s in pool_subjects])
    y = data["y"][pool_idx][first]
    linear = linear_baseline_accuracy(rows, y, seed=seed)
    region, auc = best_single_feature_auc(rows, y)
    log.info("difficulty on the pool: linear %.1f %%, best region %s AUC %.3f", linear,
             atlas.names[region], auc)
    return dict(test_subjects=int(len(np.unique(subjects[test_idx]))),
                linear_baseline_min=linear, linear_baseline_max=linear,
                best_single_region_auc=auc)


def model_id(config, seed, framework, fold) -> str:
    """A fold model's id in the results store, unique per run (preset, base seed,
    framework, fold): two seeds or presets never share a row."""
    return f"{config.preset}_seed{int(seed)}_{framework}_fold{int(fold)}"


def record_fold(sink, config, framework, fold, *, seed) -> int:
    """Writes one fold's test metrics through `sink` (store or spool); returns the row count.

    `seed` is the run's base seed (`fold["seed"]` is the fold's own training seed)."""
    names = METRICS + (("auc",) if np.isfinite(fold["scores"].get("auc", np.nan)) else ())
    for m in names:
        sink.record_evaluation(experiment_name(config), model_id(config, seed, framework,
                                                                 fold["fold"]), m,
                               fold["scores"][m], group=framework,
                               extra={"fold": fold["fold"], "preset": config.preset,
                                      "seed": fold["seed"]})
    return len(names)


def run_experiment(config: BarConfig, out_dir, *, store_url=None, frameworks=None, seed=0,
                   data_root=None, progress=True, strategy=None, jit_compile=False,
                   precision="float32", allow_dirty=False, bundles=None) -> Path:
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
        allow_dirty: bool, default False. The user allowed a `powered` / `paper` run on
            a modified source tree (`--allow-dirty`); recorded in `claims.json`.
        bundles: sequence of framework names, optional. The frameworks whose first-unit
            classifier is kept as a bundle (None: every framework; `--smoke` keeps one).

    Returns:
        Path of report.md.
    """
    from shared.cli.progress import progress as bar
    from shared.study import Study
    from shared.study.provenance import synthetic_data, user_data
    from shared.tracking.runs import make_run_dir, write_json

    frameworks = tuple(config.frameworks if frameworks is None else frameworks)
    for fw in frameworks:
        get_framework(fw)
    replicas = 1 if strategy is None else int(strategy.num_replicas_in_sync)
    out = make_run_dir(out_dir, dict(config=dataclasses.asdict(config), frameworks=frameworks,
                                     seed=seed, data_root=data_root, replicas=replicas,
                                     precision=precision, jit_compile=bool(jit_compile)))
    # protocol.json before any training (none when no claim compares two of the frameworks).
    study = (Study(study_protocol(config, seed, frameworks), out, allow_dirty=allow_dirty)
             if has_claims(config, frameworks) else None)
    if study is None:
        log.warning("no claim of the paper compares two of %s: no claims.json", list(frameworks))
    units = study_units(config, seed)
    t0 = time.perf_counter()
    generated = data_root is None
    if generated:
        data_root = out / "data"
        if not any(Path(data_root).glob("*.csv")):
            generate_cohort(config, data_root, seed=seed,
                            progress=(lambda it: bar(it, desc="generate", enabled=progress)))
        if study is not None:
            study.set_data(synthetic_data("bar_ad.experiment.generate_cohort",
                                          cohort_settings(config, seed)))
    atlas = load_atlas(config.grid, source=config.atlas_source)
    data = load_adni(data_root, atlas, group_map=config.group_map,
                     progress=lambda it: bar(it, desc="load", enabled=progress))
    if not generated and study is not None:  # the folder is only read: its manifest goes here
        study.set_data(user_data(data_root, out))
    if config.design == "draws":
        folds, pool = draw_splits(data["subjects"], data["y"],
                                  n_test_subjects=config.n_test_subjects,
                                  n_draws=config.n_draws, draw_subjects=config.draw_subjects,
                                  seed=seed)
        gates = difficulty_gates(data, atlas, folds[0][1], pool, seed=seed)
        if study is not None:
            for name, value in gates.items():
                study.record_gate(name, value)
    else:
        folds = subject_folds(data["subjects"], data["y"], n_folds=config.n_folds, seed=seed)
        if config.folds_run is not None:
            folds = folds[: int(config.folds_run)]
        if study is not None:
            study.record_gate("min_test_fold_scans", min(len(te) for _, te in folds))
    endpoint = "auc" if config.design == "draws" else "accuracy"
    # The store is opened before anything trains: unreachable, its rows are spooled.
    sink = open_results_sink(store_url, config, out)
    run_folder_started(out)  # every check passed: the folder is this run's now
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
        probe_idx = val_idx = None
        if config.design == "draws":
            probe_idx = held_out_probe(pool, train_idx, seed=fold_seed)
            if config.val_subjects > 0:
                val_idx = held_out_validation(pool, train_idx, data["subjects"], data["y"],
                                              size=config.val_subjects, seed=fold_seed)
        keep = (lambda model, center, fw=fw, k=k: write_framework_bundle(
            out, fw, model, config, seed=seed, unit=units[k], center=center)) \
            if k == 0 and (bundles is None or fw in bundles) else None
        res = run_fold(get_framework(fw), config, atlas, data, train_idx, test_idx,
                       seed=fold_seed, bank=bank, probe_idx=probe_idx, val_idx=val_idx,
                       explain=k == 0, callbacks_for=lambda stage, fw=fw, k=k: [
                           tensorboard_callback(out, f"{fw}_{stage}_unit{k}")],
                       on_model=keep)
        res["seed"] = fold_seed
        res["fold"] = k
        results[fw].append(res)
        record_fold(sink, config, fw, res, seed=seed)
        if study is not None:
            study.record(fw, units[k], {endpoint: res["scores"][endpoint]})
            if get_framework(fw).pretrain:
                study.record_validity(fw, units[k], "cls_not_collapsed",
                                      res["probe_cls_cosine"])
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    mixing_figure(atlas, data, config, figures / "bar_vs_cutmix.png", seed=seed)
    collapse_figure(results, frameworks, figures / "collapse.png")
    curve_paths = {}
    for fw in frameworks:
        p = curves_figure(results[fw][0], figures / f"curves_{fw}.png", FRAMEWORKS[fw].label)
        if p is not None:
            curve_paths[fw] = p
    reliances = {fw: results[fw][0]["region_reliance"] for fw in frameworks
                 if results[fw][0].get("region_reliance") is not None}
    reliance_figure(reliances, {fw: FRAMEWORKS[fw].label for fw in frameworks},
                    figures / "region_reliance.png")
    table = summarize(results)
    write_json(out / "results.json", dict(table=table, folds=results,
                                          paired=paired_rows(results, frameworks, endpoint),
                                          collapse=collapse_rows(results, frameworks),
                                          skipped=data["skipped"], mapped=data["mapped"],
                                          misalignment=data["misalignment"],
                                          n_scans=int(len(data["y"])),
                                          n_subjects=int(len(np.unique(data["subjects"]))),
                                          n_ad_scans=int(data["y"].sum()),
                                          atlas=atlas.source, num_regions=atlas.num_regions,
                                          seconds=time.perf_counter() - t0))
    sink.close()
    notes = [f"{n} {g} row(s) of the collection CSV skipped (group_map='skip'; "
             "group_map='adni' maps EMCI/LMCI to MCI and SMC to CN)"
             for g, n in sorted(data["skipped"].items())]
    notes += [f"{n} row(s) mapped {k}" for k, n in sorted(data["mapped"].items())]
    if sink.spooled:
        notes.append(f"results store unreachable: {sink.spooled} row(s) spooled to "
                     f"{SPOOL_FILE}; push them with `medrepro store sync --spool "
                     f"{out / SPOOL_FILE} --store URL`")
    recorded = sink.spooled == 0
    stats_md = None
    if len(frameworks) > 1 and all(len(v) > 1 for v in results.values()):
        from shared.report import write_comparison_report

        stats_md = write_comparison_report(
            {fw: [f["scores"][endpoint] for f in results[fw]] for fw in frameworks},
            metric=endpoint, out_dir=out / "stats",
            title=f"BAR reproduction: {endpoint} per framework",
            description=f"Fold accuracies (%) of each framework, preset `{config.preset}`.",
            provenance={"experiment": experiment_name(config), "store": store_url})
    trivial = ({"auc": {"name": "constant score", "value": 0.5}} if endpoint == "auc"
               else trivial_predictor(data["y"], folds))
    claims = None if study is None else study.finish(seed=seed,
                                                     trivial=trivial)
    report = write_report(out, config, table, results, data, atlas, frameworks,
                          curve_paths=curve_paths, stats_md=stats_md, recorded=recorded,
                          notes=notes, seconds=time.perf_counter() - t0, claims=claims,
                          endpoint=endpoint)
    return report


__all__ = ["run_experiment", "generate_cohort", "run_fold", "experiment_name", "TABLE1",
           "ABLATIONS"]
