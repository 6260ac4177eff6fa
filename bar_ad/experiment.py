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
from bar_ad.config import (ABLATIONS, FRAMEWORKS, METRICS, TABLE1, BarConfig, declared_claims,
                           get_framework, study_protocol, study_units)
from bar_ad.data import load_adni, subject_folds, subject_holdout, write_adni_cohort
from bar_ad.phantom import CohortGenerator, CohortSpec
from bar_ad.report import curves_figure, mixing_figure, summarize, write_report
from bar_ad.training import ModelBank, evaluate, finetune, pretrain_encoder

log = logging.getLogger(__name__)


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


def trivial_predictor(y, folds) -> dict:
    """Accuracy (%) of answering each fold's training majority class, mean over the test folds."""
    y = np.asarray(y, int)
    majority = [int(np.bincount(y[tr], minlength=2).argmax()) for tr, _ in folds]
    acc = [100.0 * float(np.mean(y[te] == m)) for m, (_, te) in zip(majority, folds)]
    name = {0: "always CN", 1: "always AD"}[majority[0]] if len(set(majority)) == 1 \
        else "training-fold majority class"
    return {"accuracy": {"name": name, "value": float(np.mean(acc))}}


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
    from shared.study import Study
    from shared.tracking.runs import git_revision, make_run_dir, write_json

    frameworks = tuple(config.frameworks if frameworks is None else frameworks)
    for fw in frameworks:
        get_framework(fw)
    replicas = 1 if strategy is None else int(strategy.num_replicas_in_sync)
    out = make_run_dir(out_dir, dict(config=dataclasses.asdict(config), frameworks=frameworks,
                                     seed=seed, data_root=data_root, replicas=replicas,
                                     precision=precision, jit_compile=bool(jit_compile)))
    # protocol.json before any training (none when no claim compares two of the frameworks).
    study = Study(study_protocol(config, seed, frameworks), out) if declared_claims(frameworks) else None
    if study is None:
        log.warning("no claim of the paper compares two of %s: no claims.json", list(frameworks))
    units = study_units(config, seed)
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
    if study is not None:
        study.record_gate("min_test_fold_scans", min(len(te) for _, te in folds))
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
        if study is not None:
            study.record(fw, units[k], {"accuracy": res["scores"]["accuracy"]})
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    mixing_figure(atlas, data, config, figures / "bar_vs_cutmix.png", seed=seed)
    curve_paths = {}
    for fw in frameworks:
        p = curves_figure(results[fw][0], figures / f"curves_{fw}.png", FRAMEWORKS[fw].label)
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
    claims = None if study is None else study.finish(
        seed=seed, revision=git_revision(), trivial=trivial_predictor(data["y"], folds))
    report = write_report(out, config, table, results, data, atlas, frameworks,
                          curve_paths=curve_paths, stats_md=stats_md, recorded=recorded,
                          notes=notes, seconds=time.perf_counter() - t0, claims=claims)
    return report


__all__ = ["run_experiment", "generate_cohort", "run_fold", "experiment_name", "TABLE1",
           "ABLATIONS"]
