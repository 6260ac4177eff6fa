"""Checks that a custom `train_step` gives the same result on one and on two replicas.

The device layout must be fixed before TensorFlow starts, so each check runs in a
fresh process: `python -m shared.testing.distribution MODULE:BUILD MODULE:DATA`.

`BUILD(precision: str) -> keras.Model` returns a compiled model (called inside the
strategy scope, after the global seed is set); `DATA() -> (x, y)` returns NumPy
arrays (or dicts/tuples of arrays) for one global batch.
"""

import importlib
import json
import os
import subprocess
import sys


def _load(spec):
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def _train_once(build, data, strategy, precision, steps):
    import keras
    import numpy as np

    from shared.training.scale import set_precision

    set_precision(precision)
    keras.utils.set_random_seed(0)
    x, y = data()
    first = x if not isinstance(x, (dict, tuple, list)) else (
        next(iter(x.values())) if isinstance(x, dict) else x[0])
    batch = len(first)
    with strategy.scope():
        model = build(precision)
    history = model.fit(x, y, batch_size=batch, epochs=steps, shuffle=False, verbose=0)
    weights = [np.asarray(w, dtype="float64") for w in model.get_weights()]
    keras.mixed_precision.set_global_policy("float32")
    return history.history, weights


def main(argv):
    build_spec, data_spec = argv[:2]
    steps = int(argv[2]) if len(argv) > 2 else 2
    precision = argv[3] if len(argv) > 3 else "float32"
    import numpy as np
    import tensorflow as tf

    from shared.training.scale import make_strategy, split_cpu

    split_cpu(2)
    build, data = _load(build_spec), _load(data_spec)
    single_hist, single_w = _train_once(build, data, make_strategy("default"), precision, steps)
    mirrored = make_strategy("mirrored", ["/cpu:0", "/cpu:1"])
    mirror_hist, mirror_w = _train_once(build, data, mirrored, precision, steps)
    max_weight_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(single_w, mirror_w))
    finite = all(np.isfinite(w).all() for w in mirror_w) and all(
        np.isfinite(v).all() for v in mirror_hist.get("loss", []))
    print(json.dumps({
        "single": single_hist, "mirrored": mirror_hist,
        "replicas": mirrored.num_replicas_in_sync,
        "max_weight_diff": max_weight_diff, "finite": bool(finite),
        "tf": tf.__version__,
    }))


def compare_single_and_mirrored(build_spec, data_spec, steps=2, precision="float32",
                                timeout=600) -> dict:
    """Runs `main` in a fresh process and returns its JSON summary."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    proc = subprocess.run(
        [sys.executable, "-m", "shared.testing.distribution", build_spec, data_spec,
         str(steps), precision],
        capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"distribution check failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main(sys.argv[1:])
