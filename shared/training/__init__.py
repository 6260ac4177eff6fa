"""What a training run needs besides the model: seeds, precision, strategies, LARS.

* `seeding`: one seeding helper for Python, NumPy, TensorFlow and Keras;
* `scale`: dtype policies, tf.distribute strategies, XLA, and the helpers custom
  train steps use under them (replica gathering, loss scaling, skipping an overflowed step);
* `lars`: the LARS optimizer (You et al., 2017) as a Keras 3 optimizer.
"""

from shared.training.seeding import numpy_rng, set_global_seed
from shared.training.scale import (
    PRECISIONS,
    STRATEGIES,
    as_float32,
    clear_session,
    configure,
    gather_across_replicas,
    local_slice,
    make_strategy,
    scale_for_replicas,
    ScaleSettings,
    set_precision,
    skip_together,
    split_cpu,
    strategy_scope,
)
from shared.training.lars import LARS

__all__ = [
    "LARS",
    "PRECISIONS",
    "STRATEGIES",
    "ScaleSettings",
    "as_float32",
    "clear_session",
    "configure",
    "gather_across_replicas",
    "local_slice",
    "make_strategy",
    "numpy_rng",
    "scale_for_replicas",
    "set_global_seed",
    "set_precision",
    "skip_together",
    "split_cpu",
    "strategy_scope",
]
