"""Small models whose evidence is known by construction, for the metric tests."""

import keras
import numpy as np


def linear_model(weights, bias, input_shape):
    """Flatten -> Dense with the given weights [prod(input_shape), K] and bias [K].

    Class k scores `sum(weights[:, k] * x.ravel()) + bias[k]`.
    """
    weights = np.asarray(weights, np.float32)
    inp = keras.Input(input_shape)
    dense = keras.layers.Dense(weights.shape[1], name="head")
    out = dense(keras.layers.Flatten()(inp))
    model = keras.Model(inp, out, name="linear")
    dense.set_weights([weights, np.asarray(bias, np.float32)])
    return model


def region_mean_model(region):
    """Two classes: the mean of a one-channel image over `region`, and 1 minus it."""
    region = np.asarray(region, np.float32)
    w = region.ravel() / region.sum()
    return linear_model(np.stack([w, -w], axis=1), [0.0, 1.0], region.shape + (1,))
