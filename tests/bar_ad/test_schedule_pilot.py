"""The powered study's fine-tuning selection (validation scans outside the draw, epoch of
best validation AUC) and the schedule pilot's rules, by hand."""

import numpy as np
import pytest

from bar_ad.experiment import held_out_validation
from bar_ad.schedule_pilot import choose_budget, choose_rate, levelled_off
from bar_ad.training import selected_epoch, selection_mode


def test_levelled_off_compares_the_last_five_epochs_with_the_five_before():
    falling = [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]  # last five mean 3, five before 8
    assert not levelled_off(falling, 10)
    flat = [5.0] * 5 + [4.9] * 5  # 4.9 >= 0.97 x 5 = 4.85
    assert levelled_off(flat, 10)
    assert not levelled_off([5.0] * 5 + [4.8] * 5, 10)  # 4.8 < 4.85
    assert levelled_off([1, 1, 1, 1, 1, 2, 2, 2, 2, 2], 10)  # rising counts as stopped
    assert not levelled_off([1] * 9, 9)  # too short to judge
    # Only the first `epochs` values count: the prefix of a longer run.
    curve = [10, 9, 8, 7, 6, 5, 4, 3, 2, 1] + [1.0] * 10
    assert not levelled_off(curve, 10) and levelled_off(curve, 20)


def test_budget_is_the_first_that_levelled_off_on_the_arms_mean_curve():
    steep = list(np.linspace(10, 1, 20)) + [1.0] * 10
    flat = [1.0] * 30
    # Mean curve: falls until epoch 20, flat after: 10 has not levelled off, 20 has not
    # (epochs 16-20 still falling on the mean), 30 has.
    assert choose_budget([steep, flat], budgets=(10, 20, 30)) == 30
    assert choose_budget([flat, flat], budgets=(10, 20, 30)) == 10
    never = list(np.linspace(30, 1, 30))
    assert choose_budget([never], budgets=(10, 20, 30)) == 30  # none: the largest


def test_rate_ties_go_to_the_preferred_rate_then_the_smaller():
    scores = {3e-5: 0.700, 1e-4: 0.704, 3e-4: 0.690}
    assert choose_rate(scores, preferred=3e-5, tie=0.005) == 3e-5  # within 0.005: tied
    assert choose_rate(scores, preferred=3e-5, tie=0.003) == 1e-4
    assert choose_rate({1e-4: 0.71, 3e-4: 0.712, 1e-3: 0.60}, tie=0.005) == 1e-4
    assert choose_rate({1e-4: 0.60, 3e-4: 0.712, 1e-3: 0.71}, tie=0.005) == 3e-4


def test_validation_subjects_are_stratified_outside_the_draw_and_repeatable():
    subjects = np.repeat([f"S{k:03d}" for k in range(50)], 2)  # two scans per subject
    labels = np.repeat((np.arange(50) < 20).astype(int), 2)  # 40 % AD
    pool = np.arange(20, 100)  # subjects S010-S049
    train = np.arange(20, 40)  # S010-S019
    val = held_out_validation(pool, train, subjects, labels, size=10, seed=4)
    names = set(subjects[val])
    assert len(names) == 10 and len(val) == 20  # every scan of a chosen subject
    assert not names & set(subjects[train]) and names <= set(subjects[pool])
    rest_names = np.unique(subjects[np.setdiff1d(pool, train)])
    ad_share = np.mean([labels[subjects == n][0] for n in rest_names])  # 10 of 30
    assert labels[val].mean() == pytest.approx(round(ad_share * 10) / 10)
    assert np.array_equal(val, held_out_validation(pool, train, subjects, labels, size=10,
                                                   seed=4))
    assert held_out_validation(pool, train, subjects, labels, size=0, seed=4).size == 0
    with pytest.raises(ValueError, match="30 pool subjects"):
        held_out_validation(pool, train, subjects, labels, size=31, seed=4)


def test_selected_epoch_is_the_first_best():
    assert selected_epoch([0.6, 0.7, 0.7, 0.65], selection_mode("val_auc")) == 2
    assert selected_epoch([0.9, 0.5, 0.5, 0.7], selection_mode("val_loss")) == 2
    with pytest.raises(ValueError, match="select_on"):
        selection_mode("val_accuracy")


@pytest.mark.slow
def test_finetune_keeps_the_epoch_of_best_validation_auc(tmp_path):
    """The restored model scores the best epoch's validation AUC, whatever the loss did."""
    import keras

    from bar_ad.config import get_config, get_framework
    from bar_ad.training import ModelBank, finetune
    from shared.training.seeding import set_global_seed

    set_global_seed(0)
    rng = np.random.default_rng(0)
    config = get_config("tiny", finetune_epochs=8, finetune_lr=3e-3, scratch_lr=3e-3,
                        select_on="val_auc")
    x = rng.normal(size=(16, 16, 16, 16, 1)).astype(np.float32)
    y = (np.arange(16) % 2).astype(np.float32)
    x[y == 1] += 0.02
    xv = rng.normal(size=(10, 16, 16, 16, 1)).astype(np.float32)
    yv = (np.arange(10) % 2).astype(np.float32)
    xv[yv == 1] += 0.02
    model, history = finetune(None, get_framework("scratch"), config, x, y, seed=1,
                              x_val=xv, y_val=yv, bank=ModelBank(config, seed=0))
    curve = history["val_auc"]
    chosen = history["selected_epoch"][0]
    # This case separates the rules: the lowest validation loss is at another epoch, and
    # the best AUC is not the last epoch's.
    assert int(np.argmin(history["val_loss"])) + 1 != chosen != len(curve)
    assert curve[chosen - 1] == max(curve) and chosen == int(np.argmax(curve)) + 1
    auc = keras.metrics.AUC()
    auc.update_state(yv[:, None], model.predict(xv, verbose=0))
    assert float(auc.result()) == pytest.approx(max(curve), abs=1e-6)


@pytest.mark.slow
def test_schedule_pilot_command_runs_on_a_tiny_cohort(tmp_path, capsys):
    import json

    from bar_ad.schedule_pilot import FINETUNE_LRS, PRETRAIN_BUDGETS, SCRATCH_LRS
    from shared import cli

    assert cli.main(["bar-ad", "schedule-pilot", "--preset", "tiny", "--seed", "5",
                     "--out", str(tmp_path / "pilot")]) == 0
    out = capsys.readouterr().out
    assert "chosen: pre-training" in out and "**chosen**" in out
    result = json.loads((tmp_path / "pilot" / "schedule_pilot.json").read_text())
    assert result["seed"] == 5 and result["pretrain_lr"] == 1e-4
    assert result["pretrain_epochs"] in PRETRAIN_BUDGETS
    assert all(len(c) == max(PRETRAIN_BUDGETS) for c in result["pretrain_loss"].values())
    assert result["finetune_lr"] in FINETUNE_LRS and result["scratch_lr"] in SCRATCH_LRS
    assert result["finetune_lr"] == choose_rate(
        {float(k): v for k, v in result["finetune_val_auc"].items()}, preferred=3e-5)


def test_the_powered_preset_is_the_kept_pilot_choice():
    """The schedule chosen on pilot seed 100 is the one the powered preset runs."""
    import json
    from pathlib import Path

    from bar_ad.config import get_config

    kept = json.loads((Path(__file__).resolve().parents[2] / "docs" / "pilots"
                       / "bar_ad_schedule_seed100.json").read_text())
    powered = get_config("powered")
    assert kept["seed"] == 100
    assert (powered.pretrain_epochs, powered.pretrain_lr) == (kept["pretrain_epochs"],
                                                             kept["pretrain_lr"])
    assert (powered.finetune_lr, powered.scratch_lr) == (kept["finetune_lr"], kept["scratch_lr"])
    assert powered.select_on == "val_auc" and powered.val_subjects == kept["val_scans"]
    # The kept choice follows the declared rules from the kept numbers.
    assert kept["finetune_lr"] == choose_rate(
        {float(k): v for k, v in kept["finetune_val_auc"].items()}, preferred=3e-5)
    assert kept["scratch_lr"] == choose_rate({float(k): v for k, v in
                                              kept["scratch_val_auc"].items()})
    assert kept["pretrain_epochs"] == choose_budget(list(kept["pretrain_loss"].values()))
