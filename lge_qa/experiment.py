"""End-to-end reproduction of Sultan et al.: LA detector, three QA strategies, Table 2, Figs. 2-3.

`run_experiment(cfg, ...)`:

1. reads the dataset at `data_root` (never written to) or, without one, writes the
   phantom into the run folder (`resolve_dataset`);
2. stage 1: trains the U-Net LA detector on the masks-only cohort, selects the LA
   slices of the scored scans (`io.select_slices`, threshold t), reports its Dice and
   slice-selection precision / recall;
3. stage 2, per repetition: splits the scored scans (test `cfg.test_scans`, the rest
   90:10 train / validation), trains each strategy on the selected slices, predicts the
   test slices, takes each scan's mode, and computes precision, recall, F1 and
   specificity of the fibrosis-quality label (positive = diagnostic);
4. tests the Table 2 ordering declared in `protocol.json` before anything trained
   (`lge_qa.config.study_protocol`, `shared.study`) and writes `claims.json`;
5. writes results-store rows, a statistical comparison of the strategies
   (`shared.report`), HiResCAM overlays (Baseline vs Multi-Task, Fig. 2), an embedding
   plot (UMAP, or PCA without umap-learn, Fig. 3) and `report.md`.

Every network logs its per-epoch scalars under `RUN_DIR/tensorboard/` (`la_detector`,
`<strategy>_rep<r>`, `contrastive_pretrain_rep<r>`); the LA detector and each strategy's
first-repetition network are kept as bundles, `RUN_DIR/bundles/<name>/`
(`lge_qa.predict`), which `medrepro lge-qa predict` reads.

The networks are trained and evaluated in `lge_qa.training`; the figures, Table 2 and
report.md are written by `lge_qa.report`.
"""

import logging
import time
import warnings
from pathlib import Path

import numpy as np

from lge_qa import io, phantom
from lge_qa.config import METRICS, STRATEGIES, LgeQaConfig, study_protocol
from shared.io.run_folder import run_folder_started
from shared.tracking.sink import ResultsSink
from lge_qa.report import save_cam_figure, save_embedding_figure, summarise, write_report
from lge_qa.training import detector_metrics, evaluate_scans, train_la_detector, train_strategy

log = logging.getLogger(__name__)

EXPERIMENT = "lge_qa"
DETECTOR_EXPERIMENT = "lge_qa_detector"


# ----------------------------------------------------------------------------- data


def phantom_shift(cfg: LgeQaConfig) -> float:
    """The phantom's quality shift: `cfg.quality_shift`, or solved for `cfg.target_prevalence`."""
    if cfg.quality_shift is not None:
        return float(cfg.quality_shift)
    return phantom.shift_for_prevalence(cfg.target_prevalence, correlation=cfg.quality_correlation,
                                        spread=cfg.quality_spread, rater_sd=cfg.rater_sd,
                                        score_threshold=cfg.score_threshold,
                                        target_correlation=cfg.target_correlation)


def phantom_settings(cfg: LgeQaConfig) -> dict:
    """The arguments of `phantom.generate_dataset` that decide the phantom of `cfg`."""
    return dict(n_segmentation=cfg.n_segmentation, n_scored=cfg.n_scored, shape=cfg.volume_shape,
                seed=cfg.seed, rater_sd=cfg.rater_sd, correlation=cfg.quality_correlation,
                spread=cfg.quality_spread, shift=phantom_shift(cfg), fibrosis_extent=cfg.fibrosis_extent,
                target_correlation=cfg.target_correlation)


def write_phantom(cfg: LgeQaConfig, root, *, progress=None) -> Path:
    """Writes the phantom cohort of `cfg` under `root` (a folder of its own). Returns `root`."""
    log.info("writing phantom dataset to %s", root)
    return phantom.generate_dataset(root, progress=progress, **phantom_settings(cfg))


def data_block(cfg: LgeQaConfig, data_root, run_dir) -> dict:
    """The claims' `data` block of a run (`shared.study.provenance`).

    Args:
        cfg: LgeQaConfig (the phantom's settings).
        data_root: str, Path or None. The user's dataset root, as the run was given it
            (only read: its manifest, a SHA-256 per file, goes into the run folder); None:
            the phantom of `cfg`, generated into the run folder.
        run_dir: str or Path. The run folder.
    """
    from shared.study.provenance import synthetic_data, user_data

    if data_root is None:
        return synthetic_data("lge_qa.phantom.generate_dataset", phantom_settings(cfg))
    return user_data(data_root, run_dir)


def is_phantom(data_root) -> bool:
    """Whether a run's data are the phantom: generated into the run folder (no `data_root`)
    or a root holding the phantom's parameters table (`medrepro lge-qa generate`)."""
    return data_root is None or (Path(data_root) / phantom.PARAMETERS_FILE).is_file()


def check_data_root(root) -> Path:
    """A user's dataset root in the challenge layout, checked (read only).

    Raises:
        FileNotFoundError: the root, one of its split folders or the scores table is
            missing; the message names the path and the layout expected.
    """
    root = Path(root)
    layout = (f"expected {phantom.SEG_SPLIT}/<CASE>/, {phantom.QA_SPLIT}/<CASE>/ and "
              f"{phantom.SCORES_FILE}")
    if not root.is_dir():
        raise FileNotFoundError(f"--data {root}: no such folder; {layout}")
    for split in (phantom.SEG_SPLIT, phantom.QA_SPLIT):
        if not (root / split).is_dir():
            raise FileNotFoundError(f"--data {root}: split folder {root / split} not found; {layout}")
    if not (root / phantom.SCORES_FILE).is_file():
        raise FileNotFoundError(f"--data {root}: scores table {root / phantom.SCORES_FILE} not found; "
                                f"{layout} (a data root is only read: the phantom is written into "
                                f"the run folder when no --data is given)")
    return root


def resolve_dataset(cfg: LgeQaConfig, data_root, run_dir, *, progress=None) -> Path:
    """The dataset a run reads.

    A given `data_root` (real data or a phantom written with `medrepro lge-qa
    generate`) is only read, never written: it must already hold the full layout
    (`check_data_root`). Without one, the phantom is generated into
    `<run_dir>/data` (kept when a resumed run finds it complete: the scores table is
    written last).

    Args:
        cfg: LgeQaConfig (the phantom's settings).
        data_root: str, Path or None.
        run_dir: str or Path. The run folder.
        progress: callable wrapping an iterable, optional.

    Returns:
        Path of the dataset root.
    """
    if data_root is not None:
        return check_data_root(data_root)
    root = Path(run_dir) / "data"
    if (root / phantom.SCORES_FILE).is_file():
        return root
    return write_phantom(cfg, root, progress=progress)


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


# ----------------------------------------------------------------------------- stage 1


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


def stage_one(cfg: LgeQaConfig, seg, qa, labels, *, verbose=0, distribute=None, jit_compile=False, run_dir=None,
              simulated=True):
    """Trains the LA detector on the masks-only cohort and selects the scored scans' LA slices.

    With `run_dir` (a run folder; None in library use) the detector logs its per-epoch
    loss under `RUN_DIR/tensorboard/la_detector/` and is kept as the bundle
    `RUN_DIR/bundles/la_detector/` (`lge_qa.predict`; `simulated`: the cohort is the
    phantom, said in its metadata).

    Returns:
        (data, detector metrics): data holds the selected slices' `images`, `masks`
        (the detector's mask for scans without a stored one, for the multi-task
        decoder), `case_index` and the scan-level `labels`; the detector is scored
        only on the scans with a stored mask.
    """
    from lge_qa.predict import DETECTOR, write_detector_bundle
    from shared.training.tensorboard import tensorboard_callback

    detector = train_la_detector(cfg, seg, seed=cfg.seed, verbose=verbose, strategy=distribute,
                                 jit_compile=jit_compile,
                                 callbacks=[] if run_dir is None else [tensorboard_callback(run_dir, DETECTOR)])
    if run_dir is not None:
        write_detector_bundle(run_dir, detector, cfg, simulated=simulated)
    prob = detector.predict(qa["images"], batch_size=256, verbose=0)
    selected = detect_slices(prob, qa["case_index"], qa["case_ids"], cfg.detection_threshold)
    det = detector_metrics(prob, qa["masks"], selected, cfg.detection_threshold,
                           has_mask=qa["has_mask"][qa["case_index"]])
    det["train_steps"] = int(detector.optimizer.iterations)
    log.info("LA detector: %s", det)
    masks = qa["masks"].copy()
    for i in np.flatnonzero(~qa["has_mask"]):
        idx = qa["case_index"] == i
        masks[idx] = (prob[idx] > cfg.detection_threshold).astype(masks.dtype)
    data = {"images": qa["images"][selected], "masks": masks[selected],
            "case_index": qa["case_index"][selected], "labels": labels}
    return data, det


# ----------------------------------------------------------------------------- study


def count_test_negatives(labels, splits) -> int:
    """Non-diagnostic scans (fibrosis-quality label 0) in the test splits, summed over them."""
    return int(sum(np.sum(labels[split["test"], 3] == 0) for split in splits))


def trivial_predictors(labels, splits) -> dict:
    """What calling every scan diagnostic scores, mean over the repetitions' test splits.

    F1 = 2 p / (1 + p) with p the share of diagnostic test scans (precision p, recall 1);
    specificity 0.
    """
    prevalence = np.array([np.mean(labels[split["test"], 3] == 1) for split in splits], float)
    f1 = 2 * prevalence / (1 + prevalence)
    return {"f1": {"name": "all diagnostic", "value": float(np.mean(f1))},
            "specificity": {"name": "all diagnostic", "value": 0.0}}


def _endpoints(metrics) -> dict:
    """The study's endpoints from one strategy's test metrics (undefined ones left out)."""
    return {k: metrics[k] for k in ("f1", "specificity")
            if k in metrics and np.isfinite(metrics[k])}


# ----------------------------------------------------------------------------- driver


def run_experiment(cfg: LgeQaConfig, *, out_dir, store_url=None, data_root=None, strategies=None,
                   progress=True, verbose=0, distribute=None, jit_compile=False, strict=False,
                   allow_dirty=False, require_both_classes=True) -> dict:
    """Runs the whole reproduction and writes its run folder.

    Args:
        cfg: LgeQaConfig.
        out_dir: str or Path. The run folder.
        store_url: str, optional. Results store URL (None: the default SQLite store).
        data_root: str or Path, optional. Dataset root in the challenge layout, only
            read. None: the phantom is written into `<out_dir>/data`.
        strategies: sequence of str, optional. Subset of STRATEGIES (default cfg.strategies).
        require_both_classes: bool, default True. Refuse a scored cohort whose QA label
            holds one class before anything trains; `--smoke` (six scans, proving memory
            and time, not a comparison) passes False.
        progress: bool, default True. Progress bars.
        verbose: int, default 0. Keras fit verbosity.
        distribute: tf.distribute.Strategy, optional. Every network is built and
            compiled in its scope (None: the default strategy). Set the dtype policy
            before calling (`shared.scale.configure`).
        jit_compile: bool, default False. Compile the train steps with XLA.
        strict: bool, default False. Refuse scored cases found only in the scores
            table or only on disk (otherwise they are left out with a warning).
        allow_dirty: bool, default False. The user allowed a `powered` / `paper` run on
            a modified source tree (`--allow-dirty`); recorded in `claims.json`.

    Returns:
        dict with "summary", "results", "detector", "report" (path of report.md), "figures",
        "stats" and "claims" (the claims document; None when a single strategy ran).
    """
    from shared.cli.progress import progress as pbar
    from shared.study import Study
    from shared.tracking.runs import make_run_dir, write_json
    from lge_qa.predict import write_strategy_bundle
    from shared.training.seeding import set_global_seed
    from shared.training.tensorboard import tensorboard_callback

    strategies = tuple(cfg.strategies if strategies is None else strategies)
    for s in strategies:
        if s not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}. Received: {s!r}")
    t0 = time.time()
    out = make_run_dir(out_dir, {**cfg.to_dict(), "strategies": list(strategies)})
    # protocol.json before any training; a single strategy has nothing to compare.
    study = (Study(study_protocol(cfg, cfg.seed, strategies), out, allow_dirty=allow_dirty)
             if len(strategies) > 1 else None)
    if study is None:
        log.warning("one strategy (%s): no hypothesis to test, no claims.json", strategies[0])
    wrap = (lambda it, desc: pbar(it, desc=desc, enabled=progress))
    root = resolve_dataset(cfg, data_root, out, progress=lambda it, desc: wrap(it, desc))
    if study is not None:
        study.set_data(data_block(cfg, data_root, out))
    qa, seg = load_dataset(cfg, root, strict=strict, require_both_classes=require_both_classes)
    # The store is opened before anything trains: unreachable, its rows are spooled.
    sink = ResultsSink.open(store_url, out)
    run_folder_started(out)  # every check passed: the folder is this run's now

    # Stage 1: LA detector.
    set_global_seed(cfg.seed)
    labels = io.binarise_scores(qa["scores"], cfg.score_threshold)
    n_scans = len(qa["case_ids"])
    splits = [split_scans(n_scans, test_scans=cfg.test_scans, val_fraction=cfg.val_fraction,
                          seed=cfg.seed + 1000 * r) for r in range(cfg.repetitions)]
    if study is not None and "test_negatives" in [g.name for g in study.protocol.gates]:
        study.record_gate("test_negatives", count_test_negatives(labels, splits))
    simulated = is_phantom(data_root)
    data, det = stage_one(cfg, seg, qa, labels, verbose=verbose, distribute=distribute,
                          jit_compile=jit_compile, run_dir=out, simulated=simulated)

    results = {s: [] for s in strategies}
    figures = {}
    keep_models, keep_probs, rep0_split = {}, {}, None
    steps = [(r, s) for r in range(cfg.repetitions) for s in strategies]
    for r, strategy in wrap(steps, "lge-qa"):
        split = splits[r]
        split_slices = {k: np.flatnonzero(np.isin(data["case_index"], v)) for k, v in split.items()}
        ts = time.time()
        model, history = train_strategy(
            strategy, cfg, data, split_slices, seed=cfg.seed + r, verbose=verbose, distribute=distribute,
            jit_compile=jit_compile, callbacks_for=lambda stage, s=strategy, r=r: [
                tensorboard_callback(out, f"{s}_rep{r}" if stage == "qa" else f"{s}_{stage}_rep{r}")])
        test_idx = split_slices["test"]
        metrics, slice_prob, _ = evaluate_scans(model, data["images"][test_idx], data["case_index"][test_idx],
                                                {i: int(labels[i, 3]) for i in split["test"]})
        metrics["epochs"] = len(history["qa"].get("loss", []))
        metrics["train_steps"] = int(model.optimizer.iterations)
        metrics["parameters"] = int(model.count_params())
        metrics["seconds"] = time.time() - ts
        if "pretrain" in history:
            # Eq. 5 per pre-training epoch (mean over its batches), for metrics.json.
            metrics["pretrain_loss"] = [float(v) for v in history["pretrain"].get("loss", [])]
        results[strategy].append(metrics)
        if study is not None:
            study.record(strategy, r, _endpoints(metrics))
        log.info("repetition %d %s: %s", r, strategy, metrics)
        if r == 0:
            keep_models[strategy], keep_probs[strategy], rep0_split = model, slice_prob, split_slices
            write_strategy_bundle(out, strategy, model, cfg, seed=cfg.seed + r, unit="repetition 0",
                                  simulated=simulated, selected_by=(
                                      "the first repetition's network (epoch chosen by early stopping on "
                                      "validation scans)"))
    write_json(out / "metrics.json", {"detector": det, "results": results})

    summary = summarise(results)
    store_rows = _record(sink, cfg, results, det, strategies)

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

    claims = None if study is None else study.finish(
        seed=cfg.seed, trivial=trivial_predictors(labels, splits))
    report = write_report(out, cfg, strategies, summary, det, figures, projection, stats_paths,
                          time.time() - t0, store_rows, claims=claims)
    return {"summary": summary, "results": results, "detector": det, "report": report,
            "figures": figures, "stats": stats_paths, "claims": claims}


def load_dataset(cfg: LgeQaConfig, data_root, *, strict=False, require_both_classes=True):
    """Reads the scored cohort and the masks-only cohort of `data_root`.

    `require_both_classes`: refuse a QA label of one class (every AUC would be undefined).

    Returns:
        (scored cohort, masks-only cohort), dicts of `io.load_cohort`.
    """
    data_root = Path(data_root)
    scores_path = data_root / phantom.SCORES_FILE
    scores = io.read_scores_csv(scores_path)
    qa_dir = data_root / phantom.QA_SPLIT
    case_ids = io.match_scored_cases(qa_dir, scores, scores_path=scores_path, strict=strict)
    needed = cfg.test_scans + 2
    if len(case_ids) < needed:
        raise ValueError(f"{scores_path}: {len(case_ids)} scored cases with a folder in {qa_dir}; "
                         f"expected at least {needed} (test_scans={cfg.test_scans} + 2 to train)")
    # The QA label (the last score column, binarised) must hold both classes: with one,
    # every AUC is undefined and would only show after every model has trained.
    qa_labels = io.binarise_scores(np.stack([scores[c] for c in case_ids])[:, -1], cfg.score_threshold)
    if require_both_classes and len(np.unique(qa_labels)) < 2:
        kind = "diagnostic (>=" if qa_labels[0] == 1 else "non-diagnostic (<"
        raise ValueError(f"{scores_path}: column {io.SCORE_COLUMNS[-1]!r}: all {len(case_ids)} scored cases are "
                         f"{kind} {cfg.score_threshold}); expected both diagnostic and non-diagnostic cases")
    qa = io.load_cohort(qa_dir, size=cfg.image_size, scores=scores, require_mask=False, case_ids=case_ids)
    seg = io.load_cohort(data_root / phantom.SEG_SPLIT, size=cfg.image_size)
    return qa, seg


def _record(sink, cfg, results, det, strategies):
    """Writes the run's rows through `sink` (store or spool); returns how many."""
    try:
        sink.ensure_experiment(EXPERIMENT, cfg.to_dict())
        sink.ensure_experiment(DETECTOR_EXPERIMENT, cfg.to_dict())
        n = 0
        for metric in ("dice", "slice_precision", "slice_recall"):
            if det.get(metric) is not None:
                sink.record_evaluation(DETECTOR_EXPERIMENT, f"{cfg.preset}_unet_seed{cfg.seed}", metric, det[metric],
                                       group="unet", extra={"threshold": cfg.detection_threshold})
                n += 1
        for strategy in strategies:
            for r, metrics in enumerate(results[strategy]):
                for metric in METRICS + ("accuracy",):
                    if metric in metrics:
                        sink.record_evaluation(EXPERIMENT, f"{cfg.preset}_{strategy}_seed{cfg.seed}_rep{r}", metric,
                                               metrics[metric], group=strategy,
                                               extra={"repetition": r, "n_scored": cfg.n_scored,
                                                      "epochs": metrics.get("epochs")})
                        n += 1
        return n
    finally:
        sink.close()
