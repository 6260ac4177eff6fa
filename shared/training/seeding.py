"""One place to seed every random number generator a run touches."""

import os
import random

import numpy as np


def set_global_seed(seed: int, deterministic_ops: bool = False) -> None:
    """Seeds Python, NumPy, TensorFlow and Keras.

    Entry points and tests call this once; library code takes explicit seeds or
    generators instead of reading global state.

    Args:
        seed: int. The seed; 0 is a valid seed.
        deterministic_ops: bool, default False. Also ask TensorFlow for
            deterministic kernels (slower; bit-exact reruns on one machine).
    """
    if seed is None:
        raise ValueError("set_global_seed needs an integer seed. Received: seed=None")
    import keras
    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    keras.utils.set_random_seed(seed)
    tf.random.set_seed(seed)
    if deterministic_ops:
        tf.config.experimental.enable_op_determinism()


def numpy_rng(seed) -> np.random.Generator:
    """A NumPy Generator from an int seed, or the generator itself if given one."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        raise ValueError("An explicit seed is required. Received: seed=None")
    return np.random.default_rng(seed)
