"""A grid search that resumes: Keras Tuner's grid oracle with its position rebuilt on reload.

Keras Tuner 1.4.8's `GridSearchOracle` keeps its place in the grid only in memory:
`_ordered_ids` (the tried trials, in grid order) and `_populate_next` (the trials
whose successor in the grid may still be untried) are not part of `get_state`, so a
reloaded oracle has neither (keras-tuner issue #1055). A search resumed after a kill
then either stops with part of the grid untried (nothing left to continue from, so
the oracle answers STOPPED) or raises `KeyError` (the interrupted trial is re-run,
and its end looks up a linked-list entry that no longer exists).

`ResumableGridSearchOracle` rebuilds both from the trials it reloads from disk:
every trial, in grid order, forms the linked list, and every trial goes back into the
queue. The oracle's own rule then skips a trial whose successor was already tried and
fills every gap, so each grid point runs exactly once. `ResumableGridSearch` is
`keras_tuner.GridSearch` with this oracle; `shared.tracking.tuning.make_tuner`
builds it for `kind="grid"`.
"""

from __future__ import annotations

import logging

import keras_tuner
from keras_tuner.src.engine import tuner as tuner_module
from keras_tuner.src.tuners.gridsearch import GridSearchOracle, LinkedList

logger = logging.getLogger(__name__)


class ResumableGridSearchOracle(GridSearchOracle):
    """`GridSearchOracle` whose grid position survives a reload (see the module docstring).

    Takes the arguments of `keras_tuner.oracles.GridSearchOracle`.
    """

    def reload(self):
        super().reload()
        self.rebuild_grid_position()

    def _grid_key(self, trial_id):
        """A trial's place in the grid: one index per hyperparameter, in space order.

        The order is the one `GridSearchOracle._compare` defines: a hyperparameter's
        default first, then its other values in their declared order; a conditional
        hyperparameter inactive for the trial counts as -1 (two trials differ in an
        earlier parent before such a difference matters). An active value the trial
        does not hold is its default, as the oracle would give it.
        """
        hps = self.get_space()
        hps.values = dict(self.trials[trial_id].hyperparameters.values)
        key = []
        for hp in hps.space:
            if not hps.is_active(hp):
                hps.values.pop(hp.name, None)
                key.append(-1)
                continue
            value = hps.values.setdefault(hp.name, hp.default)
            ordered = [hp.default] + [v for v in hp.values if v != hp.default]
            if value not in ordered:
                raise ValueError(
                    f"grid search {self._project_dir}: trial {trial_id} has "
                    f"{hp.name}={value!r}, expected one of the grid's values {ordered}; the "
                    f"search space changed since the project folder was written: start afresh "
                    f"(overwrite=True) or use another search name")
            key.append(ordered.index(value))
        return tuple(key)

    def rebuild_grid_position(self) -> int:
        """Rebuilds the grid position from `self.trials`; returns the trials placed.

        Every trial (completed, failed, or waiting for its retry) is a grid point that
        was handed out, so all of them go into the ordered list; all of them are also
        queued, since the oracle skips a queued trial whose successor is already in the
        list.
        """
        ordered = sorted(self.trials, key=lambda tid: (self._grid_key(tid), tid))
        self._ordered_ids = LinkedList()
        for trial_id in ordered:
            self._ordered_ids.insert(trial_id)
        self._populate_next = list(ordered)
        if ordered:
            logger.info("grid search resumed: %d trial(s) already handed out", len(ordered))
        return len(ordered)


class ResumableGridSearch(keras_tuner.GridSearch):
    """`keras_tuner.GridSearch` with `ResumableGridSearchOracle`; same arguments."""

    def __init__(self, hypermodel=None, objective=None, max_trials=None, seed=None,
                 hyperparameters=None, tune_new_entries=True, allow_new_entries=True,
                 max_retries_per_trial=0, max_consecutive_failed_trials=3, **kwargs):
        self.seed = seed
        oracle = ResumableGridSearchOracle(
            objective=objective, max_trials=max_trials, seed=seed,
            hyperparameters=hyperparameters, tune_new_entries=tune_new_entries,
            allow_new_entries=allow_new_entries, max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials)
        # keras_tuner.GridSearch.__init__ would build the stock oracle: skip to Tuner's.
        tuner_module.Tuner.__init__(self, oracle, hypermodel, **kwargs)
