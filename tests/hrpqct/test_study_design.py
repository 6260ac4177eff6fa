"""The study's design pieces worked out by hand: equal budgets, H2's references, the vote, the pilot rule."""

import numpy as np
import pytest

from hrpqct import agreement, ensemble, grading, pilot
from shared.metrics import quadratic_weighted_kappa


def _kappa(a, b):
    return quadratic_weighted_kappa(np.asarray(a, int), np.asarray(b, int), num_classes=5, min_label=1)


def test_both_arms_train_the_same_epoch_budget_and_keep_the_best_validation_kappa():
    from hrpqct.config import get_config
    from hrpqct.training import scan_grades_of_slices, train_grader_on_scans

    rng = np.random.default_rng(0)
    grades = np.tile([1, 2, 3, 4, 5], 4)
    # Slices whose brightness tells the grade, plus noise: both arms can learn something.
    images = (grades[:, None, None, None] * 0.5 + rng.normal(0, 1, (20, 4, 32, 32))).astype(np.float32)
    config = get_config("tiny", epochs=4, patience=4, batch_size=8, rotation_p=0.0, noise_p=0.0,
                        baseline_filters=(4, 4, 4, 4, 4), proposed_filters=(4, 8))
    train, val = np.arange(10), np.arange(10, 20)
    budgets = {}
    for arm in ("baseline", "proposed"):
        model, hist = train_grader_on_scans(arm, images, train, val, grades, config=config, seed=1)
        # Every epoch runs for both arms (patience >= epochs): equal budgets, whatever the
        # noisier arm's validation curve does.
        budgets[arm] = (len(hist["loss"]), hist["epochs_run"], len(hist["val_kappa"]), len(hist["val_loss"]))
        # The kept epoch is the first best validation kappa, and its weights are restored.
        assert hist["best_epoch"] == int(np.argmax(hist["val_kappa"])) + 1
        probs = model.predict(images[val].reshape(-1, 32, 32, 1), verbose=0)
        assert _kappa(grades[val], scan_grades_of_slices(probs, 4)) == pytest.approx(
            hist["val_kappa"][hist["best_epoch"] - 1])
    assert budgets["baseline"] == budgets["proposed"] == (4, 4, 4, 4)


def test_leave_one_rater_out_references_by_hand():
    g = np.array([[1, 1, 2], [2, 3, 3], [4, 4, 5], [5, 5, 5], [1, np.nan, 2]], dtype=float)
    refs = agreement.leave_one_rater_out(g)
    # Rater 1 against round_half_up(mean(r2, r3)): (1.5, 3, 4.5, 5, 2) -> 2, 3, 5, 5, 2.
    # Rater 2 (graded scans 0-3) against mean(r1, r3): (1.5, 2.5, 4.5, 5) -> 2, 3, 5, 5.
    # Rater 3 against mean(r1, r2): (1, 2.5, 4, 5, 1) -> 1, 3, 4, 5, 1.
    np.testing.assert_array_equal(refs[0]["reference"], [2, 3, 5, 5, 2])
    np.testing.assert_array_equal(refs[1]["scans"], [True, True, True, True, False])
    np.testing.assert_array_equal(refs[1]["reference"], [2, 3, 5, 5])
    np.testing.assert_array_equal(refs[2]["reference"], [1, 3, 4, 5, 1])
    ops = agreement.operator_kappa(g)
    expected_ops = [_kappa([1, 2, 4, 5, 1], [2, 3, 5, 5, 2]), _kappa([1, 3, 4, 5], [2, 3, 5, 5]),
                    _kappa([2, 3, 5, 5, 2], [1, 3, 4, 5, 1])]
    np.testing.assert_allclose(ops["kappa_per_rater"], expected_ops)
    # The network is scored against the same three references (rater 2's on its four scans).
    net = np.array([1, 3, 4, 5, 2])
    loro = agreement.leave_one_rater_out_kappa(net, g)
    expected_net = [_kappa(net, [2, 3, 5, 5, 2]), _kappa(net[:4], [2, 3, 5, 5]), _kappa(net, [1, 3, 4, 5, 1])]
    np.testing.assert_allclose(loro["kappa_per_rater"], expected_net)
    assert loro["kappa_mean"] == pytest.approx(np.mean(expected_net))


def test_an_odd_vote_of_three_networks_by_hand():
    # 3 networks x 3 scans x 2 slices.
    votes = np.array([
        [[4, 4], [1, 2], [2, 3]],
        [[4, 5], [1, 2], [3, 3]],
        [[3, 4], [2, 2], [4, 3]],
    ])
    out = grading.ensemble_scan_grades(votes, threshold=0.75)
    # Scan 0: slices (4 of 4,4,3 -> 4) and (4,5,4 -> 4): grade 4, 4 of 6 votes -> 0.667, review.
    # Scan 1: (1,1,2 -> 1), (2,2,2 -> 2): mean 1.5 -> 2; 4 of 6 -> review.
    # Scan 2: (2,3,4): a three-way tie -> 2 (lowest); (3,3,3 -> 3): mean 2.5 -> 3; 4 of 6.
    np.testing.assert_array_equal(out["slice_grades"], [[4, 4], [1, 2], [2, 3]])
    np.testing.assert_array_equal(out["slice_ties"], [[False, False], [False, False], [True, False]])
    np.testing.assert_array_equal(out["grade"], [4, 2, 3])
    np.testing.assert_allclose(out["confidence"], [4 / 6, 4 / 6, 4 / 6])
    m = ensemble.vote_metrics(votes, np.array([4, 1, 3]))
    assert m["review_fraction"] == 1.0 and m["slice_tie_fraction"] == pytest.approx(1 / 6)
    assert m["accuracy"] == pytest.approx(2 / 3) and m["models"] == 3
    assert m["rescan_sensitivity"] == 1.0


def test_vote_groups_are_odd_and_paired_by_units():
    assert ensemble.vote_groups(12, 3) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    assert ensemble.vote_groups(7, 3) == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match="odd"):
        ensemble.vote_groups(12, 2)
    # Two units per arm, one network each, two scans of one slice; votes of size 1.
    votes = {"proposed": [np.array([[[1], [4]]]), np.array([[[2], [4]]])],
             "baseline": [np.array([[[1], [1]]]), np.array([[[2], [3]]])]}
    out = ensemble.vote_endpoint(votes, np.array([1, 4]), vote_size=1)
    assert out["groups"] == [[0], [1]]
    assert [g["accuracy"] for g in out["arms"]["proposed"]["groups"]] == [1.0, 0.5]
    assert out["difference"]["accuracy"] == [0.5, 0.5]
    assert out["difference"]["rescan_sensitivity"] == [1.0, 1.0]
    assert out["difference_of"] == ["proposed", "baseline"]


def test_pilot_rule_by_hand():
    assert pilot.late_fall([1.0, 0.9, 0.8, 0.7], 4) == pytest.approx(0.125)
    still = [1.0 - 0.02 * k for k in range(24)]  # falls by 0.02 per epoch throughout
    flat = [1.0] * 8 + [0.8] * 16  # settles after epoch 9
    out = pilot.epoch_budget({"baseline": still, "proposed": flat}, candidates=(16, 20, 24))
    assert out == {"epochs": 24, "settled": False, "late_fall": out["late_fall"]}
    assert out["late_fall"][16]["proposed"] == 0.0
    assert out["late_fall"][16]["baseline"] == pytest.approx((0.78 - 0.70) / 0.78)
    settles = [1.0 - 0.02 * min(k, 12) for k in range(24)]  # flat from epoch 13 on
    out = pilot.epoch_budget({"baseline": settles, "proposed": flat}, candidates=(16, 20, 24))
    assert out["epochs"] == 20 and out["settled"]  # at 16 the last quarter (13-16) still fell
    with pytest.raises(ValueError, match="epochs"):
        pilot.late_fall([1.0, 0.9], 4)


def test_the_design_rule_pays_for_epochs_with_smaller_slices():
    # 12 units: 128 px settled at 28 epochs costs 270 + 12 * 28 * 11.5 / 1.5 = 2846 s > 2700 s.
    big = {"size": 128, "epochs": 28, "settled": True, "candidates": [16, 20, 24, 28, 32], "cpu_per_unit_epoch": 11.5}
    small = {"size": 96, "epochs": 32, "settled": True, "candidates": [16, 20, 24, 28, 32, 36, 40],
             "cpu_per_unit_epoch": 6.0}
    assert pilot.study_seconds(11.5, 28, 12) == pytest.approx(270 + 12 * 28 * 11.5 / 1.5)
    out = pilot.choose_design([big, small], units=12)
    assert (out["size"], out["epochs"], out["settled"]) == (96, 32, True)
    assert pilot.choose_design([dict(big, epochs=24)], units=12)["size"] == 128
    # Nothing settles: the smallest size at the largest candidate that fits (270 + 12 * E * 4 <= 2700).
    out = pilot.choose_design([big, dict(small, epochs=40, settled=False)], units=12)
    assert (out["size"], out["epochs"], out["settled"]) == (96, 40, False)
    out = pilot.choose_design([big, dict(small, epochs=40, settled=False, cpu_per_unit_epoch=9.0)], units=12)
    # At 9 CPU-s per unit-epoch (6 s of wall time): 32 epochs take 2574 s, 36 take 2862 s.
    assert out["epochs"] == 32 and not out["settled"]
