"""Tests of the batched, seeded 3D augmentations."""

import numpy as np
import pytest
import tensorflow as tf

from shared.data.augment3d import (
    INNER_CUT,
    OUTER_CUT,
    PIXEL_SHUFFLE,
    Augment3D,
    coarse_dropout_3d,
    local_pixel_shuffle_3d,
    random_flip_3d,
)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """These tests build no Keras objects: skip the suite-wide session reset
    (a full garbage collection, about a second per test under load)."""
    yield


SEED = tf.constant([3, 5], tf.int32)


def _volumes(b=3, d=8, h=10, w=12, c=1):
    return tf.random.stateless_uniform([b, d, h, w, c], seed=[1, 2])


def test_paper_defaults():
    assert (INNER_CUT["holes"], INNER_CUT["hole_size"]) == (6, 5)
    assert (OUTER_CUT["holes"], OUTER_CUT["hole_size"]) == (6, 20)
    assert (PIXEL_SHUFFLE["blocks"], PIXEL_SHUFFLE["block_size"]) == (10, 5)


FNS = [
    lambda v, s, p: random_flip_3d(v, s, p=p),
    lambda v, s, p: coarse_dropout_3d(v, s, mode="inner", hole_size=2, max_hole_size=4, p=p),
    lambda v, s, p: coarse_dropout_3d(v, s, mode="outer", hole_size=3, max_hole_size=6, p=p),
    lambda v, s, p: local_pixel_shuffle_3d(v, s, blocks=4, block_size=3, p=p),
]


@pytest.mark.parametrize("fn", FNS)
def test_shapes_p0_identity_and_determinism(fn):
    v = _volumes()
    np.testing.assert_array_equal(fn(v, SEED, 0.0).numpy(), v.numpy())
    a = fn(v, SEED, 1.0)
    assert a.shape == v.shape and a.dtype == v.dtype
    np.testing.assert_array_equal(a.numpy(), fn(v, tf.constant([3, 5]), 1.0).numpy())
    if fn is not FNS[0]:
        assert not np.array_equal(a.numpy(), fn(v, tf.constant([4, 5]), 1.0).numpy())
        assert not np.array_equal(a.numpy(), v.numpy())


def test_flip_p1_equals_reverse_and_axes():
    v = _volumes()
    np.testing.assert_array_equal(random_flip_3d(v, SEED, p=1.0).numpy(), tf.reverse(v, [1, 2, 3]).numpy())
    np.testing.assert_array_equal(random_flip_3d(v, SEED, p=1.0, axes=(2,)).numpy(), tf.reverse(v, [2]).numpy())


def _box_extent(mask):
    idx = np.argwhere(mask)
    return tuple(idx.max(axis=0) - idx.min(axis=0) + 1), len(idx)


def test_inner_and_outer_cut_by_hand():
    v = tf.ones([2, 8, 8, 8, 1])
    inner = coarse_dropout_3d(v, SEED, mode="inner", holes=1, hole_size=(2, 3, 4), fill=0.0).numpy()
    outer = coarse_dropout_3d(v, SEED, mode="outer", holes=1, hole_size=(2, 3, 4), fill=0.0).numpy()
    for i in range(2):
        assert _box_extent(inner[i, ..., 0] == 0.0) == ((2, 3, 4), 24)
        assert _box_extent(outer[i, ..., 0] == 1.0) == ((2, 3, 4), 24)
    # a hole larger than the volume is clipped to it: everything is cut
    full = coarse_dropout_3d(v, SEED, mode="inner", holes=1, hole_size=20, fill=-1.0).numpy()
    assert np.all(full == -1.0)


def test_cut_default_fill_is_noise_within_intensity_range():
    v = _volumes(d=16, h=16, w=16)
    out = coarse_dropout_3d(v, SEED, mode="inner").numpy()
    changed = out != v.numpy()
    assert changed.any()
    for i in range(v.shape[0]):
        assert v[i].numpy().min() <= out[i].min() and out[i].max() <= v[i].numpy().max()


def test_pixel_shuffle_permutes_within_one_box():
    b, d = 4, 6
    v = tf.reshape(tf.range(b * d * d * d * 2, dtype=tf.float32), [b, d, d, d, 2])
    out = local_pixel_shuffle_3d(v, SEED, blocks=1, block_size=2).numpy()
    x = v.numpy()
    moved = 0
    for i in range(b):
        for c in range(2):
            changed = out[i, ..., c] != x[i, ..., c]
            if not changed.any():
                continue
            moved += 1
            idx = np.argwhere(changed)
            assert np.all(idx.max(axis=0) - idx.min(axis=0) < 2)
            lo = np.minimum(idx.min(axis=0), d - 2)
            sl = tuple(slice(o, o + 2) for o in lo)
            np.testing.assert_array_equal(np.sort(out[i][sl + (c,)].ravel()), np.sort(x[i][sl + (c,)].ravel()))
    assert moved >= 6  # 8 boxes of 8 voxels: almost surely not the identity
    # the multiset of values is always preserved, also with many overlapping boxes
    out = local_pixel_shuffle_3d(v, SEED, blocks=10, block_size=2, max_block_size=5).numpy()
    np.testing.assert_array_equal(np.sort(out.ravel()), np.sort(x.ravel()))


def test_augment3d_stack():
    v = _volumes(b=4, d=8, h=8, w=8)
    aug = Augment3D(flip=0.5, inner={"holes": 2, "hole_size": 2, "max_hole_size": 3},
                    outer={"holes": 2, "hole_size": 3, "max_hole_size": 5},
                    pixel_shuffle={"blocks": 2, "block_size": 2})
    graph = tf.function(lambda x, s: aug(x, s))
    a = graph(v, SEED).numpy()
    assert a.shape == v.shape
    np.testing.assert_array_equal(a, graph(v, tf.constant([3, 5])).numpy())
    assert not np.array_equal(a, graph(v, tf.constant([3, 6])).numpy())
    none = Augment3D(flip=0.0, cut=0.0, shuffle=0.0)
    np.testing.assert_array_equal(none(v, SEED).numpy(), v.numpy())
    assert Augment3D.from_config(aug.get_config()).get_config() == aug.get_config()
    x, y = none.pipeline_fn()(v, tf.range(4), SEED)
    assert y.shape == (4,)


def test_error_paths():
    v = _volumes()
    with pytest.raises(ValueError, match="rank 5"):
        random_flip_3d(tf.zeros([2, 8, 8, 1]), SEED)
    with pytest.raises(ValueError, match="rank 5"):
        coarse_dropout_3d(tf.zeros([8, 8, 8]), SEED)
    with pytest.raises(ValueError, match="mode"):
        coarse_dropout_3d(v, SEED, mode="middle")
    with pytest.raises(ValueError, match="holes"):
        coarse_dropout_3d(v, SEED, holes=0)
    with pytest.raises(ValueError, match="max_hole_size"):
        coarse_dropout_3d(v, SEED, hole_size=5, max_hole_size=3)
    with pytest.raises(ValueError, match="block_size"):
        local_pixel_shuffle_3d(v, SEED, block_size=(2, 2))
    with pytest.raises(ValueError, match="axes"):
        random_flip_3d(v, SEED, axes=(0,))
    with pytest.raises(ValueError, match="probability"):
        Augment3D(shuffle=2.0)
    with pytest.raises(ValueError, match="floating"):
        random_flip_3d(tf.zeros([1, 2, 2, 2, 1], tf.int32), SEED)
