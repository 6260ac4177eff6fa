"""Augmentation benchmarks: can the input pipeline keep up with training?

1. `augment2d_pipeline_over_train_step`: images/s delivered by the full 2D
   pipeline (`shared.pipeline.dataset_from_arrays` + `Augment2D` with all five
   transforms at p = 0.5: flip, shift-scale-rotate, perspective, rotation,
   noise) over images/s consumed by a training step of a small VGG-style CNN,
   batch 32 of 128 x 128 x 1 (the LGE paper's input size). Timed in
   alternating windows in one process; target >= 3 so input never limits
   training.
2. `train_step_fed_by_pipeline_over_in_memory`: wall time of training steps fed
   by that augmenting pipeline over steps on one resident batch, with the
   pipeline's prefetching running concurrently (the real situation). No
   target: on a CPU-only machine both compete for the same cores, so this
   shows the cost of that sharing, not whether input keeps up (figure 1).
3. `augment3d_throughput`: volumes/s of `Augment3D` with the BAR defaults
   (inner or outer cut, pixel shuffling) on batches of 4 volumes of 96^3, the
   paper's grid; reported without target, with the 2D figures for scale.

`run(short=True)` measures the same figures on the `SHORT` sizes (batch 8 of 64 x 64,
one window, 48^3 volumes): seconds, for a smoke run of the suite.
"""

import time

import numpy as np

BATCH = 32
SIZE = 128
N_IMAGES = 256
PIPELINE_BATCHES = 16
TRAIN_STEPS = 4
WINDOWS = 3
VOLUME_BATCH = 4
VOLUME_SIZE = 96
VOLUME_REPS = 3
FULL = {"batch": BATCH, "size": SIZE, "n_images": N_IMAGES, "pipeline_batches": PIPELINE_BATCHES,
        "train_steps": TRAIN_STEPS, "windows": WINDOWS, "volume_batch": VOLUME_BATCH,
        "volume_size": VOLUME_SIZE, "volume_reps": VOLUME_REPS}
SHORT = {"batch": 8, "size": 64, "n_images": 32, "pipeline_batches": 2, "train_steps": 2,
         "windows": 1, "volume_batch": 2, "volume_size": 48, "volume_reps": 1}


def _vgg_style(keras, size=SIZE, filters=(8, 16, 32, 64), classes=4):
    """VGG blocks (two 3x3 convs + max-pool) and a global-average-pooling head."""
    inp = keras.Input((size, size, 1))
    x = inp
    for b, f in enumerate(filters, start=1):
        x = keras.layers.Conv2D(f, 3, padding="same", activation="relu", name=f"block{b}_conv1")(x)
        x = keras.layers.Conv2D(f, 3, padding="same", activation="relu", name=f"block{b}_conv2")(x)
        x = keras.layers.MaxPooling2D(name=f"block{b}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inp, out, name="vgg_style")


def vgg_train_step(size=SIZE):
    """A compiled Adam training step on a fresh VGG-style model: `step(x, y) -> loss`."""
    import keras
    import tensorflow as tf

    model = _vgg_style(keras, size=size)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    opt = keras.optimizers.Adam(1e-4)
    opt.build(model.trainable_variables)

    @tf.function
    def train_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply(grads, model.trainable_variables)
        return loss

    return train_step


def bench_2d(seed=0, *, batch=BATCH, size=SIZE, n_images=N_IMAGES,
             pipeline_batches=PIPELINE_BATCHES, train_steps=TRAIN_STEPS, windows=WINDOWS):
    import keras

    from shared.data.augment2d import Augment2D
    from shared.data.pipeline import dataset_from_arrays

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.random((n_images, size, size, 1), dtype=np.float32)
    y = rng.integers(0, 4, n_images)
    aug = Augment2D(flip=0.5, shift_scale_rotate=0.5, perspective=0.5, noise=0.5, rotation=0.5)
    ds = dataset_from_arrays(x, y, batch_size=batch, seed=seed, augment=aug.pipeline_fn(),
                             repeat=True, drop_remainder=True)
    it = iter(ds)

    train_step = vgg_train_step(size)

    xb, yb = next(it)
    for _ in range(2):  # trace and warm up both sides
        train_step(xb, yb).numpy()
        next(it)

    def pipeline_rate():
        # A fresh iterator each window: nothing is buffered yet, so the time
        # covers producing every batch (start-up included, a pessimistic rate).
        fresh = iter(ds)
        t0 = time.perf_counter()
        for _ in range(pipeline_batches):
            next(fresh)[0].numpy()
        return pipeline_batches * batch / (time.perf_counter() - t0)

    def step():
        train_step(xb, yb).numpy()

    def fed_step():
        b = next(it)
        train_step(b[0], b[1]).numpy()

    def timed(fn):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    aug_rates, train_rates = [], []
    for _ in range(windows):
        aug_rates.append(pipeline_rate())
        train_rates.append(batch / np.median([timed(step) for _ in range(train_steps)]))
    # Alternate one step at a time so machine-load drift hits both sides alike.
    fed, mem = [], []
    for _ in range(train_steps * 2):
        fed.append(timed(fed_step))
        mem.append(timed(step))
    return (float(np.median(aug_rates)), float(np.median(train_rates)),
            float(np.median(fed)), float(np.median(mem)))


def bench_3d(seed=0, reps=VOLUME_REPS, volume_batch=VOLUME_BATCH, volume_size=VOLUME_SIZE):
    import tensorflow as tf

    from shared.data.augment3d import Augment3D

    aug = Augment3D()
    volumes = tf.random.stateless_uniform([volume_batch] + [volume_size] * 3 + [1], [seed, 1])
    fn = tf.function(lambda v, s: aug(v, s))
    fn(volumes, tf.constant([seed, 0])).numpy()
    t0 = time.perf_counter()
    for i in range(reps):
        fn(volumes, tf.constant([seed, i + 1])).numpy()
    return reps * volume_batch / (time.perf_counter() - t0)


def run(short=False):
    """Benchmark rows (see the module docstring): `FULL` sizes, or `SHORT` when `short`."""
    s = SHORT if short else FULL
    batch, size = s["batch"], s["size"]
    aug_rate, train_rate, fed_t, mem_t = bench_2d(
        batch=batch, size=size, n_images=s["n_images"], pipeline_batches=s["pipeline_batches"],
        train_steps=s["train_steps"], windows=s["windows"])
    vol_rate = bench_3d(reps=s["volume_reps"], volume_batch=s["volume_batch"],
                        volume_size=s["volume_size"])
    detail = (f"batch {batch} of {size}x{size}x1; pipeline {aug_rate:.0f} img/s, "
              f"VGG-style train step {train_rate:.0f} img/s")
    return [
        {"name": "augment2d_pipeline_over_train_step", "value": aug_rate / train_rate,
         "unit": "x", "target": ">= 3", "detail": detail},
        {"name": "augment2d_pipeline_throughput", "value": aug_rate, "unit": "images/s",
         "target": None, "detail": "flip, shift-scale-rotate, perspective, rotation, noise at p=0.5"},
        {"name": "train_step_fed_by_pipeline_over_in_memory", "value": fed_t / mem_t, "unit": "x",
         "target": None, "detail": f"{fed_t * 1e3:.0f} ms vs {mem_t * 1e3:.0f} ms per step"},
        {"name": "augment3d_throughput", "value": vol_rate, "unit": "volumes/s", "target": None,
         "detail": f"Augment3D BAR defaults, batch {s['volume_batch']} of {s['volume_size']}^3"},
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
