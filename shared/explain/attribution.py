"""Grad-CAM and HiResCAM as batched, differentiable tensor functions (2D and 3D).

One small core (`_capture`) runs a forward pass that exposes the activations of a chosen
layer, takes the gradient of a per-sample score with respect to them, and hands both to
a method that turns them into a map:

* Grad-CAM (Selvaraju et al., 2017): channel weights from the spatially averaged
  gradients, `cam = sum_k mean_s(dS/dA_k) * A_k`.
* HiResCAM (Draelos & Carin, 2020): element-wise product summed over channels,
  `cam = sum_k dS/dA_k * A_k`.

The design follows pytorch-grad-cam (one base owning capture, ReLU, resizing and
normalisation; each method only its combination rule) but nothing is detached: no
`.numpy()`, no `stop_gradient`. The maps can therefore sit inside a loss (the heatmap
loss penalises map mass outside the heart) and be differentiated by an outer
`tf.GradientTape` in a `train_step`, see `forward_with_maps`.

Layers are found by name anywhere in the model: inside nested functional models (a
backbone model used as a layer of a classifier) and in two-input (siamese) models where
one twin is called on each input. `feature_model` rebuilds the functional graph on the
original inputs instead of wiring the inner layer's output to the outer inputs, which is
what raises "Graph disconnected" in the usual Keras recipes.

Conventions: feature maps are channels-last, `[B, h, w, C]` (2D) or `[B, d, h, w, C]`
(3D); maps come back as `[B, h, w]` or `[B, d, h, w]`, float32 whatever the compute dtype.

Example:
    >>> fm = feature_model(model, "block5_conv3")
    >>> maps = attribution_maps(fm, images, targets=labels, upsample_to=(224, 224))

    Inside a train_step:
    >>> with tf.GradientTape() as tape:
    ...     probs, maps = forward_with_maps(fm, images, labels, training=True)
    ...     loss = cce(labels_onehot, probs) + lam * tf.reduce_mean(
    ...         1.0 - mass_inside(maps, heart_masks))
    >>> grads = tape.gradient(loss, model.trainable_variables)
"""

from __future__ import annotations

import weakref

import keras
import tensorflow as tf
from keras import tree

METHODS = ("hirescam", "gradcam")

# Feature models are cached per model so that repeated calls (every batch of an
# evaluation loop) do not rebuild the graph.
_FEATURE_MODEL_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


# ---------------------------------------------------------------------------
# Finding the layer and rebuilding the graph
# ---------------------------------------------------------------------------
def _as_functional(model):
    """The functional graph behind `model` (itself, or a built Sequential's), or None."""
    if isinstance(model, keras.Sequential):
        return getattr(model, "_functional", None)
    if isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth"):
        return model
    return None


def _sublayers(model):
    graph = _as_functional(model)
    if graph is None:
        return []
    return [layer for layer in graph.layers if not isinstance(layer, keras.layers.InputLayer)]


def _all_layer_paths(model, prefix=()):
    """Every (path, layer) reachable through functional/Sequential containers."""
    out = []
    for layer in _sublayers(model):
        path = prefix + (layer,)
        out.append(path)
        if _as_functional(layer) is not None:
            out.extend(_all_layer_paths(layer, path))
    return out


def _path_name(path):
    return "/".join(layer.name for layer in path)


def find_layer_path(model, layer_name):
    """Finds a layer by name, also inside nested models.

    Args:
        model: keras.Model. A functional or Sequential model (containers inside it may
            themselves be functional or Sequential models).
        layer_name: str. The layer's name, or a path such as `"backbone/block5_conv3"`
            when the same name occurs in several nested models.

    Returns:
        tuple of keras layers, from the outermost container's child to the layer.

    Raises:
        ValueError: when `model` is a subclassed model whose graph cannot be walked,
            when no layer has that name (the message lists the available names) or when
            the name is ambiguous.
    """
    if _as_functional(model) is None:
        raise ValueError(
            "feature_model needs a functional or Sequential model (a subclassed model has "
            "no graph to walk). Build the classifier functionally, or pass the functional "
            f"sub-model that holds the layer. Received: model={model.name!r} of type "
            f"{type(model).__name__}"
        )
    paths = _all_layer_paths(model)
    if "/" in layer_name:
        matches = [p for p in paths if _path_name(p) == layer_name]
    else:
        matches = [p for p in paths if p[-1].name == layer_name]
    if not matches:
        available = ", ".join(_path_name(p) for p in paths)
        raise ValueError(
            f"No layer named {layer_name!r} in model {model.name!r}. "
            f"Available layers: {available}"
        )
    if len(matches) > 1:
        raise ValueError(
            f"Layer name {layer_name!r} is ambiguous in model {model.name!r}; use one of "
            f"the paths: {', '.join(_path_name(p) for p in matches)}"
        )
    return matches[0]


def _rebuild(model, flat_inputs, path, captures, key):
    """Re-runs `model`'s graph on `flat_inputs`, capturing the outputs of `path[-1]`.

    Nested containers on `path` are entered recursively so that the captured tensor and
    the outputs belong to one connected graph. Each capture is stored with a sort key:
    the positions, in the build-time call order, of the calls that led to it.
    """
    graph = _as_functional(model)
    tensor_dict = {id(x): y for x, y in zip(graph.inputs, flat_inputs)}
    for depth in sorted(graph._nodes_by_depth.keys(), reverse=True):
        for node in graph._nodes_by_depth[depth]:
            op = node.operation
            if not op or node.is_input:
                continue
            if any(id(x) not in tensor_dict for x in node.input_tensors):
                continue
            args, kwargs = node.arguments.fill_in(tensor_dict)
            node_key = key + (op._inbound_nodes.index(node),)
            if op is path[0] and len(path) == 1:
                outputs = op(*args, **kwargs)
                captures.append((node_key, outputs))
            elif op is path[0]:
                inner_inputs = tree.flatten(args[0] if args else kwargs["inputs"])
                outputs = _rebuild(op, inner_inputs, path[1:], captures, node_key)
            else:
                outputs = op(*args, **kwargs)
            for x, y in zip(node.outputs, tree.flatten(outputs)):
                tensor_dict[id(x)] = y
    outputs = [tensor_dict[id(x)] for x in graph.outputs]
    return tree.pack_sequence_as(graph._outputs_struct, outputs)


def feature_model(model, layer_name, *, call_index=0, tokens=False):
    """A model mapping `model`'s inputs to `(layer_activations, model_outputs)`.

    The returned model shares every layer (and weight) with `model`: training one trains
    the other. It works when the layer sits inside nested functional/Sequential models
    and in multi-input models.

    Siamese models call one twin on each input, so the layer has one output per call.
    `call_index` picks which: calls are numbered in the order they were made when the
    model was built (for `twin(left), twin(right)`, 0 is the left input's activations
    and 1 the right's). `call_index=None` returns a list of all of them, in that order.

    Args:
        model: keras.Model. Functional or Sequential.
        layer_name: str. Layer name, or a `"outer/inner"` path (see `find_layer_path`).
        call_index: int or None, default 0. Which call of the layer to expose.
        tokens: bool, default False. The layer outputs tokens `[B, T, C]` (a transformer
            block; see `shared.explain.token_maps`) instead of a feature map.

    Returns:
        keras.Model whose outputs are `(activations, outputs)` with `outputs` in the
        structure of `model.outputs`.

    Raises:
        ValueError: unknown or ambiguous layer (the available names are listed), or a
            `call_index` outside the number of calls of the layer.
    """
    cache = _FEATURE_MODEL_CACHE.setdefault(model, {})
    cache_key = (layer_name, call_index, bool(tokens))
    if cache_key in cache:
        return cache[cache_key]
    path = find_layer_path(model, layer_name)
    graph = _as_functional(model)
    inputs_struct = graph._inputs_struct
    captures = []
    outputs = _rebuild(model, tree.flatten(inputs_struct), path, captures, ())
    captures = [t for _, t in sorted(captures, key=lambda kv: kv[0])]
    if not captures:
        raise ValueError(
            f"Layer {_path_name(path)!r} is not on the path from the inputs to the outputs "
            f"of model {model.name!r}."
        )
    if call_index is None:
        activations = captures
    else:
        if not -len(captures) <= call_index < len(captures):
            raise ValueError(
                f"Layer {_path_name(path)!r} is called {len(captures)} time(s) in model "
                f"{model.name!r}. Received: call_index={call_index}"
            )
        activations = captures[call_index]
    for act in tree.flatten(activations):
        if tokens and len(act.shape) != 3:
            raise ValueError(
                f"Layer {_path_name(path)!r} outputs shape {tuple(act.shape)}; token maps need "
                "tokens [B, T, C]."
            )
        if not tokens and len(act.shape) not in (4, 5):
            raise ValueError(
                f"Layer {_path_name(path)!r} outputs shape {tuple(act.shape)}; Grad-CAM and "
                "HiResCAM need a channels-last feature map of rank 4 [B, h, w, C] or 5 "
                "[B, d, h, w, C]."
            )
    fm = keras.Model(
        inputs=inputs_struct,
        outputs=(activations, outputs),
        name=f"{model.name}_features_{path[-1].name}",
    )
    fm._medrepro_feature_layer = _path_name(path)
    fm._medrepro_call_index = call_index
    cache[cache_key] = fm
    return fm


def _resolve_feature_model(model_or_feature_model, layer_name, call_index):
    if getattr(model_or_feature_model, "_medrepro_feature_layer", None) is not None:
        if layer_name is not None and layer_name != model_or_feature_model._medrepro_feature_layer:
            raise ValueError(
                "A feature model was passed together with a different layer_name. "
                f"Received: layer_name={layer_name!r}, feature model built for "
                f"{model_or_feature_model._medrepro_feature_layer!r}"
            )
        return model_or_feature_model
    if layer_name is None:
        raise ValueError(
            "layer_name is required when a plain model (not a feature_model) is given."
        )
    return feature_model(model_or_feature_model, layer_name, call_index=call_index)


# ---------------------------------------------------------------------------
# Core: scores, gradients, combination rules
# ---------------------------------------------------------------------------
def _select_output(outputs, output_index, for_callable=False):
    if output_index is not None:
        return outputs[output_index]
    if isinstance(outputs, (list, tuple, dict)) and not for_callable:
        raise ValueError(
            "The model has several outputs; pass output_index to choose the one the "
            "class index refers to (or a callable target, which receives all outputs). "
            f"Received: {len(outputs)} outputs"
        )
    return outputs


def _scores(outputs, targets):
    """Per-sample scores [B] from the outputs and the targets."""
    if callable(targets):
        scores = targets(outputs)
        if len(scores.shape) != 1:
            raise ValueError(
                "A targets callable must return one score per sample, shape [B]. "
                f"Received shape: {tuple(scores.shape)}"
            )
        return scores
    if len(outputs.shape) != 2:
        raise ValueError(
            "Integer targets index the last axis of a [B, num_classes] output. Received "
            f"output shape {tuple(outputs.shape)}; pass a callable target instead."
        )
    idx = tf.convert_to_tensor(targets)
    if idx.dtype.is_floating:
        raise ValueError(f"targets must be integer class indices. Received dtype {idx.dtype}")
    idx = tf.cast(idx, tf.int32)
    if len(idx.shape) == 0:
        idx = tf.fill(tf.shape(outputs)[:1], idx)
    elif len(idx.shape) != 1:
        raise ValueError(
            "targets must be a class index per sample, shape [B] (or a scalar). "
            f"Received shape {tuple(idx.shape)}"
        )
    num_classes = outputs.shape[-1]
    if not tf.executing_eagerly():
        idx = tf.ensure_shape(idx, [outputs.shape[0]])
    elif idx.shape[0] != outputs.shape[0]:
        raise ValueError(
            f"targets has {idx.shape[0]} entries for a batch of {outputs.shape[0]}."
        )
    if tf.executing_eagerly():
        bad = tf.logical_or(idx < 0, idx >= num_classes)
        if bool(tf.reduce_any(bad)):
            raise ValueError(
                f"targets must lie in [0, {num_classes}). Received: {idx.numpy().tolist()}"
            )
    return tf.gather(outputs, idx, axis=1, batch_dims=1)


def _combine(activations, gradients, method):
    """The only method-specific step: activations and gradients -> raw map."""
    activations = tf.cast(activations, tf.float32)
    gradients = tf.cast(gradients, tf.float32)
    if method == "hirescam":
        return tf.reduce_sum(gradients * activations, axis=-1)
    spatial = list(range(1, len(activations.shape) - 1))
    weights = tf.reduce_mean(gradients, axis=spatial, keepdims=True)
    return tf.reduce_sum(weights * activations, axis=-1)


def _check_method(method):
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}. Received: method={method!r}")


def _check_finite(inputs, where):
    for i, x in enumerate(tree.flatten(inputs)):
        x = tf.convert_to_tensor(x)
        if not x.dtype.is_floating:
            continue
        if tf.executing_eagerly():
            if not bool(tf.reduce_all(tf.math.is_finite(x))):
                raise ValueError(f"{where}: input {i} contains NaN or infinite values.")
        else:
            tf.debugging.assert_all_finite(x, f"{where}: input {i} contains NaN or inf")


def _forward_capture(fm, inputs, targets, method, output_index, training):
    """One forward pass; returns (outputs, raw maps) with the gradients kept on the tape.

    The inner gradient runs from the score back to the chosen layer only (the head),
    so the extra cost over a plain forward/backward is a backward pass through the head
    plus, when differentiated again, the second-order terms of the head.
    """
    inputs = tree.map_structure(tf.convert_to_tensor, inputs)
    with tf.GradientTape() as tape:
        # Watching the inputs records the whole forward pass, so the gradient exists
        # even when every weight before the layer is frozen.
        for x in tree.flatten(inputs):
            if x.dtype.is_floating:
                tape.watch(x)
        activations, outputs = fm(inputs, training=training)
        scores = _scores(_select_output(outputs, output_index, callable(targets)), targets)
    acts = activations if isinstance(activations, list) else [activations]
    grads = tape.gradient(scores, acts)
    if any(g is None for g in grads):
        raise ValueError(
            f"The target score does not depend on the activations of layer "
            f"{fm._medrepro_feature_layer!r} (call_index={fm._medrepro_call_index}). Check "
            "output_index / the targets callable, and that the layer lies before that output."
        )
    maps = [_combine(a, g, method) for a, g in zip(acts, grads)]
    return outputs, (maps if isinstance(activations, list) else maps[0])


# ---------------------------------------------------------------------------
# Post-processing
# ---------------------------------------------------------------------------
def resize_maps(maps, size):
    """Resizes maps [B,h,w] (bilinear) or [B,d,h,w] (trilinear); differentiable.

    Half-pixel centres (`align_corners=False`), as `torch.nn.functional.interpolate`.

    Args:
        maps: tensor [B, h, w] or [B, d, h, w].
        size: tuple of 2 or 3 ints, the target grid.
    """
    maps = tf.convert_to_tensor(maps, tf.float32)
    rank = len(maps.shape)
    size = tuple(int(s) for s in size)
    if rank - 1 != len(size):
        raise ValueError(
            f"Cannot resize maps of shape {tuple(maps.shape)} to a grid of {len(size)} "
            f"dimensions. Received: size={size}"
        )
    if tuple(maps.shape[1:]) == size:
        return maps
    if rank == 3:
        return tf.image.resize(maps[..., None], size, method="bilinear")[..., 0]
    if rank != 4:
        raise ValueError(f"maps must be [B,h,w] or [B,d,h,w]. Received shape {tuple(maps.shape)}")
    # Trilinear = bilinear in (h, w) for every depth slice, then linear along d.
    shape = tf.shape(maps)
    b, d = shape[0], shape[1]
    x = tf.reshape(maps, tf.concat([[b * d], shape[2:], [1]], 0))
    x = tf.image.resize(x, size[1:], method="bilinear")
    x = tf.reshape(x, [b, d, size[1] * size[2], 1])
    x = tf.image.resize(x, (size[0], size[1] * size[2]), method="bilinear")
    return tf.reshape(x, [b, size[0], size[1], size[2]])


def normalize_maps(maps, epsilon=1e-8):
    """Per-sample min-max scaling to [0, 1]; constant maps become zeros."""
    axes = list(range(1, len(maps.shape)))
    lo = tf.reduce_min(maps, axis=axes, keepdims=True)
    hi = tf.reduce_max(maps, axis=axes, keepdims=True)
    return (maps - lo) / (hi - lo + epsilon)


def _postprocess(maps, relu, upsample_to, normalize):
    if relu:
        maps = tf.nn.relu(maps)
    if upsample_to is not None:
        maps = resize_maps(maps, upsample_to)
    if normalize:
        maps = normalize_maps(maps)
    return maps


# ---------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------
def attribution_maps(
    model_or_feature_model,
    inputs,
    *,
    layer_name=None,
    targets,
    method="hirescam",
    output_index=None,
    relu=True,
    upsample_to=None,
    normalize=False,
    training=False,
    call_index=0,
):
    """Grad-CAM or HiResCAM maps for a batch, as a differentiable tensor.

    HiResCAM: `M = sum_k dS/dA_k * A_k` (Draelos & Carin 2020). Grad-CAM:
    `M = sum_k alpha_k A_k` with `alpha_k` the spatial mean of `dS/dA_k` (Selvaraju et al.
    2017, Eq. 1-2). `S` is the target score of each sample (the model output as given:
    take a callable target on logits if the model ends in a softmax and you want logits).

    The gradient of the summed scores is taken in one backward pass; this equals the
    per-sample gradient as long as samples do not interact after the layer (true in
    inference mode; BatchNorm in training mode couples them slightly).

    Args:
        model_or_feature_model: keras.Model, or the result of `feature_model`.
        inputs: tensor or structure of tensors, as the model takes them.
        layer_name: str, optional. Required with a plain model.
        targets: int tensor [B] (class index per sample; a scalar is broadcast) or a
            callable `outputs -> [B]` scores. The callable receives the output chosen
            by `output_index`, or all outputs (list/dict) when it is None.
        method: "hirescam" (default) or "gradcam".
        output_index: int, optional. Which output the target refers to, for multi-output
            models.
        relu: bool, default True. Keep only positive evidence.
        upsample_to: tuple of 2 or 3 ints, optional. Resize to this grid (bilinear 2D,
            trilinear 3D).
        normalize: bool, default False. Per-sample min-max to [0, 1].
        training: bool, default False. Forward pass mode.
        call_index: int or None, default 0. For layers called several times (siamese
            twins), see `feature_model`; None returns a list of maps, one per call.

    Returns:
        float32 tensor [B, h, w] or [B, d, h, w] (a list of them with call_index=None).

    Raises:
        ValueError: unknown method or layer, targets of the wrong shape or out of range,
            non-finite inputs.
    """
    _check_method(method)
    fm = _resolve_feature_model(model_or_feature_model, layer_name, call_index)
    _check_finite(inputs, "attribution_maps")
    upsample_to = None if upsample_to is None else tuple(int(s) for s in upsample_to)
    if tf.executing_eagerly() and not callable(targets):
        # Called eagerly (pictures, evaluation loops): run a compiled version, cached per
        # feature model and settings. Targets are checked here, where they have values.
        inputs = tree.map_structure(tf.convert_to_tensor, inputs)
        targets = _eager_targets(fm, inputs, targets, output_index)
        fn = _compiled(fm, method, output_index, training, relu, upsample_to, normalize)
        return fn(inputs, targets)
    return _maps_fn(fm, inputs, targets, method, output_index, training, relu, upsample_to, normalize)


def _maps_fn(fm, inputs, targets, method, output_index, training, relu, upsample_to, normalize):
    _, maps = _forward_capture(fm, inputs, targets, method, output_index, training)
    if isinstance(maps, list):
        return [_postprocess(m, relu, upsample_to, normalize) for m in maps]
    return _postprocess(maps, relu, upsample_to, normalize)


_COMPILED_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _compiled(fm, *settings):
    per_model = _COMPILED_CACHE.setdefault(fm, {})
    if settings not in per_model:
        fm_ref = weakref.ref(fm)  # a strong reference here would keep fm alive forever

        def maps_fn(inputs, targets):
            return _maps_fn(fm_ref(), inputs, targets, *settings)

        per_model[settings] = tf.function(maps_fn, reduce_retracing=True)
    return per_model[settings]


def _eager_targets(fm, inputs, targets, output_index):
    """Checks integer targets against the batch and the number of classes; int32 [B]."""
    batch = tree.flatten(inputs)[0].shape[0]
    spec = _select_output(fm.output[1], output_index)
    idx = tf.convert_to_tensor(targets)
    if idx.dtype.is_floating:
        raise ValueError(f"targets must be integer class indices. Received dtype {idx.dtype}")
    idx = tf.cast(idx, tf.int32)
    if len(idx.shape) == 0:
        idx = tf.fill([batch], idx)
    if len(idx.shape) != 1:
        raise ValueError(
            "targets must be a class index per sample, shape [B] (or a scalar). "
            f"Received shape {tuple(idx.shape)}"
        )
    if idx.shape[0] != batch:
        raise ValueError(f"targets has {idx.shape[0]} entries for a batch of {batch}.")
    if len(spec.shape) == 2:
        num_classes = spec.shape[-1]
        bad = tf.logical_or(idx < 0, idx >= num_classes)
        if bool(tf.reduce_any(bad)):
            raise ValueError(
                f"targets must lie in [0, {num_classes}). Received: {idx.numpy().tolist()}"
            )
    return idx


def gradcam(model_or_feature_model, inputs, **kwargs):
    """`attribution_maps(..., method="gradcam")`."""
    return attribution_maps(model_or_feature_model, inputs, method="gradcam", **kwargs)


def hirescam(model_or_feature_model, inputs, **kwargs):
    """`attribution_maps(..., method="hirescam")`."""
    return attribution_maps(model_or_feature_model, inputs, method="hirescam", **kwargs)


def forward_with_maps(
    feature_model,
    inputs,
    targets,
    *,
    method="hirescam",
    training=True,
    output_index=None,
    relu=True,
    upsample_to=None,
    normalize=False,
):
    """Predictions and attribution maps from ONE forward pass, differentiable.

    Meant for a `train_step`: call it inside the outer `tf.GradientTape`; the loss may
    use both the predictions and the maps, and the outer tape differentiates through the
    maps (second order through the head after the layer). Inputs are not checked for
    NaN inside a compiled function (that would add work to every step).

    Args:
        feature_model: result of `feature_model(model, layer_name)`.
        inputs: tensor or structure of tensors.
        targets: int tensor [B] or callable on the outputs, see `attribution_maps`.
        method: "hirescam" (default) or "gradcam".
        training: bool, default True.
        output_index, relu, upsample_to, normalize: as in `attribution_maps`.

    Returns:
        (predictions, maps): the model outputs and float32 maps [B, h, w] / [B, d, h, w].
    """
    _check_method(method)
    if getattr(feature_model, "_medrepro_feature_layer", None) is None:
        raise ValueError(
            "forward_with_maps needs the result of feature_model(model, layer_name). "
            f"Received: {getattr(feature_model, 'name', feature_model)!r}"
        )
    if tf.executing_eagerly():
        _check_finite(inputs, "forward_with_maps")
    outputs, maps = _forward_capture(feature_model, inputs, targets, method, output_index, training)
    if isinstance(maps, list):
        maps = [_postprocess(m, relu, upsample_to, normalize) for m in maps]
    else:
        maps = _postprocess(maps, relu, upsample_to, normalize)
    return outputs, maps
