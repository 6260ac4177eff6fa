"""The powered study's design: fixed test set and training draws, difficulty baselines,
the shuffled-label control, its protocol."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bar_ad.baselines import best_single_feature_auc, linear_baseline_accuracy, region_means
from bar_ad.config import POWERED_ARMS, get_config, study_protocol, study_units
from bar_ad.data import draw_splits

pytestmark = pytest.mark.no_keras


def _cohort(n_sub=60, ad_share=0.4, scans=2):
    subjects = np.repeat([f"S{k:03d}" for k in range(n_sub)], scans)
    labels = np.repeat((np.arange(n_sub) < int(ad_share * n_sub)).astype(int), scans)
    return subjects, labels


def test_draw_splits_hold_one_test_set_and_independent_draws():
    subjects, labels = _cohort()
    splits, pool = draw_splits(subjects, labels, n_test_subjects=20, n_draws=4,
                               draw_subjects=10, seed=3)
    test = splits[0][1]
    assert all(np.array_equal(te, test) for _, te in splits)
    assert len(np.unique(subjects[test])) == 20 and labels[test].mean() == pytest.approx(0.4)
    assert not set(subjects[test]) & set(subjects[pool])
    assert len(np.unique(subjects[pool])) == 40
    draws = []
    for train, _ in splits:
        subs = set(subjects[train])
        assert len(subs) == 10 and subs <= set(subjects[pool])
        assert labels[train].mean() == pytest.approx(0.4)  # the pool's class share
        assert len(train) == 20  # every scan of a drawn subject
        draws.append(frozenset(subs))
    assert len(set(draws)) == 4
    again, _ = draw_splits(subjects, labels, n_test_subjects=20, n_draws=4, draw_subjects=10,
                           seed=3)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(splits, again))
    with pytest.raises(ValueError, match="60 subjects"):
        draw_splits(subjects, labels, n_test_subjects=55, n_draws=1, draw_subjects=10)


class _ToyAtlas:
    labels = np.array([[[0, 1], [1, 2]], [[2, 2], [0, 1]]])
    num_regions = 2


def test_region_means_by_hand():
    x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
    # region 1 holds voxels 1, 2, 7; region 2 holds 3, 4, 5
    np.testing.assert_allclose(region_means(x, _ToyAtlas()), [[10 / 3, 4.0]])
    np.testing.assert_allclose(region_means(x[..., None], _ToyAtlas()), [[10 / 3, 4.0]])


def test_single_feature_auc_and_linear_baseline():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    informative = y + 0.8 * rng.standard_normal(80)
    noise = rng.standard_normal(80)
    features = np.stack([noise, -informative], axis=1)  # the better feature points down
    k, auc = best_single_feature_auc(features, y)
    assert k == 1 and auc == pytest.approx(roc_auc_score(y, informative))
    separable = np.stack([y * 5.0 + 0.1 * rng.standard_normal(80), noise], axis=1)
    assert linear_baseline_accuracy(separable, y) == 100.0
    assert 35.0 < linear_baseline_accuracy(np.stack([noise, rng.standard_normal(80)], 1), y) < 65.0
    with pytest.raises(ValueError, match="2 subjects of each class"):
        linear_baseline_accuracy(separable[:41], y[:41] * 0)


def test_powered_protocol_declares_draws_gates_and_control():
    config = get_config("powered")
    assert config.design == "draws" and config.n_test_subjects >= 400
    assert config.n_draws >= 6 and 40 <= config.draw_subjects <= 80
    assert config.scans_per_subject == (1, 1) and config.sigma == 0.8
    assert config.n_ad + config.n_cn >= config.n_test_subjects + config.draw_subjects
    protocol = study_protocol(config, seed=1)
    assert protocol.units == study_units(config, 1) == tuple(f"s1-d{k}" for k in range(6))
    assert protocol.arms == POWERED_ARMS
    hyp = {h.id: h for h in protocol.hypotheses}
    assert hyp["C1"].arms == ("bar_recon", "bar_recon_shuffled")
    assert hyp["H1a"].endpoint == "auc" and all(h.test == "paired_t" for h in hyp.values())
    assert hyp["A1"].direction == "two-sided" and hyp["A1"].family == "ablation"
    gates = {g.name: g for g in protocol.gates}
    assert {g.source for g in gates.values()} <= {"data", "baseline"}
    assert gates["linear_baseline_min"].threshold == 85.0
    assert gates["linear_baseline_max"].threshold == 91.0
    assert gates["test_subjects"].threshold == 400
    with pytest.raises(ValueError, match="powered study"):
        study_protocol(config, frameworks=("scratch", "bar"))


def test_cutmix_rows_have_no_brain_aware_masking_and_deviations_are_declared():
    from bar_ad.config import FRAMEWORKS

    assert not FRAMEWORKS["cutmix"].use_bam and not FRAMEWORKS["cutmix_recon"].use_bam
    assert FRAMEWORKS["bar"].use_bam and FRAMEWORKS["bar_recon"].use_bam
    deviations = " ".join(study_protocol(get_config("quick")).deviations)
    assert "64 regions" in deviations and "4 blocks" in deviations and "tutorial" in deviations
    paper = " ".join(study_protocol(get_config("paper")).deviations)
    assert "preset" not in paper and "pixel shuffle" not in paper
