"""Attribution-metric benchmarks: the batched metrics against a per-image loop.

All rows use the VGG-style model of `bench_attribution.py` (three blocks, 64 x 64 x 1,
four classes, random weights), HiResCAM maps of its last convolution, and the same
images; each batched result is checked against the loop's before timing.

1. `deletion_batched_over_loop`: `shared.explain.deletion_curve` on 32 images in one
   call (one forward pass of the batch per step, 16 steps) over 32 one-image calls.
2. `randomisation_batched_over_loop`: `shared.explain.cascading_randomisation` (all
   eight weighted layers, HiResCAM maps) on the batch in one call over one call per
   image.
3. `road_batched_over_loop` (context, no target): `shared.explain.road_curve` (MoRF,
   fractions 0.1 .. 0.9) on 8 images in one call over one call per image; the
   conjugate-gradient imputation solves the whole batch at once.

`run(short=True)` measures the same rows on 32 x 32 inputs, 4 images and 1 round.
"""

import time

import numpy as np

from benchmarks.bench_attribution import _interleaved, _vgg_style

CLASSES = 4
FULL = {"size": 64, "n_images": 32, "n_road": 8, "steps": 16, "reps": 3}
SHORT = {"size": 32, "n_images": 4, "n_road": 2, "steps": 4, "reps": 1}
LAYER = "block3_conv2"


def _setup(size, n_images, seed=0):
    import keras
    import tensorflow as tf

    from shared import explain

    keras.utils.set_random_seed(seed)
    model = _vgg_style(keras, size=size, classes=CLASSES)
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(n_images, size, size, 1)), tf.float32)
    y = tf.constant(rng.integers(0, CLASSES, size=n_images), tf.int32)
    maps = explain.hirescam(model, x, layer_name=LAYER, targets=y, upsample_to=(size, size))
    return model, x, y, maps


def _loop(fn, n):
    return [fn(i) for i in range(n)]


def bench_deletion(model, x, y, maps, steps, reps):
    from shared import explain

    n = x.shape[0]

    def batched():
        return explain.deletion_curve(model, x, maps, y, steps=steps).scores.numpy()

    def loop():
        return np.concatenate(_loop(lambda i: explain.deletion_curve(
            model, x[i: i + 1], maps[i: i + 1], y[i: i + 1], steps=steps).scores.numpy(), n))

    a, b = batched(), loop()  # warm up; both must agree
    if not np.allclose(a, b, atol=1e-5):
        raise RuntimeError("batched and per-image deletion curves differ")
    return _interleaved([batched, loop], reps)


def bench_randomisation(model, x, y, reps):
    from shared import explain

    n = x.shape[0]

    def maps_fn(m, images, targets):
        return explain.hirescam(m, images, layer_name=LAYER, targets=targets)

    def batched():
        return explain.cascading_randomisation(model, x, y, maps_fn, seed=0).correlations.numpy()

    def loop():
        return np.concatenate(_loop(lambda i: explain.cascading_randomisation(
            model, x[i: i + 1], y[i: i + 1], maps_fn, seed=0).correlations.numpy(), n), axis=1)

    a, b = batched(), loop()
    if not np.allclose(a, b, atol=1e-4, equal_nan=True):
        raise RuntimeError("batched and per-image randomisation checks differ")
    return _interleaved([batched, loop], reps), a.shape[0]


def bench_road(model, x, y, maps, reps):
    from shared import explain

    n = x.shape[0]

    def batched():
        return explain.road_curve(model, x, maps, y).scores.numpy()

    def loop():
        # Image i of the batch draws noise from the batch's noise field: compare without
        # noise, time with it (the noise costs the same on both sides).
        return np.concatenate(_loop(lambda i: explain.road_curve(
            model, x[i: i + 1], maps[i: i + 1], y[i: i + 1]).scores.numpy(), n))

    a = explain.road_curve(model, x, maps, y, noise_std=0.0).scores.numpy()
    b = np.concatenate(_loop(lambda i: explain.road_curve(
        model, x[i: i + 1], maps[i: i + 1], y[i: i + 1], noise_std=0.0).scores.numpy(), n))
    if not np.allclose(a, b, atol=1e-3):
        raise RuntimeError("batched and per-image ROAD curves differ")
    batched(), loop()
    return _interleaved([batched, loop], reps)


def run(short=False):
    """Benchmark rows (see the module docstring): `FULL` sizes, or `SHORT` when `short`."""
    s = SHORT if short else FULL
    size, n, steps, reps = s["size"], s["n_images"], s["steps"], s["reps"]
    model, x, y, maps = _setup(size, n)
    t_del, t_del_loop = bench_deletion(model, x, y, maps, steps, reps)
    (t_rand, t_rand_loop), layers = bench_randomisation(model, x, y, reps)
    nr = s["n_road"]
    t_road, t_road_loop = bench_road(model, x[:nr], y[:nr], maps[:nr], reps)
    return [
        {"name": "deletion_batched_over_loop", "value": t_del_loop / t_del, "unit": "x",
         "target": ">= 2",
         "detail": f"VGG-style 3 blocks, {size}x{size}x1, {n} images, {steps} steps: one call "
                   f"{t_del * 1e3:.0f} ms, per-image loop {t_del_loop * 1e3:.0f} ms"},
        {"name": "randomisation_batched_over_loop", "value": t_rand_loop / t_rand, "unit": "x",
         "target": ">= 5",
         "detail": f"{layers} layers re-initialised in turn, HiResCAM maps, {n} images: one "
                   f"call {t_rand * 1e3:.0f} ms, per-image loop {t_rand_loop * 1e3:.0f} ms"},
        {"name": "road_batched_over_loop", "value": t_road_loop / t_road, "unit": "x",
         "target": None,
         "detail": f"MoRF 0.1..0.9, {nr} images: one call {t_road * 1e3:.0f} ms, per-image "
                   f"loop {t_road_loop * 1e3:.0f} ms"},
    ]
