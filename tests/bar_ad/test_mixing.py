"""BAR / BAM / CutMix on a toy atlas: soft labels equal the replaced brain share by hand."""

import numpy as np
import pytest
import tensorflow as tf

from bar_ad.mixing import (RegionMixer, cube_partition, make_view_fn, partner_indices,
                           region_mix, sample_beta, scaled_sizes)


def toy_atlas():
    """A 4x4x4 atlas: region 1 = 8 voxels, 2 = 16, 3 = 8, background elsewhere (32)."""
    labels = np.zeros((4, 4, 4), np.int32)
    labels[0:2, 0:2, 0:2] = 1
    labels[2:4, 0:2, :] = 2
    labels[0:2, 2:4, 0:2] = 3
    return labels, labels > 0


def batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.random((n, 4, 4, 4, 1)) + np.arange(n)[:, None, None, None, None]).astype(np.float32)
    y = np.array([1, 0, 1, 0][:n], np.float32)
    return x, y


def test_soft_label_equals_replaced_brain_share_by_hand():
    labels, brain = toy_atlas()
    x, y = batch()
    mixed, soft, d = region_mix(x, y, tf.constant([3, 5]), region_labels=labels,
                                brain_mask=brain, alpha=1.0, beta=1.0, return_details=True)
    mixed, soft = mixed.numpy(), soft.numpy()
    selected, partner = d["selected"].numpy(), d["partner"].numpy()
    sizes = {1: 8, 2: 16, 3: 8}
    for i in range(4):
        j = partner[i]
        assert j != i
        chosen = [r for r in (1, 2, 3) if selected[i, r - 1] == 1]
        # Number of regions = round(lambda * R) (Sec. 2).
        assert len(chosen) == int(np.round(d["lam"].numpy()[i] * 3))
        share = sum(sizes[r] for r in chosen) / 32.0
        np.testing.assert_allclose(d["share"].numpy()[i], share, atol=1e-6)
        # Eq. 3 with the pixel-wise ratio lambda = 1 - share.
        np.testing.assert_allclose(soft[i], (1 - share) * y[i] + share * y[j], atol=1e-6)
        # Eq. 2: voxels of chosen regions from X_j, everything else from X_i.
        m = np.isin(labels, chosen)
        np.testing.assert_array_equal(mixed[i, ..., 0][m], x[j, ..., 0][m])
        np.testing.assert_array_equal(mixed[i, ..., 0][~m], x[i, ..., 0][~m])


def test_all_or_no_regions_give_hard_labels():
    labels, brain = toy_atlas()
    x, y = batch()
    # Beta with mass near 1 replaces every region: the soft label is the partner's label.
    _, soft, d = region_mix(x, y, tf.constant([1, 1]), region_labels=labels, brain_mask=brain,
                            alpha=1e4, beta=1e-4, return_details=True)
    np.testing.assert_allclose(soft.numpy(), y[d["partner"].numpy()], atol=1e-6)
    mixed, soft = region_mix(x, y, tf.constant([1, 1]), region_labels=labels, brain_mask=brain,
                             alpha=1e-4, beta=1e4)
    np.testing.assert_allclose(soft.numpy(), y, atol=1e-6)
    np.testing.assert_array_equal(mixed.numpy(), x)


def test_seeded_determinism():
    labels, brain = toy_atlas()
    mixer = RegionMixer(labels, brain)
    x, y = batch()
    a = mixer.mix(x, y, tf.constant([7, 9]))
    b = mixer.mix(x, y, tf.constant([7, 9]))
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u.numpy(), v.numpy())
    bam_a = mixer.bam(x, tf.constant([7, 9])).numpy()
    np.testing.assert_array_equal(bam_a, mixer.bam(x, tf.constant([7, 9])).numpy())
    differs = [not np.array_equal(mixer.mix(x, y, tf.constant([s, 1]))[0].numpy(), a[0].numpy())
               for s in range(10)]
    assert any(differs)


def test_bam_fills_twenty_percent_of_untouched_regions():
    labels = np.arange(1, 11, dtype=np.int32).repeat(4).reshape(4, 10, 1)  # 10 regions
    labels = np.broadcast_to(labels, (4, 10, 1)).copy().reshape(4, 10, 1)
    mixer = RegionMixer(labels, labels > 0, bam_fraction=0.2)
    x = np.full((2, 4, 10, 1, 1), 5.0, np.float32)  # noise is U(0, 1): filled voxels < 5
    selected = tf.constant(np.array([[1] * 5 + [0] * 5, [0] * 10], np.float32))
    out = mixer.bam(x, tf.constant([2, 3]), selected).numpy()[..., 0]
    for b, expected in ((0, 1), (1, 2)):  # round(0.2 * 5) = 1, round(0.2 * 10) = 2
        filled = {int(r) for r in np.unique(labels[out[b] < 5])}
        assert len(filled) == expected
        if b == 0:
            assert filled.isdisjoint({1, 2, 3, 4, 5})  # never a replaced region


def test_cube_partition_and_partners():
    cubes = cube_partition((6, 6, 6), 3)
    assert sorted(np.unique(cubes)) == list(range(1, 28))
    assert all((cubes == k).sum() == 8 for k in range(1, 28))
    p = partner_indices(5, tf.constant([4, 4])).numpy()
    assert sorted(p) == list(range(5)) and all(p != np.arange(5))
    assert partner_indices(1, tf.constant([0, 0])).numpy().tolist() == [0]


def test_beta_samples_mean():
    s = sample_beta((4000,), tf.constant([0, 1]), 0.2, 0.8).numpy()
    assert s.min() >= 0 and s.max() <= 1
    assert abs(s.mean() - 0.2) < 0.03  # mean of Beta(0.2, 0.8)


def test_views_and_errors():
    labels, brain = toy_atlas()
    mixer = RegionMixer(labels, brain)
    x = np.random.default_rng(0).random((4, 4, 4, 4, 1)).astype(np.float32)
    views, soft = make_view_fn("mix", grid=4, mixer=mixer, shuffle_blocks=1)(
        tf.constant(x), tf.constant([1.0, 0, 1, 0]), tf.constant([1, 2]))
    assert set(views) == {"view1", "view2", "anchor"}
    assert views["view1"].shape == views["view2"].shape == x.shape
    np.testing.assert_array_equal(views["anchor"].numpy(), x)
    assert soft.shape == (4,)
    assert scaled_sizes(96)["inner"][:2] == (6, 5) and scaled_sizes(96)["outer"][:2] == (6, 20)
    with pytest.raises(ValueError, match="without gaps"):
        RegionMixer(np.array([[[0, 1, 3]]]), np.ones((1, 1, 3), bool))
    with pytest.raises(ValueError, match="kind"):
        make_view_fn("cutout", grid=4, mixer=mixer)
