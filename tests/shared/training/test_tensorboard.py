"""TensorBoard logs of a run folder, read back with TensorBoard's own reader."""

import keras
import numpy as np
import pytest

from shared.testing.tensorboard_events import event_folders, hparams, scalars
from shared.training.tensorboard import (tensorboard_callback, tensorboard_command, tensorboard_dir,
                                         write_study_hparams)


def _tiny_fit(run, name, epochs=3, callbacks=None):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model.fit(x, y, validation_data=(x, y), epochs=epochs, batch_size=8, verbose=0,
                     callbacks=callbacks if callbacks is not None else [tensorboard_callback(run, name)])


def test_callback_logs_loss_metrics_and_learning_rate_per_epoch(tmp_path):
    history = _tiny_fit(tmp_path, "arm a/seed 1").history
    logdir = tensorboard_dir(tmp_path, "arm a/seed 1")
    assert logdir == tmp_path / "tensorboard" / "arm_a_seed_1"
    train, val = scalars(logdir / "train"), scalars(logdir / "validation")
    assert [s for s, _ in train["epoch_loss"]] == [0, 1, 2]
    np.testing.assert_allclose([v for _, v in train["epoch_loss"]], history["loss"], rtol=1e-6)
    np.testing.assert_allclose([v for _, v in val["epoch_accuracy"]], history["val_accuracy"], rtol=1e-6)
    assert [v for _, v in train["epoch_learning_rate"]] == pytest.approx([0.05] * 3)


def test_tuner_search_logs_hparams_per_trial(tmp_path):
    import keras_tuner

    def build(hp):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(hp.Choice("units", [2, 4])),
                                  keras.layers.Dense(2)])
        model.compile(optimizer=keras.optimizers.SGD(hp.Float("lr", 1e-3, 1e-1, sampling="log")),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    tuner = keras_tuner.RandomSearch(build, objective="val_accuracy", max_trials=2, seed=1,
                                     directory=tmp_path / "kt", project_name="p")
    tuner.search(x, y, validation_data=(x, y), epochs=2, verbose=0,
                 callbacks=[tensorboard_callback(tmp_path, "search")])
    for trial in tuner.oracle.trials.values():
        session = tmp_path / "tensorboard" / "search" / trial.trial_id / "execution0"
        assert hparams(session) == pytest.approx({"units": float(trial.hyperparameters.get("units")),
                                                  "lr": trial.hyperparameters.get("lr")})
        assert len(scalars(session / "train")["epoch_loss"]) == 2


def test_study_outcomes_are_hparams_sessions_per_arm_and_unit(tmp_path):
    outcomes = {"cce": {"heart_overlap": {0: 0.25, 3: 0.5}, "test_accuracy": {0: 0.75}},
                "heatmap": {"heart_overlap": {"fold 1": 0.625}}}
    written = write_study_hparams(tmp_path, outcomes)
    assert len(written) == 3 and event_folders(tmp_path / "tensorboard" / "study") == sorted(written)
    session = tmp_path / "tensorboard" / "study" / "cce" / "unit_0"
    assert hparams(session) == {"arm": "cce", "unit": 0.0}
    assert scalars(session) == {"heart_overlap": [(0, 0.25)], "test_accuracy": [(0, 0.75)]}
    assert hparams(tmp_path / "tensorboard" / "study" / "heatmap" / "unit_fold_1") == {
        "arm": "heatmap", "unit": "fold 1"}


def test_tensorboard_command_names_the_logs_or_refuses(tmp_path):
    with pytest.raises(ValueError, match="no such run folder"):
        tensorboard_command(tmp_path / "absent")
    with pytest.raises(ValueError, match="no TensorBoard logs"):
        tensorboard_command(tmp_path)
    (tmp_path / "paper" / "tensorboard").mkdir(parents=True)
    assert tensorboard_command(tmp_path) == ["tensorboard", "--logdir", str(tmp_path)]
    (tmp_path / "tensorboard").mkdir()
    assert tensorboard_command(tmp_path) == ["tensorboard", "--logdir", str(tmp_path / "tensorboard")]
