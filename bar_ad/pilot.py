"""Choosing the anchored soft-label arm's settings on a pilot data seed, from pre-training
diagnostics only.

The anchored arm keeps the paper's idea (Eq. 4: representations as similar as the
samples are mixed) and adds an instance-discrimination term, so that collapse is no
longer near the optimum (README, "Finding"). Its kernel width and the anchor's weight
are chosen here, before any study run, by a rule fixed in advance:

* data: the powered preset's cohort generated from the pilot seed (`PILOT_SEED`, not a
  study seed), its first training draw, the held-out pool scans of that draw as probe
  (never the test set, never a fine-tuning, never an arm comparison);
* per candidate: pre-train the encoder; measure the probe's mean pairwise [cls] cosine
  (collapse) and the Spearman correlation between the probe scans' label distance and
  their embedding distance (1 - cosine): representations that follow the labels;
* rule: among candidates whose probe cosine is at most the collapse bound, the largest
  Spearman correlation; ties go to the smaller anchor weight. Eq. 4 as printed (sigma 0.8,
  no anchor) is measured beside them for reference and is not a candidate.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np

PILOT_SEED = 100
PILOT_SIGMAS = (0.1, 0.25)
PILOT_INSTANCE_WEIGHTS = (0.5, 1.0)


def label_distance_agreement(tokens, labels) -> float:
    """Spearman correlation over pairs i < j of |y_i - y_j| and 1 - cos(t_i, t_j)."""
    from scipy import stats

    t = np.asarray(tokens, np.float64)
    t = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    i, j = np.triu_indices(len(t), 1)
    label_gap = np.abs(np.asarray(labels, float)[i] - np.asarray(labels, float)[j])
    embedding_gap = 1.0 - np.sum(t[i] * t[j], axis=1)
    if np.ptp(label_gap) == 0 or np.ptp(embedding_gap) == 0:
        return 0.0
    return float(stats.spearmanr(label_gap, embedding_gap).statistic)


def choose(rows, bound):
    """The rule of this module's docstring over `rows` of candidate diagnostics."""
    eligible = [r for r in rows if r["candidate"] and r["probe_cls_cosine"] <= bound]
    if not eligible:
        return None
    return max(eligible, key=lambda r: (r["label_agreement"], -r["instance_weight"]))


def pilot_draw(config, out, *, seed):
    """The pilot's data: the cohort of `seed` (generated into `out/data` once), its first
    training draw, and the inputs centred on that draw when the preset centres them.

    Returns:
        (atlas, data, pool indices, training indices, inputs x)
    """
    from bar_ad.atlas import load_atlas
    from bar_ad.data import draw_splits, load_adni
    from bar_ad.experiment import center_volumes, generate_cohort

    data_root = Path(out) / "data"
    if not any(data_root.glob("*.csv")):
        generate_cohort(config, data_root, seed=seed)
    atlas = load_atlas(config.grid, source=config.atlas_source)
    data = load_adni(data_root, atlas, group_map=config.group_map)
    folds, pool = draw_splits(data["subjects"], data["y"], n_test_subjects=config.n_test_subjects,
                              n_draws=1, draw_subjects=config.draw_subjects, seed=seed)
    train_idx = folds[0][0]
    x = center_volumes(data["x"], train_idx) if config.center_inputs else data["x"]
    return atlas, data, pool, train_idx, x


def run_pilot(config, out_dir, *, seed=PILOT_SEED, progress=None) -> dict:
    """Pre-trains every candidate on the pilot draw and writes `pilot.json`.

    Returns:
        dict with `rows` (per setting: sigma, instance_weight, candidate, probe cosine,
        label agreement, last contrastive term and its floor) and `chosen`.
    """
    from bar_ad.config import COLLAPSE_COSINE_BOUND, get_framework
    from bar_ad.experiment import held_out_probe
    from bar_ad.training import ModelBank, pretrain_encoder
    from shared.io.atomic import write_json
    from shared.training.seeding import set_global_seed

    out = Path(out_dir)
    atlas, data, pool, train_idx, x = pilot_draw(config, out, seed=seed)
    y = data["y"]
    probe_idx = held_out_probe(pool, train_idx, seed=seed)
    settings = [(0.8, 0.0, False)] + [(s, w, True) for s, w in
                                      itertools.product(PILOT_SIGMAS, PILOT_INSTANCE_WEIGHTS)]
    rows = []
    base = get_framework("bar_recon")
    for sigma, weight, candidate in (settings if progress is None else progress(settings)):
        set_global_seed(seed)
        framework = dataclasses.replace(base, sigma=sigma, instance_weight=weight)
        bank = ModelBank(config, seed=seed)
        weights, hist = pretrain_encoder(framework, config, atlas, x[train_idx], y[train_idx],
                                         seed=seed, bank=bank, probe=x[probe_idx])
        encoder = bank.pretrainer(framework).encoder  # a fresh copy: load what was learned
        encoder.set_weights(weights)
        tokens = np.concatenate([np.asarray(encoder(x[probe_idx][k:k + 8], training=False)[0])
                                 for k in range(0, len(probe_idx), 8)])
        rows.append({"sigma": sigma, "instance_weight": weight, "candidate": candidate,
                     "probe_cls_cosine": hist["probe_cls_cosine"],
                     "label_agreement": label_distance_agreement(tokens, y[probe_idx]),
                     "contrastive_last": hist["contrastive"][-1],
                     "contrastive_floor_last": hist.get("contrastive_floor", [None])[-1],
                     "train_cls_cosine_last": hist["cls_cosine"][-1]})
    chosen = choose(rows, COLLAPSE_COSINE_BOUND)
    result = {"seed": int(seed), "bound": COLLAPSE_COSINE_BOUND, "rows": rows, "chosen": chosen,
              "probe_scans": int(len(probe_idx)), "train_scans": int(len(train_idx)),
              "rule": __doc__.split("* rule: ")[1].split("\n\"\"\"")[0].strip()}
    write_json(out / "pilot.json", result)
    return result


def pilot_markdown(result) -> str:
    lines = ["| sigma | anchor weight | candidate | probe cls cosine | label agreement (Spearman) "
             "| contrastive (last) | its floor |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        mark = " **chosen**" if result["chosen"] and r == result["chosen"] else ""
        floor = r["contrastive_floor_last"]
        lines.append(f"| {r['sigma']:g} | {r['instance_weight']:g} | "
                     f"{'yes' if r['candidate'] else 'reference (Eq. 4 as printed)'}{mark} | "
                     f"{r['probe_cls_cosine']:.3f} | {r['label_agreement']:.3f} | "
                     f"{r['contrastive_last']:.3f} | {'-' if floor is None else f'{floor:.3f}'} |")
    return "\n".join(lines) + "\n"

