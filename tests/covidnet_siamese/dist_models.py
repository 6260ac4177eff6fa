"""Build and data functions for the one-vs-two-replica check of the siamese training.

The siamese net trains with Keras's own `train_step` (binary cross-entropy on the
pair labels, summed over the twin's two calls by the shared weights). The tiny net is
built without batch normalisation: with it, each replica normalises its half of the
batch with that half's mean and variance (per-replica statistics, docs/scaling.md),
so one and two replicas would compute different losses by design, not by a bug;
`build_bn` keeps it, for the mixed-precision check, where only finiteness and the
loss's size are compared.
"""

import keras
import numpy as np

SIZE = 16


def _siamese(batch_norm):
    from covidnet_siamese.models import build_siamese_net

    model = build_siamese_net((SIZE, SIZE, 1), nf=4, depths=(1,), embedding_dim=8, batch_norm=batch_norm)
    # Plain SGD: with Adam a gradient of ~1e-9 on one device and ~1e-8 on two moves a
    # weight by a full step either way, so the weights could not be compared.
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
    return model


def build(precision):
    return _siamese(batch_norm=False)


def build_bn(precision):
    return _siamese(batch_norm=True)


def data():
    """One global batch of 8 pairs (image_a, image_b), half of them labelled same (1)."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(8, SIZE, SIZE, 1)).astype("float32")
    b = rng.normal(size=(8, SIZE, SIZE, 1)).astype("float32")
    b[:4] = a[:4] + 0.1 * rng.normal(size=(4, SIZE, SIZE, 1)).astype("float32")
    same = np.array([1, 1, 1, 1, 0, 0, 0, 0], "float32")
    return (a, b), same
