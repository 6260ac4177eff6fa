"""Speed of a heatmap-loss training step against a cross-entropy step.

`run()` follows the suite's benchmark interface (a list of dicts with name, value,
unit and target): both models have the same classifier and batch; the CCE model is
`HeatmapLossModel(weight=0)` (no maps), the heatmap model adds the HiResCAM map of
the true class and its penalty. Steps are timed alternately after a warm-up so that
both see the same machine load. Target: a heatmap step at most 1.15x a CCE step.
`run(short=True)` times 3 steps of a batch of 8 after one warm-up step (seconds, for a
smoke run of the suite).
"""

import time

import numpy as np


def step_times(*, image_size=(52, 67), filters=(8, 16, 32, 32, 32), dense_units=32,
               batch_size=32, steps=20, warmup=3, seed=0) -> dict:
    """Median seconds per compiled training step for the "cce" and "heatmap" models."""
    import keras
    import tensorflow as tf

    from heatmap_loss.models import HeatmapLossModel, build_classifier

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    images = tf.constant(rng.uniform(0, 255, (batch_size,) + tuple(image_size) + (1,)), tf.float32)
    masks = np.zeros((batch_size,) + tuple(image_size), np.float32)
    masks[:, image_size[0] // 4: image_size[0] // 2, image_size[1] // 4: 3 * image_size[1] // 4] = 1
    masks = tf.constant(masks)
    labels = tf.constant(rng.integers(0, 4, batch_size), tf.int32)
    models = {}
    for group, weight, loss in (("cce", 0.0, "cce"), ("heatmap", 1.0, "mse")):
        clf = build_classifier(tuple(image_size) + (1,), filters=filters, dense_units=dense_units)
        model = HeatmapLossModel(clf, weight=weight, classification_loss=loss)
        model.compile(optimizer=keras.optimizers.Adam(1e-4))
        step = tf.function(model.train_step)
        for _ in range(warmup):
            step(((images, masks), labels))
        models[group] = step
    times = {g: [] for g in models}
    for _ in range(steps):
        for group, step in models.items():
            start = time.perf_counter()
            logs = step(((images, masks), labels))
            float(logs["loss"])
            times[group].append(time.perf_counter() - start)
    return {g: float(np.median(t)) for g, t in times.items()}


def run(short=False) -> list:
    """Benchmark rows: seconds per step of each group and their ratio.

    Args:
        short: bool, default False. Batch 8, one warm-up step and 3 timed steps
            instead of batch 32, 3 and 20.
    """
    batch, steps, warmup = (8, 3, 1) if short else (32, 20, 3)
    image_size = (52, 67)
    t = step_times(image_size=image_size, batch_size=batch, steps=steps, warmup=warmup)
    return [
        {"name": "heatmap_loss cce step", "value": t["cce"], "unit": "s", "target": None},
        {"name": "heatmap_loss heatmap step", "value": t["heatmap"], "unit": "s", "target": None},
        {"name": "heatmap_loss heatmap/cce step ratio", "value": t["heatmap"] / t["cce"],
         "unit": "x", "target": "<= 1.15",
         "detail": f"batch {batch} of {image_size[0]}x{image_size[1]}x1, median of {steps} "
                   f"alternating compiled steps: CCE {t['cce'] * 1e3:.1f} ms, heatmap {t['heatmap'] * 1e3:.1f} ms"},
    ]


if __name__ == "__main__":  # pragma: no cover
    for row in run():
        print(row)
