"""A grid search killed with SIGKILL and resumed runs every grid point exactly once.

Keras Tuner 1.4.8's own GridSearchOracle fails this (keras-tuner #1055): resumed
after a kill inside a trial it raises KeyError once the re-run trial ends; resumed
after a kill between trials it stops with part of the grid untried.
"""

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from shared.testing.subprocesses import isolated_env
from shared.tracking.grid import ResumableGridSearch
from shared.tracking.store import open_store
from shared.tracking.tuning import make_tuner

ROOT = Path(__file__).resolve().parents[3]
OPTIMIZERS = ("sgd", "adam")
RATES = (0.1, 0.01, 0.001)
GRID = set(itertools.product(OPTIMIZERS, RATES))

# One search process. It appends "optimizer learning_rate" to fits.log after each
# completed fit. With `--halt-in-build N` it stops inside the build of the first
# trial that starts once N fits are logged (the trial is handed out and running);
# with `--halt-after-trial N` it stops once the N-th trial has ended and the oracle
# and tuner are saved. Stopping means writing `halted` and sleeping until the test
# sends SIGKILL, so every kill lands at a known point.
SEARCH = textwrap.dedent("""
    import argparse, time
    from pathlib import Path
    import keras, keras_tuner, numpy as np
    from shared.tracking.tuning import make_tuner

    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--halt-in-build", type=int, default=None)
    parser.add_argument("--halt-after-trial", type=int, default=None)
    args = parser.parse_args()
    log = args.folder / "fits.log"

    def fits():
        return len(log.read_text().splitlines()) if log.exists() else 0

    def halt():
        (args.folder / "halted").write_text("halted")
        while True:
            time.sleep(60)

    class Tiny(keras_tuner.HyperModel):
        def build(self, hp):
            optimizer = hp.Choice("optimizer", ["sgd", "adam"])
            rate = hp.Choice("learning_rate", [0.1, 0.01, 0.001])
            if args.halt_in_build is not None and fits() >= args.halt_in_build:
                halt()
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
            optimizers = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam}
            model.compile(optimizer=optimizers[optimizer](rate), loss="mse")
            return model

        def fit(self, hp, model, *fit_args, **fit_kwargs):
            history = model.fit(*fit_args, **fit_kwargs)
            with log.open("a") as handle:
                handle.write(f"{hp.get('optimizer')} {hp.get('learning_rate')}\\n")
            return history

    tuner = make_tuner("grid", Tiny(), objective="loss", max_trials=6,
                       store=f"sqlite:///{args.folder / 'results.sqlite'}", experiment="grid",
                       search_name="grid", directory=args.folder / "tuner", seed=0)
    if args.halt_after_trial is not None:
        on_trial_end = tuner.on_trial_end

        def end_then_halt(trial):
            on_trial_end(trial)
            if len(tuner.oracle.end_order) >= args.halt_after_trial:
                halt()

        tuner.on_trial_end = end_then_halt
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 1)).astype("float32")
    tuner.search(x, y, epochs=1, batch_size=8, verbose=0)
""")


def _run(folder, *halt, timeout=120):
    """Runs one search process; with a halt option, SIGKILLs it where it halts."""
    (folder / "halted").unlink(missing_ok=True)
    command = [sys.executable, "-c", SEARCH, str(folder), *halt]
    proc = subprocess.Popen(command, env=isolated_env(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    if not halt:
        output = proc.communicate(timeout=timeout)[0]
        assert proc.returncode == 0, output[-3000:]
        return
    deadline = time.monotonic() + timeout
    while not (folder / "halted").exists():
        if proc.poll() is not None:
            pytest.fail(f"the search ended (code {proc.returncode}) before it reached "
                        f"{' '.join(halt)}:\n{proc.stdout.read()[-3000:]}")
        assert time.monotonic() < deadline, f"the search did not reach {' '.join(halt)}"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _fits(folder):
    points = []
    for line in (folder / "fits.log").read_text().splitlines():
        optimizer, rate = line.split()
        points.append((optimizer, float(rate)))
    return points


@pytest.mark.slow
def test_grid_search_killed_three_times_runs_every_point_exactly_once(tmp_path):
    _run(tmp_path, "--halt-in-build", "1")       # inside trial 1, after 1 fit
    assert len(_fits(tmp_path)) == 1
    _run(tmp_path, "--halt-after-trial", "3")    # between trials 2 and 3
    assert len(_fits(tmp_path)) == 3
    _run(tmp_path, "--halt-in-build", "4")       # inside trial 4, after 4 fits
    assert len(_fits(tmp_path)) == 4
    _run(tmp_path)                               # resumed to the end

    fits = _fits(tmp_path)
    assert sorted(fits) == sorted(GRID), fits    # every point fitted, none twice

    project = tmp_path / "tuner" / "grid"
    trials = [json.loads(path.read_text()) for path in project.glob("trial_*/trial.json")]
    points = sorted((t["hyperparameters"]["values"]["optimizer"],
                     t["hyperparameters"]["values"]["learning_rate"]) for t in trials)
    assert points == sorted(GRID)
    assert all(t["status"] == "COMPLETED" for t in trials)
    oracle = json.loads((project / "oracle.json").read_text())
    assert sorted(oracle["end_order"]) == sorted(t["trial_id"] for t in trials)
    assert oracle["ongoing_trials"] == {} and oracle["retry_queue"] == []

    rows = open_store(f"sqlite:///{tmp_path / 'results.sqlite'}").trials("grid", "grid")
    assert len(rows) == 6 and all(r["status"] == "completed" for r in rows)
    assert {(r["hyperparameters"]["optimizer"], r["hyperparameters"]["learning_rate"])
            for r in rows} == GRID


class _Killed(BaseException):
    """Stands for a SIGKILL: Keras Tuner catches Exception around a trial, not this."""


def _conditional_search(tmp_path, fitted, *, halt_in_build=None, halt_after_trial=None):
    """A grid with a conditional hyperparameter: 2 linear + 2 x 2 hidden points = 6."""
    def build(hp):
        kind = hp.Choice("kind", ["linear", "hidden"])
        layers = [keras.Input((4,))]
        with hp.conditional_scope("kind", ["hidden"]):
            if kind == "hidden":
                layers.append(keras.layers.Dense(hp.Choice("units", [2, 4])))
        rate = hp.Choice("learning_rate", [0.1, 0.01])
        if halt_in_build is not None and len(fitted) >= halt_in_build:
            raise _Killed
        model = keras.Sequential(layers + [keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(rate), loss="mse")
        return model

    class Logged(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            fitted.append(None)

    tuner = make_tuner("grid", build, objective="loss", max_trials=6,
                       store=f"sqlite:///{tmp_path / 'results.sqlite'}", experiment="grid",
                       search_name="conditional", directory=tmp_path / "tuner", seed=0)
    assert isinstance(tuner, ResumableGridSearch)
    if halt_after_trial is not None:
        on_trial_end = tuner.on_trial_end

        def end_then_halt(trial):
            on_trial_end(trial)
            if len(tuner.oracle.end_order) >= halt_after_trial:
                raise _Killed

        tuner.on_trial_end = end_then_halt
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 1)).astype("float32")
    tuner.search(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[Logged()])
    return tuner


def test_conditional_grid_resumed_after_kills_covers_the_grid_once(tmp_path):
    fitted = []
    with pytest.raises(_Killed):
        _conditional_search(tmp_path, fitted, halt_in_build=2)
    with pytest.raises(_Killed):
        _conditional_search(tmp_path, fitted, halt_after_trial=4)
    assert len(fitted) == 4
    tuner = _conditional_search(tmp_path, fitted)
    assert len(fitted) == 6
    points = sorted(tuple(sorted(t.hyperparameters.values.items()))
                    for t in tuner.oracle.trials.values())
    assert points == sorted([
        (("kind", "linear"), ("learning_rate", 0.1)), (("kind", "linear"), ("learning_rate", 0.01)),
        *((("kind", "hidden"), ("learning_rate", r), ("units", u)) for u in (2, 4)
          for r in (0.1, 0.01))])
    assert all(str(t.status).upper().endswith("COMPLETED") for t in tuner.oracle.trials.values())


def test_a_changed_grid_is_refused_with_the_trial_and_value(tmp_path):
    fitted = []
    with pytest.raises(_Killed):
        _conditional_search(tmp_path, fitted, halt_after_trial=1)
    trial_file = next((tmp_path / "tuner" / "conditional").glob("trial_*/trial.json"))
    state = json.loads(trial_file.read_text())
    state["hyperparameters"]["values"]["learning_rate"] = 0.5
    trial_file.write_text(json.dumps(state))
    with pytest.raises(ValueError, match=r"learning_rate=0.5, expected one of the grid's "
                                         r"values \[0.1, 0.01\]"):
        _conditional_search(tmp_path, fitted)
