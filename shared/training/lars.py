"""Optimizers Keras 3 does not ship: LARS (You, Gitman & Ginsburg 2017).

Keras 3 has SGD, Adam(W), Lamb, Lion, ... but no LARS; TF Model Garden's LARS is a
legacy `tf_keras` optimizer. This one is a `keras.optimizers.Optimizer` subclass,
works with any Keras backend and serialises through `get_config`.
"""

import re

import keras
from keras import ops

DEFAULT_EXCLUDE = ("bias", "gamma", "beta", "moving_mean", "moving_variance")


@keras.saving.register_keras_serializable(package="medrepro")
class LARS(keras.optimizers.Optimizer):
    """Layer-wise Adaptive Rate Scaling with momentum (You et al. 2017, Algorithm 1).

    For every weight tensor w with gradient g, not excluded:

        trust = eta * ||w|| / (||g|| + weight_decay * ||w|| + epsilon)
        (trust = 1 when ||w|| or ||g|| is 0)
        v <- momentum * v + learning_rate * trust * (g + weight_decay * w)
        w <- w - v                          (Nesterov: w <- w - (momentum * v + lr * trust * (g + wd * w)))

    Excluded tensors (biases and normalisation parameters, matched by name, and any
    tensor of rank <= 1 when `exclude_rank1=True`) skip both the trust ratio and the
    weight decay: v <- momentum * v + learning_rate * g. This follows SimCLR /
    SupCon practice, which the SupCon paper's LARS setting inherits.

    Args:
        learning_rate: float or schedule, default 0.1. Global learning rate.
        momentum: float, default 0.9.
        weight_decay: float, default 0.0. L2 coefficient folded into the update (not
            Keras' decoupled decay).
        eta: float, default 0.001. Trust coefficient.
        epsilon: float, default 1e-9. Added to the trust-ratio denominator.
        nesterov: bool, default False.
        exclude_from_adaptation: sequence of str, optional. Regular expressions
            that must match a whole component of the variable's path: its own name
            ("gamma" in "conv1_bn/gamma") or a layer's name ("conv1_bn"). A word
            inside a longer name does not count, so "bias" leaves
            "bias_head/kernel" alone. Default `DEFAULT_EXCLUDE`.
        exclude_rank1: bool, default True. Also exclude every variable of rank <= 1.
        name: str, default "lars".
        **kwargs: base `keras.optimizers.Optimizer` arguments (clipnorm, ...);
            Keras' own decoupled `weight_decay` is not used.

    Example:
        >>> opt = LARS(learning_rate=0.5, momentum=0.9, weight_decay=1e-6)
        >>> model.compile(optimizer=opt, loss="mse")
    """

    def __init__(
        self,
        learning_rate=0.1,
        momentum=0.9,
        weight_decay=0.0,
        eta=0.001,
        epsilon=1e-9,
        nesterov=False,
        exclude_from_adaptation=None,
        exclude_rank1=True,
        name="lars",
        **kwargs,
    ):
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=None, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1). Received: momentum={momentum}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0. Received: weight_decay={weight_decay}")
        if eta <= 0:
            raise ValueError(f"eta must be > 0. Received: eta={eta}")
        self.momentum = float(momentum)
        self.lars_weight_decay = float(weight_decay)
        self.eta = float(eta)
        self.epsilon = float(epsilon)
        self.nesterov = bool(nesterov)
        self.exclude_from_adaptation = tuple(
            DEFAULT_EXCLUDE if exclude_from_adaptation is None else exclude_from_adaptation
        )
        self.exclude_rank1 = bool(exclude_rank1)
        self._exclude_patterns = [re.compile(p) for p in self.exclude_from_adaptation]

    def is_excluded(self, variable) -> bool:
        """Whether `variable` skips the trust ratio and the weight decay."""
        if self.exclude_rank1 and len(variable.shape) <= 1:
            return True
        path = getattr(variable, "path", None) or variable.name
        parts = path.split("/")
        return any(p.fullmatch(part) for p in self._exclude_patterns for part in parts)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self.momentums = [self.add_variable_from_reference(v, "momentum") for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        v = self.momentums[self._get_variable_index(variable)]
        if self.is_excluded(variable):
            step = g
        else:
            wd = ops.cast(self.lars_weight_decay, variable.dtype)
            w_norm = ops.sqrt(ops.sum(ops.square(variable)))
            g_norm = ops.sqrt(ops.sum(ops.square(g)))
            ratio = self.eta * w_norm / (g_norm + wd * w_norm + self.epsilon)
            trust = ops.where(ops.logical_and(w_norm > 0, g_norm > 0), ratio, ops.ones_like(ratio))
            step = trust * (g + wd * variable)
        scaled = lr * step
        self.assign(v, ops.add(ops.multiply(self.momentum, v), scaled))
        if self.nesterov:
            self.assign_sub(variable, ops.add(ops.multiply(self.momentum, v), scaled))
        else:
            self.assign_sub(variable, v)

    def get_config(self):
        config = super().get_config()
        config.update({
            "momentum": self.momentum,
            "weight_decay": self.lars_weight_decay,
            "eta": self.eta,
            "epsilon": self.epsilon,
            "nesterov": self.nesterov,
            "exclude_from_adaptation": list(self.exclude_from_adaptation),
            "exclude_rank1": self.exclude_rank1,
        })
        return config
