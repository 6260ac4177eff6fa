"""Build and data functions for the one-vs-two-replica check of HeatmapLossModel."""

import keras
import numpy as np


def build(precision):
    inputs = keras.Input((8, 8, 1))
    a = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="cam")(inputs)
    logits = keras.layers.Dense(3, dtype="float32")(keras.layers.Flatten()(a))
    from heatmap_loss.models import HeatmapLossModel

    model = HeatmapLossModel(keras.Model(inputs, logits), cam_layer="cam", weight=1.0)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    return model


def data():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(8, 8, 8, 1)).astype("float32")
    masks = np.zeros((8, 8, 8), "float32")
    masks[:, 2:6, 2:6] = 1
    return (images, masks), rng.integers(0, 3, 8)
