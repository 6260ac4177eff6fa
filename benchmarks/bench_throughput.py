"""Training throughput and achieved FLOP/s of each paper preset's model.

For every paper the model is built at the `paper` preset's size, trained for a few
steps on random inputs, and timed after a warm-up step. FLOPs of one forward pass are
counted by TensorFlow's graph profiler on the frozen inference graph; a training step is
taken as 3x the forward pass (forward + two backward matrix products), the usual
estimate. On a GPU, the ratio to the card's peak is printed when the device is known.

The CPU figures say what a CPU can do with the paper presets (and why the quick presets
exist); the GPU figures come from the same module run on a GPU machine.

`run(short=True)` builds a small model of each family (fewer blocks, narrower layers,
smaller inputs; see the builders) and times one step of batch 2: seconds, for a smoke
run of the suite. Its row names carry "short" and the input size; its figures say
nothing about the paper presets.
"""

from __future__ import annotations

import time

import numpy as np

BATCH_CPU = 2
STEPS = 3
SHORT_BATCH = 2  # batch 1 with 8-filter ResNet stages crashes oneDNN (heap corruption, TF 2.21)
SHORT_STEPS = 1

# Peak dense throughput (FLOP/s) of known cards, for the "share of peak" column.
PEAKS = {"H100": {"float32": 67e12, "mixed_bfloat16": 989e12},
         "H200": {"float32": 67e12, "mixed_bfloat16": 989e12}}


def forward_flops(model, input_shapes) -> float:
    """FLOPs of one forward pass for one sample (graph profiler on frozen weights)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    specs = [tf.TensorSpec((1,) + tuple(s), tf.float32) for s in input_shapes]
    fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False))
    graph = convert_variables_to_constants_v2(fn.get_concrete_function(*specs)).graph
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    return float(tf.compat.v1.profiler.profile(graph=graph, options=opts).total_float_ops)


# Each builder returns (model, input shapes). With `short`, a small model of the same
# family (fewer blocks, narrower layers, smaller inputs): tracing a training step takes
# seconds instead of tens of seconds, which is all a smoke run needs.


def _heatmap_loss(short=False):
    from heatmap_loss.models import build_classifier

    if short:
        return build_classifier((32, 32, 1), filters=(8, 16, 32, 32, 32), dense_units=16), \
            [(32, 32, 1)]
    return build_classifier((105, 135, 1)), [(105, 135, 1)]


_COVIDNET_SHORT = {"nf": 8, "depths": (1, 1, 1, 1)}


def _covidnet_single(short=False):
    from covidnet_siamese.models import build_single_net

    if short:
        return build_single_net((64, 64, 1), fc_units=32, **_COVIDNET_SHORT), [(64, 64, 1)]
    return build_single_net((224, 224, 1), nf=128), [(224, 224, 1)]


def _covidnet_siamese(short=False):
    from covidnet_siamese.models import build_siamese_net

    if short:
        return (build_siamese_net((64, 64, 1), embedding_dim=32, **_COVIDNET_SHORT),
                [(64, 64, 1), (64, 64, 1)])
    return build_siamese_net((224, 224, 1), nf=128), [(224, 224, 1), (224, 224, 1)]


def _lge_qa_multitask(short=False):
    from lge_qa.models import build_encoder, build_qa_model

    if short:
        encoder = build_encoder(64, filters=(16, 32, 64, 128), blocks=(1, 1, 1, 1))
        return build_qa_model(encoder, latent_dim=16, decoder=True), [(64, 64, 1)]
    return build_qa_model(build_encoder(128), decoder=True), [(128, 128, 1)]


def _hrpqct_grader(short=False):
    from hrpqct.models import PAPER_INPUT_SHAPE, build_paper_grader, build_proposed_grader

    if short:
        return build_proposed_grader((64, 64, 1), filters=(8, 16, 32, 64), dense_units=16), \
            [(64, 64, 1)]
    return build_paper_grader(), [tuple(PAPER_INPUT_SHAPE)]


def _bar_ad_vit(short=False):
    from shared.backbones.vit3d import vit3d_encoder

    if short:
        return (vit3d_encoder((32, 32, 32, 1), width=32, depth=2, num_heads=2, mlp_dim=64),
                [(32, 32, 32, 1)])
    return vit3d_encoder((96, 96, 96, 1)), [(96, 96, 96, 1)]


MODELS = {
    "heatmap_loss VGG16 105x135": _heatmap_loss,
    "covidnet single 224 nf128": _covidnet_single,
    "covidnet siamese 224 nf128 (pairs)": _covidnet_siamese,
    "lge_qa ResNet34 multi-task 128": _lge_qa_multitask,
    "hrpqct proposed grader": _hrpqct_grader,
    "bar_ad 3D ViT 96^3": _bar_ad_vit,
}


def measure(builder, batch=BATCH_CPU, steps=STEPS, precision="float32", short=False):
    """(samples per second, achieved training FLOP/s, forward GFLOPs per sample, input
    shapes); `short` builds the builder's small model."""
    import keras
    from keras import tree

    keras.mixed_precision.set_global_policy(precision)
    try:
        model, shapes = builder(short)
        flops = forward_flops(model, shapes)
        rng = np.random.default_rng(0)
        xs = [rng.normal(size=(batch,) + s).astype("float32") for s in shapes]
        x = xs if len(xs) > 1 else xs[0]
        y = tree.map_structure(lambda t: np.zeros(t.shape, "float32"), model(x))
        model.compile(optimizer="adam", loss="mse")
        model.train_on_batch(x, y)  # warm-up: tracing and allocation
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        seconds = (time.perf_counter() - start) / steps
    finally:
        keras.mixed_precision.set_global_policy("float32")
        keras.backend.clear_session()
    per_second = batch / seconds
    return per_second, 3.0 * flops * per_second, flops / 1e9, shapes


def _device_name():
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU", None
    details = tf.config.experimental.get_device_details(gpus[0])
    name = details.get("device_name", "GPU")
    return name, next((k for k in PEAKS if k in name), None)


def run(short=False):
    """Two rows (samples/s, achieved GFLOP/s) per model and precision.

    Args:
        short: bool, default False. The builders' small models, batch 2, one timed
            step, float32 only.
    """
    device, known = _device_name()
    batch = BATCH_CPU if device == "CPU" else 16
    precisions = ["float32"] if device == "CPU" else ["float32", "mixed_bfloat16"]
    steps = STEPS
    if short:
        batch, steps, precisions = SHORT_BATCH, SHORT_STEPS, ["float32"]
    rows = []
    for label, builder in MODELS.items():
        for precision in precisions:
            rate, flops_per_s, gflops, shapes = measure(builder, batch=batch, steps=steps,
                                                        precision=precision, short=short)
            size = "short model, input " + "x".join(map(str, shapes[0])) + ", " if short else ""
            tag = f"{label} [{size}{device}, {precision}, batch {batch}]"
            detail = f"{gflops:.2f} GFLOP forward per sample"
            if known:
                peak = PEAKS[known][precision]
                detail += f"; {100 * flops_per_s / peak:.1f} % of {known} peak"
            rows.append({"name": f"{tag}: samples/s", "value": rate, "unit": "samples/s",
                         "target": None, "detail": detail})
            rows.append({"name": f"{tag}: achieved", "value": flops_per_s / 1e9,
                         "unit": "GFLOP/s", "target": None, "detail": detail})
    return rows
