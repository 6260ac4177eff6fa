"""bfloat16 against float32: the training step of each paper's powered preset on this machine.

For every paper the model its powered study trains is built twice at the powered
preset's sizes (input, widths, batch size; see `FAMILIES`), once under the float32 dtype
policy and once under `mixed_bfloat16` (bfloat16 compute, float32 variables), both
compiled with Adam. After two warm-up steps each, the two are timed in interleaved
rounds of `steps` training steps (`train_on_batch` on random in-memory tensors; the order
within a round alternates), and the row is the ratio of the best rounds' mean step times,
bf16 / fp32: below 1 means bfloat16 is faster. On a shared machine other processes only
add time, so the best rounds are the least disturbed; the detail line also gives the
median and quartiles of the per-round ratios. The figures are context (no
target): whether bfloat16 pays depends on the CPU (oneDNN runs bfloat16 matrix products
on AVX-512 BF16 or AMX units; without them it converts to float32 and is slower).

A last row checks that a bfloat16 training step of a small heatmap_loss classifier gives a
finite loss (target: 1 = finite).

`run(short=True)` builds the tiny presets' widths, batch 4, with one round of one step
(about a minute, nearly all of it tracing fourteen training steps), for a smoke run; its
ratios say nothing about the powered presets.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

FULL = {"rounds": 15, "steps": 2}
SHORT = {"rounds": 1, "steps": 1}
SHORT_BATCH = 4


# Each builder takes `short` and returns (model, input shapes, batch size): the powered
# preset's model and batch, or with `short` the tiny preset's widths.


def _heatmap_loss(short=False):
    from heatmap_loss.models import build_classifier

    if short:
        return build_classifier((32, 40, 1), filters=(2, 4, 4, 8, 8), dense_units=8), \
            [(32, 40, 1)], SHORT_BATCH
    return build_classifier((52, 67, 1), filters=(8, 16, 32, 32, 32), dense_units=32,
                            kernel_initializer="he_normal"), [(52, 67, 1)], 16


def _covidnet_single(short=False):
    from covidnet_siamese.models import build_single_net

    if short:
        return build_single_net((32, 32, 1), nf=4, depths=(1, 1), fc_units=16), \
            [(32, 32, 1)], SHORT_BATCH
    return build_single_net((32, 32, 1), nf=8, depths=(1, 1), fc_units=256), [(32, 32, 1)], 16


def _covidnet_siamese(short=False):
    from covidnet_siamese.models import build_siamese_net

    nf, emb, batch = (4, 8, SHORT_BATCH) if short else (8, 32, 16)
    return (build_siamese_net((32, 32, 1), nf=nf, depths=(1, 1), embedding_dim=emb),
            [(32, 32, 1), (32, 32, 1)], batch)


def _lge_qa_multitask(short=False):
    from lge_qa.models import build_encoder, build_qa_model

    size, filters, latent, batch = (32, (4, 8), 8, SHORT_BATCH) if short else \
        (48, (8, 16, 32), 32, 16)
    encoder = build_encoder(size, filters=filters, blocks=(1,) * len(filters))
    return (build_qa_model(encoder, latent_dim=latent, decoder=True, qa_input="latents"),
            [(size, size, 1)], batch)


def _hrpqct(arm):
    def build(short=False):
        from hrpqct.models import build_grader

        if short:
            size, base, prop, dense, batch = 32, (4, 4, 8, 8, 8), (4, 8), 8, SHORT_BATCH
        else:
            size, base, prop, dense, batch = 96, (8, 8, 16, 16, 32), (8, 16, 32), 32, 64
        model = build_grader(arm, (size, size, 1), baseline_filters=base,
                             proposed_filters=prop, dense_units=dense)
        return model, [(size, size, 1)], batch
    return build


def _bar_ad(short=False):
    from bar_ad.models import build_classifier, build_encoder

    if short:
        encoder = build_encoder(16, patch_size=8, width=16, depth=1, num_heads=2, mlp_dim=32)
        return build_classifier(encoder, head_units=(16, 8)), [(16, 16, 16, 1)], SHORT_BATCH
    encoder = build_encoder(32, patch_size=8, width=64, depth=2, num_heads=4, mlp_dim=128)
    return build_classifier(encoder, head_units=(128, 64)), [(32, 32, 32, 1)], 12


FAMILIES = {
    "heatmap_loss VGG16": _heatmap_loss,
    "covidnet_siamese single net": _covidnet_single,
    "covidnet_siamese siamese net": _covidnet_siamese,
    "lge_qa ResNet multi-task": _lge_qa_multitask,
    "hrpqct baseline grader": _hrpqct("baseline"),
    "hrpqct proposed grader": _hrpqct("proposed"),
    "bar_ad 3D ViT classifier": _bar_ad,
}


def _build(builder, precision, short):
    """A compiled model under `precision`, its inputs and targets; the policy is restored."""
    import keras
    from keras import tree

    keras.mixed_precision.set_global_policy(precision)
    try:
        model, shapes, batch = builder(short)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(batch,) + s).astype("float32") for s in shapes]
    x = xs if len(xs) > 1 else xs[0]
    y = tree.map_structure(lambda t: np.zeros(t.shape, "float32"), model(x))
    model.compile(optimizer="adam", loss="mse")
    return model, x, y, batch, shapes


def _time_steps(model, x, y, steps):
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return (time.perf_counter() - start) / steps


def compare(builder, rounds, steps, short=False):
    """(best-round bf16/fp32 ratio, best fp32 step s, best bf16 step s, batch, input shapes,
    per-round ratios)."""
    import keras

    fp32 = _build(builder, "float32", short)
    bf16 = _build(builder, "mixed_bfloat16", short)
    try:
        for model, x, y, *_ in (fp32, bf16):
            for _ in range(2):  # tracing and allocation
                model.train_on_batch(x, y)
        times = {"fp32": [], "bf16": []}
        for r in range(rounds):
            order = (("fp32", fp32), ("bf16", bf16)) if r % 2 == 0 else \
                (("bf16", bf16), ("fp32", fp32))
            for key, (model, x, y, *_) in order:
                times[key].append(_time_steps(model, x, y, steps))
    finally:
        keras.backend.clear_session()
    ratios = [b / f for b, f in zip(times["bf16"], times["fp32"])]
    t32, t16 = min(times["fp32"]), min(times["bf16"])
    return t16 / t32, t32, t16, fp32[3], fp32[4], ratios


def bf16_loss_is_finite():
    """Trains a small heatmap_loss classifier one step under mixed_bfloat16; its loss."""
    import keras

    model, x, *_ = _build(_heatmap_loss, "mixed_bfloat16", True)
    y = np.eye(4, dtype="float32")[np.arange(len(x)) % 4]
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    try:
        loss = float(np.asarray(model.train_on_batch(x, y)).reshape(-1)[0])
    finally:
        keras.backend.clear_session()
    return loss


def run(short=False):
    """One "bf16/fp32 step ratio" row per family, and the finite-loss row.

    Args:
        short: bool, default False. The tiny presets' sizes, batch 4, one round of one
            step.
    """
    sizes = SHORT if short else FULL
    rows = []
    for label, builder in FAMILIES.items():
        label += " (tiny preset's widths, short)" if short else " (powered preset)"
        ratio, t32, t16, batch, shapes, ratios = compare(builder, short=short, **sizes)
        size = " and ".join("x".join(map(str, s[:-1])) for s in shapes)
        rows.append({
            "name": f"{label}: bf16/fp32 step ratio", "value": ratio, "unit": "x",
            "target": None,
            "detail": (f"input {size}, batch {batch}, best of {sizes['rounds']} interleaved "
                       f"rounds of {sizes['steps']} steps: fp32 {t32 * 1e3:.1f} ms, bf16 "
                       f"{t16 * 1e3:.1f} ms a step; median of the round ratios "
                       f"{statistics.median(ratios):.2f} (quartiles "
                       f"{np.percentile(ratios, 25):.2f}-{np.percentile(ratios, 75):.2f})")})
    loss = bf16_loss_is_finite()
    rows.append({"name": "mixed_bfloat16 tiny training step: loss finite",
                 "value": float(np.isfinite(loss)), "unit": "1 = finite", "target": ">= 1",
                 "detail": f"heatmap_loss tiny classifier, batch {SHORT_BATCH}: loss {loss:.4f}"})
    return rows
