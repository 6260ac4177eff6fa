"""Tests of the TFRecord shard writer / reader and of feeding datasets to devices.

The two-replica check runs in a fresh process (``python -m tests.shared.data.test_shards
DIR``) because the logical CPU devices must be fixed before TensorFlow starts.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from shared.data.pipeline import (
    _shard_options,
    batch_seeds,
    dataset_from_arrays,
    distribute_dataset,
    per_replica_batch_size,
)
from shared.data.shards import ShardWriter, dataset_from_shards, load_manifest, write_shards

ROOT = Path(__file__).resolve().parents[3]


def _data(n=23):
    x = np.arange(n * 12, dtype=np.float32).reshape(n, 2, 3, 2)
    y = np.arange(n, dtype=np.int64)
    return x, y


def _ids(ds):
    """Labels (= sample ids) of one pass, in order."""
    return np.concatenate([b[1] for b in ds.as_numpy_iterator()]).tolist()


def test_round_trip_of_mixed_dtypes_in_original_order(tmp_path):
    n = 23
    x = {
        "img": np.random.default_rng(0).normal(size=(n, 4, 3)).astype(np.float16),
        "mask": np.random.default_rng(1).random((n, 2, 2)) > 0.5,
        "big": np.arange(n, dtype=np.uint64) * (2**61) + 7,  # needs all 64 bits
        "name": np.array([[f"case{i}", "ü"] for i in range(n)]),
    }
    y = (np.arange(n, dtype=np.int64), np.arange(2 * n, dtype=np.int8).reshape(n, 2) - 20)
    manifest = write_shards(tmp_path, x, y, num_shards=4)
    # Sample i sits in shard i % 4 at position i // 4; reading the four files
    # round robin, one record at a time, restores 0, 1, 2, ... (the last file
    # holds one record fewer: 6, 6, 6, 5).
    assert [s["records"] for s in load_manifest(manifest)["shards"]] == [6, 6, 6, 5]
    ds = dataset_from_shards(manifest, batch_size=5, shuffle=False, cycle_length=4)
    batches = list(ds.as_numpy_iterator())
    assert [len(b[1][0]) for b in batches] == [5, 5, 5, 5, 3]
    got_x = {k: np.concatenate([b[0][k] for b in batches]) for k in x}
    got_y = [np.concatenate([b[1][j] for b in batches]) for j in range(2)]
    for key in ("img", "mask", "big"):
        assert got_x[key].dtype == x[key].dtype
        np.testing.assert_array_equal(got_x[key], x[key])
    assert got_x["name"][3].tolist() == [b"case3", "ü".encode()]
    np.testing.assert_array_equal(got_y[0], y[0])
    np.testing.assert_array_equal(got_y[1], y[1])


def test_files_are_deterministic_and_gzip_round_trips(tmp_path):
    x, y = _data()
    a = write_shards(tmp_path / "a", x, y, num_shards=3)
    b = write_shards(tmp_path / "b", x, y, num_shards=3)
    for name in sorted(p.name for p in a.parent.iterdir()):
        assert (a.parent / name).read_bytes() == (b.parent / name).read_bytes(), name
    z = write_shards(tmp_path / "z", x, y, num_shards=3, compression="GZIP")
    ds = dataset_from_shards(z, batch_size=4, shuffle=False, cycle_length=3)
    assert _ids(ds) == list(range(23))
    with pytest.raises(FileExistsError, match="overwrite"):
        write_shards(tmp_path / "a", x, y, num_shards=3)
    write_shards(tmp_path / "a", x, y, num_shards=3, overwrite=True)


def test_chunked_writer_gives_the_same_files_and_checks_chunks(tmp_path):
    x, y = _data()
    whole = write_shards(tmp_path / "whole", {"a": x}, y, num_shards=4)
    with ShardWriter(tmp_path / "chunks", num_shards=4) as writer:
        for start, stop in ((0, 5), (5, 6), (6, 23)):  # chunking does not change the files
            writer.write({"a": x[start:stop]}, y[start:stop])
        with pytest.raises(ValueError, match=r"sample 23 .*x\['a'\]: int32"):
            writer.write({"a": x[:2].astype(np.int32)}, y[:2])
        with pytest.raises(ValueError, match="Chunk starting at sample 23: .*NaN at sample index 1"):
            writer.write({"a": np.where(np.arange(2)[:, None, None, None] == 1, np.nan, x[:2])}, y[:2])
    for name in sorted(p.name for p in whole.parent.iterdir()):
        assert (whole.parent / name).read_bytes() == (tmp_path / "chunks" / name).read_bytes(), name
    # An exception inside the block leaves no manifest and no partial files.
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path / "failed", num_shards=2) as writer:
            writer.write(x[:4], y[:4])
            raise RuntimeError("loader failed")
    assert list((tmp_path / "failed").iterdir()) == []
    with pytest.raises(ValueError, match="num_shards"):
        with ShardWriter(tmp_path / "few", num_shards=5) as writer:
            writer.write(x[:3], y[:3])


def test_every_sample_once_per_epoch_seeded_and_reshuffled(tmp_path):
    x, y = _data(40)
    manifest = write_shards(tmp_path, x, y, num_shards=5)

    def epochs(seed, **kw):
        ds = dataset_from_shards(manifest, batch_size=6, seed=seed, shuffle_buffer=16, **kw)
        out = []
        for _ in range(2):
            ids = []
            for xb, yb in ds.as_numpy_iterator():
                np.testing.assert_array_equal(xb, x[yb])  # x stays paired with y
                ids += yb.tolist()
            out.append(ids)
        return out

    first = epochs(7)
    for ids in first:
        assert sorted(ids) == list(range(40))
    assert first[0] != first[1]  # reshuffled every pass
    assert epochs(7) == first  # same seed, same sequence of passes
    assert epochs(8)[0] != first[0]
    cached = epochs(7, cache=True)  # records cached before shuffling: still reshuffled
    assert sorted(cached[1]) == list(range(40)) and cached[0] != cached[1]


def test_repeat_drop_remainder_and_cardinality(tmp_path):
    x, y = _data(10)
    manifest = write_shards(tmp_path, x, y, num_shards=2)
    ds = dataset_from_shards(manifest, batch_size=4, seed=0, drop_remainder=True)
    assert int(ds.cardinality()) == 2
    rep = dataset_from_shards(manifest, batch_size=4, seed=0, repeat=True)
    ids = np.concatenate([b[1] for b in rep.take(5).as_numpy_iterator()])
    assert len(ids) == 20  # batches run across the pass boundary
    assert sorted(ids[:10].tolist()) == list(range(10))  # each pass complete
    assert sorted(ids[10:].tolist()) == list(range(10))
    assert ids[:10].tolist() != ids[10:].tolist()  # and reshuffled


def test_augment_gets_the_same_per_batch_seeds_as_in_memory_data(tmp_path):
    x, y = _data(8)
    manifest = write_shards(tmp_path, x, y, num_shards=2)

    def record_seed(xb, yb, seed):
        return xb, tf.broadcast_to(tf.cast(seed, tf.int64)[tf.newaxis], [tf.shape(yb)[0], 2])

    shards = dataset_from_shards(manifest, batch_size=4, seed=3, augment=record_seed)
    arrays = dataset_from_arrays(x, y, batch_size=4, seed=3, augment=record_seed)
    got = [b[1][0].tolist() for _ in range(2) for b in shards.as_numpy_iterator()]
    want = [b[1][0].tolist() for _ in range(2) for b in arrays.as_numpy_iterator()]
    expected = [s.tolist() for s in batch_seeds(3).take(2).as_numpy_iterator()]
    assert got[:2] == expected and got == want
    assert len({tuple(s) for s in got}) == 4  # 2 batches x 2 passes


def test_missing_truncated_and_bad_arguments(tmp_path):
    x, y = _data()
    with pytest.raises(FileNotFoundError, match="nowhere.shards.json"):
        dataset_from_shards(tmp_path / "nowhere.shards.json", batch_size=2)
    with pytest.raises(FileNotFoundError, match="No shard manifest"):
        dataset_from_shards(tmp_path, batch_size=2)
    manifest = write_shards(tmp_path, x, y, num_shards=3)
    shard1 = tmp_path / "shard-00001-of-00003.tfrecord"
    shard1.write_bytes(shard1.read_bytes()[:-10])
    with pytest.raises(ValueError, match="shard-00001-of-00003.tfrecord has .* truncated"):
        dataset_from_shards(tmp_path, batch_size=2)
    shard1.unlink()
    with pytest.raises(FileNotFoundError, match="shard-00001-of-00003.tfrecord"):
        dataset_from_shards(manifest, batch_size=2)
    with pytest.raises(ValueError, match="num_shards"):
        write_shards(tmp_path / "c", x, y, num_shards=24)
    with pytest.raises(ValueError, match="NaN at sample index 2"):
        write_shards(tmp_path / "c", np.where(np.arange(23)[:, None] == 2, np.nan, 0.0), num_shards=2)
    with pytest.raises(ValueError, match="cycle_length"):
        dataset_from_shards(manifest, batch_size=2, cycle_length=0)


def test_corrupt_shard_named_while_reading(tmp_path):
    x, y = _data()
    manifest = write_shards(tmp_path, x, y, num_shards=3)
    shard2 = tmp_path / "shard-00002-of-00003.tfrecord"
    data = bytearray(shard2.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one record fails its checksum
    shard2.write_bytes(bytes(data))
    ds = dataset_from_shards(manifest, batch_size=4, seed=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="shard-00002-of-00003.tfrecord.*corrupt"):
        list(ds)


def test_mismatched_field_specs(tmp_path):
    x, y = _data()
    manifest = write_shards(tmp_path / "a", x, y, num_shards=2)
    good = (tf.TensorSpec([2, 3, 2], tf.float32), tf.TensorSpec([], tf.int64))
    dataset_from_shards(manifest, batch_size=4, element_spec=good)
    with pytest.raises(ValueError, match=r"Field y .*expected int32"):
        dataset_from_shards(manifest, batch_size=4,
                            element_spec=(good[0], tf.TensorSpec([], tf.int32)))
    with pytest.raises(ValueError, match=r"Field x .*\(2, 3, 2\)"):
        dataset_from_shards(manifest, batch_size=4,
                            element_spec=(tf.TensorSpec([3, 2, 2], tf.float32), good[1]))
    with pytest.raises(ValueError, match="structure"):
        dataset_from_shards(manifest, batch_size=4, element_spec=good[0])
    # A shard replaced by one written with another dtype (same byte size, the
    # manifest's size patched): caught on reading, the file is named.
    other = write_shards(tmp_path / "b", x.astype(np.int32), y, num_shards=2)
    shutil.copy(other.parent / "shard-00000-of-00002.tfrecord",
                manifest.parent / "shard-00000-of-00002.tfrecord")
    meta = json.loads(manifest.read_text())
    meta["shards"][0]["bytes"] = (manifest.parent / "shard-00000-of-00002.tfrecord").stat().st_size
    manifest.write_text(json.dumps(meta))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="shard-00000-of-00002.tfrecord.*another field specification"):
        list(dataset_from_shards(manifest, batch_size=4, seed=0))


def test_workers_get_disjoint_shares_under_each_shard_policy(tmp_path):
    # Emulates two workers (one process each): auto-sharding rewrites a fresh
    # copy of the pipeline per worker, as each worker builds its own.
    from tensorflow.python.data.experimental.ops.distribute import _AutoShardDataset

    x, y = _data(40)
    manifest = write_shards(tmp_path, x, y, num_shards=4)
    builders = {
        4: lambda: dataset_from_shards(manifest, batch_size=4, seed=3),  # by file
        None: lambda: dataset_from_arrays(x, y, batch_size=4, seed=3),  # by batch
    }
    for num_files, build in builders.items():
        policy = _shard_options(num_files, 2).experimental_distribute.auto_shard_policy
        assert policy == (tf.data.experimental.AutoShardPolicy.FILE if num_files
                          else tf.data.experimental.AutoShardPolicy.DATA)
        parts = [_ids(_AutoShardDataset(build().with_options(_shard_options(num_files, 2)), 2, w))
                 for w in range(2)]
        assert sorted(parts[0] + parts[1]) == list(range(40)), num_files
        if num_files:  # worker w reads shards w and w + 2: samples i with i % 2 == w
            assert sorted(parts[1]) == list(range(1, 40, 2))
    assert (_shard_options(1, 2).experimental_distribute.auto_shard_policy
            == tf.data.experimental.AutoShardPolicy.DATA)  # fewer files than workers


def test_distribute_dataset_without_gpu_and_bad_batch():
    ds = tf.data.Dataset.range(4).batch(2)
    if not tf.config.list_logical_devices("GPU"):
        assert distribute_dataset(ds, global_batch_size=2) is ds  # nothing to copy on CPU
    with pytest.raises(ValueError, match="global_batch_size"):
        distribute_dataset(ds, global_batch_size=0)


@pytest.mark.slow
def test_two_replicas_each_get_their_share(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    proc = subprocess.run([sys.executable, "-m", "tests.shared.data.test_shards", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for source in ("shards", "arrays"):
        # 20 samples, global batch 8: steps of 8, 8, 4 split 4+4, 4+4, 2+2.
        rep = result[source]
        assert rep["sizes"] == [[4, 4], [4, 4], [2, 2]], source
        assert rep["devices"] == ["CPU:0", "CPU:1"], source
        ids = rep["ids"][0] + rep["ids"][1]
        assert sorted(ids) == list(range(20)), source  # nothing duplicated or lost
        assert rep["x_matches_y"]
    assert result["prefetched_device"] == "CPU:1"
    assert result["prefetched_ids"] == list(range(20))
    assert result["fit_steps"] == 3 and result["fit_loss_finite"]
    assert result["prefetched_fit_weight_diff"] == 0.0
    assert result["per_replica"] == 4 and "does not split evenly" in result["uneven"]


def _child(directory):
    """Runs in a fresh process: mirrored strategy over two logical CPUs."""
    from shared.training.scale import make_strategy, split_cpu

    split_cpu(2)
    import keras

    x, y = _data(20)
    manifest = write_shards(directory, x, y, num_shards=4)
    strategy = make_strategy("mirrored", ["/cpu:0", "/cpu:1"])
    out = {}
    sources = {
        "shards": (lambda: dataset_from_shards(manifest, batch_size=8, seed=1), 4),
        "arrays": (lambda: dataset_from_arrays(x, y, batch_size=8, seed=1), None),
    }
    for name, (build, num_files) in sources.items():
        dist = distribute_dataset(build(), strategy, global_batch_size=8, num_files=num_files)
        sizes, ids, devices, paired = [], [[], []], None, True
        for xb, yb in dist:
            xs = strategy.experimental_local_results(xb)
            ys = strategy.experimental_local_results(yb)
            devices = [t.device.split("device:")[-1] for t in ys]
            sizes.append([int(t.shape[0]) for t in ys])
            for r in range(2):
                ids[r] += ys[r].numpy().tolist()
                paired &= bool(np.array_equal(xs[r].numpy(), x[ys[r].numpy()]))
        out[name] = {"sizes": sizes, "ids": ids, "devices": devices, "x_matches_y": paired}

    # Default strategy: batches copied ahead onto another device.
    on_device = distribute_dataset(dataset_from_shards(manifest, batch_size=8, shuffle=False),
                                   global_batch_size=8, device="/cpu:1")
    batches = list(on_device)
    out["prefetched_device"] = batches[0][1].device.split("device:")[-1]
    out["prefetched_ids"] = np.concatenate([b[1].numpy() for b in batches]).tolist()

    with strategy.scope():
        model = keras.Sequential([keras.Input((2, 3, 2)), keras.layers.Flatten(),
                                  keras.layers.Dense(1)])
        model.compile("sgd", "mse")
    dist = distribute_dataset(dataset_from_shards(manifest, batch_size=8, seed=1), strategy,
                              global_batch_size=8, num_files=4)
    history = model.fit(dist, epochs=1, steps_per_epoch=3, verbose=0)
    out["fit_steps"] = int(model.optimizer.iterations.numpy())
    out["fit_loss_finite"] = bool(np.isfinite(history.history["loss"]).all())
    out["per_replica"] = per_replica_batch_size(8, strategy)
    try:
        per_replica_batch_size(7, strategy)
        out["uneven"] = "accepted"
    except ValueError as exc:
        out["uneven"] = str(exc)

    # model.fit on batches prefetched onto another device (the single-GPU path)
    # trains exactly as on the host dataset.
    weights = []
    for ds in (on_device, dataset_from_shards(manifest, batch_size=8, shuffle=False)):
        keras.utils.set_random_seed(0)
        single = keras.Sequential([keras.Input((2, 3, 2)), keras.layers.Flatten(),
                                   keras.layers.Dense(1)])
        single.compile("sgd", "mse")
        single.fit(ds, epochs=2, verbose=0)
        weights.append(single.get_weights()[0])
    out["prefetched_fit_weight_diff"] = float(np.abs(weights[0] - weights[1]).max())
    print(json.dumps(out))


if __name__ == "__main__":
    _child(sys.argv[1])
