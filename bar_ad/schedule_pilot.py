"""Choosing the powered study's training schedule on a pilot data seed, from validation
data only.

The paper pre-trains at 1e-4 and fine-tunes at 3e-5 (Sec. 3) for epochs it does not
state, on about 2,600 scans. The powered study pre-trains on 60 subjects, so the number
of epochs at the paper's pre-training rate, and the fine-tuning rates, are chosen here
before any study run, by rules fixed in advance:

* data: the powered preset's cohort generated from the pilot seed (`PILOT_SEED`, not a
  study seed), its first training draw, the draw's validation scans (`val_subjects` pool
  scans outside the draw, stratified; never the test set); fine-tuning keeps the epoch of
  best validation AUC, as in the study;
* pilot arms: one per pre-training objective, `PILOT_ARMS` (instance InfoNCE, Eq. 4 as
  printed, the anchored Eq. 4), each pre-trained once at the paper's rate for the
  largest budget of `PRETRAIN_BUDGETS`, its encoder kept at every budget;
* pre-training budget: the smallest of `PRETRAIN_BUDGETS` at which the pilot arms' mean
  total pre-training loss has levelled off (the mean over its last 5 epochs is at least
  `PLATEAU_RATIO` times the mean over the 5 before); the largest when none has;
* fine-tuning rate of a pre-trained encoder: among `FINETUNE_LRS`, from the chosen
  budget's encoders, the highest mean validation AUC over the pilot arms; a rate within
  `TIE_AUC` of the best counts as tied and ties go to the paper's rate, then the smaller;
* from-scratch rate: among `SCRATCH_LRS`, the highest validation AUC of the scratch
  arm, ties (within `TIE_AUC`) to the smaller.

No arm is compared with another: every choice is a setting shared by all arms.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

PILOT_SEED = 100
PILOT_ARMS = ("ssl_contrastive_recon", "bar_recon", "bar_anchored_recon")
# 20 epochs is the most that keeps the powered run within 45 minutes on an idle 2-core
# CPU (seven pre-trained arms x six draws at about 2 s an epoch).
PRETRAIN_BUDGETS = (10, 15, 20)
PLATEAU_RATIO = 0.97
FINETUNE_LRS = (3e-5, 1e-4, 3e-4)
PAPER_FINETUNE_LR = 3e-5
SCRATCH_LRS = (1e-4, 3e-4, 1e-3)
TIE_AUC = 0.005
PAPER_PRETRAIN_LR = 1e-4


def levelled_off(curve, epochs, ratio=PLATEAU_RATIO) -> bool:
    """Whether `curve[:epochs]` has stopped falling: mean of its last 5 values >= `ratio`
    x mean of the 5 before (True for a rising curve; False with fewer than 10 values)."""
    values = np.asarray(curve, float)[:epochs]
    if len(values) < 10:
        return False
    return bool(values[-5:].mean() >= ratio * values[-10:-5].mean())


def choose_budget(curves, budgets=PRETRAIN_BUDGETS, ratio=PLATEAU_RATIO) -> int:
    """The smallest budget at which the mean of `curves` (equal lengths) has levelled off,
    else the largest."""
    mean = np.mean(np.asarray(curves, float), axis=0)
    for budget in sorted(budgets):
        if levelled_off(mean, budget, ratio):
            return int(budget)
    return int(max(budgets))


def choose_rate(scores, *, preferred=None, tie=TIE_AUC) -> float:
    """The rate of `scores` ({rate: validation AUC}) with the highest AUC; rates within
    `tie` of it are tied, and ties go to `preferred` (when tied), then the smaller rate."""
    best = max(scores.values())
    tied = sorted(rate for rate, auc in scores.items() if auc >= best - tie)
    if preferred is not None and preferred in tied:
        return preferred
    return tied[0]


def encoder_snapshots(epochs):
    """A keras callback whose `weights` maps each of `epochs` (1-based) to the encoder's
    weights at the end of that epoch."""
    import keras

    class EncoderSnapshots(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.wanted = {int(e) for e in epochs}
            self.weights = {}

        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 in self.wanted:
                self.weights[epoch + 1] = self.model.encoder.get_weights()

    return EncoderSnapshots()


def run_schedule_pilot(config, out_dir, *, seed=PILOT_SEED, progress=None) -> dict:
    """Runs the pilot of this module's docstring and writes `schedule_pilot.json`.

    Args:
        config: the powered `BarConfig` (its `val_subjects` and `select_on` are used).
        out_dir: folder for the cohort and `schedule_pilot.json`.
        seed: int. The pilot data seed.
        progress: callable wrapping an iterable, optional.

    Returns:
        dict with the pre-training curves, the validation AUC per rate and the choices.
    """
    from bar_ad.config import get_framework
    from bar_ad.experiment import held_out_validation
    from bar_ad.pilot import pilot_draw
    from bar_ad.training import ModelBank, finetune, pretrain_encoder
    from shared.io.atomic import write_json
    from shared.training.seeding import set_global_seed

    if config.val_subjects <= 0:
        raise ValueError("the schedule pilot selects on validation scans: val_subjects must "
                         f"be positive. Received: val_subjects={config.val_subjects}")
    out = Path(out_dir)
    atlas, data, pool, train_idx, x = pilot_draw(config, out, seed=seed)
    val_idx = held_out_validation(pool, train_idx, data["subjects"], data["y"],
                                  size=config.val_subjects, seed=seed)
    y = data["y"]
    pre_config = dataclasses.replace(config, pretrain_lr=PAPER_PRETRAIN_LR,
                                     pretrain_epochs=max(PRETRAIN_BUDGETS))
    steps = list(PILOT_ARMS) + ["scratch"]
    steps = steps if progress is None else progress(steps)
    curves, snapshots, finetune_auc, scratch_auc = {}, {}, {}, {}

    def val_auc(encoder_weights, framework, run_config):
        set_global_seed(seed)
        bank = ModelBank(run_config, seed=seed)
        _, hist = finetune(encoder_weights, framework, run_config, x[train_idx], y[train_idx],
                           seed=seed + 1, x_val=x[val_idx], y_val=y[val_idx], bank=bank)
        return float(max(hist["val_auc"]))

    for arm in steps:
        framework = get_framework(arm)
        if not framework.pretrain:
            for lr in SCRATCH_LRS:
                scratch_auc[lr] = val_auc(None, framework,
                                          dataclasses.replace(config, scratch_lr=lr))
            continue
        set_global_seed(seed)
        keep = encoder_snapshots(PRETRAIN_BUDGETS)
        _, hist = pretrain_encoder(framework, pre_config, atlas, x[train_idx], y[train_idx],
                                   seed=seed, bank=ModelBank(pre_config, seed=seed),
                                   callbacks=[keep])
        curves[arm] = hist["loss"]
        snapshots[arm] = keep.weights
    budget = choose_budget(list(curves.values()))
    for lr in FINETUNE_LRS:
        run_config = dataclasses.replace(config, finetune_lr=lr)
        finetune_auc[lr] = float(np.mean([val_auc(snapshots[arm][budget], get_framework(arm),
                                                  run_config) for arm in PILOT_ARMS]))
    result = {
        "seed": int(seed), "arms": list(PILOT_ARMS), "train_scans": int(len(train_idx)),
        "val_scans": int(len(val_idx)), "pretrain_lr": PAPER_PRETRAIN_LR,
        "pretrain_loss": curves,
        "levelled_off": {int(b): levelled_off(np.mean(list(curves.values()), axis=0), b)
                         for b in PRETRAIN_BUDGETS},
        "pretrain_epochs": budget,
        "steps_per_epoch": int(len(train_idx) // config.pretrain_batch),
        "finetune_val_auc": {f"{lr:g}": auc for lr, auc in finetune_auc.items()},
        "finetune_lr": choose_rate(finetune_auc, preferred=PAPER_FINETUNE_LR),
        "scratch_val_auc": {f"{lr:g}": auc for lr, auc in scratch_auc.items()},
        "scratch_lr": choose_rate(scratch_auc),
        "rule": __doc__.split("by rules fixed in advance:")[1].split("No arm is compared")[0]
        .strip(),
    }
    write_json(out / "schedule_pilot.json", result)
    return result


def schedule_pilot_markdown(result) -> str:
    """The pilot's tables: pre-training loss at each budget, validation AUC per rate."""
    lines = ["| pre-training epochs (lr 1e-4) | mean total loss, last 5 epochs | levelled off |",
             "|---|---|---|"]
    mean = np.mean(list(result["pretrain_loss"].values()), axis=0)
    for budget in PRETRAIN_BUDGETS:
        mark = " **chosen**" if budget == result["pretrain_epochs"] else ""
        lines.append(f"| {budget}{mark} | {mean[budget - 5:budget].mean():.3f} | "
                     f"{'yes' if result['levelled_off'][budget] else 'no'} |")
    lines += ["", "| rate | fine-tuning a pre-trained encoder: mean validation AUC | "
              "from scratch: validation AUC |", "|---|---|---|"]
    for lr in sorted(set(FINETUNE_LRS) | set(SCRATCH_LRS)):
        key = f"{lr:g}"
        ft = result["finetune_val_auc"].get(key)
        sc = result["scratch_val_auc"].get(key)
        ft_text = "-" if ft is None else f"{ft:.3f}" + (" **chosen**" if lr == result["finetune_lr"] else "")
        sc_text = "-" if sc is None else f"{sc:.3f}" + (" **chosen**" if lr == result["scratch_lr"] else "")
        lines.append(f"| {key} | {ft_text} | {sc_text} |")
    return "\n".join(lines) + "\n"
