"""Grid search over learning rate and batch size (Section 3.3, Table 2).

Both nets are searched over eta in {1e-3, 1e-4, 1e-5} x beta in {8, 16, 32} with Keras
Tuner's grid search (`shared.tuning.make_tuner(kind="grid")`), every trial written to
the results store. The learning rate is a hyperparameter of `build`, the batch size one
of `fit` (keras-tuner's HyperModel.fit hook). The objective is the maximum validation
accuracy over the epochs: plain accuracy on the validation set for the single net,
three-way accuracy (129 trials) for the siamese net.
"""

import logging

import keras_tuner as kt

from covidnet_siamese.training import fit_siamese, fit_single, new_siamese, new_single
from shared.tracking.tuning import make_tuner
from shared.training.seeding import set_global_seed
from shared.training.tensorboard import tensorboard_callback

log = logging.getLogger(__name__)

NETS = ("single", "siamese")


def objective(net, config):
    """The search objective of `net`: the criterion its final runs keep their epoch by
    (`config.select_single` / `config.select_siamese`; the paper's validation accuracy
    and three-way accuracy in `paper`)."""
    return kt.Objective(config.select_single if net == "single" else config.select_siamese, direction="max")


class CovidNetHyperModel(kt.HyperModel):
    """Builds and fits the single or siamese net for one (learning rate, batch size) point.

    Args:
        net: "single" or "siamese".
        config: `CovidNetSiameseConfig` (architecture, grid, search epochs and pairs).
        data: `CovidxData`.
        seed: int. Seed of every trial's initial weights, dropout, per-epoch balancing
            and pair draws: each trial starts from the same global seed, so the same
            seed gives the same trial scores and the grid points differ only by
            their learning rate and batch size.
    """

    def __init__(self, net, config, data, seed, **kwargs):
        super().__init__(name=f"covidnet_{net}", **kwargs)
        if net not in NETS:
            raise ValueError(f"net must be 'single' or 'siamese'. Received: net={net!r}")
        self.net, self.config, self.data, self.seed = net, config, data, seed

    def build(self, hp):
        set_global_seed(self.seed)  # weights and dropout of every trial from the search's seed
        lr = hp.Choice("learning_rate", [float(v) for v in self.config.search_learning_rates])
        hp.Choice("batch_size", [int(v) for v in self.config.search_batch_sizes])
        return new_single(self.config, lr) if self.net == "single" else new_siamese(self.config, lr)

    def fit(self, hp, model, *args, callbacks=None, **kwargs):
        batch = hp.get("batch_size")
        cbs = list(callbacks or [])
        if self.net == "single":
            hist, _ = fit_single(model, self.data, batch_size=batch, epochs=self.config.search_epochs_single,
                                 seed=self.seed, callbacks=cbs, keep_best=False)
        else:
            hist, _ = fit_siamese(model, self.data, batch_size=batch, epochs=self.config.search_epochs_siamese,
                                  n_pairs=self.config.search_pairs_per_epoch,
                                  n_trials=self.config.three_way_trials, seed=self.seed, callbacks=cbs,
                                  keep_best=False)
        return hist


def grid_search(net, config, data, *, store, experiment, directory, seed, overwrite=True, strategy=None,
                run_dir=None):
    """Runs the grid search of one net and returns its best point and the trial table.

    Args:
        net: "single" or "siamese".
        config: `CovidNetSiameseConfig`.
        data: `CovidxData`.
        store: ResultsStore or URL.
        experiment: str. Experiment name in the store.
        directory: str or Path. Keras Tuner folder.
        seed: int.
        overwrite: bool, default True. Start the search afresh.
        strategy: tf.distribute.Strategy, optional. Keras Tuner builds and trains each
            trial's model under it (`distribution_strategy`); None: the default.
        run_dir: str or Path, optional. With it every trial logs its per-epoch scalars
            and its hyperparameters (TensorBoard HParams, through Keras Tuner) under
            `run_dir/tensorboard/search_<net>/<trial id>/`.

    Returns:
        dict with "learning_rate", "batch_size", "best_val_accuracy" and "trials"
        (list of dicts: learning_rate, batch_size, score).
    """
    grid = len(config.search_learning_rates) * len(config.search_batch_sizes)
    tuner = make_tuner(
        "grid", CovidNetHyperModel(net, config, data, seed), objective=objective(net, config), max_trials=grid,
        store=store, experiment=experiment,
        search_name=f"{experiment}_{net}_grid_{config.name}_s{seed}",
        group=net, directory=directory, seed=seed, overwrite=overwrite,
        **({} if strategy is None else {"distribution_strategy": strategy}))
    callbacks = [] if run_dir is None else [tensorboard_callback(run_dir, f"search_{net}")]
    tuner.search(callbacks=callbacks)
    trials = []
    for trial in tuner.oracle.trials.values():
        trials.append({"learning_rate": trial.hyperparameters.get("learning_rate"),
                       "batch_size": trial.hyperparameters.get("batch_size"),
                       "score": trial.score, "status": str(trial.status)})
    completed = [t for t in trials if t["score"] is not None]
    if not completed:
        raise RuntimeError(f"every {net} grid-search trial failed; see the trial errors in the store")
    best = tuner.oracle.get_best_trials(1)[0]
    result = {"learning_rate": float(best.hyperparameters.get("learning_rate")),
              "batch_size": int(best.hyperparameters.get("batch_size")),
              "best_val_accuracy": float(best.score),
              "trials": sorted(trials, key=lambda t: (-t["learning_rate"], t["batch_size"]))}
    log.info("%s grid search: best lr %g, batch %d, val accuracy %.3f", net, result["learning_rate"],
             result["batch_size"], result["best_val_accuracy"])
    return result
