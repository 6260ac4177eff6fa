"""The limited-label study (preset `powered`): does SupCon pre-training help when labels are few?

Design (declared in `protocol.json` before anything trains, `limited_protocol`):

- one scored cohort, split once from its own seed (`cfg.seed + SPLIT_SEED_OFFSET`,
  `fixed_split`) into a test set (`cfg.test_scans`, 200 in `powered`), a validation
  set (`cfg.val_scans`, early stopping), a gate cohort (`cfg.gate_train_scans` +
  `cfg.gate_test_scans`, the baseline gate only) and a training pool;
- unit = seed r: a permutation of the pool drawn from `cfg.seed + r`; the labelled
  training set of size n is its first n scans (nested: the 24 scans of n = 24 are in
  the 48 of n = 48), the same for every arm, which also share the training seed;
- arms: `baseline` (encoder end to end, or frozen with `cfg.baseline_encoder`),
  `multitask`, `contrastive` (SupCon pre-training to a loss criterion, then frozen)
  and the control `frozen_random` (the same heads on a frozen random encoder);
- primary endpoint: scan-level ROC AUC on the test set (`training.scan_auc`);
  secondary: F1 and specificity at 0.5 (scan label = mode of its slices), beside the
  always-diagnostic predictor;
- gates, from the data, an oracle feature and the baseline only: the declared
  prevalence and attribute correlation, the oracle fibrosis contrast's AUC and the
  AUC of the baseline trained on the gate cohort.

`run_limited_study` runs it and writes the run folder (protocol, claims, metrics,
report, rows in the results store or its spool).
"""

import logging
import time
from pathlib import Path

import numpy as np

from lge_qa import io, phantom
from lge_qa.config import CONTROL, CORRELATION_LEVELS, LgeQaConfig
from shared.io.run_folder import run_folder_started

log = logging.getLogger(__name__)

EXPERIMENT = "lge_qa_limited"
LIMITED_ARMS = ("baseline", "multitask", "contrastive", CONTROL)
SPLIT_SEED_OFFSET = 777_000
AUC_SESOI = 0.05
# SD of the paired AUC differences assumed to size the seeds (no pilot of the arms was
# run to choose it): units_for_mde(0.05, 0.04, alternative="greater") = 6.
POWERED_SD_DIFF = 0.04
# Sides of the test the seeds are sized for and of the primary hypotheses' tests
# (`limited_protocol`): one-sided, so the test run is the test sized.
PRIMARY_SIDES = 1
GATE_THRESHOLDS = {"oracle_auc": 0.85, "baseline_auc": 0.75, "prevalence_low": 0.4,
                   "prevalence_high": 0.6}
# Mean pairwise Pearson correlation of the four 1-5 scores the declared level must show.
CORRELATION_GATES = {"high": (">=", 0.5), "low": ("<=", 0.25)}


ARMS_LOG = "arms.jsonl"  # one line per trained arm, written as it finishes


def append_jsonl(path, record) -> None:
    """Appends `record` as one JSON line to `path`."""
    import json

    with Path(path).open("a") as f:
        f.write(json.dumps(record, default=float) + "\n")


def size_endpoint(n) -> str:
    return f"auc_n{int(n)}"


def drop_endpoint(sizes) -> str:
    return f"auc_n{min(sizes)}_minus_n{max(sizes)}"


def powered_units(sesoi=AUC_SESOI, sd_diff=POWERED_SD_DIFF) -> int:
    """Seeds of the powered design: `shared.stats.units_for_mde` for a paired t-test with
    `PRIMARY_SIDES` sides (one-sided), at least 6."""
    from shared.stats.power import units_for_mde

    return max(6, units_for_mde(sesoi, sd_diff,
                                alternative="greater" if PRIMARY_SIDES == 1 else "two-sided"))


HEADROOM_HYPOTHESES = ("H1", "H2")


def limited_protocol(cfg: LgeQaConfig, arms=LIMITED_ARMS, *, oracle=True):
    """The limited-label study's protocol (see the module docstring).

    Args:
        cfg: LgeQaConfig.
        arms: sequence of str, default LIMITED_ARMS.
        oracle: bool, default True. The cohort is the phantom, whose oracle fibrosis
            contrast gives the ceiling of the headroom checks of H1 and H2 (a user's data
            has no oracle: no headroom check is declared).

    Raises:
        ValueError: fewer than two training sizes.
    """
    from shared.study import Gate, Hypothesis, Protocol
    from shared.study.protocol import Headroom

    sizes = tuple(int(n) for n in cfg.training_sizes)
    if len(sizes) < 2:
        raise ValueError(f"the limited-label study needs at least two training sizes. "
                         f"Received: training_sizes={list(sizes)}")
    small, large = min(sizes), max(sizes)
    hypotheses = [
        Hypothesis(id="H1", statement=f"SupCon pre-training + frozen encoder has a higher test AUC "
                                      f"than the baseline at the smallest labelled set (n = {small}) "
                                      f"(Table 2: F1 0.76 vs 0.71)",
                   endpoint=size_endpoint(small), arms=("contrastive", "baseline"), direction="greater",
                   sesoi=AUC_SESOI, test="paired_t", paper_value="F1 0.76 vs 0.71", sides=PRIMARY_SIDES),
        Hypothesis(id="H2", statement="Multi-Task QA has a higher test AUC than the baseline, mean over "
                                      "the training sizes (Table 2: F1 0.73 vs 0.71)",
                   endpoint="auc_mean", arms=("multitask", "baseline"), direction="greater",
                   sesoi=AUC_SESOI, test="paired_t", paper_value="F1 0.73 vs 0.71", sides=PRIMARY_SIDES),
        Hypothesis(id="H3", statement=f"The contrastive gain over the baseline shrinks as labels grow: "
                                      f"(AUC gain at n = {small}) - (gain at n = {large}) > 0",
                   endpoint=drop_endpoint(sizes), arms=("contrastive", "baseline"), direction="greater",
                   sesoi=AUC_SESOI, test="paired_t", paper_value="not reported (the limited-label premise)",
                   sides=PRIMARY_SIDES),
        Hypothesis(id="H4", statement=f"The pre-trained encoder beats a frozen random encoder with the "
                                      f"same heads at n = {small} (control)",
                   endpoint=size_endpoint(small), arms=("contrastive", CONTROL), direction="greater",
                   sesoi=AUC_SESOI, test="paired_t", family="control", paper_value="not reported"),
    ]
    hypotheses = tuple(h for h in hypotheses if set(h.arms) <= set(arms))
    comparison, level_threshold = CORRELATION_GATES[cfg.correlation_level]
    gates = (
        Gate(name="prevalence_low", source="data", comparison=">=", threshold=GATE_THRESHOLDS["prevalence_low"],
             description=f"diagnostic share of the fibrosis-quality label over the cohort (declared "
                         f"{cfg.target_prevalence})"),
        Gate(name="prevalence_high", source="data", comparison="<=",
             threshold=GATE_THRESHOLDS["prevalence_high"],
             description="the same share, upper bound: near 0.5 as Table 2 implies (0.51)"),
        Gate(name="attribute_correlation", source="data", comparison=comparison, threshold=level_threshold,
             description=f"mean pairwise Pearson correlation of the four observer scores, for the "
                         f"declared level {cfg.correlation_level!r} (latent correlation "
                         f"{cfg.quality_correlation})"),
        Gate(name="oracle_auc", source="oracle", comparison=">=", threshold=GATE_THRESHOLDS["oracle_auc"],
             description="AUC of the oracle fibrosis contrast (image over the label map, "
                         "`phantom.oracle_fibrosis_contrast`) for the fibrosis-quality label on the "
                         "gate cohort: the labels follow what the images show"),
        Gate(name="baseline_auc", source="baseline", comparison=">=", threshold=GATE_THRESHOLDS["baseline_auc"],
             description=f"test AUC of the baseline trained on the {cfg.gate_train_scans} gate-training "
                         f"scans, on the {cfg.gate_test_scans} gate-test scans: the signal is learnable "
                         f"with many labels"),
    )
    deviations = [
        "a limited-label design the paper does not run: labelled training sizes "
        f"{list(sizes)}, one fixed validation set and one fixed {cfg.test_scans}-scan test set",
        "primary endpoint scan-level ROC AUC (the paper reports F1 / specificity at 0.5)",
        f"phantom: prevalence {cfg.target_prevalence}, latent attribute correlation "
        f"{cfg.quality_correlation} ({cfg.correlation_level}), fibrosis patch half-angle "
        f"{cfg.fibrosis_extent} degrees",
        f"baseline encoder {cfg.baseline_encoder}, QA module input {cfg.qa_input}",
        f"SupCon pre-training until its loss covers {cfg.pretrain_criterion} of the gap between the "
        f"collapsed value and the closed-form minimum (at most {cfg.pretrain_epochs} epochs)",
    ]
    if cfg.encoder_weights is None:
        deviations.append("the encoder starts from random weights (the paper: ImageNet ResNet34)")
    return Protocol(
        paper="lge_qa", preset=cfg.preset, arms=tuple(arms),
        pairing_unit="seed r: the labelled training scans (the first n of a permutation of the training "
                     "pool seeded seed + r, nested across n), the training seed seed + r (initial "
                     "weights, batch order, augmentation) for every arm; one LA detector, one "
                     "validation set and one test set for all",
        units=tuple(range(int(cfg.repetitions))),
        test_set={"source": "split once from the scored cohort by a permutation of its own seed; never "
                            "used to choose anything (early stopping reads the validation set)",
                  "split_seed": int(cfg.seed) + SPLIT_SEED_OFFSET, "scans": int(cfg.test_scans),
                  "validation_scans": int(cfg.val_scans),
                  "cohort": f"phantom generated from seed {cfg.seed} unless the run reads --data"},
        hypotheses=hypotheses, gates=gates, training_sizes=sizes, deviations=tuple(deviations),
        design=cfg.correlation_level,
        headroom=tuple(Headroom(
            hypothesis=h.id, multiple=1.0, ceiling_source="oracle",
            description="ceiling: the oracle fibrosis contrast's AUC on the gate cohort; "
                        "baseline: the baseline trained on the gate-training scans (more labels "
                        "than any arm gets); shortcut: a logistic regression on the three other "
                        "observer scores, trained on the gate-training scans, AUC on the gate-test "
                        "scans. The claimed gain needs room above both")
            for h in hypotheses if oracle and h.id in HEADROOM_HYPOTHESES),
    )


def shortcut_auc(scores, labels, train_idx, test_idx) -> float:
    """AUC of the target label predicted from the other three observer scores alone
    (logistic regression fitted on `train_idx`, scored on `test_idx`); NaN when a split
    lacks a class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    x = np.asarray(scores, float)[:, :3]
    y = np.asarray(labels, int)
    if len(np.unique(y[train_idx])) < 2 or len(np.unique(y[test_idx])) < 2:
        return float("nan")
    model = LogisticRegression(max_iter=1000).fit(x[train_idx], y[train_idx])
    return float(roc_auc_score(y[test_idx], model.predict_proba(x[test_idx])[:, 1]))


def fixed_split(n_scans, cfg: LgeQaConfig) -> dict:
    """The one split of the study: "test", "val", "gate_train", "gate_test", "pool".

    Drawn from `cfg.seed + SPLIT_SEED_OFFSET` alone, so no unit and no arm changes it.

    Raises:
        ValueError: the cohort is too small for the design.
    """
    sizes = (cfg.test_scans, cfg.val_scans, cfg.gate_train_scans, cfg.gate_test_scans)
    needed = sum(sizes) + max(cfg.training_sizes)
    if n_scans < needed:
        raise ValueError(f"the limited-label study needs {needed} scored scans (test {cfg.test_scans}, "
                         f"validation {cfg.val_scans}, gate {cfg.gate_train_scans} + {cfg.gate_test_scans}, "
                         f"training pool {max(cfg.training_sizes)}). Received: {n_scans}")
    order = np.random.default_rng(int(cfg.seed) + SPLIT_SEED_OFFSET).permutation(n_scans)
    out, start = {}, 0
    for name, size in zip(("test", "val", "gate_train", "gate_test"), sizes):
        out[name] = np.sort(order[start:start + size])
        start += size
    out["pool"] = order[start:]  # kept in permuted order
    return out


def training_scans(pool, n, seed) -> np.ndarray:
    """The first `n` scans of a permutation of `pool` seeded `seed` (nested in n)."""
    pool = np.sort(np.asarray(pool))
    return np.sort(np.random.default_rng(int(seed)).permutation(pool)[:int(n)])


def data_gate_values(scores, threshold) -> dict:
    """Prevalence of "diagnostic" (fibrosis quality) and the mean pairwise correlation of
    the four score columns, from the scores alone."""
    scores = np.asarray(scores, dtype=float)
    prevalence = float(np.mean(scores[:, 3] >= threshold))
    corr = np.corrcoef(scores.T)
    mean_corr = float(np.nanmean(corr[np.triu_indices(scores.shape[1], 1)]))
    return {"prevalence_low": prevalence, "prevalence_high": prevalence, "attribute_correlation": mean_corr}


def oracle_auc(oracle_values, labels) -> float:
    """AUC of an oracle feature for binary labels (NaN without both classes or values)."""
    from sklearn.metrics import roc_auc_score

    values, labels = np.asarray(oracle_values, float), np.asarray(labels)
    ok = np.isfinite(values)
    if ok.sum() < 2 or len(np.unique(labels[ok])) < 2:
        return float("nan")
    return float(roc_auc_score(labels[ok], values[ok]))


def _slices(case_index, scans):
    return np.flatnonzero(np.isin(case_index, scans))


def _scan_labels(labels, scans):
    return {int(i): int(labels[i, 3]) for i in scans}


def train_and_test(arm, cfg, data, train, val, test, *, seed, verbose=0, distribute=None, jit_compile=False):
    """Trains one arm on the `train` scans, early-stops on `val`, scores it on `test`.

    Returns:
        (metrics dict with auc, f1, specificity, precision, recall, epochs, seconds
        and, for SupCon, the pre-training losses; the trained model).
    """
    from lge_qa.training import evaluate_scans, train_strategy

    ci = data["case_index"]
    split_slices = {"train": _slices(ci, train), "val": _slices(ci, val), "test": _slices(ci, test)}
    start = time.time()
    model, history = train_strategy(arm, cfg, data, split_slices, seed=seed, verbose=verbose,
                                    distribute=distribute, jit_compile=jit_compile)
    idx = split_slices["test"]
    metrics, _, _ = evaluate_scans(model, data["images"][idx], ci[idx], _scan_labels(data["labels"], test))
    metrics["epochs"] = len(history["qa"].get("loss", []))
    metrics["seconds"] = time.time() - start
    if "pretrain" in history:
        metrics["pretrain_loss"] = [float(v) for v in history["pretrain"].get("loss", [])]
        if "target_loss" in history["pretrain"]:
            metrics["pretrain_target"] = float(history["pretrain"]["target_loss"])
            metrics["pretrain_reached"] = bool(history["pretrain"]["reached"])
    return metrics, model


def study_endpoints(per_size, sizes) -> dict:
    """The endpoints one arm records at one seed, from its AUC per training size."""
    out = {size_endpoint(n): per_size[n] for n in sizes if np.isfinite(per_size[n])}
    if all(np.isfinite(per_size[n]) for n in sizes):
        out["auc_mean"] = float(np.mean([per_size[n] for n in sizes]))
        out[drop_endpoint(sizes)] = float(per_size[min(sizes)] - per_size[max(sizes)])
    return out


def run_limited_study(cfg: LgeQaConfig, *, out_dir, store_url=None, data_root=None, arms=LIMITED_ARMS,
                      progress=True, verbose=0, distribute=None, jit_compile=False, strict=False,
                      gates_only=False, allow_dirty=False) -> dict:
    """Runs the limited-label study and writes its run folder.

    Args:
        cfg: LgeQaConfig with `training_sizes` (preset "powered").
        out_dir: str or Path. The run folder.
        store_url: str, optional. Results store (None: the default SQLite store).
        data_root: str or Path, optional. Dataset root (only read); None: the phantom is
            written into the run folder.
        arms: sequence of str, default LIMITED_ARMS.
        progress, verbose, distribute, jit_compile, strict: as `experiment.run_experiment`.
        gates_only: bool, default False. Measure the gates (data, oracle feature, the
            baseline on the gate cohort) and stop: no arm trains and no claims.json is
            written (what fixes the phantom's signal strength before any comparison).
        allow_dirty: bool, default False. The user allowed a `powered` / `paper` run on
            a modified source tree (`--allow-dirty`); recorded in `claims.json`.

    Returns:
        dict with "results" ({arm: {n: [metrics per seed]}}), "gates", "claims"
        (None with `gates_only`), "detector", "report" (path of report.md), "table"
        (`limited_table`) and "seconds" (wall time of the parts: "data" phantom and loading,
        "gates" LA detector and gate baseline, "arms" the study's training).
    """
    from lge_qa.experiment import data_block, load_dataset, resolve_dataset, stage_one
    from shared.tracking.sink import ResultsSink
    from shared.cli.progress import progress as pbar
    from shared.study import Study
    from shared.tracking.runs import make_run_dir, write_json
    from shared.training.seeding import set_global_seed

    t0 = time.time()
    sizes = tuple(int(n) for n in cfg.training_sizes)
    out = make_run_dir(out_dir, {**cfg.to_dict(), "arms": list(arms), "study": "limited_label"})
    # protocol.json before anything trains
    study = Study(limited_protocol(cfg, arms, oracle=data_root is None), out,
                  allow_dirty=allow_dirty)
    wrap = (lambda it, desc: pbar(it, desc=desc, enabled=progress))
    root = resolve_dataset(cfg, data_root, out, progress=wrap)
    study.set_data(data_block(cfg, data_root, out))
    qa, seg = load_dataset(cfg, root, strict=strict)
    split = fixed_split(len(qa["case_ids"]), cfg)
    sink = ResultsSink.open(store_url, out)
    run_folder_started(out)  # every check passed: the folder is this run's now
    labels = io.binarise_scores(qa["scores"], cfg.score_threshold)

    gates = data_gate_values(qa["scores"], cfg.score_threshold)
    gate_scans = np.r_[split["gate_train"], split["gate_test"]]
    try:
        contrast = phantom.read_oracle_contrast(root)
        gates["oracle_auc"] = oracle_auc([contrast.get(qa["case_ids"][i], np.nan) for i in gate_scans],
                                         labels[gate_scans, 3])
    except FileNotFoundError as err:  # real data: no oracle, the gate is not measured
        log.warning("%s; the oracle gate is not measured", err)
        gates["oracle_auc"] = None
    for name in ("prevalence_low", "prevalence_high", "attribute_correlation", "oracle_auc"):
        study.record_gate(name, gates[name])

    t_gates = time.time()
    set_global_seed(cfg.seed)
    data, det = stage_one(cfg, seg, qa, labels, verbose=verbose, distribute=distribute, jit_compile=jit_compile)
    gate_metrics, _ = train_and_test("baseline", cfg, data, split["gate_train"], split["val"], split["gate_test"],
                                     seed=cfg.seed, verbose=verbose, distribute=distribute,
                                     jit_compile=jit_compile)
    gates["baseline_auc"] = gate_metrics["auc"]
    study.record_gate("baseline_auc", gate_metrics["auc"])
    shortcut = shortcut_auc(qa["scores"], labels[:, 3], split["gate_train"], split["gate_test"])
    for room in study.protocol.headroom:
        study.record_headroom(room.hypothesis, ceiling=gates["oracle_auc"],
                              baseline=gates["baseline_auc"],
                              shortcut=None if np.isnan(shortcut) else shortcut)
    log.info("shortcut AUC of the other three scores: %.3f", shortcut)
    log.info("gates: %s", gates)
    seconds = {"data": t_gates - t0, "gates": time.time() - t_gates}

    results = {arm: {n: [] for n in sizes} for arm in arms}
    t_arms = time.time()
    if gates_only:
        log.info("gates only: the arms are not trained")
    elif study.gates_passed():
        steps = [(r, n, arm) for r in study.protocol.units for n in sizes for arm in arms]
        for r, n, arm in wrap(steps, "lge-qa powered"):
            train = training_scans(split["pool"], n, cfg.seed + r)
            metrics, _ = train_and_test(arm, cfg, data, train, split["val"], split["test"], seed=cfg.seed + r,
                                        verbose=verbose, distribute=distribute, jit_compile=jit_compile)
            metrics.update(seed=r, n=n, arm=arm)
            results[arm][n].append(metrics)
            append_jsonl(out / ARMS_LOG, metrics)  # kept when a long run is stopped early
            log.info("seed %d n=%d %s: auc %.3f f1 %.3f", r, n, arm, metrics["auc"], metrics["f1"])
            if n == sizes[-1]:
                per_size = {m: results[arm][m][-1]["auc"] for m in sizes}
                study.record(arm, r, study_endpoints(per_size, sizes))
    else:
        log.warning("gates failed (%s): the arms are not trained", ", ".join(study.failed_gates()))

    test_prevalence = float(np.mean(labels[split["test"], 3] == 1))
    trivial_auc = {"name": "all diagnostic", "value": 0.5}
    trivial = {size_endpoint(n): trivial_auc for n in sizes}
    trivial.update(auc_mean=trivial_auc, **{drop_endpoint(sizes): {"name": "all diagnostic", "value": 0.0}})
    seconds["arms"] = time.time() - t_arms
    claims = None if gates_only else study.finish(seed=cfg.seed, trivial=trivial)
    write_json(out / "metrics.json", {"detector": det, "gates": gates, "gate_baseline": gate_metrics,
                                      "test_prevalence": test_prevalence, "seconds": seconds,
                                      "results": {a: {str(n): v for n, v in per.items()}
                                                  for a, per in results.items()}})
    rows = _record(sink, cfg, results)
    report = write_limited_report(out, cfg, results, gates, det, claims, test_prevalence,
                                  time.time() - t0, rows)
    return {"results": results, "gates": gates, "claims": claims, "detector": det, "report": report,
            "table": limited_table(results, test_prevalence), "seconds": seconds}


def _record(sink, cfg, results) -> int:
    try:
        sink.ensure_experiment(EXPERIMENT, cfg.to_dict())
        n_rows = 0
        for arm, per in results.items():
            for n, runs in per.items():
                for metrics in runs:
                    for metric in ("auc", "f1", "specificity", "precision", "recall"):
                        if metric in metrics:
                            sink.record_evaluation(EXPERIMENT, f"{cfg.preset}_{arm}_n{n}_seed{cfg.seed}_unit{metrics['seed']}",
                                                   metric, metrics[metric], group=arm,
                                                   extra={"n": n, "unit": metrics["seed"],
                                                          "correlation_level": cfg.correlation_level})
                            n_rows += 1
        return n_rows
    finally:
        sink.close()


def _mean_sd(values) -> str:
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], float)
    if not len(values):
        return "-"
    sd = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.3f} ± {sd:.3f}"


def limited_table(results, test_prevalence) -> str:
    """AUC, F1 and specificity per arm and training size (mean ± SD over the seeds),
    with the always-diagnostic row."""
    lines = ["| Arm | n | AUC | F1 | Specificity | seeds |", "|---|---|---|---|---|---|"]
    for arm, per in results.items():
        for n, runs in per.items():
            if runs:
                lines.append(f"| {arm} | {n} | {_mean_sd([m['auc'] for m in runs])} | "
                             f"{_mean_sd([m['f1'] for m in runs])} | "
                             f"{_mean_sd([m['specificity'] for m in runs])} | {len(runs)} |")
    f1 = 2 * test_prevalence / (1 + test_prevalence)
    lines.append(f"| always diagnostic | - | 0.500 | {f1:.3f} | 0.000 | - |")
    return "\n".join(lines)


def write_limited_report(out, cfg, results, gates, det, claims, test_prevalence, seconds, rows) -> Path:
    """report.md of the limited-label study: claims, gates, detector, the table."""
    from lge_qa.report import detector_sentence
    from shared.io.atomic import write_text
    from shared.study import claims_markdown

    level = CORRELATION_LEVELS.get(cfg.correlation_level)
    declared = {g.name: g for g in limited_protocol(cfg).gates}
    gate_lines = ["| gate | source | value | required | passed |", "|---|---|---|---|---|"] + [
        f"| {k} | {declared[k].source} | {'not measured' if v is None else f'{v:.3f}'} | "
        f"{declared[k].comparison} {declared[k].threshold} | {'yes' if declared[k].passes(v) else 'no'} |"
        for k, v in gates.items()]
    lines = [
        "# LGE-MRI quality assessment (Sultan et al.): limited-label study",
        "",
        claims_markdown(claims) if claims is not None else
        "Gates only: no arm was trained and no claim is tested in this run.\n",
        f"Training sizes {list(cfg.training_sizes)} scans, {cfg.repetitions} paired seeds, validation "
        f"{cfg.val_scans} scans, test {cfg.test_scans} scans (diagnostic share {test_prevalence:.2f}); "
        f"correlation level {cfg.correlation_level} (latent {level}). Run time {seconds:.0f} s; {rows} rows "
        f"written to the results store (or its spool).",
        "",
        "## Gates",
        "",
        *gate_lines,
        "",
        "## Stage 1: left-atrium detector",
        "",
        detector_sentence(cfg.detection_threshold, det),
        "",
        "## Test-set AUC (primary), F1 and specificity at 0.5 (secondary)",
        "",
        limited_table(results, test_prevalence),
        "",
    ]
    return write_text(Path(out) / "report.md", "\n".join(lines))
