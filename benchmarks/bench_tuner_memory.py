"""Tuner memory benchmark: resident memory over a 50-trial search of a small model.

A `random` search (`shared.tuning.make_tuner`, results written to a SQLite store) of
a Dense model on synthetic data runs 50 trials. The resident set size (RSS, from
/proc/self/statm) is read when each trial starts training, i.e. after the previous
trial ended and the tuner cleared the Keras session. Growth is measured from the
start of trial 6 (after 5 trials: TensorFlow's one-off allocations, kernel caches and
the first traced functions are in place) to the end of the search.

Target: growth <= 20 %. Without clearing the session, every trial's model, optimizer
and traced functions stay alive and memory grows linearly with the trial count.
Clearing the session is not enough on its own: TensorFlow keeps every traced train
step's graph alive through a gradient-registry entry (see
`shared.tuning._drop_custom_gradients`). Measured on a 2-core machine: 22 % growth
(3.8 MiB per trial) with the session cleared only, 0.1 % with the entries dropped.

`run(short=True)` runs 4 trials on 64 samples and measures growth after trial 1:
seconds, for a smoke run of the suite (too few trials for the target to mean much).
"""

import os
import tempfile
import time

import numpy as np

TRIALS = 50
WARMUP_TRIALS = 5
SAMPLES = 256
FULL = {"trials": TRIALS, "warmup": WARMUP_TRIALS, "n": SAMPLES}
SHORT = {"trials": 4, "warmup": 1, "n": 64}


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(trials=TRIALS, warmup=WARMUP_TRIALS, seed=0, n=SAMPLES):
    """Runs the search; returns (rss per trial start in MiB, rss at the end, seconds)."""
    import keras_tuner

    from shared.training.seeding import set_global_seed
    from shared.tracking.tuning import demo_data, demo_hypermodel, make_tuner

    class Recording(keras_tuner.HyperModel):
        def __init__(self):
            super().__init__()
            self.rss = []

        def build(self, hp):
            return demo_hypermodel(hp)

        def fit(self, hp, model, *args, **kwargs):
            self.rss.append(_rss_mib())
            return model.fit(*args, **kwargs)

    set_global_seed(seed)
    hypermodel = Recording()
    x, y, xv, yv = demo_data(seed, n=n)
    with tempfile.TemporaryDirectory() as tmp:
        tuner = make_tuner("random", hypermodel, objective="val_accuracy", max_trials=trials,
                           store=f"sqlite:///{tmp}/results.sqlite", experiment="bench",
                           search_name="memory", directory=tmp, seed=seed)
        start = time.perf_counter()
        tuner.search(x, y, validation_data=(xv, yv), epochs=1, batch_size=32, verbose=0)
        seconds = time.perf_counter() - start
        end_rss = _rss_mib()
        rows = tuner.results_store.trials("bench", "memory")
    if len(rows) != trials:
        raise RuntimeError(f"expected {trials} trials in the store, found {len(rows)}")
    return hypermodel.rss, end_rss, seconds


def run(short=False):
    """Benchmark rows (see the module docstring): the `FULL` search, or `SHORT` when `short`."""
    s = SHORT if short else FULL
    trials, warmup = s["trials"], s["warmup"]
    rss, end_rss, seconds = measure(trials=trials, warmup=warmup, n=s["n"])
    base = rss[warmup]
    growth = 100.0 * (end_rss - base) / base
    slope = float(np.polyfit(np.arange(warmup, len(rss)), rss[warmup:], 1)[0])
    return [
        {"name": f"tuner_rss_growth_after_trial{warmup}", "value": round(growth, 2), "unit": "%",
         "target": "<= 20",
         "detail": f"{trials}-trial random search of a Dense model; RSS {base:.0f} MiB at "
                   f"trial {warmup + 1} -> {end_rss:.0f} MiB at the end"},
        {"name": "tuner_rss_slope_per_trial", "value": round(slope, 3), "unit": "MiB/trial",
         "target": None, "detail": f"least-squares slope of RSS over trials {warmup + 1}..{trials}"},
        {"name": "tuner_seconds_per_trial", "value": round(seconds / trials, 3), "unit": "s",
         "target": None, "detail": f"1 epoch of {(3 * s['n']) // 4} samples, store write and "
                                   f"session clear"},
    ]


if __name__ == "__main__":  # pragma: no cover
    for row in run():
        print(row)
