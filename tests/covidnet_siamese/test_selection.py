"""Epoch selection that does not reward the majority class, the template rule on the
whole validation split, and dead units of every ReLU layer."""

import dataclasses
import types

import keras
import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from covidnet_siamese.config import CovidNetSiameseConfig, powered, quick
from covidnet_siamese.training import (KeepBest, SingleValidation, TemplateValidation, class_templates,
                                       dead_unit_totals, dead_units, decision_scores, embed, fit_siamese,
                                       new_siamese, new_single, predict_siamese)


def test_decision_scores_match_scikit_learn():
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 0])
    y_pred = np.array([0, 0, 1, 0, 1, 2, 2, 0, 2, 0])
    got = decision_scores(y_true, y_pred)
    assert got["accuracy"] == pytest.approx(0.7)
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert got["largest_class_share"] == pytest.approx(0.5)  # five films called 0


def _scripted_net(n_films):
    """A softmax layer over one-hot film ids: its kernel scripts each film's answer."""
    return keras.Sequential([keras.Input((n_films,)), keras.layers.Dense(3, activation="softmax", use_bias=False)])


def _run_epochs(answers, y_val, monitor):
    model = _scripted_net(len(y_val))
    check = SingleValidation(np.eye(len(y_val), dtype=np.float32), y_val)
    keep = KeepBest(monitor)
    for cb in (check, keep):
        cb.set_model(model)
    for epoch, answer in enumerate(answers):
        model.set_weights([10.0 * np.eye(3, dtype=np.float32)[answer]])  # the epoch's answers
        logs = {}
        check.on_epoch_end(epoch, logs)
        assert logs["val_accuracy"] == pytest.approx(np.mean(answer == y_val))
        keep.on_epoch_end(epoch, logs)
    keep.on_train_end()
    kept = np.argmax(keras.ops.convert_to_numpy(model(np.eye(len(y_val), dtype=np.float32))), axis=1)
    np.testing.assert_array_equal(kept, answers[keep.best_epoch])  # the kept epoch's weights restored
    return keep


def test_single_net_selection_skips_the_always_majority_epoch():
    # 60 % normal: an epoch that calls every film normal scores 0.60 accuracy; the
    # epoch that learned scores 0.55 but recalls every class at least half the time.
    y_val = np.repeat([0, 1, 2], [12, 6, 2])
    always_normal = np.zeros(20, int)
    learned = np.concatenate([[0] * 6 + [1] * 3 + [2] * 3, [1] * 4 + [0] * 2, [2, 0]])
    assert np.mean(learned == y_val) == pytest.approx(0.55)
    old = _run_epochs([learned, always_normal], y_val, "val_accuracy")
    assert old.best_epoch == 1  # the paper's criterion keeps the degenerate epoch
    new = _run_epochs([learned, always_normal], y_val, "val_balanced_accuracy")
    assert new.best_epoch == 0
    assert new.best == pytest.approx(np.mean([6 / 12, 4 / 6, 1 / 2]))
    assert powered().select_single == "val_balanced_accuracy" == quick().select_single


def test_unknown_selection_criterion_is_refused():
    with pytest.raises(ValueError, match="select_single"):
        CovidNetSiameseConfig(select_single="val_loss")
    with pytest.raises(ValueError, match="select_siamese"):
        CovidNetSiameseConfig(select_siamese="accuracy")


@pytest.fixture(scope="module")
def small_data():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [30, 20, 10])
    x = rng.normal(size=(60, 16, 16, 1)).astype(np.float32) + y[:, None, None, None]
    yv = np.repeat([0, 1, 2], [12, 8, 4])
    xv = rng.normal(size=(24, 16, 16, 1)).astype(np.float32) + yv[:, None, None, None]

    return types.SimpleNamespace(x_train=x, y_train=y, x_val=xv, y_val=yv)


def test_siamese_selection_uses_the_template_rule_on_the_whole_validation_split(small_data):
    keras.utils.set_random_seed(0)
    config = dataclasses.replace(powered(), image_size=16, nf=4, embedding_dim=8)
    assert config.select_siamese == "val_balanced_accuracy"
    model = new_siamese(config, 3e-3)
    rule = TemplateValidation(small_data.x_train, small_data.y_train, small_data.x_val, small_data.y_val)
    rule.set_model(model)
    logs = {}
    rule.on_epoch_end(0, logs)
    templates = class_templates(embed(model, small_data.x_train), small_data.y_train)
    pred, _ = predict_siamese(model, small_data.x_val, templates)  # all 24 films, not trials
    assert logs["val_template_accuracy"] == pytest.approx(np.mean(pred == small_data.y_val))
    assert logs["val_balanced_accuracy"] == pytest.approx(balanced_accuracy_score(small_data.y_val, pred))
    hist, kept = fit_siamese(model, small_data, batch_size=8, epochs=3, n_pairs=32, n_trials=9, seed=0,
                             select_on=config.select_siamese)
    curve = hist.history["val_balanced_accuracy"]
    assert kept.best_epoch == int(np.argmax(curve)) and kept.best == pytest.approx(max(curve))
    # The restored weights are the kept epoch's: the rule scores them as logged.
    templates = class_templates(embed(model, small_data.x_train), small_data.y_train)
    pred, _ = predict_siamese(model, small_data.x_val, templates)
    assert balanced_accuracy_score(small_data.y_val, pred) == pytest.approx(kept.best)


def test_dead_units_finds_dead_dense_units_in_a_head_built_to_have_them(small_data):
    keras.utils.set_random_seed(0)
    config = dataclasses.replace(powered(), image_size=16, nf=4, fc_units=16)
    model = new_single(config, 1e-3)
    fc1 = model.get_layer("fc1")
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in (fc1.kernel, fc1.bias))
    kernel[:, :5], bias[:5] = 0.0, -1.0  # five units that can never fire
    kernel[:, 5:], bias[5:] = np.abs(kernel[:, 5:]), 1.0  # the rest fire on every image
    fc1.set_weights([kernel, bias])
    dead = dead_units(model, small_data.x_val)
    assert dead["fc1"] == (5, 16)
    assert set(dead) >= {"stem_conv", "pepx1_1/projection", "pepx2_1/extension", "fc1", "fc2", "fc3"}
    assert "stage1_skip" not in dead  # linear: no dead state
    totals = dead_unit_totals(dead)
    assert totals["dense"] == tuple(np.sum([dead[k] for k in ("fc1", "fc2", "fc3")], axis=0))
    # A convolution whose ReLU can never fire is found inside the PEPX module too.
    ext = model.get_layer("pepx1_1").extension
    k, b = (keras.ops.convert_to_numpy(w) for w in (ext.kernel, ext.bias))
    k[..., :2], b[:2] = 0.0, -1.0
    ext.set_weights([k, b])
    assert dead_units(model, small_data.x_val)["pepx1_1/extension"][0] >= 2


def test_the_search_scores_trials_by_the_kept_epoch_criterion():
    from covidnet_siamese.config import paper
    from covidnet_siamese.search import objective

    assert objective("single", quick()).name == "val_balanced_accuracy"
    assert objective("siamese", quick()).name == "val_balanced_accuracy"
    assert objective("single", paper()).name == "val_accuracy"  # the paper's criteria in `paper`
    assert objective("siamese", paper()).name == "val_three_way_accuracy"
