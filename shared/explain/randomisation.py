"""Sanity check by cascading model-parameter randomisation (Adebayo et al. 2018).

Adebayo, Gilmer, Muelly, Goodfellow, Hardt and Kim, "Sanity Checks for Saliency Maps"
(NeurIPS 2018), model randomisation test: re-initialise the layers of the trained model one at a time,
from the output down, each step keeping the earlier re-initialisations (cascading), and
compare each step's maps with the trained model's by Spearman rank correlation. A map
that stays the same while the weights it should explain are destroyed does not explain
the model (in their experiments guided back-propagation keeps drawing the same edges).

Re-initialising a layer draws its weights again from its own initializers (those in its
config: Glorot for a Dense kernel, zeros for its bias, ones / zeros for batch-norm
statistics), each seeded from `seed` and the layer's position, so a check is repeatable.
The model is randomised in place, which keeps the compiled map functions (cached per
model) valid, and its trained weights are put back when the check ends, also when it
raises.

`map_fn(model, images, targets) -> maps [N, ...]` is any map: HiResCAM or Grad-CAM from
`shared.explain.attribution`, integrated gradients or occlusion from
`shared.explain.reference_maps`:

    >>> def gradcam_maps(model, x, y):
    ...     return gradcam(model, x, layer_name="block5_conv3", targets=y)
    >>> result = cascading_randomisation(model, x, y, gradcam_maps, seed=0)
    >>> result.layers, result.correlations  # [L] names, [L, N] Spearman
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from shared.explain.attribution import (
    _all_layer_paths,
    _as_functional,
    _path_name,
    find_layer_path,
)
from shared.explain.validation import check_finite, check_seed


def _average_ranks(x):
    """Ranks 0 .. P-1 along the last axis of [N, P]; tied values share their mean rank."""
    n, p = x.shape
    order = tf.argsort(x, axis=-1, stable=True)
    ordered = tf.gather(x, order, batch_dims=1)
    starts = tf.concat([tf.ones([n, 1], tf.int32),
                        tf.cast(ordered[:, 1:] != ordered[:, :-1], tf.int32)], axis=1)
    groups = tf.cumsum(starts, axis=1) - 1 + p * tf.range(n)[:, None]
    positions = tf.cast(tf.tile(tf.range(p)[None], [n, 1]), x.dtype)
    mean_position = tf.math.unsorted_segment_mean(
        tf.reshape(positions, [-1]), tf.reshape(groups, [-1]), n * p
    )
    ranks_in_order = tf.gather(mean_position, groups)
    return tf.gather(ranks_in_order, tf.argsort(order, axis=-1, stable=True), batch_dims=1)


def spearman_correlation(a, b):
    """Spearman rank correlation of each pair of maps, ties by mean rank (as scipy).

    Args:
        a, b: float tensors of the same shape [N, ...]; each sample is flattened.

    Returns:
        float32 tensor [N]. A constant map has no ranking: its correlation is NaN.

    Raises:
        ValueError: shapes that differ or non-finite values.
    """
    a = tf.cast(tf.convert_to_tensor(a), tf.float64)
    b = tf.cast(tf.convert_to_tensor(b), tf.float64)
    if tuple(a.shape) != tuple(b.shape) or len(a.shape) < 2:
        raise ValueError(
            "a and b must have the same shape [N, ...]. Received: "
            f"a.shape={tuple(a.shape)}, b.shape={tuple(b.shape)}"
        )
    check_finite(a, "a")
    check_finite(b, "b")
    n = a.shape[0]
    ra = _average_ranks(tf.reshape(a, [n, -1]))
    rb = _average_ranks(tf.reshape(b, [n, -1]))
    ra -= tf.reduce_mean(ra, axis=1, keepdims=True)
    rb -= tf.reduce_mean(rb, axis=1, keepdims=True)
    cov = tf.reduce_sum(ra * rb, axis=1)
    scale = tf.sqrt(tf.reduce_sum(ra * ra, axis=1) * tf.reduce_sum(rb * rb, axis=1))
    return tf.cast(cov / scale, tf.float32)  # 0 / 0 = NaN for a constant map


class RandomisationResult(NamedTuple):
    """Rank correlation of the maps at each step of the cascade.

    Attributes:
        layers: tuple of str, the layer re-initialised at each step (path names, as
            `shared.explain.find_layer_path` reads them), output side first. Step k has
            `layers[:k + 1]` re-initialised.
        correlations: float32 [L, N], Spearman correlation of step k's map of image n
            with the trained model's map of that image.
    """

    layers: tuple
    correlations: tf.Tensor


def weighted_layers(model):
    """Path names of the layers that hold weights, output side first.

    Containers (nested functional or Sequential models) are entered, not counted.
    """
    if _as_functional(model) is None:
        raise ValueError(
            "model must be a functional or Sequential model whose layers can be listed. "
            f"Received: model={getattr(model, 'name', model)!r} of type {type(model).__name__}"
        )
    paths = [p for p in _all_layer_paths(model)
             if _as_functional(p[-1]) is None and p[-1].weights]
    return [_path_name(p) for p in reversed(paths)]


def _seeded(config, seeds):
    """A copy of a layer config whose random initializers carry the next seeds."""
    if isinstance(config, dict):
        out = {}
        for key, value in config.items():
            if key.endswith("initializer") and isinstance(value, str):
                value = keras.initializers.serialize(keras.initializers.get(value))
            if (key.endswith("initializer") and isinstance(value, dict)
                    and isinstance(value.get("config"), dict) and "seed" in value["config"]):
                value = copy.deepcopy(value)
                value["config"]["seed"] = next(seeds)
                out[key] = value
            else:
                out[key] = _seeded(value, seeds)
        return out
    if isinstance(config, list):
        return [_seeded(v, seeds) for v in config]
    return config


def _fresh_values(layer, name, seed):
    """Freshly initialised weight values for `layer`, from its own initializers."""
    build = layer.get_build_config()
    if build is None:
        raise ValueError(f"layers must be built to be re-initialised. Received: layer "
                         f"{name!r} is not built")
    seeds = iter(np.random.SeedSequence(seed).generate_state(1000).tolist())
    fresh = type(layer).from_config(_seeded(layer.get_config(), seeds))
    fresh.build_from_config(build)
    values = [np.asarray(w) for w in fresh.get_weights()]
    if [v.shape for v in values] != [tuple(w.shape) for w in layer.weights]:
        raise ValueError(
            f"layers must be rebuildable from their config to be re-initialised. Received: "
            f"layer {name!r}, whose rebuilt weights have other shapes"
        )
    return values


def _maps(map_fn, model, images, targets, where):
    maps = tf.convert_to_tensor(map_fn(model, images, targets))
    if len(maps.shape) < 2:
        raise ValueError(f"map_fn must return one map per sample, [N, ...]. Received: shape "
                         f"{tuple(maps.shape)} {where}")
    check_finite(maps, f"maps {where}")
    return maps


def cascading_randomisation(model, images, targets, map_fn, *, seed, layers=None,
                            absolute=False):
    """Maps of the trained model against maps after cascading re-initialisation.

    Args:
        model: keras.Model, functional or Sequential (nested models are entered).
        images: the inputs `map_fn` takes (a tensor, or a structure for multi-input
            models).
        targets: passed to `map_fn` unchanged (class indices, or a callable).
        map_fn: callable `(model, images, targets) -> maps [N, ...]`, finite.
        seed: int. Seeds the re-initialisation (layer k uses seed `[seed, k]`).
        layers: list of layer names or paths, optional, in the order to re-initialise
            them (output side first). Default: every layer with weights, output first
            (`weighted_layers`).
        absolute: bool, default False. Compare absolute values of the maps (Adebayo et
            al. report both; signed maps such as integrated gradients may flip sign).

    Returns:
        RandomisationResult: `layers` [L] and `correlations` [L, N].

    Raises:
        ValueError: an unknown layer name, a model whose layers cannot be listed, maps
            that are not [N, ...], change shape or hold NaN or infinite values.
    """
    seed = check_seed(seed)
    names = weighted_layers(model) if layers is None else [str(n) for n in layers]
    if not names:
        raise ValueError(f"layers must name at least one layer with weights. Received: "
                         f"layers={layers!r}")
    chosen = [find_layer_path(model, n)[-1] for n in names]
    for name, layer in zip(names, chosen):
        if not layer.weights:
            raise ValueError(f"layers must hold weights to be re-initialised. Received: "
                             f"layer {name!r} has none")
    trained = _maps(map_fn, model, images, targets, "of the trained model")
    if absolute:
        trained = tf.abs(trained)
    fresh = [_fresh_values(layer, name, [seed, k])
             for k, (name, layer) in enumerate(zip(names, chosen))]
    saved = {}
    rows = []
    try:
        for name, layer, values in zip(names, chosen, fresh):
            if id(layer) not in saved:
                saved[id(layer)] = (layer, [np.asarray(w) for w in layer.get_weights()])
            layer.set_weights(values)
            maps = _maps(map_fn, model, images, targets, f"after re-initialising {name!r}")
            if tuple(maps.shape) != tuple(trained.shape):
                raise ValueError(
                    f"map_fn must return maps of one shape. Received: {tuple(maps.shape)} "
                    f"after re-initialising {name!r}, {tuple(trained.shape)} before"
                )
            rows.append(spearman_correlation(trained, tf.abs(maps) if absolute else maps))
    finally:
        for layer, values in saved.values():
            layer.set_weights(values)
    return RandomisationResult(tuple(names), tf.stack(rows))
