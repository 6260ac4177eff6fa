"""What TensorBoard logging costs a training step.

`tensorboard_overhead_per_step`: the VGG-style model of `bench_attribution.py` (three
blocks, 64 x 64 x 1, four classes) trained with `model.fit` for 2 epochs of 24 steps
(batch 32) with validation, once with no callback and once with
`shared.training.tensorboard.tensorboard_callback` (loss, accuracy and learning rate
per epoch, for training and validation; the writers opened and closed by every fit, as
in a run). The figure is the time per training step with the callback over the time
without, best of interleaved rounds after one warm-up fit of each (the traced step is
shared). Target: at most a few per cent (<= 1.05). `tensorboard_seconds_per_epoch`
(context): the same difference in seconds per epoch; the cost comes per epoch and per
fit (writers opened and closed), not per step, so a longer epoch dilutes it.

`run(short=True)` measures the same row on 32 x 32 inputs, 4 steps and 1 round.
"""

import tempfile

import numpy as np

from benchmarks.bench_attribution import _interleaved, _vgg_style

FULL = {"size": 64, "steps": 24, "batch": 32, "epochs": 2, "reps": 5}
SHORT = {"size": 32, "steps": 4, "batch": 8, "epochs": 1, "reps": 1}


def bench_overhead(size, steps, batch, epochs, reps, seed=0):
    """(seconds per step without, with the callback) of a `model.fit`."""
    import keras

    from shared.training.tensorboard import tensorboard_callback

    keras.utils.set_random_seed(seed)
    model = _vgg_style(keras, size=size)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(steps * batch, size, size, 1)).astype("float32")
    y = rng.integers(0, 4, size=steps * batch)
    xv, yv = x[: 2 * batch], y[: 2 * batch]

    with tempfile.TemporaryDirectory() as run_dir:
        counter = iter(range(10**6))

        def fit(callbacks):
            model.fit(x, y, batch_size=batch, epochs=epochs, validation_data=(xv, yv),
                      shuffle=False, verbose=0, callbacks=callbacks)

        def plain():
            fit([])

        def logged():
            fit([tensorboard_callback(run_dir, f"fit{next(counter)}")])

        plain(), logged()  # trace the steps once
        t_plain, t_logged = _interleaved([plain, logged], reps)
    per_step = steps * epochs
    return t_plain / per_step, t_logged / per_step


def run(short=False):
    """Benchmark rows (see the module docstring)."""
    s = SHORT if short else FULL
    plain, logged = bench_overhead(s["size"], s["steps"], s["batch"], s["epochs"], s["reps"])
    per_epoch = (logged - plain) * s["steps"]
    return [{"name": "tensorboard_overhead_per_step", "value": logged / plain, "unit": "x",
             "target": "<= 1.05",
             "detail": f"VGG-style 3 blocks, {s['size']}x{s['size']}x1, batch {s['batch']}, "
                       f"{s['steps']} steps x {s['epochs']} epochs with validation: "
                       f"{plain * 1e3:.1f} ms/step without, {logged * 1e3:.1f} ms/step with "
                       f"tensorboard_callback (per-epoch scalars)"},
            {"name": "tensorboard_seconds_per_epoch", "value": per_epoch, "unit": "s",
             "target": None,
             "detail": "the same difference per epoch (writers opened and closed once per fit, "
                       "spread over its epochs): logging costs per epoch, not per step, so its "
                       "share falls as epochs get longer"}]
