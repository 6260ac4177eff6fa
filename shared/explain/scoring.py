"""The target-class score of a batch: the number every faithfulness metric perturbs.

`target_scores(model, inputs, targets)` runs the model once on the whole batch (a
compiled forward pass, cached per model) and picks each sample's score:

* integer `targets` ([N] class indices, or a scalar for all) index the last axis of a
  `[N, num_classes]` output, taken as it is: the class probability when the model ends
  in a softmax (wrap the model, or use a callable, for logits or a sigmoid output);
* a callable `targets(outputs) -> [N]` computes any score from the outputs (all of
  them, for multi-output models).

`target_gradients` gives the same scores and their gradient with respect to the inputs,
for integrated gradients. The index checks (shape, range) are those of
`shared.explain.attribution`, so a bad target reads the same everywhere.
"""

from __future__ import annotations

import weakref

import tensorflow as tf

from shared.explain.attribution import _scores
from shared.training.inference import call_inference, cached_per_model, forward_fn, weak

_GRADIENT_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def target_scores(model, inputs, targets):
    """Per-sample target scores [N] from one batched forward pass.

    Args:
        model: keras.Model or a traceable callable inputs -> outputs.
        inputs: tensor [N, ...].
        targets: int class indices [N] (a scalar is broadcast), or a callable
            `outputs -> [N]`.

    Returns:
        float32 tensor [N].

    Raises:
        ValueError: targets of the wrong shape, out of range or floating point; an
            output that is not [N, num_classes] with integer targets.
    """
    outputs = forward_fn(model)(inputs)
    if not callable(targets) and isinstance(outputs, (list, tuple, dict)):
        raise ValueError(
            "targets must be a callable when the model has several outputs. Received: "
            f"{len(outputs)} outputs and targets={targets!r}"
        )
    return tf.cast(_scores(outputs, targets), tf.float32)


def target_gradients(model, inputs, targets):
    """Scores [N] and their gradient with respect to `inputs`, in one batched pass.

    Each sample's gradient is that of its own score: the summed scores are
    differentiated, which equals the per-sample gradients while samples do not interact
    (inference mode). Integer targets are not range-checked inside the compiled pass:
    call `target_scores` on the same targets first (as `integrated_gradients` does). A
    callable target must be traceable.

    Returns:
        (scores float32 [N], gradients float32, the shape of `inputs`).
    """
    inputs = tf.convert_to_tensor(inputs, tf.float32)
    if callable(targets):
        body = _gradient_body(weak(model))
        return tf.function(lambda x: body(x, targets), reduce_retracing=True)(inputs)
    idx = tf.cast(tf.convert_to_tensor(targets), tf.int32)
    if len(idx.shape) == 0:
        idx = tf.fill([inputs.shape[0]], idx)
    fn = cached_per_model(_GRADIENT_CACHE, model,
                 lambda: tf.function(_gradient_body(weak(model)), reduce_retracing=True))
    return fn(inputs, idx)


def _gradient_body(model_ref):
    def body(x, targets):
        with tf.GradientTape() as tape:
            tape.watch(x)
            scores = tf.cast(_scores(call_inference(model_ref(), x), targets), tf.float32)
        return scores, tape.gradient(scores, x)

    return body
