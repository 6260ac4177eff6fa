"""Grad-CAM / HiResCAM for vision transformers: maps over patch tokens, on the patch grid.

A ViT has no convolution feature map, but its token sequence is one: token `t` of a
block's output holds the features of patch `t`. `token_maps` takes the tokens `[B, T, C]`
of a chosen layer and their gradients, drops the [cls] token, puts the patch tokens back
on the patch grid `[B, d, h, w, C]` and combines them like any feature map (Grad-CAM:
channel weights from the gradient averaged over the patches; HiResCAM: `sum_k dS/dA_k *
A_k` per patch). This is pytorch-grad-cam's recipe for ViTs (a `reshape_transform` that
drops [cls] and reshapes the tokens before the CAM).

Which layer: in a ViT whose head reads the [cls] token, the patch tokens of the *last*
block's output reach the score only through that token, which they no longer influence:
their gradient is zero and the map would be empty, which is refused. Take the output of
the block before the last (the input of the last block's attention), as pytorch-grad-cam
advises (`blocks[-1].norm1`).

Example:
    >>> maps = token_maps(classifier, volumes, layer_name="block_0", grid=(4, 4, 4),
    ...                   targets=lambda out: out[:, 0], upsample_to=(32, 32, 32))
"""

from __future__ import annotations

import tensorflow as tf

from shared.explain.attribution import (_check_finite, _check_method, _combine, _eager_targets,
                                        _postprocess, _scores, _select_output, feature_model)


def tokens_to_grid(tokens, grid, *, class_token=True):
    """[B, T, ...] per-token values -> [B, *grid, ...], dropping the first ([cls]) token.

    Args:
        tokens: float tensor [B, T] or [B, T, C].
        grid: tuple of 2 or 3 ints, the patch grid (row-major, as the patch embedding
            flattens it); its product must equal the number of patch tokens (T - 1 with a
            class token, T without).
        class_token: bool, default True. The first token is [cls].

    Raises:
        ValueError: the patch tokens do not fill `grid`.
    """
    values = tf.convert_to_tensor(tokens, tf.float32)
    grid = tuple(int(g) for g in grid)
    if class_token:
        values = values[:, 1:]
    patches = 1
    for g in grid:
        patches *= g
    if values.shape[1] != patches:
        raise ValueError(f"grid {grid} holds {patches} patches but the layer has "
                         f"{values.shape[1]} patch tokens (class_token={class_token}). "
                         f"Received: grid={grid}")
    return tf.reshape(values, (-1,) + grid + tuple(values.shape[2:]))


def token_maps(model, inputs, *, layer_name, grid, targets, method="gradcam",
               class_token=True, relu=True, upsample_to=None, normalize=False,
               output_index=None):
    """Grad-CAM (default) or HiResCAM of a token layer, on the patch grid.

    Args:
        model: keras.Model (a ViT classifier; the encoder may be a nested model).
        inputs: tensor, as the model takes it.
        layer_name: str. A layer whose output is tokens `[B, T, C]` (a name or an
            "outer/inner" path, see `find_layer_path`).
        grid: tuple of 2 or 3 ints. The patch grid, e.g. (4, 4, 4) for 32^3 volumes and
            8^3 patches.
        targets: int class indices [B] or a callable `outputs -> [B]` scores (see
            `attribution_maps`).
        method: "gradcam" (default) or "hirescam".
        class_token: bool, default True. Drop the first token.
        relu, upsample_to, normalize: as in `attribution_maps`.
        output_index: int, optional, as in `attribution_maps`.

    Returns:
        float32 tensor [B, *grid], or [B, *upsample_to].

    Raises:
        ValueError: unknown method or layer, a layer that does not output tokens, tokens
            that do not fill `grid`, non-finite inputs, or a score that does not depend on
            the patch tokens of the layer (the last block of a [cls]-token classifier).
    """
    _check_method(method)
    _check_finite(inputs, "token_maps")
    fm = feature_model(model, layer_name, tokens=True)
    inputs = tf.convert_to_tensor(inputs)
    if not callable(targets):
        targets = _eager_targets(fm, inputs, targets, output_index)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        activations, outputs = fm(inputs, training=False)
        scores = _scores(_select_output(outputs, output_index, callable(targets)), targets)
    gradients = tape.gradient(scores, activations)
    acts = tokens_to_grid(activations, grid, class_token=class_token)
    grads = tokens_to_grid(gradients, grid, class_token=class_token)
    if not bool(tf.reduce_any(grads != 0.0)):
        raise ValueError(
            f"The score does not depend on the patch tokens of layer {layer_name!r}: in a "
            "[cls]-token classifier take the block before the last. Received: "
            f"layer_name={layer_name!r}")
    return _postprocess(_combine(acts, grads, method), relu, upsample_to, normalize)
