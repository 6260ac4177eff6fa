"""Compiled inference-mode forward passes, cached per model.

An eager call or `Model.predict` costs more than the pass itself on small batches
(validation after every epoch, attribution metrics that perturb one batch many times):
`forward_fn(model)` traces `model(x, training=False)` once and keeps it with the model
(weakly referenced, so the cache does not keep a model alive); `predict_in_chunks` runs
it over an array in fixed-size chunks and returns NumPy.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf

_FORWARD_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def call_inference(model, x):
    """`model(x, training=False)` for Keras layers and models; `model(x)` for a plain callable."""
    if isinstance(model, keras.Layer):
        return model(x, training=False)
    return model(x)


def weak(model):
    """A callable returning `model`, weakly referenced where the object allows it."""
    try:
        return weakref.ref(model)
    except TypeError:
        return lambda: model


def cached_per_model(cache, model, make):
    """`make()` once per model (models that cannot be weakly referenced: every call)."""
    try:
        fn = cache.get(model)
    except TypeError:
        return make()
    if fn is None:
        fn = make()
        cache[model] = fn
    return fn


def forward_fn(model):
    """A compiled `x -> model(x, training=False)`, cached per model.

    Args:
        model: keras.Model, or any TensorFlow-traceable callable from inputs to outputs.
    """
    model_ref = weak(model)
    return cached_per_model(
        _FORWARD_CACHE, model,
        lambda: tf.function(lambda x: call_inference(model_ref(), x), reduce_retracing=True),
    )


def predict_in_chunks(model, x, batch_size=512) -> np.ndarray:
    """`forward_fn(model)` over `x` in chunks of `batch_size`, as one NumPy array."""
    fn = forward_fn(model)
    return np.concatenate([keras.ops.convert_to_numpy(fn(x[i:i + batch_size]))
                           for i in range(0, len(x), batch_size)])
