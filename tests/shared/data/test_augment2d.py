"""Tests of the batched, seeded 2D augmentations."""

import numpy as np
import pytest
import tensorflow as tf

from shared.data import augment2d
from shared.data.augment2d import (
    Augment2D,
    random_flip,
    random_gaussian_noise,
    random_perspective,
    random_rotation,
    random_shift_scale_rotate,
)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """These tests build no Keras objects: skip the suite-wide session reset
    (a full garbage collection, about a second per test under load)."""
    yield


SEED = tf.constant([7, 11], tf.int32)


def _images(b=4, h=16, w=16, c=1):
    return tf.random.stateless_uniform([b, h, w, c], seed=[1, 2])


def _square_batch(b=6, size=24, lo=8, hi=16):
    img = np.zeros((b, size, size, 1), np.float32)
    img[:, lo:hi, lo:hi, 0] = 1.0
    return tf.constant(img), tf.constant(img[..., 0].astype(np.int32))


ALL_TRANSFORMS = [
    lambda x, s, p: random_flip(x, s, p=p, vertical=True),
    lambda x, s, p: random_shift_scale_rotate(x, s, p=p),
    lambda x, s, p: random_perspective(x, s, p=p),
    lambda x, s, p: random_rotation(x, s, p=p),
    lambda x, s, p: random_gaussian_noise(x, s, p=p),
]


@pytest.mark.parametrize("fn", ALL_TRANSFORMS)
def test_p_zero_is_identity_and_shapes_kept(fn):
    x = _images()
    out = fn(x, SEED, 0.0)
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_array_equal(out.numpy(), x.numpy())


@pytest.mark.parametrize("fn", ALL_TRANSFORMS)
def test_same_seed_bit_identical_other_seed_differs(fn):
    x = _images()
    a = fn(x, SEED, 1.0).numpy()
    b = fn(x, tf.constant([7, 11]), 1.0).numpy()
    c = fn(x, tf.constant([7, 12]), 1.0).numpy()
    np.testing.assert_array_equal(a, b)
    if fn is not ALL_TRANSFORMS[0]:  # a flip with p=1 ignores the seed
        assert not np.array_equal(a, c)


def test_flip_p1_equals_reverse():
    x = _images()
    np.testing.assert_array_equal(random_flip(x, SEED, p=1.0).numpy(), tf.reverse(x, [2]).numpy())
    both = random_flip(x, SEED, p=1.0, horizontal=True, vertical=True)
    np.testing.assert_array_equal(both.numpy(), tf.reverse(x, [1, 2]).numpy())


def test_flip_is_per_sample_and_masks_follow():
    x = _images(b=32)
    masks = tf.cast(x[..., 0] > 0.5, tf.int32)
    out, m = random_flip(x, SEED, p=0.5, masks=masks)
    flipped = [np.array_equal(out[i], tf.reverse(x[i], [1])) for i in range(32)]
    kept = [np.array_equal(out[i], x[i]) for i in range(32)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 4 < sum(flipped) < 28  # per-sample decisions, not one for the batch
    np.testing.assert_array_equal(m.numpy(), tf.cast(out[..., 0] > 0.5, tf.int32).numpy())
    assert m.dtype == tf.int32 and m.shape == masks.shape


def test_small_rotation_by_hand_without_randomness():
    # rotate_deg range collapsed to a single value is not possible (uniform);
    # instead check a zero-parameter warp is exactly the identity.
    x = _images()
    out = random_shift_scale_rotate(x, SEED, p=1.0, shift=0.0, scale=0.0, rotate_deg=0.0)
    np.testing.assert_allclose(out.numpy(), x.numpy(), atol=1e-6)
    out = random_perspective(x, SEED, p=1.0, distortion=0.0)
    np.testing.assert_allclose(out.numpy(), x.numpy(), atol=1e-5)


def test_warp_matrix_rotates_like_rot90():
    img = np.zeros((1, 9, 9, 1), np.float32)
    img[0, 1, 4, 0] = 1.0
    ones = tf.ones([1])
    m = (
        augment2d._translate(4.0 * ones, 4.0 * ones)
        @ augment2d._rotate_scale(tf.constant([-np.pi / 2], tf.float32), ones)
        @ augment2d._translate(-4.0 * ones, -4.0 * ones)
    )
    out = augment2d._warp(tf.constant(img), m, "BILINEAR", "CONSTANT", 0.0).numpy()
    np.testing.assert_allclose(out[0, ..., 0], np.rot90(img[0, ..., 0]), atol=1e-5)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x, s, m: random_shift_scale_rotate(x, s, p=1.0, masks=m, fill_mode="CONSTANT"),
        lambda x, s, m: random_perspective(x, s, p=1.0, distortion=0.3, masks=m, fill_mode="CONSTANT"),
        lambda x, s, m: random_rotation(x, s, p=1.0, max_deg=30, masks=m, fill_mode="CONSTANT"),
        lambda x, s, m: Augment2D(1.0, 1.0, 1.0, 0.0, 1.0, vertical=True, fill_mode="CONSTANT")(x, s, masks=m),
    ],
)
def test_masks_stay_aligned_with_square(fn):
    x, masks = _square_batch()
    out, m = fn(x, SEED, masks)
    assert m.shape == masks.shape and m.dtype == masks.dtype
    assert not np.array_equal(m.numpy(), masks.numpy())  # it did move
    # Nearest-sampled mask equals the bilinear image thresholded at 0.5, except
    # possibly on a one-pixel rim where bilinear weights straddle 0.5.
    thresholded = (out.numpy()[..., 0] > 0.5).astype(np.int32)
    disagree = np.mean(thresholded != m.numpy())
    assert disagree < 0.02
    # the square's centre of mass moves identically in image and mask
    for i in range(x.shape[0]):
        ci = np.argwhere(thresholded[i]).mean(axis=0)
        cm = np.argwhere(m.numpy()[i]).mean(axis=0)
        np.testing.assert_allclose(ci, cm, atol=0.75)


def test_augment2d_defaults_determinism_and_graph_mode():
    x = _images(b=8)
    aug = Augment2D(noise=0.5, rotation=0.5)
    a = aug(x, SEED).numpy()
    np.testing.assert_array_equal(a, aug(x, tf.constant([7, 11])).numpy())
    assert not np.array_equal(a, aug(x, tf.constant([8, 11])).numpy())
    # Graph mode may fuse float ops differently from eager: same up to rounding,
    # and bit-identical between two graph runs.
    graph = tf.function(lambda im, s: aug(im, s))
    g = graph(x, SEED).numpy()
    np.testing.assert_allclose(g, a, atol=1e-4)
    np.testing.assert_array_equal(graph(x, SEED).numpy(), g)
    # dynamic batch size (as in tf.data's last batch)
    dyn = tf.function(lambda im, s: aug(im, s), input_signature=[
        tf.TensorSpec([None, 16, 16, 1]), tf.TensorSpec([2], tf.int32)])
    np.testing.assert_allclose(dyn(x, SEED).numpy(), a, atol=1e-4)


def test_augment2d_all_zero_is_identity_and_config_round_trip():
    x = _images()
    aug = Augment2D(0.0, 0.0, 0.0, 0.0, 0.0)
    np.testing.assert_array_equal(aug(x, SEED).numpy(), x.numpy())
    aug2 = Augment2D.from_config(Augment2D(noise=0.2).get_config())
    assert aug2.get_config() == Augment2D(noise=0.2).get_config()


def test_pipeline_fn_with_masks():
    x, masks = _square_batch()
    fn = Augment2D(fill_mode="CONSTANT").pipeline_fn(y_is_mask=True)
    out, m = fn(x, masks, SEED)
    assert m.shape == masks.shape
    labels = tf.range(6)
    out2, y2 = Augment2D().pipeline_fn()(x, labels, SEED)
    np.testing.assert_array_equal(y2.numpy(), labels.numpy())


def test_error_paths():
    x = _images()
    with pytest.raises(ValueError, match="rank 4"):
        random_flip(tf.zeros([16, 16, 1]), SEED)
    with pytest.raises(ValueError, match="rank 4"):
        Augment2D()(tf.zeros([2, 4, 16, 16, 1]), SEED)
    with pytest.raises(ValueError, match="masks must match"):
        random_flip(x, SEED, masks=tf.zeros([4, 8, 16]))
    with pytest.raises(ValueError, match="masks must have shape"):
        random_flip(x, SEED, masks=tf.zeros([4]))
    with pytest.raises(ValueError, match="probability"):
        random_rotation(x, SEED, p=1.5)
    with pytest.raises(ValueError, match="seed"):
        random_flip(x, None)
    with pytest.raises(ValueError, match="shape \\[2\\]"):
        random_flip(x, tf.constant([1, 2, 3]))
    with pytest.raises(ValueError, match="floating"):
        random_flip(tf.zeros([1, 4, 4, 1], tf.int32), SEED)
    with pytest.raises(ValueError, match="fill_mode"):
        Augment2D(fill_mode="MIRROR")


def test_perspective_samples_inside_the_image():
    # Corners move inward and the quadrilateral fills the output, so a constant
    # fill never shows (albumentations keep_size=True behaviour).
    x = _images(b=8) + 1.0
    out = random_perspective(x, SEED, p=1.0, distortion=0.3, fill_mode="CONSTANT", fill_value=-5.0)
    assert out.numpy().min() >= 1.0
    assert not np.allclose(out.numpy(), x.numpy())


def test_half_precision_and_channel_masks():
    x = tf.cast(_images(c=3), tf.float16)
    masks = tf.cast(tf.random.stateless_uniform([4, 16, 16, 2], [5, 6]) > 0.5, tf.float32)
    out, m = Augment2D(noise=1.0)(x, SEED, masks=masks)
    assert out.dtype == tf.float16 and out.shape == x.shape
    assert m.shape == masks.shape and set(np.unique(m.numpy())) <= {0.0, 1.0}
