"""Distribution strategies, dtype policies and XLA switches for the training entry points."""

import tensorflow as tf
import keras

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multi-worker")


def set_precision(policy: str = "float32") -> None:
    """Sets the global Keras dtype policy (one of `PRECISIONS`)."""
    if policy not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}. Received: precision={policy!r}")
    keras.mixed_precision.set_global_policy(policy)


def make_strategy(name: str = "default", devices=None) -> tf.distribute.Strategy:
    """Returns a tf.distribute strategy by name.

    Args:
        name: str. "default" (one device), "mirrored" (all local GPUs, or `devices`)
            or "multi-worker" (reads the standard TF_CONFIG variable).
        devices: list of str, optional. Devices for the mirrored strategy, e.g.
            `["/cpu:0", "/cpu:1"]` with two logical CPUs in tests.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"strategy must be one of {STRATEGIES}. Received: strategy={name!r}")
