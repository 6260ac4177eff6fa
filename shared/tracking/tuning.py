"""Keras Tuner searches whose every trial lands in the results store.

`make_tuner` builds a Keras Tuner (`bayesian`, `random`, `hyperband` or `grid`)
extended by `StoreLoggingMixin`:

* every finished trial, completed or failed (with its error), is upserted into the
  store from the tuner's trial-end hook, with its hyperparameters, metrics (at the
  best step), start, end, duration, host, package version, git revision and the
  path of its model checkpoint; a `running` row is written when a trial begins;
* the oracle gets an explicit seed;
* resumable: the tuner reloads its project folder (`overwrite=False`), re-runs the
  trial that was interrupted (same trial id, so the upsert keeps one row), and on
  start-up writes any finished trial the store is missing (a process killed between
  the oracle's save and the store write); the oracle's and trials' JSON files are
  written atomically, so a SIGKILL never leaves a file that cannot be reloaded; a
  grid search rebuilds its place in the grid from the reloaded trials
  (`shared.tracking.grid`), so every grid point runs exactly once;
* the Keras session is cleared (which also runs the garbage collector) after every
  trial, so
  memory does not grow with the number of trials;
* the checkpoints of all but the `keep_best` best trials are deleted (not for
  Hyperband, whose later rounds continue from earlier trials' checkpoints);
* distributed: Keras Tuner's chief / worker mode (`KERASTUNER_TUNER_ID`,
  `KERASTUNER_ORACLE_IP`, `KERASTUNER_ORACLE_PORT`); workers record their trials,
  and only the chief may overwrite the project folder;
* if the store cannot be reached when the tuner is made, `StoreUnreachableError` is
  raised before any training; if it goes away during the search, training goes on
  and the records are appended to a JSON-lines spool file next to the project
  folder (`<directory>/<search_name>.<tuner_id>.spool.jsonl`), pushed automatically
  when the store answers again, or later with `medrepro store sync`.

A tiny built-in search (`demo_hypermodel`, `demo_data`, `run_demo_search`) serves
`medrepro tune-demo`, `medrepro tune-local` and the tests.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import re
import time
import warnings
from pathlib import Path

import numpy as np

from shared.tracking.spool import append_spool, read_spool, replay_record
from shared.tracking.store import ResultsStore, StoreUnreachableError, open_store

logger = logging.getLogger(__name__)

KINDS = ("bayesian", "random", "hyperband", "grid")


def _tuner_classes():
    import keras_tuner

    from shared.tracking.grid import ResumableGridSearch

    # Keras Tuner's own GridSearch loses its place in the grid on resume
    # (keras-tuner #1055); shared.tracking.grid rebuilds it from the trials on disk.
    return {"bayesian": keras_tuner.BayesianOptimization, "random": keras_tuner.RandomSearch,
            "hyperband": keras_tuner.Hyperband, "grid": ResumableGridSearch}


def is_distributed() -> bool:
    """Whether the KERASTUNER_* variables ask for chief / worker tuning."""
    return "KERASTUNER_ORACLE_IP" in os.environ


def is_chief() -> bool:
    """Whether this process is the chief of a distributed search."""
    return is_distributed() and "chief" in os.environ.get("KERASTUNER_TUNER_ID", "")


def _status_name(status) -> str:
    value = str(status).upper()
    if value == "COMPLETED":
        return "completed"
    if value in ("FAILED", "INVALID"):
        return "failed"
    return "running"


def trial_metrics(trial) -> dict:
    """A trial's metrics at its best step (the last step when no best one), as floats.

    Adds `tuner_score` (the objective value the oracle ranks by) and `best_step`.
    """
    out = {}
    best_step = getattr(trial, "best_step", None)
    for name, history in trial.metrics.metrics.items():
        observations = history.get_history()
        if not observations:
            continue
        chosen = observations[-1]
        if best_step is not None:
            for observation in observations:
                if observation.step == best_step:
                    chosen = observation
        value = float(np.mean(chosen.value))
        out[name] = value if math.isfinite(value) else None
    if trial.score is not None:
        score = float(trial.score)
        out["tuner_score"] = score if math.isfinite(score) else None
    if best_step is not None:
        out["best_step"] = int(best_step)
    return out


def _gradient_registry():
    """TensorFlow's global gradient registry (a private dict), or None if it moved."""
    try:
        from tensorflow.python.framework import ops
    except ImportError:  # pragma: no cover - TensorFlow is a requirement
        return None
    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    return registry if isinstance(registry, dict) else None


def _custom_gradient_keys():
    registry = _gradient_registry()
    if registry is None:
        return None
    return {k for k in registry if str(k).startswith("CustomGradient-")}


def _drop_custom_gradients(before) -> int:
    """Removes the `CustomGradient-*` entries registered since `before` was taken.

    Every traced train step registers a gradient function for the distribution
    strategy's all-reduce (`tf.custom_gradient` in graph mode) under a unique name
    in TensorFlow's process-wide gradient registry, and never removes it. That
    function's closure holds the step's FuncGraph, so each trial's graphs stay alive
    after `clear_session` (about 7,000 graph objects and several MiB per trial of a
    small model). Once the trial's model is gone nothing can use these entries.
    """
    registry = _gradient_registry()
    if registry is None or before is None:
        return 0
    stale = [k for k in list(registry) if str(k).startswith("CustomGradient-")
             and k not in before]
    for key in stale:
        registry.pop(key, None)
    return len(stale)


def _atomic_json(path, state) -> None:
    """Writes JSON through a temporary file and a rename: a kill never leaves half a file."""
    path = str(path)
    text = json.dumps(state)
    if "://" in path:  # remote file systems (gs://, ...): Keras Tuner's own writer
        from keras_tuner.src import utils

        utils.save_json(path, state)
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _make_oracle_saves_atomic(oracle) -> None:
    """Keras Tuner writes oracle.json and trial.json in place; a SIGKILL during such a
    write would leave a file that cannot be reloaded, so this oracle writes them
    atomically instead (same content, same paths)."""
    def save():
        _atomic_json(oracle._get_oracle_fname(), oracle.get_state())

    def save_trial(trial):
        _atomic_json(os.path.join(oracle._get_trial_dir(trial.trial_id), "trial.json"),
                     trial.get_state())

    oracle.save = save
    oracle._save_trial = save_trial


def _posix_seconds(value):
    """An ISO timestamp from the store as POSIX seconds (None stays None)."""
    if value is None:
        return None
    return _dt.datetime.fromisoformat(str(value)).timestamp()


def _repair_interrupted_trials(oracle) -> list:
    """Puts back into the queue the trials a kill left half-recorded; returns their ids.

    Keras Tuner writes a trial's `trial.json` before `oracle.json`. A process killed
    between the two leaves a trial that `trial.json` calls running while the oracle
    does not know it is in progress: on resume it is never retried, yet it counts
    toward `max_trials`, so the search ends one trial short. Such trials go to the
    retry queue. Trials the queue holds although `trial.json` says they completed
    (killed after the trial's last write) are taken out of it. Leftover temporary
    files of torn atomic writes are deleted.
    """
    from keras_tuner.src.engine import trial as trial_module

    running = trial_module.TrialStatus.RUNNING
    ongoing = {t.trial_id for t in oracle.ongoing_trials.values()}
    queue = list(oracle._retry_queue)
    finished = {tid for tid in queue
                if tid in oracle.trials and oracle.trials[tid].status != running
                and _status_name(oracle.trials[tid].status) == "completed"}
    queue = [tid for tid in queue if tid not in finished]
    stranded = [tid for tid, trial in oracle.trials.items()
                if trial.status == running and tid not in ongoing and tid not in queue]
    project = Path(oracle._project_dir)
    for leftover in list(project.glob("*.tmp-*")) + list(project.glob("trial_*/*.tmp-*")):
        leftover.unlink(missing_ok=True)
    if stranded or finished:
        oracle._retry_queue = queue + stranded
        oracle.save()
        logger.warning("resumed search: %d interrupted trial(s) queued again (%s)",
                       len(stranded), ", ".join(stranded) or "-")
    return stranded


class StoreLoggingMixin:
    """Mixed in front of a Keras Tuner class by `make_tuner`; see the module docstring."""

    def save(self):
        """Saves the oracle (unless a worker) and this tuner's state, atomically."""
        if not self._is_worker():
            self.oracle.save()
        _atomic_json(self._get_tuner_fname(), self.get_state())

    def _setup_tracking(self, *, store, store_url, experiment, search_name, group, search_id,
                        search_config, keep_best, spool_path, record_running):
        self._store = store
        self._store_url = store_url
        self._experiment = experiment
        self._search_name = search_name
        self._group = group
        self._search_id = search_id
        self._search_config = search_config
        self._keep_best = keep_best
        self.spool_path = Path(spool_path)
        self._record_running = record_running
        self._trial_started = {}
        self._local_trials = set()
        self._store_down = False
        import keras

        self._dtype_policy = keras.mixed_precision.global_policy().name

    def _build_hypermodel(self, hp):
        # Keras Tuner clears the Keras session before every build, which resets the
        # dtype policy: each trial is built under the policy in force at creation.
        import keras

        keras.mixed_precision.set_global_policy(self._dtype_policy)
        return super()._build_hypermodel(hp)

    @property
    def results_store(self):
        """The ResultsStore this tuner writes to."""
        return self._store

    # ------------------------------------------------------------- store writes
    def _record(self, trial_id, fields):
        """Writes one trial record; spools it when the store cannot be reached."""
        if self._store_down:
            try:
                self._store.ping()
                self.flush_spool()  # idempotent: a partial push is simply repeated later
            except StoreUnreachableError:
                self._spool(trial_id, fields)
                return False
            self._store_down = False
        try:
            self._store.record_trial(self._search_id, trial_id, group=self._group, **fields)
            return True
        except StoreUnreachableError as err:
            self._store_down = True
            warnings.warn(f"{err}; training goes on and trial records are kept in "
                          f"{self.spool_path} (push them with `medrepro store sync --spool "
                          f"{self.spool_path} --store URL`)", RuntimeWarning, stacklevel=2)
            self._spool(trial_id, fields)
            return False

    def _spool(self, trial_id, fields):
        record = {"op": "trial", "experiment": self._experiment,
                  "search_name": self._search_name, "search_group": self._group,
                  "search_config": self._search_config, "trial_id": str(trial_id),
                  "group": self._group}
        env = self._store.environment()
        record.update({"host": env.get("host"), "package_version": env.get("medrepro_version"),
                       "git_revision": env.get("git_revision")})
        record.update(fields)
        for key in ("started", "ended"):
            if isinstance(record.get(key), _dt.datetime):
                record[key] = record[key].isoformat()
        append_spool(self.spool_path, record)

    def flush_spool(self) -> int:
        """Pushes the spool file (if any) into the store and deletes it; returns records sent."""
        if not self.spool_path.exists():
            return 0
        records = read_spool(self.spool_path)
        for record in records:
            replay_record(self._store, record)
        self.spool_path.unlink()
        logger.info("pushed %d spooled trial record(s) from %s", len(records), self.spool_path)
        return len(records)

    def _finished_fields(self, trial, started, ended):
        status = _status_name(trial.status)
        fields = {
            "hyperparameters": dict(trial.hyperparameters.values),
            "metrics": trial_metrics(trial) if status == "completed" else
            {k: v for k, v in trial_metrics(trial).items() if v is not None},
            "status": status,
            "error": (trial.message or "trial failed") if status == "failed" else None,
            "started": started, "ended": ended,
            "duration_s": None if started is None or ended is None else ended - started,
        }
        checkpoint = Path(self._get_checkpoint_fname(trial.trial_id))
        if status == "completed" and checkpoint.exists():
            fields["model_path"] = str(checkpoint.resolve())
        return fields

    def reconcile_store(self) -> int:
        """Writes finished trials of the oracle that the store lacks; returns how many.

        Covers a process killed after the oracle saved a trial's end but before the
        store write. Only the oracle's owner (chief or single process) can do it.
        """
        if self._is_worker():
            return 0
        try:
            rows = self._store.trials(self._experiment, self._search_name)
        except StoreUnreachableError:
            return 0
        present = {t["trial_id"] for t in rows if t["status"] != "running"}
        started_at = {t["trial_id"]: t["started"] for t in rows if t["started"]}
        written = 0
        for trial_id, trial in self.oracle.trials.items():
            if trial_id in present or _status_name(trial.status) == "running":
                continue
            # The start is the running row's; the end is when trial.json last changed.
            started = _posix_seconds(started_at.get(trial_id))
            trial_file = Path(self.oracle._get_trial_dir(trial_id)) / "trial.json"
            ended = trial_file.stat().st_mtime if trial_file.exists() else None
            if self._record(trial_id, self._finished_fields(trial, started, ended)):
                written += 1
        return written

    # ------------------------------------------------------------- tuner hooks
    def search(self, *fit_args, **fit_kwargs):
        if not self._store_down:
            try:
                self.flush_spool()
            except StoreUnreachableError:
                self._store_down = True
        self.reconcile_store()
        super().search(*fit_args, **fit_kwargs)
        self.reconcile_store()
        if not self._store_down:
            try:
                self.flush_spool()
            except StoreUnreachableError:
                pass

    def on_trial_begin(self, trial):
        self._gradient_keys = _custom_gradient_keys()
        self._trial_started[trial.trial_id] = time.time()
        super().on_trial_begin(trial)
        if self._record_running:
            self._record(trial.trial_id, {
                "hyperparameters": dict(trial.hyperparameters.values), "metrics": {},
                "status": "running", "started": self._trial_started[trial.trial_id]})

    def on_trial_end(self, trial):
        ended = time.time()
        started = self._trial_started.pop(trial.trial_id, None)
        super().on_trial_end(trial)  # the oracle ends the trial and saves its state
        # The oracle's copy holds the reported metrics and the final status (in a
        # distributed search the local object does not).
        final = self.oracle.get_trial(trial.trial_id)
        if trial.message and not final.message:
            final.message = trial.message
        self._local_trials.add(trial.trial_id)
        self._record(trial.trial_id, self._finished_fields(final, started, ended))
        self._prune_checkpoints()
        from shared.training.scale import clear_session

        # Frees the trial's graph and model; also runs Python's garbage collector
        # (free_memory=True), so no separate gc.collect() is needed.
        _drop_custom_gradients(getattr(self, "_gradient_keys", None))
        # Keeps the dtype policy for whatever runs after the search (the trials
        # themselves get it back in `_build_hypermodel`).
        clear_session(free_memory=True)

    def _prune_checkpoints(self):
        if self._keep_best is None:
            return
        best = {t.trial_id for t in self.oracle.get_best_trials(self._keep_best)}
        candidates = set(self._local_trials)
        if not self._is_worker():
            candidates |= {tid for tid, t in self.oracle.trials.items()
                           if _status_name(t.status) != "running"}
        for trial_id in sorted(candidates - best):
            checkpoint = Path(self._get_checkpoint_fname(trial_id))
            if checkpoint.exists():
                checkpoint.unlink()
                self._forget_checkpoint(trial_id)

    def _forget_checkpoint(self, trial_id):
        """Clears the row's model_path; while the store is down the spool says it, in
        order after the trial's own spooled record, so that a later sync never leaves
        a row pointing at a deleted file."""
        if not self._store_down:
            try:
                self._store.clear_model_path(self._experiment, self._search_name, trial_id)
                return
            except StoreUnreachableError:
                self._store_down = True
        append_spool(self.spool_path, {"op": "checkpoint_removed",
                                       "experiment": self._experiment,
                                       "search_name": self._search_name,
                                       "trial_id": str(trial_id)})


def make_tuner(kind, hypermodel, *, objective, max_trials, store, experiment, search_name,
               group=None, directory, seed, overwrite=False, keep_best=3, spool_path=None,
               record_running=True, **tuner_kwargs):
    """A Keras Tuner that records every finished trial in the results store.

    Args:
        kind: "bayesian", "random", "hyperband" or "grid".
        hypermodel: keras_tuner.HyperModel or a function hp -> compiled keras.Model.
        objective: str or keras_tuner.Objective, e.g. "val_loss".
        max_trials: int. Trials to run (for Hyperband: an upper bound on the
            trials of its brackets; None leaves Hyperband's own schedule).
        store: ResultsStore or URL string. Opened at once, so an unreachable store
            fails here, before any training.
        experiment: str. Experiment name in the store.
        search_name: str. Search name in the store; also the Keras Tuner project
            name (the folder `directory/search_name`).
        group: str, optional. Group / arm of the search (e.g. "heatmap").
        directory: str or Path. Folder holding the project folder and spool file.
        seed: int. Seed of the oracle (required; searches are reproducible).
        overwrite: bool. Start afresh instead of resuming. Ignored (with a
            warning) on distributed workers: only the chief may overwrite.
        keep_best: int or None. Keep model checkpoints of this many best trials;
            None keeps all. Defaults to 3. Always None for Hyperband.
        spool_path: str or Path, optional. Defaults to
            `directory/<search_name>.<tuner_id>.spool.jsonl`.
        record_running: bool. Write a `running` row when a trial begins.
        **tuner_kwargs: passed to the Keras Tuner class (e.g. `max_epochs` for
            Hyperband, `executions_per_trial`, `max_retries_per_trial`).

    Returns:
        A keras_tuner.Tuner whose class also derives from StoreLoggingMixin.

    Raises:
        StoreUnreachableError: the store cannot be reached (message names the URL).
        ValueError: bad kind, seed or names.
    """
    classes = _tuner_classes()
    if kind not in classes:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    if seed is None or isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: expected an int (the oracle's seed), got {seed!r}")
    if not isinstance(search_name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", search_name):
        raise ValueError(f"search_name: expected letters, digits, '_', '.', '-' (it names a "
                         f"folder), got {search_name!r}")
    if kind != "hyperband" and (max_trials is None or int(max_trials) < 1):
        raise ValueError(f"max_trials: expected a positive int, got {max_trials!r}")
    if keep_best is not None and int(keep_best) < 1:
        raise ValueError(f"keep_best: expected None or a positive int, got {keep_best!r}")
    if is_distributed() and not is_chief() and overwrite:
        warnings.warn("overwrite=True ignored on a distributed worker: only the chief may "
                      "overwrite the project folder", RuntimeWarning, stacklevel=2)
        overwrite = False

    # The store first: an unreachable one must fail before any model is built.
    if isinstance(store, ResultsStore):
        store_obj = store
        store_obj.ping()
    else:
        store_obj = open_store(store)
    directory = Path(directory)
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "tuner0")
    objective_name = getattr(objective, "name", objective)
    search_config = {"kind": kind, "objective": str(objective_name), "max_trials": max_trials,
                     "seed": int(seed), "directory": str(directory),
                     **{k: v for k, v in tuner_kwargs.items()
                        if isinstance(v, (int, float, str, bool, type(None)))}}
    search_id = store_obj.start_search(experiment, search_name, group=group,
                                       config=search_config)

    base = classes[kind]
    tuner_cls = type(f"Store{base.__name__}", (StoreLoggingMixin, base), {})
    kwargs = dict(tuner_kwargs)
    kwargs.update(hypermodel=hypermodel, objective=objective, seed=int(seed),
                  directory=str(directory), project_name=search_name, overwrite=overwrite)
    if kind != "hyperband":
        kwargs["max_trials"] = int(max_trials)
    else:
        keep_best = None
    tuner = tuner_cls(**kwargs)
    if not tuner._is_worker():
        _make_oracle_saves_atomic(tuner.oracle)
        _repair_interrupted_trials(tuner.oracle)
    if kind == "hyperband" and max_trials is not None:
        tuner.oracle.max_trials = int(max_trials) if not tuner._is_worker() else None
    tuner._setup_tracking(
        store=store_obj, store_url=store_obj.url, experiment=experiment,
        search_name=search_name, group=group, search_id=search_id,
        search_config=search_config, keep_best=keep_best,
        spool_path=spool_path if spool_path is not None
        else directory / f"{search_name}.{tuner_id}.spool.jsonl",
        record_running=record_running)
    return tuner


# ------------------------------------------------------------------ demo search
def demo_data(seed: int, n: int = 64, features: int = 8):
    """Synthetic binary task: x ~ N(0, 1)^features, y = [w.x + noise > 0].

    Returns:
        (x_train, y_train, x_val, y_val), float32 / int32, 3/4 of n for training.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    w = rng.normal(size=(features,))
    y = ((x @ w + 0.3 * rng.normal(size=n)) > 0).astype("int32")
    cut = (3 * n) // 4
    return x[:cut], y[:cut], x[cut:], y[cut:]


def demo_hypermodel(hp, features: int = 8):
    """A Dense classifier: `units` (0 = logistic regression) and the learning rate tuned."""
    import keras

    units = hp.Choice("units", [0, 4, 8, 16])
    learning_rate = hp.Float("learning_rate", 1e-3, 1e-1, sampling="log")
    inputs = keras.Input((features,))
    x = inputs
    if units:
        x = keras.layers.Dense(units, activation="relu")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy",
                  metrics=["accuracy"])
    return model


def run_demo_search(store, *, directory, experiment="tuning_demo", search_name="demo",
                    kind="random", max_trials=4, epochs=2, seed=0, group=None, n=64,
                    overwrite=False, verbose=0):
    """Runs the built-in search (a Dense model on 64 synthetic samples).

    Returns:
        The tuner after its search (on a distributed chief: after all workers finished).
    """
    from shared.training.seeding import set_global_seed

    set_global_seed(seed)
    tuner_kwargs = {"max_epochs": max(2, epochs)} if kind == "hyperband" else {}
    tuner = make_tuner(kind, demo_hypermodel, objective="val_accuracy", max_trials=max_trials,
                       store=store, experiment=experiment, search_name=search_name, group=group,
                       directory=directory, seed=seed, overwrite=overwrite, **tuner_kwargs)
    x, y, xv, yv = demo_data(seed, n=n)
    fit_kwargs = {} if kind == "hyperband" else {"epochs": epochs}
    tuner.search(x, y, validation_data=(xv, yv), batch_size=16, verbose=verbose, **fit_kwargs)
    return tuner
