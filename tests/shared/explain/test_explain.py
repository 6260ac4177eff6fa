"""Grad-CAM / HiResCAM against maps derived by hand for linear heads."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from shared import explain

H = W = 4
C_IN, K, N_CLASSES = 3, 5, 3


def _set_weights(rng, conv, dense):
    conv.set_weights([rng.normal(size=w.shape).astype("float32") for w in conv.get_weights()])
    dense.set_weights([rng.normal(size=w.shape).astype("float32") for w in dense.get_weights()])


def _cam_model(rng, dims=2):
    """input -> 1x1 conv 'feat' -> global average pooling -> linear Dense."""
    shape = (H, W, C_IN) if dims == 2 else (2, H, W, C_IN)
    conv_cls = keras.layers.Conv2D if dims == 2 else keras.layers.Conv3D
    gap_cls = keras.layers.GlobalAveragePooling2D if dims == 2 else keras.layers.GlobalAveragePooling3D
    inp = keras.Input(shape)
    conv = conv_cls(K, 1, name="feat")
    dense = keras.layers.Dense(N_CLASSES, name="head")
    out = dense(gap_cls()(conv(inp)))
    model = keras.Model(inp, out, name="cam_model")
    _set_weights(rng, conv, dense)
    return model, conv, dense


def _hand_cam(x, conv, dense, classes):
    """CAM_c = sum_k w_kc A_k / n_spatial, with A = x @ Wconv + b (the 1x1 conv by hand)."""
    kernel, bias = conv.get_weights()
    a = x @ kernel.reshape(C_IN, K) + bias
    w = dense.get_weights()[0]
    n_spatial = np.prod(x.shape[1:-1])
    return np.stack([a[i] @ w[:, c] / n_spatial for i, c in enumerate(classes)])


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_hirescam_equals_hand_derived_cam(rng):
    model, conv, dense = _cam_model(rng)
    x = rng.normal(size=(3, H, W, C_IN)).astype("float32")
    classes = np.array([0, 2, 1])
    maps = explain.attribution_maps(model, x, layer_name="feat", targets=classes, relu=False)
    np.testing.assert_allclose(maps.numpy(), _hand_cam(x, conv, dense, classes), atol=1e-5)
    relu_maps = explain.attribution_maps(model, x, layer_name="feat", targets=classes)
    np.testing.assert_allclose(
        relu_maps.numpy(), np.maximum(_hand_cam(x, conv, dense, classes), 0), atol=1e-5
    )


def test_class_index_changes_the_map(rng):
    model, conv, dense = _cam_model(rng)
    x = rng.normal(size=(2, H, W, C_IN)).astype("float32")
    m0 = explain.attribution_maps(model, x, layer_name="feat", targets=[0, 0], relu=False)
    m1 = explain.attribution_maps(model, x, layer_name="feat", targets=[1, 1], relu=False)
    assert not np.allclose(m0.numpy(), m1.numpy())
    np.testing.assert_allclose(m1.numpy(), _hand_cam(x, conv, dense, [1, 1]), atol=1e-5)


def test_callable_target_matches_class_index(rng):
    model, _, _ = _cam_model(rng)
    x = rng.normal(size=(2, H, W, C_IN)).astype("float32")
    by_index = explain.attribution_maps(model, x, layer_name="feat", targets=[2, 2], relu=False)
    by_call = explain.attribution_maps(
        model, x, layer_name="feat", targets=lambda out: out[:, 2], relu=False
    )
    np.testing.assert_allclose(by_index.numpy(), by_call.numpy(), atol=1e-6)


def test_gradcam_equals_hirescam_up_to_positive_scale(rng):
    model, _, _ = _cam_model(rng)
    x = rng.normal(size=(2, H, W, C_IN)).astype("float32")
    fm = explain.feature_model(model, "feat")
    hi = explain.attribution_maps(fm, x, targets=[1, 0], method="hirescam", relu=False).numpy()
    gc = explain.attribution_maps(fm, x, targets=[1, 0], method="gradcam", relu=False).numpy()
    for i in range(2):
        scale = np.sum(gc[i] * hi[i]) / np.sum(hi[i] * hi[i])
        assert scale > 0
        np.testing.assert_allclose(gc[i], scale * hi[i], atol=1e-5)


@pytest.mark.parametrize("method", ["hirescam", "gradcam"])
def test_gradients_flow_through_maps_into_weights(rng, method):
    model, conv, dense = _cam_model(rng)
    x = rng.normal(size=(2, H, W, C_IN)).astype("float32")
    fm = explain.feature_model(model, "feat")
    with tf.GradientTape() as tape:
        maps = explain.attribution_maps(fm, x, targets=[0, 1], method=method, relu=False)
        loss = tf.reduce_sum(tf.square(maps))
    grads = tape.gradient(loss, [conv.kernel, dense.kernel])
    for g in grads:
        assert g is not None
        assert np.all(np.isfinite(g.numpy()))
        assert np.any(np.abs(g.numpy()) > 1e-6)


def test_forward_with_maps_in_compiled_train_step(rng):
    model, conv, dense = _cam_model(rng)
    fm = explain.feature_model(model, "feat")
    x = rng.normal(size=(4, H, W, C_IN)).astype("float32")
    y = np.array([0, 1, 2, 0])
    masks = np.zeros((4, 8, 8), "float32")
    masks[:, 2:6, 2:6] = 1.0
    optimizer = keras.optimizers.SGD(0.1)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y, masks):
        with tf.GradientTape() as tape:
            logits, maps = explain.forward_with_maps(fm, x, y, training=True)
            penalty = tf.reduce_mean(explain.mass_outside(maps, masks))
            loss = ce(y, logits) + penalty
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return logits, maps, grads

    kernel_before = conv.kernel.numpy().copy()
    logits, maps, grads = step(x, y, masks)
    assert logits.shape == (4, N_CLASSES)
    assert maps.shape == (4, H, W)
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)
    assert not np.allclose(conv.kernel.numpy(), kernel_before)


def test_forward_with_maps_gradient_equals_separate_passes(rng):
    model, _, _ = _cam_model(rng)
    fm = explain.feature_model(model, "feat")
    x = rng.normal(size=(3, H, W, C_IN)).astype("float32")
    y = np.array([0, 1, 2])
    with tf.GradientTape() as tape:
        out, maps = explain.forward_with_maps(fm, x, y, relu=False)
        loss = tf.reduce_sum(out) + tf.reduce_sum(maps**2)
    g_one = tape.gradient(loss, model.trainable_variables)
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        maps = explain.attribution_maps(fm, x, targets=y, relu=False, training=True)
        loss = tf.reduce_sum(out) + tf.reduce_sum(maps**2)
    g_two = tape.gradient(loss, model.trainable_variables)
    for a, b in zip(g_one, g_two):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_layer_inside_nested_model(rng):
    inp = keras.Input((H, W, C_IN))
    conv = keras.layers.Conv2D(K, 1, name="feat")
    backbone = keras.Model(inp, conv(inp), name="backbone")
    outer_in = keras.Input((H, W, C_IN))
    dense = keras.layers.Dense(N_CLASSES)
    model = keras.Model(outer_in, dense(keras.layers.GlobalAveragePooling2D()(backbone(outer_in))))
    _set_weights(rng, conv, dense)
    x = rng.normal(size=(2, H, W, C_IN)).astype("float32")
    for name in ("feat", "backbone/feat"):
        maps = explain.attribution_maps(model, x, layer_name=name, targets=[2, 0], relu=False)
        np.testing.assert_allclose(maps.numpy(), _hand_cam(x, conv, dense, [2, 0]), atol=1e-5)
    # The container itself is a layer too: its output is the same feature map.
    maps = explain.attribution_maps(model, x, layer_name="backbone", targets=[2, 0], relu=False)
    np.testing.assert_allclose(maps.numpy(), _hand_cam(x, conv, dense, [2, 0]), atol=1e-5)


def test_layer_inside_nested_sequential_with_frozen_backbone(rng):
    conv = keras.layers.Conv2D(K, 1, name="feat")
    backbone = keras.Sequential([keras.Input((H, W, C_IN)), conv], name="seq_backbone")
    backbone.trainable = False
    outer_in = keras.Input((H, W, C_IN))
    dense = keras.layers.Dense(N_CLASSES)
    model = keras.Model(outer_in, dense(keras.layers.GlobalAveragePooling2D()(backbone(outer_in))))
    _set_weights(rng, conv, dense)
    x = rng.normal(size=(2, H, W, C_IN)).astype("float32")
    maps = explain.attribution_maps(model, x, layer_name="feat", targets=[1, 1], relu=False)
    np.testing.assert_allclose(maps.numpy(), _hand_cam(x, conv, dense, [1, 1]), atol=1e-5)


def test_two_input_siamese_model_selects_each_call(rng):
    inp = keras.Input((H, W, C_IN))
    conv = keras.layers.Conv2D(K, 1, name="feat")
    twin = keras.Model(inp, conv(inp), name="twin")
    left, right = keras.Input((H, W, C_IN)), keras.Input((H, W, C_IN))
    gap = keras.layers.GlobalAveragePooling2D()
    diff = keras.layers.Subtract()([gap(twin(left)), gap(twin(right))])
    dense = keras.layers.Dense(N_CLASSES)
    model = keras.Model([left, right], dense(diff))
    _set_weights(rng, conv, dense)
    xl = rng.normal(size=(2, H, W, C_IN)).astype("float32")
    xr = rng.normal(size=(2, H, W, C_IN)).astype("float32")
    # score = w_c . (mean A(left) - mean A(right)): +CAM on the left, -CAM on the right.
    m_left = explain.attribution_maps(model, [xl, xr], layer_name="feat", targets=[0, 1], relu=False)
    m_right = explain.attribution_maps(
        model, [xl, xr], layer_name="feat", targets=[0, 1], relu=False, call_index=1
    )
    np.testing.assert_allclose(m_left.numpy(), _hand_cam(xl, conv, dense, [0, 1]), atol=1e-5)
    np.testing.assert_allclose(m_right.numpy(), -_hand_cam(xr, conv, dense, [0, 1]), atol=1e-5)
    both = explain.attribution_maps(
        model, [xl, xr], layer_name="feat", targets=[0, 1], relu=False, call_index=None
    )
    np.testing.assert_allclose(both[0].numpy(), m_left.numpy(), atol=1e-6)
    np.testing.assert_allclose(both[1].numpy(), m_right.numpy(), atol=1e-6)


def test_3d_hirescam_and_gradcam_equal_hand_cam(rng):
    model, conv, dense = _cam_model(rng, dims=3)
    x = rng.normal(size=(2, 2, H, W, C_IN)).astype("float32")
    kernel, bias = conv.get_weights()
    a = x @ kernel.reshape(C_IN, K) + bias
    w = dense.get_weights()[0]
    expected = np.stack([a[i] @ w[:, c] / (2 * H * W) for i, c in enumerate([2, 1])])
    for method in ("hirescam", "gradcam"):
        maps = explain.attribution_maps(
            model, x, layer_name="feat", targets=[2, 1], method=method, relu=False
        )
        assert maps.shape == (2, 2, H, W)
        np.testing.assert_allclose(maps.numpy(), expected, atol=1e-5)


def _interp_half_pixel(values, out_size):
    """1D linear interpolation with half-pixel centres, edges clamped (independent ref)."""
    n = len(values)
    src = (np.arange(out_size) + 0.5) * n / out_size - 0.5
    return np.interp(np.clip(src, 0, n - 1), np.arange(n), values)


def test_trilinear_resize_of_separable_map():
    f, g, h = np.array([0.0, 1.0]), np.array([1.0, 3.0, 2.0]), np.array([2.0, 0.0, 1.0, 4.0])
    vol = np.einsum("i,j,k->ijk", f, g, h)[None].astype("float32")
    out = explain.resize_maps(vol, (4, 5, 6)).numpy()[0]
    expected = np.einsum(
        "i,j,k->ijk", _interp_half_pixel(f, 4), _interp_half_pixel(g, 5), _interp_half_pixel(h, 6)
    )
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_upsample_and_normalize_2d(rng):
    model, _, _ = _cam_model(rng)
    x = rng.normal(size=(2, H, W, C_IN)).astype("float32")
    maps = explain.attribution_maps(
        model, x, layer_name="feat", targets=[0, 1], upsample_to=(8, 8), normalize=True
    ).numpy()
    assert maps.shape == (2, 8, 8)
    assert maps.min() >= 0.0 and maps.max() <= 1.0 + 1e-6


def test_maps_are_float32_under_mixed_precision(rng):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model, _, _ = _cam_model(rng)
    x = rng.normal(size=(2, H, W, C_IN)).astype("float32")
    maps = explain.attribution_maps(model, x, layer_name="feat", targets=[0, 1])
    assert maps.dtype == tf.float32


def test_mass_inside_hand_made_2d():
    maps = np.array([[[1.0, -5.0], [0.0, 3.0]], [[2.0, 2.0], [2.0, 2.0]]], "float32")
    masks = np.array([[[1, 0], [0, 0]], [[1, 1], [0, 0]]], "float32")
    # Sample 0: ReLU -> [[1,0],[0,3]], inside 1 of 4. Sample 1: half of a flat map.
    np.testing.assert_allclose(explain.mass_inside(maps, masks).numpy(), [0.25, 0.5], atol=1e-6)
    np.testing.assert_allclose(explain.mass_outside(maps, masks).numpy(), [0.75, 0.5], atol=1e-6)
    # Channel axis on the mask is accepted; a zero map has no mass inside.
    zero = np.zeros((1, 2, 2), "float32")
    assert float(explain.mass_inside(zero, masks[:1, ..., None])[0]) == 0.0


def test_mass_inside_resizes_map_to_mask_grid():
    flat = np.ones((1, 2, 2), "float32")
    mask = np.zeros((1, 8, 8), "float32")
    mask[0, :, :2] = 1.0  # a quarter of the columns
    np.testing.assert_allclose(explain.mass_inside(flat, mask).numpy(), [0.25], atol=1e-6)
    # Left-only map: after bilinear resizing [1, 0] -> [1, 1, 0.75, 0.25, ...].
    left = np.array([[[1.0, 0.0], [1.0, 0.0]]], "float32")
    row = _interp_half_pixel(np.array([1.0, 0.0]), 8)
    expected = row[:2].sum() / row.sum()
    np.testing.assert_allclose(explain.mass_inside(left, mask).numpy(), [expected], atol=1e-6)


def test_mass_inside_3d():
    maps = np.zeros((1, 2, 2, 2), "float32")
    maps[0, 0] = 1.0
    maps[0, 1] = 3.0
    masks = np.zeros((1, 2, 2, 2), "float32")
    masks[0, 0] = 1.0
    np.testing.assert_allclose(explain.mass_inside(maps, masks).numpy(), [0.25], atol=1e-6)
    big = np.zeros((1, 4, 4, 4), "float32")
    big[0, :2] = 1.0
    ref = _interp_half_pixel(np.array([1.0, 3.0]), 4)
    np.testing.assert_allclose(
        explain.mass_inside(maps, big).numpy(), [ref[:2].sum() / ref.sum()], atol=1e-6
    )


def test_error_unknown_layer_lists_names(rng):
    model, _, _ = _cam_model(rng)
    with pytest.raises(ValueError, match=r"No layer named 'nope'.*feat.*head"):
        explain.feature_model(model, "nope")


def test_error_layer_without_spatial_map(rng):
    model, _, _ = _cam_model(rng)
    with pytest.raises(ValueError, match="rank 4"):
        explain.feature_model(model, "head")


def test_error_bad_targets(rng):
    model, _, _ = _cam_model(rng)
    x = rng.normal(size=(2, H, W, C_IN)).astype("float32")
    with pytest.raises(ValueError, match=r"shape \[B\]"):
        explain.attribution_maps(model, x, layer_name="feat", targets=np.zeros((2, 1), int))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        explain.attribution_maps(model, x, layer_name="feat", targets=[0, 3])
    with pytest.raises(ValueError, match="3 entries for a batch of 2"):
        explain.attribution_maps(model, x, layer_name="feat", targets=[0, 1, 2])
    with pytest.raises(ValueError, match="method"):
        explain.attribution_maps(model, x, layer_name="feat", targets=[0, 1], method="cam")


def test_error_nan_inputs(rng):
    model, _, _ = _cam_model(rng)
    x = rng.normal(size=(2, H, W, C_IN)).astype("float32")
    x[1, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        explain.attribution_maps(model, x, layer_name="feat", targets=[0, 1])
    with pytest.raises(ValueError, match="NaN"):
        explain.mass_inside(np.full((1, 2, 2), np.nan, "float32"), np.ones((1, 2, 2)))


def test_error_mass_inside_shapes():
    with pytest.raises(ValueError, match="different batch sizes: 2 vs 3"):
        explain.mass_inside(np.ones((2, 4, 4)), np.ones((3, 4, 4)))
    with pytest.raises(ValueError, match=r"\[B, h, w\]"):
        explain.mass_inside(np.ones((4, 4)), np.ones((4, 4)))
    with pytest.raises(ValueError, match="rank of maps"):
        explain.mass_inside(np.ones((2, 4, 4)), np.ones((2, 4, 4, 4)))


def test_error_call_index_and_subclassed_model(rng):
    model, _, _ = _cam_model(rng)
    with pytest.raises(ValueError, match="called 1 time"):
        explain.feature_model(model, "feat", call_index=1)

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(2, 1)

        def call(self, x):
            return self.conv(x)

    with pytest.raises(ValueError, match="functional or Sequential"):
        explain.feature_model(Sub(), "conv2d")


def test_multi_output_model_output_index_and_callable(rng):
    inp = keras.Input((H, W, C_IN))
    conv = keras.layers.Conv2D(K, 1, name="feat")
    pooled = keras.layers.GlobalAveragePooling2D()(conv(inp))
    dense = keras.layers.Dense(N_CLASSES, name="cls")
    model = keras.Model(inp, {"cls": dense(pooled), "aux": keras.layers.Dense(1, name="aux")(pooled)})
    _set_weights(rng, conv, dense)
    x = rng.normal(size=(2, H, W, C_IN)).astype("float32")
    expected = _hand_cam(x, conv, dense, [1, 2])
    with pytest.raises(ValueError, match="output_index"):
        explain.attribution_maps(model, x, layer_name="feat", targets=[1, 2])
    by_index = explain.attribution_maps(
        model, x, layer_name="feat", targets=[1, 2], output_index="cls", relu=False
    )
    by_call = explain.attribution_maps(
        model, x, layer_name="feat", relu=False,
        targets=lambda out: tf.stack([out["cls"][0, 1], out["cls"][1, 2]]),
    )
    np.testing.assert_allclose(by_index.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(by_call.numpy(), expected, atol=1e-5)


def test_error_when_target_does_not_depend_on_layer(rng):
    inp = keras.Input((H, W, C_IN))
    feat = keras.layers.Conv2D(K, 1, name="feat")(inp)
    side = keras.layers.Dense(2, name="side")(keras.layers.Flatten()(inp))
    main = keras.layers.Dense(2, name="main")(keras.layers.GlobalAveragePooling2D()(feat))
    model = keras.Model(inp, [main, side])
    x = rng.normal(size=(2, H, W, C_IN)).astype("float64")  # float64 is accepted
    maps = explain.attribution_maps(model, x, layer_name="feat", targets=[0, 1], output_index=0)
    assert maps.shape == (2, H, W)
    with pytest.raises(ValueError, match="does not depend on the activations of layer 'feat'"):
        explain.attribution_maps(model, x, layer_name="feat", targets=[0, 1], output_index=1)
