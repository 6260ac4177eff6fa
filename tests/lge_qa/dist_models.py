"""Build and data functions for the one-vs-two-replica checks of SupConPretrainer."""

import keras
import numpy as np

SIZE = 16


def _plain_encoder():
    # No batch norm: with it each replica normalises its own half batch, and one device
    # and two replicas would differ by design, not by a bug in the train step.
    inputs = keras.Input((SIZE, SIZE, 1))
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="tanh", name="c1")(inputs)
    h = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="tanh", name="c2")(h)
    return keras.Model(inputs, h, name="plain_encoder")


def build(precision):
    from lge_qa.models import SupConPretrainer

    model = SupConPretrainer(_plain_encoder(), projection_dim=5, temperature=0.1)
    model.compile(optimizer=keras.optimizers.SGD(0.002))
    return model


def build_resnet(precision):
    """The QA encoder (ResNet basic blocks with batch norm), as the experiment pre-trains it."""
    from lge_qa.models import SupConPretrainer, build_encoder
    from shared.training.lars import LARS

    model = SupConPretrainer(build_encoder(SIZE, filters=(4, 8), blocks=(1, 1)), projection_dim=5,
                             temperature=0.1)
    model.compile(optimizer=LARS(learning_rate=0.5, eta=0.01))
    return model


def data():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(8, 1, SIZE, SIZE, 1))
    views = (images + 0.3 * rng.normal(size=(8, 2, SIZE, SIZE, 1))).astype("float32")
    # Four binary labels; rows 0-3 go to replica 0 and 4-7 to replica 1, so every
    # label has positives that only the other replica holds.
    labels = np.array([[0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 1],
                       [0, 1, 0, 1], [1, 1, 1, 0], [0, 0, 0, 0], [1, 0, 1, 1]], dtype="int32")
    return views, labels
