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
report, rows in the results store or its spool), the per-epoch TensorBoard scalars of
every network of the study (`tensorboard/<arm>_unit<r>_n<n>/`, the LA detector's under
`la_detector/`) and, as bundles (`lge_qa.predict`), the LA detector and each arm's network
of the first unit at the largest training size.
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
GATE_DRAW_OFFSET = 555_000  # seed of the gate baselines' stratified draws (seed + offset)
# The training pool holds at least this many times the largest training size, so every
# unit draws its own scans at every size (issue 32: at 1x every unit shared one set).
POOL_FACTOR = 4
# Smallest effects of interest in AUC, never above the paper's own gap (Table 2, F1),
# translated to AUC by `f1_gap_to_auc`: contrastive vs baseline F1 0.76 vs 0.71 -> AUC
# 0.841 vs 0.783 (0.058); multi-task vs baseline F1 0.73 vs 0.71 -> 0.807 vs 0.783 (0.024).
AUC_SESOI = 0.05
MULTITASK_SESOI = 0.02
# SD of the paired AUC differences assumed to size the seeds (no pilot of the arms was
# run to choose it): units_for_mde(0.05, 0.04, alternative="greater") = 6.
POWERED_SD_DIFF = 0.04
# Sides of the test the seeds are sized for and of the primary hypotheses' tests
# (`limited_protocol`): one-sided, so the test run is the test sized.
PRIMARY_SIDES = 1
GATE_THRESHOLDS = {"oracle_auc": 0.85, "baseline_auc": 0.75, "prevalence_low": 0.4,
                   "prevalence_high": 0.6, "shortcut_auc": 0.85}
# Observer-score correlations the declared level must show: mean pairwise Pearson
# correlation of the three auxiliary scores, and the lowest / highest correlation of an
# auxiliary score with the target score (the auxiliaries correlate with fibrosis quality
# without determining it: 0.35-0.65 for "high", about the 0.4-0.6).
CORRELATION_GATES = {
    "high": {"auxiliary_correlation": (">=", 0.5), "target_correlation_min": (">=", 0.35),
             "target_correlation_max": ("<=", 0.65)},
    "low": {"auxiliary_correlation": ("<=", 0.25), "target_correlation_min": (">=", -0.1),
            "target_correlation_max": ("<=", 0.3)},
}
DATA_GATES = ("prevalence_low", "prevalence_high", "auxiliary_correlation", "target_correlation_min",
              "target_correlation_max", "shortcut_auc")
# Required room above max(baseline, shortcut), in SESOIs (`Headroom.multiple`).
HEADROOM_MULTIPLE = 2.0
# Degenerate-run rule (`ArmCheck` "learned_val_auc"): a run whose validation scan AUC at
# its kept epoch is below 0.5 + this margin did not learn; an arm failing it on more
# than DEGENERATE_SHARE of the units leaves its claims untestable.
LEARNED_MARGIN = 0.05
DEGENERATE_SHARE = 0.2
# Units whose SupCon pre-training may miss its target before the contrastive claims
# become untestable (`ArmCheck` "pretrain_target_reached").
UNREACHED_SHARE = 0.34


def f1_gap_to_auc(f1_a, f1_b) -> float:
    """AUC difference matching two F1 values under the equal-variance binormal model at
    prevalence 0.5 with the threshold midway between the classes.

    There sensitivity = specificity = precision = Phi(d / 2), so F1 = Phi(d / 2) and
    AUC = Phi(d / sqrt 2): AUC = Phi(sqrt 2 * Phi^-1(F1)). The paper reports F1 only;
    this is the translation behind the AUC SESOIs (an approximation: Table 2's models
    run at recall about 0.9, not at the symmetric point)."""
    from scipy.stats import norm

    auc = lambda f1: float(norm.cdf(np.sqrt(2.0) * norm.ppf(f1)))  # noqa: E731
    return auc(f1_a) - auc(f1_b)


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


def _gate_baseline_name(n) -> str:
    return f"baseline_auc_n{int(n)}"


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
    from shared.study.protocol import ArmCheck, Headroom

    sizes = tuple(int(n) for n in cfg.training_sizes)
    if len(sizes) < 2:
        raise ValueError(f"the limited-label study needs at least two training sizes. "
                         f"Received: training_sizes={list(sizes)}")
    small, large = min(sizes), max(sizes)
    hypotheses = [
        Hypothesis(id="H1", statement=f"SupCon pre-training + frozen encoder has a higher test AUC "
                                      f"than the baseline at the smallest labelled set (n = {small}) "
                                      f"(Table 2: F1 0.76 vs 0.71, about AUC 0.058)",
                   endpoint=size_endpoint(small), arms=("contrastive", "baseline"), direction="greater",
                   sesoi=AUC_SESOI, test="paired_t", paper_value="F1 0.76 vs 0.71", sides=PRIMARY_SIDES),
        Hypothesis(id="H2", statement="Multi-Task QA has a higher test AUC than the baseline, mean over "
                                      "the training sizes (Table 2: F1 0.73 vs 0.71, about AUC 0.024)",
                   endpoint="auc_mean", arms=("multitask", "baseline"), direction="greater",
                   sesoi=MULTITASK_SESOI, test="paired_t", paper_value="F1 0.73 vs 0.71",
                   sides=PRIMARY_SIDES),
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
    level = CORRELATION_GATES[cfg.correlation_level]
    gates = (
        Gate(name="prevalence_low", source="data", comparison=">=", threshold=GATE_THRESHOLDS["prevalence_low"],
             description=f"diagnostic share of the fibrosis-quality label over the cohort (declared "
                         f"{cfg.target_prevalence})"),
        Gate(name="prevalence_high", source="data", comparison="<=",
             threshold=GATE_THRESHOLDS["prevalence_high"],
             description="the same share, upper bound: near 0.5 as Table 2 implies (0.51)"),
        Gate(name="auxiliary_correlation", source="data", comparison=level["auxiliary_correlation"][0],
             threshold=level["auxiliary_correlation"][1],
             description=f"mean pairwise Pearson correlation of the three auxiliary observer scores "
                         f"(nulling, sharpness, enhancement) for the declared level "
                         f"{cfg.correlation_level!r} (latent {cfg.quality_correlation})"),
        Gate(name="target_correlation_min", source="data", comparison=level["target_correlation_min"][0],
             threshold=level["target_correlation_min"][1],
             description=f"lowest Pearson correlation of an auxiliary score with the fibrosis-quality "
                         f"score (latent {cfg.target_correlation})"),
        Gate(name="target_correlation_max", source="data", comparison=level["target_correlation_max"][0],
             threshold=level["target_correlation_max"][1],
             description="highest such correlation: the auxiliaries correlate with the target without "
                         "determining it"),
        Gate(name="shortcut_auc", source="data", comparison="<=", threshold=GATE_THRESHOLDS["shortcut_auc"],
             description=f"AUC of the target predicted from the three other observer scores alone "
                         f"(logistic regression fitted on the {cfg.gate_train_scans} gate-training scans, "
                         f"scored on the {cfg.gate_test_scans} gate-test scans): what a model gets "
                         f"without reading fibrosis from the image"),
        Gate(name="oracle_auc", source="oracle", comparison=">=", threshold=GATE_THRESHOLDS["oracle_auc"],
             description="AUC of the oracle fibrosis contrast (image over the label map, "
                         "`phantom.oracle_fibrosis_contrast`) for the fibrosis-quality label on the "
                         "gate cohort: the labels follow what the images show"),
        Gate(name="baseline_auc", source="baseline", comparison=">=", threshold=GATE_THRESHOLDS["baseline_auc"],
             description=f"test AUC of the baseline trained on the {cfg.gate_train_scans} gate-training "
                         f"scans, on the {cfg.gate_test_scans} gate-test scans: the signal is learnable "
                         f"with many labels"),
    )
    validity = (
        ArmCheck(name="learned_val_auc", kind="learned", comparison=">=", threshold=LEARNED_MARGIN,
                 max_failed_share=DEGENERATE_SHARE,
                 description=f"degenerate-run rule: the validation scan AUC of the kept epoch, lowest "
                             f"over the training sizes of the unit, minus the trivial 0.5 must be at "
                             f"least {LEARNED_MARGIN}; an arm failing on more than {DEGENERATE_SHARE} of "
                             f"the units answers nothing"),
    ) + ((ArmCheck(name="pretrain_target_reached", kind="stop_reachable", comparison="<=", threshold=0.0,
                   arms=("contrastive",), max_failed_share=UNREACHED_SHARE,
                   description="SupCon pre-training reached its target loss (measured from the "
                               "shared-embedding minimum, `training.supcon_shared_target`) within "
                               "its step budget at every training size of the unit: the worst "
                               "size's lowest epoch loss minus its target is at most 0"),)
         if "contrastive" in arms else ())
    deviations = [
        "a limited-label design the paper does not run: labelled training sizes "
        f"{list(sizes)} drawn stratified by the target label from a pool of at least "
        f"{POOL_FACTOR} x {large} scans, one fixed validation set and one fixed "
        f"{cfg.test_scans}-scan test set",
        "primary endpoint scan-level ROC AUC (the paper reports F1 / specificity at 0.5); "
        "SESOIs translated from Table 2's F1 gaps (`limited.f1_gap_to_auc`) and never above them",
        f"phantom: prevalence {cfg.target_prevalence}, latent auxiliary correlation "
        f"{cfg.quality_correlation}, auxiliary-target correlation {cfg.target_correlation} "
        f"({cfg.correlation_level}), fibrosis patch half-angle {cfg.fibrosis_extent} degrees",
        f"baseline encoder {cfg.baseline_encoder}, QA module input {cfg.qa_input}",
        f"early stopping on the validation {cfg.stop_monitor} of the QA output (patience "
        f"{cfg.patience} of {cfg.epochs} epochs)",
        f"SupCon pre-training: LARS, {cfg.pretrain_steps} steps "
        f"{'at most ' if cfg.pretrain_stop_at_target else ''}with a {cfg.pretrain_warmup} warm-up "
        f"then cosine decay (the paper: 100 epochs of batch 512), "
        f"{'stopping once' if cfg.pretrain_stop_at_target else 'recording whether'} the loss covers "
        f"{cfg.pretrain_criterion} of the gap from the collapsed value to the shared-embedding "
        f"minimum",
    ]
    if cfg.encoder_weights is None:
        deviations.append("the encoder starts from random weights (the paper: ImageNet ResNet34)")
    return Protocol(
        paper="lge_qa", preset=cfg.preset, arms=tuple(arms),
        pairing_unit="seed r: the labelled training scans (the first n of a stratified permutation of "
                     "the training pool seeded seed + r, nested across n), the training seed seed + r "
                     "(initial weights, batch order, augmentation) for every arm; one LA detector, one "
                     "validation set and one test set for all",
        units=tuple(range(int(cfg.repetitions))),
        test_set={"source": "split once from the scored cohort by a stratified permutation of its own "
                            "seed; never used to choose anything (early stopping reads the validation set)",
                  "split_seed": int(cfg.seed) + SPLIT_SEED_OFFSET, "scans": int(cfg.test_scans),
                  "validation_scans": int(cfg.val_scans),
                  "cohort": "phantom generated from the run's seed unless the run reads --data"},
        hypotheses=hypotheses, gates=gates, training_sizes=sizes, deviations=tuple(deviations),
        design=cfg.correlation_level, validity=validity,
        headroom=tuple(Headroom(
            hypothesis=h.id, multiple=HEADROOM_MULTIPLE, ceiling_source="oracle",
            description=f"ceiling: the oracle fibrosis contrast's AUC on the gate cohort; baseline: the "
                        f"baseline trained on a stratified draw of "
                        f"{'n = ' + str(small) if h.id == 'H1' else 'each training size (mean)'} "
                        f"gate-training scans, AUC on the gate-test scans; shortcut: the other three "
                        f"scores (gate shortcut_auc). The claimed gain needs {HEADROOM_MULTIPLE} SESOIs "
                        f"of room above both")
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


def stratified_order(items, labels, seed) -> np.ndarray:
    """A random order of `items` in which every prefix holds each class of `labels` in
    its overall share (to within one scan).

    Each class is permuted on its own; the i-th of m scans of a class gets the key
    (i + u) / m, u uniform in [0, 1), and the scans are sorted by key, so the classes
    interleave in proportion.

    Args:
        items: int array [N] (scan indices).
        labels: int array [N], the class of each item.
        seed: int.
    """
    items, labels = np.asarray(items), np.asarray(labels)
    rng = np.random.default_rng(int(seed))
    keys = np.empty(len(items))
    for c in np.unique(labels):
        where = np.flatnonzero(labels == c)
        keys[rng.permutation(where)] = (np.arange(len(where)) + rng.uniform(size=len(where))) / len(where)
    return items[np.argsort(keys, kind="stable")]


def fixed_split(n_scans, cfg: LgeQaConfig, labels=None) -> dict:
    """The one split of the study: "test", "val", "gate_train", "gate_test", "pool".

    Drawn from `cfg.seed + SPLIT_SEED_OFFSET` alone, so no unit and no arm changes it;
    stratified by `labels` (the target's binary label per scan) when given, so every part
    holds the cohort's diagnostic share. The pool holds at least `POOL_FACTOR` times the
    largest training size.

    Raises:
        ValueError: the cohort is too small for the design.
    """
    sizes = (cfg.test_scans, cfg.val_scans, cfg.gate_train_scans, cfg.gate_test_scans)
    pool = POOL_FACTOR * max(cfg.training_sizes)
    needed = sum(sizes) + pool
    if n_scans < needed:
        raise ValueError(f"the limited-label study needs {needed} scored scans (test {cfg.test_scans}, "
                         f"validation {cfg.val_scans}, gate {cfg.gate_train_scans} + {cfg.gate_test_scans}, "
                         f"training pool {POOL_FACTOR} x {max(cfg.training_sizes)}). Received: {n_scans}")
    seed = int(cfg.seed) + SPLIT_SEED_OFFSET
    if labels is None:
        order = np.random.default_rng(seed).permutation(n_scans)
    else:
        order = stratified_order(np.arange(n_scans), np.asarray(labels)[:n_scans], seed)
    out, start = {}, 0
    for name, size in zip(("test", "val", "gate_train", "gate_test"), sizes):
        out[name] = np.sort(order[start:start + size])
        start += size
    out["pool"] = order[start:]  # kept in permuted order
    return out


def training_scans(pool, n, seed, labels=None) -> np.ndarray:
    """The first `n` scans of a permutation of `pool` seeded `seed` (nested in n).

    With `labels` (binary target per scan of the cohort, indexed by scan) the
    permutation is stratified (`stratified_order`): every n holds the pool's diagnostic
    share to within one scan, so no draw learns a shifted prior."""
    pool = np.sort(np.asarray(pool))
    if labels is None:
        order = np.random.default_rng(int(seed)).permutation(pool)
    else:
        order = stratified_order(pool, np.asarray(labels)[pool], seed)
    return np.sort(order[:int(n)])


def data_gate_values(scores, threshold) -> dict:
    """Prevalence of "diagnostic" (fibrosis quality, last column) and the observer-score
    correlations, from the scores alone: the mean pairwise correlation of the three
    auxiliary columns and the lowest / highest correlation of an auxiliary with the target."""
    scores = np.asarray(scores, dtype=float)
    prevalence = float(np.mean(scores[:, 3] >= threshold))
    corr = np.corrcoef(scores.T)
    auxiliary = float(np.nanmean(corr[:3, :3][np.triu_indices(3, 1)]))
    target = corr[:3, 3]
    return {"prevalence_low": prevalence, "prevalence_high": prevalence, "auxiliary_correlation": auxiliary,
            "target_correlation_min": float(np.nanmin(target)),
            "target_correlation_max": float(np.nanmax(target))}


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


def train_and_test(arm, cfg, data, train, val, test, *, seed, verbose=0, distribute=None, jit_compile=False,
                   callbacks_for=None):
    """Trains one arm on the `train` scans, early-stops on `val`, scores it on `test`.

    `callbacks_for`: optional, as in `training.train_strategy` (a run's TensorBoard callbacks).

    Returns:
        (metrics dict with auc, f1, specificity, precision, recall, epochs, best_epoch,
        val_auc (validation scan AUC of the kept epoch), val_curve (the monitored
        validation quantity per epoch), seconds and, for SupCon, the pre-training losses,
        steps, target and whether it was reached; the trained model).
    """
    from lge_qa.training import evaluate_scans, monitored_quantity, scan_auc, train_strategy

    ci = data["case_index"]
    split_slices = {"train": _slices(ci, train), "val": _slices(ci, val), "test": _slices(ci, test)}
    start = time.time()
    model, history = train_strategy(arm, cfg, data, split_slices, seed=seed, verbose=verbose,
                                    distribute=distribute, jit_compile=jit_compile, callbacks_for=callbacks_for)
    idx = split_slices["test"]
    metrics, _, _ = evaluate_scans(model, data["images"][idx], ci[idx], _scan_labels(data["labels"], test))
    vidx = split_slices["val"]
    _, val_prob, _ = evaluate_scans(model, data["images"][vidx], ci[vidx], _scan_labels(data["labels"], val))
    metrics["val_auc"] = scan_auc(val_prob, ci[vidx], _scan_labels(data["labels"], val))
    qa = history["qa"]
    monitor, _ = monitored_quantity(cfg)
    metrics["epochs"] = len(qa.get("loss", []))
    metrics["best_epoch"] = int(qa["best_epoch"])
    metrics["val_curve"] = {"monitor": monitor, "values": [float(v) for v in qa.get(monitor, [])]}
    metrics["seconds"] = time.time() - start
    if "pretrain" in history:
        pre = history["pretrain"]
        metrics["pretrain_loss"] = [float(v) for v in pre.get("loss", [])]
        metrics["pretrain_steps"] = int(pre.get("steps", 0))
        if "target_loss" in pre:
            for key in ("target_loss", "shared_minimum", "collapsed"):
                metrics[f"pretrain_{key}"] = float(pre[key])
            metrics["pretrain_reached"] = bool(pre["reached"])
            metrics["pretrain_reached_step"] = pre.get("reached_step")
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
    from lge_qa.experiment import data_block, is_phantom, load_dataset, resolve_dataset, stage_one
    from lge_qa.predict import write_strategy_bundle
    from shared.training.tensorboard import tensorboard_callback
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
    fixed_split(len(qa["case_ids"]), cfg)  # a cohort too small is refused before anything is written
    sink = ResultsSink.open(store_url, out)
    run_folder_started(out)  # every check passed: the folder is this run's now
    labels = io.binarise_scores(qa["scores"], cfg.score_threshold)
    split = fixed_split(len(qa["case_ids"]), cfg, labels[:, 3])

    gates = data_gate_values(qa["scores"], cfg.score_threshold)
    shortcut = shortcut_auc(qa["scores"], labels[:, 3], split["gate_train"], split["gate_test"])
    gates["shortcut_auc"] = None if np.isnan(shortcut) else shortcut
    gate_scans = np.r_[split["gate_train"], split["gate_test"]]
    try:
        contrast = phantom.read_oracle_contrast(root)
        gates["oracle_auc"] = oracle_auc([contrast.get(qa["case_ids"][i], np.nan) for i in gate_scans],
                                         labels[gate_scans, 3])
    except FileNotFoundError as err:  # real data: no oracle, the gate is not measured
        log.warning("%s; the oracle gate is not measured", err)
        gates["oracle_auc"] = None
    for name in DATA_GATES + ("oracle_auc",):
        study.record_gate(name, gates[name])

    t_gates = time.time()
    set_global_seed(cfg.seed)
    data, det = stage_one(cfg, seg, qa, labels, verbose=verbose, distribute=distribute, jit_compile=jit_compile,
                          run_dir=out, simulated=is_phantom(data_root))
    gate_metrics, _ = train_and_test("baseline", cfg, data, split["gate_train"], split["val"], split["gate_test"],
                                     seed=cfg.seed, verbose=verbose, distribute=distribute,
                                     jit_compile=jit_compile)
    gates["baseline_auc"] = gate_metrics["auc"]
    study.record_gate("baseline_auc", gate_metrics["auc"])
    log.info("gate baseline %d scans: auc %.3f, best epoch %d of %d, %.0f s", len(split["gate_train"]),
             gate_metrics["auc"], gate_metrics["best_epoch"], gate_metrics["epochs"], gate_metrics["seconds"])
    gate_sizes = gate_size_baselines(cfg, data, split, labels, sizes, verbose=verbose, distribute=distribute,
                                     jit_compile=jit_compile) if study.protocol.headroom else {}
    headroom = record_headroom(study, gates, gate_sizes, sizes)
    log.info("gates: %s; gate baselines per size: %s", gates, gate_sizes)
    seconds = {"data": t_gates - t0, "gates": time.time() - t_gates}

    results = {arm: {n: [] for n in sizes} for arm in arms}
    t_arms = time.time()
    if gates_only:
        log.info("gates only: the arms are not trained")
    elif study.gates_passed():
        steps = [(r, n, arm) for r in study.protocol.units for n in sizes for arm in arms]
        for r, n, arm in wrap(steps, "lge-qa powered"):
            train = training_scans(split["pool"], n, cfg.seed + r, labels[:, 3])
            name = f"{arm}_unit{r}_n{n}"
            metrics, model = train_and_test(
                arm, cfg, data, train, split["val"], split["test"], seed=cfg.seed + r, verbose=verbose,
                distribute=distribute, jit_compile=jit_compile, callbacks_for=lambda stage, name=name: [
                    tensorboard_callback(out, name if stage == "qa" else f"{name}_{stage}")])
            if r == study.protocol.units[0] and n == sizes[-1]:
                write_strategy_bundle(out, arm, model, cfg, seed=cfg.seed + r, unit=f"unit {r}, {n} training scans",
                                      simulated=is_phantom(data_root), selected_by=(
                                          "the first unit's network at the largest training size (epoch chosen "
                                          "by early stopping on validation scans)"))
            metrics.update(seed=r, n=n, arm=arm)
            results[arm][n].append(metrics)
            append_jsonl(out / ARMS_LOG, metrics)  # kept when a long run is stopped early
            log.info("seed %d n=%d %s: auc %.3f f1 %.3f, best epoch %d of %d", r, n, arm, metrics["auc"],
                     metrics["f1"], metrics["best_epoch"], metrics["epochs"])
            if n == sizes[-1]:
                per_size = {m: results[arm][m][-1]["auc"] for m in sizes}
                study.record(arm, r, study_endpoints(per_size, sizes))
                record_unit_validity(study, arm, r, [results[arm][m][-1] for m in sizes])
    else:
        log.warning("gates failed (%s): the arms are not trained", ", ".join(study.failed_gates()))

    test_prevalence = float(np.mean(labels[split["test"], 3] == 1))
    trivial_auc = {"name": "all diagnostic", "value": 0.5}
    trivial = {size_endpoint(n): trivial_auc for n in sizes}
    trivial.update(auc_mean=trivial_auc, **{drop_endpoint(sizes): {"name": "all diagnostic", "value": 0.0}})
    seconds["arms"] = time.time() - t_arms
    claims = None if gates_only else study.finish(seed=cfg.seed, trivial=trivial)
    if claims is not None:
        from shared.study.claims import write_claims

        claims["unit_runs"] = unit_run_rows(results)
        write_claims(out, claims)
    write_json(out / "metrics.json", {"detector": det, "gates": gates, "gate_baseline": gate_metrics,
                                      "gate_size_baselines": gate_sizes, "headroom": headroom,
                                      "test_prevalence": test_prevalence, "seconds": seconds,
                                      "results": {a: {str(n): v for n, v in per.items()}
                                                  for a, per in results.items()}})
    rows = _record(sink, cfg, results)
    report = write_limited_report(out, cfg, results, gates, det, claims, test_prevalence,
                                  time.time() - t0, rows, headroom=headroom, gate_sizes=gate_sizes)
    return {"results": results, "gates": gates, "claims": claims, "detector": det, "report": report,
            "table": limited_table(results, test_prevalence, shortcut=gates["shortcut_auc"]),
            "seconds": seconds, "headroom": headroom, "gate_sizes": gate_sizes,
            "gate_passed": {g.name: g.passes(gates.get(g.name)) for g in study.protocol.gates}}


def gate_size_baselines(cfg, data, split, labels, sizes, **train_kw) -> dict:
    """{n: test AUC} of the baseline trained on a stratified draw of n gate-training scans
    (seed `cfg.seed + GATE_DRAW_OFFSET`, nested), scored on the gate-test scans: the
    baseline of the headroom checks, at the sizes the claims are about, from scans no arm
    trains or is tested on."""
    out = {}
    for n in sizes:
        train = training_scans(split["gate_train"], n, int(cfg.seed) + GATE_DRAW_OFFSET, labels[:, 3])
        metrics, _ = train_and_test("baseline", cfg, data, train, split["val"], split["gate_test"],
                                    seed=int(cfg.seed) + GATE_DRAW_OFFSET, **train_kw)
        out[int(n)] = float(metrics["auc"])
        log.info("gate baseline n=%d: auc %.3f, val auc %.3f, best epoch %d of %d, %.0f s", n, metrics["auc"],
                 metrics["val_auc"], metrics["best_epoch"], metrics["epochs"], metrics["seconds"])
    return out


def headroom_baseline(hypothesis_id, gate_sizes, sizes):
    """The gate baseline a headroom check compares with: the smallest size for H1, the
    mean over the sizes for H2 (its endpoint is the mean AUC over n)."""
    if not gate_sizes:
        return None
    if hypothesis_id == "H1":
        return gate_sizes[min(sizes)]
    return float(np.mean([gate_sizes[n] for n in sizes]))


def record_headroom(study, gates, gate_sizes, sizes) -> list:
    """Records every declared headroom check; returns their rows (ceiling, baseline,
    shortcut, room, required, passed)."""
    from shared.study.verdicts import headroom_row

    rows = []
    for room in study.protocol.headroom:
        values = {"ceiling": gates["oracle_auc"], "baseline": headroom_baseline(room.hypothesis, gate_sizes, sizes),
                  "shortcut": gates["shortcut_auc"]}
        study.record_headroom(room.hypothesis, **values)
        rows.append({**headroom_row(study.protocol, room, study.headroom_values[room.hypothesis]),
                     "hypothesis": room.hypothesis})
    return rows


def unit_run_rows(results) -> list:
    """One row per arm, unit and training size for `claims.json` ("unit_runs"): the kept
    and the last epoch, the validation scan AUC and whether the run is degenerate by the
    declared rule, and for SupCon the LARS steps, the target and whether it was reached."""
    rows = []
    for arm, per in results.items():
        for n, runs in per.items():
            for m in runs:
                row = {"arm": arm, "unit": int(m["seed"]), "n": int(n), "best_epoch": int(m["best_epoch"]),
                       "epochs": int(m["epochs"]),
                       "val_auc": None if not np.isfinite(m.get("val_auc", np.nan)) else float(m["val_auc"]),
                       "degenerate": not (np.isfinite(m.get("val_auc", np.nan))
                                          and m["val_auc"] - 0.5 >= LEARNED_MARGIN)}
                if "pretrain_steps" in m:
                    row.update(pretrain_steps=int(m["pretrain_steps"]),
                               pretrain_target=m.get("pretrain_target_loss"),
                               pretrain_best_loss=min(m["pretrain_loss"]) if m.get("pretrain_loss") else None,
                               pretrain_reached=m.get("pretrain_reached"),
                               pretrain_reached_step=m.get("pretrain_reached_step"))
                rows.append(row)
    return rows


def record_unit_validity(study, arm, unit, runs) -> None:
    """The declared arm checks of one unit from its runs at every training size: the
    lowest validation AUC (degenerate-run rule) and, for SupCon, the worst margin to the
    pre-training target."""
    declared = {c.name for c in study.protocol.validity}
    if "learned_val_auc" in declared:
        values = [m.get("val_auc", np.nan) for m in runs]
        study.record_validity(arm, unit, "learned_val_auc",
                              float(np.min(values)) if np.all(np.isfinite(values)) else None, reference=0.5)
    if "pretrain_target_reached" in declared and arm == "contrastive":
        gaps = [min(m["pretrain_loss"]) - m["pretrain_target_loss"] for m in runs
                if m.get("pretrain_loss") and "pretrain_target_loss" in m]
        study.record_validity(arm, unit, "pretrain_target_reached",
                              float(max(gaps)) if len(gaps) == len(runs) else None)


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


def limited_table(results, test_prevalence, shortcut=None) -> str:
    """AUC, F1 and specificity per arm and training size (mean ± SD over the seeds) and
    the kept epoch, with the always-diagnostic row and the shortcut (the other three
    scores' AUC on the gate cohort) beside it."""
    lines = ["| Arm | n | AUC | F1 | Specificity | best epoch (min-max) | seeds |",
             "|---|---|---|---|---|---|---|"]
    for arm, per in results.items():
        for n, runs in per.items():
            if runs:
                best = [m.get("best_epoch", 0) for m in runs]
                lines.append(f"| {arm} | {n} | {_mean_sd([m['auc'] for m in runs])} | "
                             f"{_mean_sd([m['f1'] for m in runs])} | "
                             f"{_mean_sd([m['specificity'] for m in runs])} | {min(best)}-{max(best)} | "
                             f"{len(runs)} |")
    f1 = 2 * test_prevalence / (1 + test_prevalence)
    lines.append(f"| always diagnostic | - | 0.500 | {f1:.3f} | 0.000 | - | - |")
    short = "not measured" if shortcut is None else f"{shortcut:.3f}"
    lines.append(f"| shortcut: the other three scores (gate cohort) | - | {short} | - | - | - | - |")
    return "\n".join(lines)


def headroom_lines(headroom, gate_sizes) -> list:
    """Markdown lines of the headroom checks and the gate baselines per size."""
    if not headroom:
        return ["No headroom check (no oracle ceiling on this data).", ""]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["| claim | ceiling (oracle) | baseline (gate cohort) | shortcut | room | required | passed |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {h['hypothesis']} | {fmt(h['ceiling'])} | {fmt(h['baseline'])} | {fmt(h['shortcut'])} | "
              f"{fmt(h['room'])} | {fmt(h['required'])} | {'yes' if h['passed'] else 'no'} |" for h in headroom]
    sizes = ", ".join(f"n = {n}: {v:.3f}" for n, v in gate_sizes.items())
    return lines + ["", f"Baseline on stratified draws of gate-training scans, AUC on the gate-test scans: {sizes}.", ""]


def write_limited_report(out, cfg, results, gates, det, claims, test_prevalence, seconds, rows, *,
                         headroom=(), gate_sizes=None) -> Path:
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
        "## Headroom (ceiling - max(baseline, shortcut) against the declared multiple of the SESOI)",
        "",
        *headroom_lines(headroom, gate_sizes or {}),
        "## Stage 1: left-atrium detector",
        "",
        detector_sentence(cfg.detection_threshold, det),
        "",
        "## Test-set AUC (primary), F1 and specificity at 0.5 (secondary)",
        "",
        limited_table(results, test_prevalence, shortcut=gates.get("shortcut_auc")),
        "",
    ]
    return write_text(Path(out) / "report.md", "\n".join(lines))
