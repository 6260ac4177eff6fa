"""Independent, reproducible trials of one compiled model (one graph trace per group).

Tracing the training step of a heatmap-loss model (second-order attribution terms)
costs more than training a small model, so a group's search builds its model once
and gives it new initial weights before every trial. Three things make that
equivalent to a newly built model:

* **Seeded redraws.** An unseeded Keras 3 initializer keeps one seed and returns the
  same values on every call, so calling a layer's stored initializer again gives
  back the first build's weights. `draw_initial_weights` instead draws every kernel
  and bias from a copy of its initializer seeded by the trial's `init_seed` and the
  layer's name: one seed gives the same weights twice, two seeds give different
  ones, and two models of the same architecture (the CCE and the heatmap group)
  start trial k from identical weights.
* **Pretrained parts stay.** `InitialWeights` remembers the weights of the layers
  that were loaded (ImageNet or a weights file) right after the build; every trial
  restores them and draws only the rest (the head) from its seed.
* **The loss scale survives.** `reset_optimizer` zeroes the optimizer's slots and
  step counters but sets the dynamic loss scale of mixed float16 back to its
  initial value (zeroing it would make every later step's gradients zero / NaN).
"""

from __future__ import annotations

import zlib

import numpy as np

import keras

# Weight attributes of Keras layers and the initializer attribute of each.
_WEIGHT_INITIALIZERS = (("kernel", "kernel_initializer"), ("bias", "bias_initializer"))


def trial_init_seed(base_seed: int, trial_index: int) -> int:
    """The initial-weight seed of trial `trial_index` of a run seeded `base_seed`.

    The same for every group, so trial k of each group starts from the same weights.

    Args:
        base_seed: int. The run's seed.
        trial_index: int >= 0. The trial's position in its group's search.

    Returns:
        int in [0, 2**31).
    """
    if base_seed is None or trial_index is None:
        raise ValueError(f"trial_init_seed needs integers. Received: base_seed={base_seed!r}, "
                         f"trial_index={trial_index!r}")
    state = np.random.SeedSequence([int(base_seed), int(trial_index), 0x1E47]).generate_state(1)
    return int(state[0] % (2**31))


def walk_layers(layer):
    """`layer` and every layer nested inside it, depth first."""
    yield layer
    for sub in getattr(layer, "layers", []):
        yield from walk_layers(sub)


def _seeded(initializer, seed: int):
    config = initializer.get_config()
    if "seed" not in config:  # constant initializers (zeros, ones) draw nothing
        return initializer
    return type(initializer).from_config({**config, "seed": int(seed)})


def _layer_seed(init_seed: int, layer_name: str, attribute: str) -> int:
    key = zlib.crc32(f"{layer_name}/{attribute}".encode())
    return int(np.random.SeedSequence([int(init_seed), key]).generate_state(1)[0] % (2**31))


class InitialWeights:
    """What a trial starts from: the loaded (pretrained) layers, the rest drawn by seed.

    Args:
        model: keras.Model, right after it was built (pretrained weights loaded).
        pretrained: str, optional. Name of a nested layer or model (the backbone,
            "vgg16") whose weights were loaded and must be kept; None draws every
            layer from the seed.

    Example:
        >>> start = InitialWeights(model, pretrained="vgg16")
        >>> start.apply(model, init_seed=trial_init_seed(0, k))
    """

    def __init__(self, model: keras.Model, pretrained: str | None = None):
        self.pretrained = pretrained
        self.kept = {}
        if pretrained is not None:
            backbone = _find_layer(model, pretrained)
            for layer in walk_layers(backbone):
                if layer.weights and not getattr(layer, "layers", None):
                    self.kept[layer.name] = [w.numpy().copy() for w in layer.weights]

    def describe(self) -> str:
        """One sentence for reports: how every trial starts."""
        if self.pretrained is None:
            return "every weight drawn from the trial's init_seed"
        return (f"the loaded {self.pretrained} weights, restored before every trial; the "
                "other layers drawn from the trial's init_seed")

    def apply(self, model: keras.Model, init_seed: int) -> None:
        """Sets `model`'s weights to those trial `init_seed` starts from."""
        for layer in walk_layers(model):
            if layer.name in self.kept:
                for variable, value in zip(layer.weights, self.kept[layer.name]):
                    variable.assign(value)
                continue
            for attr, init_attr in _WEIGHT_INITIALIZERS:
                variable = getattr(layer, attr, None)
                initializer = getattr(layer, init_attr, None)
                if variable is None or initializer is None:
                    continue
                seeded = _seeded(initializer, _layer_seed(init_seed, layer.name, attr))
                variable.assign(seeded(variable.shape, dtype=variable.dtype))


def _find_layer(model, name):
    for layer in walk_layers(model):
        if layer.name == name and layer is not model:
            return layer
    raise ValueError(f"layer {name!r} not found in model {model.name!r}; expected the name "
                     "of the pretrained backbone (for example 'vgg16')")


def draw_initial_weights(model: keras.Model, init_seed: int) -> None:
    """Draws every kernel and bias of `model` from its initializer seeded by `init_seed`."""
    InitialWeights(model).apply(model, init_seed)


def reset_optimizer(optimizer, learning_rate: float) -> None:
    """Returns a built or unbuilt optimizer to its state before the first step.

    Slots (moments) and step counters are zeroed; the dynamic loss scale of a
    `LossScaleOptimizer` (mixed float16) is set back to its initial scale; the
    learning rate is set to `learning_rate`.
    """
    initial_scale = getattr(optimizer, "initial_scale", None)
    for variable in optimizer.variables:
        name = variable.path.rsplit("/", 1)[-1]
        if name == "learning_rate":
            continue
        if name == "dynamic_scale" and initial_scale is not None:
            variable.assign(np.asarray(initial_scale, dtype=variable.dtype))
        else:
            variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
    optimizer.learning_rate = learning_rate


def start_trial(model: keras.Model, start: InitialWeights, *, init_seed: int,
                learning_rate: float) -> keras.Model:
    """Gives a compiled model trial `init_seed`'s initial weights and a fresh optimizer.

    The batch order of the trial is seeded from `init_seed` too (Keras' global
    random state), so the groups see the same batches at trial k.

    Args:
        model: compiled keras.Model.
        start: InitialWeights taken right after `model` was built.
        init_seed: int. The trial's seed (`trial_init_seed`).
        learning_rate: float.

    Returns:
        `model`.
    """
    keras.utils.set_random_seed(int(init_seed))
    start.apply(model, init_seed)
    reset_optimizer(model.optimizer, learning_rate)
    return model
