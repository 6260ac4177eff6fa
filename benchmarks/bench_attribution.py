"""Attribution benchmarks: cost of a HiResCAM penalty in training, and batching gains.

1. `heatmap_step_over_cce_step`: one training step whose loss adds a HiResCAM penalty
   (mean map mass outside a mask, `shared.explain.forward_with_maps` + `mass_outside`)
   over a plain cross-entropy step, same VGG-style model, same batch, both compiled
   `tf.function`s, timed interleaved. The penalty reuses the step's single forward pass;
   its inner gradient only runs through the head after the chosen layer.
2. `hirescam_batched_over_loop`: `attribution_maps` on 64 images in one call over 64
   one-image calls of the same function (called eagerly; inside it runs a compiled,
   cached graph in both cases, traced once for the batch and once for one image, never
   per image). The images are split into one-image tensors before the clock starts, as
   a per-image caller holds them; slicing a batch inside the timed loop cost about
   0.3 ms an image, a cost of the benchmark and not of the function.
3. `hirescam_batched_over_eager_loop` (no target, context): the same batched call over a
   per-image loop of the uncompiled eager computation, the way per-image explainer
   libraries run.
4. `forward_batched_over_loop` (no target, context): the model's compiled forward pass on
   the 64 images at once over 64 one-image calls. This bounds what batching can gain on
   the machine: on a 2-core CPU oneDNN runs a convolution on a batch of 64 only about
   2.3x faster per image than on one image, so row 2 cannot approach 10x there (see
   benchmarks/README.md).

`run(short=True)` measures the same figures on 32 x 32 inputs, a batch of 4, 8 images
and 3 / 1 rounds: seconds, for a smoke run of the suite.
"""

import time

import numpy as np

BATCH = 16
SIZE = 64
CLASSES = 4
N_IMAGES = 64
PENALTY_REPS = 25
HIRESCAM_REPS = 5
FULL = {"batch": BATCH, "size": SIZE, "n_images": N_IMAGES, "penalty_reps": PENALTY_REPS,
        "hirescam_reps": HIRESCAM_REPS}
SHORT = {"batch": 4, "size": 32, "n_images": 8, "penalty_reps": 3, "hirescam_reps": 1}


def _vgg_style(keras, size=SIZE, channels=1, filters=(16, 32, 64), classes=CLASSES):
    """Conv blocks as VGG (two 3x3 convs + max-pool), then Flatten, Dense(100), Dense(softmax)."""
    inp = keras.Input((size, size, channels))
    x = inp
    for b, f in enumerate(filters, start=1):
        x = keras.layers.Conv2D(f, 3, padding="same", activation="relu", name=f"block{b}_conv1")(x)
        x = keras.layers.Conv2D(f, 3, padding="same", activation="relu", name=f"block{b}_conv2")(x)
        x = keras.layers.MaxPooling2D(name=f"block{b}_pool")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(100, activation="relu")(x)
    out = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inp, out, name="vgg_style")


def _interleaved(fns, reps):
    """Best time of each function over `reps` interleaved rounds.

    The minimum, as `timeit` recommends: on a shared machine, other processes only ever
    add time, and interleaving exposes both sides to the same load drift.
    """
    times = [[] for _ in fns]
    for _ in range(reps):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return [float(np.min(t)) for t in times]


def bench_penalty_step(reps=PENALTY_REPS, seed=0, batch=BATCH, size=SIZE):
    import keras
    import tensorflow as tf

    from shared import explain

    keras.utils.set_random_seed(seed)
    model = _vgg_style(keras, size=size)
    last_conv = "block3_conv2"
    fm = explain.feature_model(model, last_conv)
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(batch, size, size, 1)), tf.float32)
    y = tf.constant(rng.integers(0, CLASSES, size=batch), tf.int32)
    masks = np.zeros((batch, size, size), np.float32)
    masks[:, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1.0
    masks = tf.constant(masks)
    ce = keras.losses.SparseCategoricalCrossentropy()
    opt_a = keras.optimizers.Adam(1e-5)
    opt_b = keras.optimizers.Adam(1e-5)
    opt_a.build(model.trainable_variables)
    opt_b.build(model.trainable_variables)

    @tf.function
    def cce_step(x, y):
        with tf.GradientTape() as tape:
            loss = ce(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt_a.apply(grads, model.trainable_variables)
        return loss

    @tf.function
    def heatmap_step(x, y, masks):
        with tf.GradientTape() as tape:
            probs, maps = explain.forward_with_maps(fm, x, y, method="hirescam", training=True)
            loss = ce(y, probs) + tf.reduce_mean(explain.mass_outside(maps, masks))
        grads = tape.gradient(loss, model.trainable_variables)
        opt_b.apply(grads, model.trainable_variables)
        return loss

    for _ in range(2):  # trace and warm up
        cce_step(x, y).numpy()
        heatmap_step(x, y, masks).numpy()
    t_cce, t_heat = _interleaved(
        [lambda: cce_step(x, y).numpy(), lambda: heatmap_step(x, y, masks).numpy()], reps
    )
    return t_cce, t_heat


def bench_batched_hirescam(seed=0, reps=HIRESCAM_REPS, n_images=N_IMAGES, size=SIZE):
    import keras
    import tensorflow as tf

    from shared import explain
    from shared.explain import attribution

    keras.utils.set_random_seed(seed)
    model = _vgg_style(keras, size=size)
    fm = explain.feature_model(model, "block3_conv2")
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(n_images, size, size, 1)), tf.float32)
    y = tf.constant(rng.integers(0, CLASSES, size=n_images), tf.int32)

    def batched():
        return explain.attribution_maps(fm, x, targets=y, upsample_to=(size, size)).numpy()

    # One-image tensors made before timing: a per-image caller holds its images apart.
    xs = [x[i: i + 1] for i in range(n_images)]
    ys = [y[i: i + 1] for i in range(n_images)]

    def loop():
        return np.concatenate([
            explain.attribution_maps(fm, xi, targets=yi, upsample_to=(size, size)).numpy()
            for xi, yi in zip(xs, ys)
        ])

    def eager_loop():
        return np.concatenate([
            attribution._maps_fn(fm, xi, yi, "hirescam", None, False, True,
                                 (size, size), False).numpy()
            for xi, yi in zip(xs, ys)
        ])

    forward = tf.function(lambda images: model(images, training=False))

    def forward_batched():
        return forward(x).numpy()

    def forward_loop():
        return [forward(xi).numpy() for xi in xs]

    a, b, c = batched(), loop(), eager_loop()  # warm up; all three must agree
    forward_batched(), forward_loop()
    tol = 1e-4 * max(1.0, float(np.abs(a).max()))
    if not (np.allclose(a, b, atol=tol) and np.allclose(a, c, atol=tol)):
        raise RuntimeError("batched and per-image HiResCAM maps differ")
    return _interleaved([batched, loop, eager_loop, forward_batched, forward_loop], reps)


def run(short=False):
    """Benchmark rows (see the module docstring): `FULL` sizes, or `SHORT` when `short`."""
    s = SHORT if short else FULL
    size, batch, n_images = s["size"], s["batch"], s["n_images"]
    t_cce, t_heat = bench_penalty_step(reps=s["penalty_reps"], batch=batch, size=size)
    t_batched, t_loop, t_eager, t_fwd, t_fwd_loop = bench_batched_hirescam(
        reps=s["hirescam_reps"], n_images=n_images, size=size)
    return [
        {"name": "heatmap_step_over_cce_step", "value": t_heat / t_cce, "unit": "x",
         "target": "<= 1.15",
         "detail": f"VGG-style 3 blocks, {size}x{size}x1, batch {batch}: CCE step "
                   f"{t_cce * 1e3:.1f} ms, HiResCAM-penalty step {t_heat * 1e3:.1f} ms"},
        {"name": "hirescam_batched_over_loop", "value": t_loop / t_batched, "unit": "x",
         "target": ">= 2",
         "detail": f"{n_images} images: one call {t_batched * 1e3:.0f} ms, "
                   f"per-image loop {t_loop * 1e3:.0f} ms"},
        {"name": "hirescam_batched_over_eager_loop", "value": t_eager / t_batched, "unit": "x",
         "target": None,
         "detail": f"{n_images} images: per-image loop of the uncompiled eager computation "
                   f"{t_eager * 1e3:.0f} ms"},
        {"name": "forward_batched_over_loop", "value": t_fwd_loop / t_fwd, "unit": "x",
         "target": None,
         "detail": f"{n_images} images, compiled forward pass only (what bounds the row "
                   f"above): one call {t_fwd * 1e3:.0f} ms, per-image loop "
                   f"{t_fwd_loop * 1e3:.0f} ms"},
    ]
