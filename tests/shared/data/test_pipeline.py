"""Tests of the tf.data builders and class-balanced resampling."""

import numpy as np
import pytest
import tensorflow as tf

from shared.data.augment2d import Augment2D
from shared.data.pipeline import (
    balanced_dataset,
    balanced_indices,
    balanced_steps_per_epoch,
    dataset_from_arrays,
    dataset_from_files,
)


def _arrays(n=10, size=4):
    x = np.arange(n * size * size, dtype=np.float32).reshape(n, size, size, 1)
    y = np.arange(n, dtype=np.int64)
    return x, y


def _epochs(ds, k=2):
    return [[tuple(np.asarray(t) for t in b) if isinstance(b, tuple) else np.asarray(b) for b in ds]
            for _ in range(k)]


def _labels_of(epoch):
    return np.concatenate([b[1] for b in epoch])


def test_arrays_batches_cover_all_samples_and_pair_x_with_y():
    x, y = _arrays()
    ds = dataset_from_arrays(x, y, batch_size=4, seed=3)
    batches = list(ds.as_numpy_iterator())
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    labels = np.concatenate([b[1] for b in batches])
    assert sorted(labels.tolist()) == list(range(10))
    for xb, yb in batches:
        np.testing.assert_array_equal(xb, x[yb])


def test_shuffle_reproducible_per_seed_and_reshuffled_each_epoch():
    x, y = _arrays(n=32)
    e1 = _epochs(dataset_from_arrays(x, y, batch_size=8, seed=5))
    e2 = _epochs(dataset_from_arrays(x, y, batch_size=8, seed=5))
    e3 = _epochs(dataset_from_arrays(x, y, batch_size=8, seed=6))
    np.testing.assert_array_equal(_labels_of(e1[0]), _labels_of(e2[0]))
    np.testing.assert_array_equal(_labels_of(e1[1]), _labels_of(e2[1]))
    assert not np.array_equal(_labels_of(e1[0]), _labels_of(e1[1]))
    assert not np.array_equal(_labels_of(e1[0]), _labels_of(e3[0]))


def test_no_shuffle_keeps_order_drop_remainder_and_repeat():
    x, y = _arrays()
    ds = dataset_from_arrays(x, y, batch_size=4, shuffle=False, drop_remainder=True)
    assert [b[1].tolist() for b in ds.as_numpy_iterator()] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    rep = dataset_from_arrays(x, None, batch_size=4, shuffle=False, repeat=True)
    first = [b for b in rep.take(4).as_numpy_iterator()]
    assert first[2].shape[0] == 4  # batches run across the epoch boundary
    np.testing.assert_array_equal(first[2][:, 0, 0, 0], x[[8, 9, 0, 1], 0, 0, 0])


def test_tuple_and_dict_inputs():
    x, y = _arrays()
    ds = dataset_from_arrays((x, x + 1), {"label": y}, batch_size=5, shuffle=False)
    (xa, xb), yd = next(iter(ds))
    np.testing.assert_array_equal(xb.numpy() - xa.numpy(), 1.0)
    assert yd["label"].numpy().tolist() == [0, 1, 2, 3, 4]


def test_augment_seed_unique_per_batch_and_epoch_and_reproducible():
    x, y = _arrays(n=8)

    def record_seed(xb, yb, seed):
        return xb, tf.broadcast_to(tf.cast(seed, tf.int64)[tf.newaxis], [tf.shape(yb)[0], 2])

    ds = dataset_from_arrays(x, y, batch_size=4, seed=1, augment=record_seed)
    epochs = _epochs(ds)
    seeds = [tuple(b[1][0]) for e in epochs for b in e]
    assert len(set(seeds)) == 4  # 2 batches x 2 epochs, all different
    again = _epochs(dataset_from_arrays(x, y, batch_size=4, seed=1, augment=record_seed))
    assert seeds == [tuple(b[1][0]) for e in again for b in e]


def test_augment2d_in_pipeline_is_deterministic():
    x = np.random.default_rng(0).random((6, 8, 8, 1), dtype=np.float32)
    masks = (x[..., 0] > 0.5).astype(np.int32)
    fn = Augment2D().pipeline_fn(y_is_mask=True)
    make = lambda: dataset_from_arrays(x, masks, batch_size=3, seed=2, augment=fn)  # noqa: E731
    a, b = _epochs(make(), 1)[0], _epochs(make(), 1)[0]
    for (xa, ma), (xb, mb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ma, mb)
        assert ma.shape == (3, 8, 8)


def test_unlabelled_augment_may_return_x_alone():
    x, _ = _arrays()
    ds = dataset_from_arrays(x, batch_size=5, shuffle=False, augment=lambda xb, yb, s: xb * 0.0)
    assert np.all(next(iter(ds)).numpy() == 0.0)


def test_array_error_paths():
    x, y = _arrays()
    with pytest.raises(ValueError, match="empty"):
        dataset_from_arrays(np.zeros((0, 4, 4, 1)), batch_size=2)
    with pytest.raises(ValueError, match="same number of samples"):
        dataset_from_arrays(x, y[:-1], batch_size=2)
    bad = x.copy()
    bad[7, 1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN at sample index 7"):
        dataset_from_arrays(bad, y, batch_size=2)
    with pytest.raises(ValueError, match="rank >= 1"):
        dataset_from_arrays(np.float32(1.0), batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        dataset_from_arrays(x, y, batch_size=0)
    with pytest.raises(ValueError, match="seed=None"):
        dataset_from_arrays(x, y, batch_size=2, seed=None)


def test_files_loader_cache_and_errors(tmp_path):
    paths, labels = [], []
    for i in range(5):
        p = tmp_path / f"s{i}.npy"
        np.save(p, np.full((3, 3, 1), i, np.float32))
        paths.append(p)
        labels.append(i)
    spec = tf.TensorSpec([3, 3, 1], tf.float32)
    for cache in (False, True):
        ds = dataset_from_files(paths, np.array(labels), np.load, output_signature=spec,
                                batch_size=2, seed=4, cache=cache)
        for _ in range(2):
            batches = list(ds.as_numpy_iterator())
            got = np.concatenate([b[1] for b in batches])
            assert sorted(got.tolist()) == labels
            for xb, yb in batches:
                np.testing.assert_array_equal(xb[:, 0, 0, 0], yb)
    unlabelled = dataset_from_files(paths, None, np.load, output_signature=spec,
                                    batch_size=5, shuffle=False)
    assert next(iter(unlabelled)).shape == (5, 3, 3, 1)

    with pytest.raises(FileNotFoundError, match="missing.npy"):
        dataset_from_files([tmp_path / "missing.npy"], [0], np.load, output_signature=spec, batch_size=1)
    with pytest.raises(ValueError, match="empty"):
        dataset_from_files([], [], np.load, output_signature=spec, batch_size=1)
    with pytest.raises(ValueError, match="one entry per path"):
        dataset_from_files(paths, [0, 1], np.load, output_signature=spec, batch_size=1)
    np.save(tmp_path / "nan.npy", np.full((3, 3, 1), np.nan, np.float32))
    ds = dataset_from_files([tmp_path / "nan.npy"], [0], np.load, output_signature=spec, batch_size=1)
    with pytest.raises(tf.errors.OpError, match="NaN for file .*nan.npy"):
        list(ds)


def test_balanced_indices_counts_by_hand():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 6)
    idx = balanced_indices(labels, rng=0)
    assert np.bincount(labels[idx]).tolist() == [3, 3, 3]
    assert len(set(idx.tolist())) == idx.size
    assert set(np.flatnonzero(labels == 1)) <= set(idx.tolist())  # all minority samples
    np.testing.assert_array_equal(idx, balanced_indices(labels, rng=0))
    assert not np.array_equal(idx, balanced_indices(labels, rng=1))
    # an explicit minority class: a smaller class contributes all it has
    idx2 = balanced_indices(labels, rng=0, minority_class=2)
    assert np.bincount(labels[idx2]).tolist() == [6, 3, 6]
    onehot = np.eye(3)[labels]
    assert np.bincount(labels[balanced_indices(onehot, rng=0)]).tolist() == [3, 3, 3]
    with pytest.raises(ValueError, match="minority_class=5"):
        balanced_indices(labels, rng=0, minority_class=5)
    with pytest.raises(ValueError, match="empty"):
        balanced_indices(np.array([], np.int64), rng=0)


def test_balanced_dataset_redraws_each_epoch():
    labels = np.array([0] * 12 + [1] * 3)
    x = np.arange(15, dtype=np.float32)[:, None]
    steps = balanced_steps_per_epoch(labels, 4)
    assert steps == 2
    ds = balanced_dataset(x, labels, batch_size=4, seed=0, epochs=3)
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == 3 * steps
    epochs = [np.concatenate([b[0][:, 0] for b in batches[e * steps:(e + 1) * steps]]) for e in range(3)]
    for e in epochs:
        assert np.bincount(labels[e.astype(int)]).tolist() == [3, 3]
    assert len({tuple(sorted(e.tolist())) for e in epochs}) > 1  # the class-0 draw changes
    again = list(balanced_dataset(x, labels, batch_size=4, seed=0, epochs=3).as_numpy_iterator())
    for a, b in zip(batches, again):
        np.testing.assert_array_equal(a[0], b[0])
    with pytest.raises(ValueError, match="epochs"):
        balanced_dataset(x, labels, batch_size=4, seed=0, epochs=0)


def test_balanced_dataset_trains_keras_model():
    import keras

    labels = np.array([0] * 12 + [1] * 4)
    x = np.random.default_rng(0).random((16, 3), dtype=np.float32)
    ds = balanced_dataset(x, labels, batch_size=4, seed=0, epochs=2,
                          augment=lambda xb, yb, s: (xb + 0.0 * tf.cast(s[0], tf.float32), yb))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    hist = model.fit(ds, epochs=2, steps_per_epoch=balanced_steps_per_epoch(labels, 4),
                     shuffle=False, verbose=0)
    assert len(hist.history["loss"]) == 2


def test_files_pipeline_reproducible_with_augment(tmp_path):
    paths = []
    for i in range(4):
        p = tmp_path / f"v{i}.npy"
        np.save(p, np.random.default_rng(i).random((6, 6, 1), dtype=np.float32))
        paths.append(p)
    spec = tf.TensorSpec([6, 6, 1], tf.float32)
    aug = Augment2D(noise=1.0).pipeline_fn()

    def make():
        return dataset_from_files(paths, np.arange(4), np.load, output_signature=spec,
                                  batch_size=2, seed=9, augment=aug, cache=True)

    a, b = _epochs(make()), _epochs(make())
    for ea, eb in zip(a, b):
        for (xa, ya), (xb, yb) in zip(ea, eb):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
