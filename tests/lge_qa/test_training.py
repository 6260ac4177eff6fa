"""QA training's stopping rule and SupCon pre-training's budget and target (issue 32)."""

import numpy as np
import pytest

import keras

from lge_qa import models, training
from lge_qa.config import get_config

# A draw whose diagnostic share differs from the validation set's: the network first
# learns that prior, so the validation MSE rises after epoch 1, while its ranking of the
# validation scans (AUC) improves for several epochs. Hand-made, 12 epochs.
PRIOR_SHIFTED = {
    "val_qa_mse": [0.240, 0.262, 0.271, 0.268, 0.266, 0.263, 0.259, 0.255, 0.251, 0.249, 0.248, 0.250],
    "val_qa_auc": [0.55, 0.61, 0.68, 0.74, 0.79, 0.83, 0.85, 0.86, 0.86, 0.85, 0.85, 0.84],
}


def _replay(cfg, history):
    """Feeds a hand-made validation history to the QA training's early-stopping callback;
    returns (kept epoch, 1-based; epochs run)."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    stop = training.early_stopping(cfg)
    model.stop_training = False
    stop.set_model(model)
    stop.on_train_begin()
    epochs = len(next(iter(history.values())))
    for epoch in range(epochs):
        stop.on_epoch_end(epoch, {k: v[epoch] for k, v in history.items()})
        if model.stop_training:
            return stop.best_epoch + 1, epoch + 1
    return stop.best_epoch + 1, epochs


def test_a_prior_shifted_draw_does_not_stop_at_its_first_epoch():
    kept, ran = _replay(get_config("powered"), PRIOR_SHIFTED)
    assert kept == 8 and ran == 12  # the best validation AUC (0.86 first reached at epoch 8)
    # The former monitor (validation MSE) keeps epoch 1 and stops after its patience.
    kept_mse, ran_mse = _replay(get_config("powered", stop_monitor="mse"), PRIOR_SHIFTED)
    assert kept_mse == 1 and ran_mse == 1 + get_config("powered").patience


def test_patience_and_epochs_keep_at_least_the_papers_ratio():
    paper = get_config("paper")
    assert (paper.patience, paper.epochs) == (7, 40)
    for preset in ("powered", "paper"):
        cfg = get_config(preset)
        assert cfg.patience / cfg.epochs >= 7 / 40 and cfg.patience >= 7
        assert training.monitored_quantity(cfg) == ("val_qa_auc", "max")


def test_pretrain_budget_uses_every_slice_and_a_few_hundred_steps():
    cfg = get_config("powered")
    # 103 slices (about 24 scans): batch 64, two steps a pass, no slice dropped.
    budget = training.pretrain_budget(103, cfg)
    assert budget == {"batch": 64, "steps_per_pass": 2, "total_steps": 300}
    assert budget["batch"] * budget["steps_per_pass"] >= 103
    # Fewer slices than the batch: the batch is cut to them (even).
    assert training.pretrain_budget(41, cfg)["batch"] == 40
    # Whole passes: 300 steps of 3-step passes stay 300; of 7-step passes 301.
    assert training.pretrain_budget(7 * 64 - 10, cfg)["total_steps"] == 301
    with pytest.raises(ValueError, match="pretrain_steps"):
        training.pretrain_budget(10, get_config("powered", pretrain_steps=0, pretrain_epochs=0))


def test_pretrain_schedule_warms_up_then_decays():
    cfg = get_config("powered")
    schedule = training.pretrain_schedule(cfg, 300)
    lr = [float(schedule(step)) for step in (0, 15, 30, 165, 300)]
    assert lr[0] == pytest.approx(0.0, abs=1e-9)
    assert lr[1] == pytest.approx(cfg.lars_learning_rate / 2, rel=1e-3)
    assert lr[2] == pytest.approx(cfg.lars_learning_rate, rel=1e-6)
    assert lr[3] == pytest.approx(cfg.lars_learning_rate / 2, rel=1e-3)  # cosine half-way
    assert lr[4] == pytest.approx(0.0, abs=1e-6)


def _disagreeing_labels():
    # Four independent label columns: the 16 samples are the 16 combinations of four
    # bits, so no embedding can split all four labels at once (the "low" condition of
    # issue 32 taken to its end).
    return np.array([[(i >> k) & 1 for k in range(4)] for i in range(16)])


def test_the_stopping_target_is_reachable_on_hand_made_labels():
    labels = _disagreeing_labels()
    kw = dict(batch_size=16, temperature=0.1)
    target = training.supcon_shared_target(labels, criterion=0.25, seed=0, **kw)
    # Collapsed: every logit equal, K log(2B - 1) for K = 4 columns.
    assert target["collapsed"] == pytest.approx(4 * np.log(31))
    # An embedding that reaches it exists: the free projections' minimum lies below it.
    floor = models.supcon_sum_free_minimum(labels, temperature=0.1, seed=1)
    assert floor <= target["target"] and target["shared_minimum"] <= target["target"]
    assert target["target"] == pytest.approx(
        target["collapsed"] - 0.25 * (target["collapsed"] - target["shared_minimum"]))
    # The former target (from the sum of per-label minima) lies below anything one shared
    # embedding reaches on these labels: it could not be reached by construction.
    old = training.supcon_target_loss(labels, batch_size=16, criterion=0.25, temperature=0.1)
    assert old < floor
    with pytest.raises(ValueError, match="criterion"):
        training.supcon_shared_target(labels, criterion=0.0, seed=0, **kw)


def _pretrain(**overrides):
    """SupCon pre-training of a tiny encoder for 16 LARS steps (8 passes of 2) on 32 slices
    whose intensity carries the label (two agreeing label columns), so the loss falls
    below a target set 1 % of the way down within a few passes."""
    cfg = get_config("tiny", pretrain_steps=16, pretrain_epochs=0, pretrain_batch_size=16,
                     pretrain_criterion=0.01, **overrides)
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, size=(32, 1))
    x = (rng.normal(size=(32, cfg.image_size, cfg.image_size, 1)) + 3.0 * label[:, :, None, None])
    encoder = models.build_encoder(cfg.image_size, filters=cfg.encoder_filters, blocks=cfg.encoder_blocks)
    return training.pretrain_contrastive(encoder, cfg, x.astype("float32"), np.repeat(label, 2, axis=1), seed=0)


def test_a_fixed_budget_runs_every_step_and_records_when_the_target_was_reached():
    # The powered preset trains the paper's way, a fixed budget, and only watches the target.
    powered = get_config("powered")
    assert powered.pretrain_criterion > 0 and not powered.pretrain_stop_at_target
    fixed = _pretrain(pretrain_stop_at_target=False)
    assert fixed["steps"] == 16 and len(fixed["loss"]) == 8  # 8 passes of 2 steps
    first = int(np.argmax(np.asarray(fixed["loss"]) <= fixed["target_loss"]))
    assert fixed["reached"] and fixed["reached_step"] == 2 * (first + 1)
    # Stopping at the target ends pre-training at the first pass that reaches it.
    stopped = _pretrain(pretrain_stop_at_target=True)
    assert stopped["reached"] and stopped["steps"] == stopped["reached_step"] < 16
