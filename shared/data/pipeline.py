"""tf.data input pipelines: seeded shuffling, batched augmentation, class balancing.

Three builders cover the suite's needs:

* :func:`dataset_from_arrays` for data already in memory (NumPy arrays, or
  tuples / dicts of them, e.g. the two inputs of a siamese network);
* :func:`dataset_from_files` for data read from disk by a Python loader;
* :func:`balanced_dataset` for the per-epoch class-balanced resampling of
  COVID-Net (all samples of the minority class plus an equal random draw from
  every other class, redrawn every epoch).

Data that does not fit in memory is written to TFRecord shards and read back
with :func:`shared.shards.dataset_from_shards` (same batching and augmentation
contract). :func:`distribute_dataset` hands any of these datasets to the
devices: split over the replicas of a strategy, or prefetched onto a single GPU.

Every builder batches first and then augments whole batches in graph mode
(``augment(x_batch, y_batch, seed)``), so the augmentation functions of
:mod:`shared.data.augment2d` / :mod:`shared.data.augment3d` run vectorised over the batch
with stateless random ops. Each batch receives its own ``seed`` tensor (shape
``[2]``, int32), derived from the builder's ``seed``; it differs between batches
and between epochs (passes over the dataset), and the whole sequence repeats
exactly when the dataset is built again with the same ``seed``.

Reproducibility note: ``tf.data`` derives its shuffling and per-pass seeds from
the builder's ``seed`` *and* TensorFlow's global seed (``tf.random.set_seed``,
called by :func:`shared.seeding.set_global_seed`). Two runs give identical
batches when both use the same ``seed`` and the same global-seed state.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from shared.training.seeding import numpy_rng

logger = logging.getLogger(__name__)

AUTOTUNE = tf.data.AUTOTUNE

__all__ = [
    "dataset_from_arrays",
    "dataset_from_files",
    "balanced_indices",
    "balanced_dataset",
    "balanced_steps_per_epoch",
    "batch_seeds",
    "per_replica_batch_size",
    "distribute_dataset",
]


# ----------------------------------------------------------------------------
# validation helpers


def _leaves(structure, name: str) -> list[tuple[str, np.ndarray]]:
    """Flattens an array / tuple / dict into ``(path, array)`` pairs."""
    if isinstance(structure, Mapping):
        out = []
        for key in structure:
            out.extend(_leaves(structure[key], f"{name}[{key!r}]"))
        return out
    if isinstance(structure, (tuple, list)) and not _is_array_like_list(structure):
        out = []
        for i, item in enumerate(structure):
            out.extend(_leaves(item, f"{name}[{i}]"))
        return out
    return [(name, np.asarray(structure))]


def _is_array_like_list(value) -> bool:
    # A plain list of numbers (labels) is one array, a tuple/list of arrays is a
    # structure of several inputs.
    return isinstance(value, list) and (len(value) == 0 or np.isscalar(value[0]))


def _to_arrays(structure):
    """Converts every leaf of a (nested) structure to a NumPy array."""
    if isinstance(structure, Mapping):
        return {key: _to_arrays(value) for key, value in structure.items()}
    if isinstance(structure, (tuple, list)) and not _is_array_like_list(structure):
        return tuple(_to_arrays(item) for item in structure)
    return np.asarray(structure)


def _check_arrays(x, y) -> int:
    """Validates x / y and returns the number of samples.

    Raises:
        ValueError: on an empty dataset, a scalar (rank-0) leaf, leaves whose
            first dimensions differ, or a NaN in a floating-point leaf (the
            message names the first offending sample index).
    """
    leaves = _leaves(x, "x")
    if y is not None:
        leaves += _leaves(y, "y")
    if not leaves:
        raise ValueError("The dataset is empty: x holds no arrays.")
    lengths = {}
    for name, arr in leaves:
        if arr.ndim == 0:
            raise ValueError(
                f"{name} must have rank >= 1 with samples along axis 0. "
                f"Received: a scalar (shape={arr.shape})"
            )
        lengths[name] = arr.shape[0]
    first_name, n = leaves[0][0], leaves[0][1].shape[0]
    if n == 0:
        raise ValueError(
            f"The dataset is empty: {first_name} has 0 samples (shape={leaves[0][1].shape})."
        )
    mismatched = {k: v for k, v in lengths.items() if v != n}
    if mismatched:
        raise ValueError(
            f"All arrays must hold the same number of samples along axis 0; "
            f"{first_name} has {n} but {mismatched} differ. Received lengths: {lengths}"
        )
    for name, arr in leaves:
        if np.issubdtype(arr.dtype, np.floating):
            bad = np.isnan(arr.reshape(n, -1)).any(axis=1)
            if bad.any():
                idx = np.flatnonzero(bad)
                raise ValueError(
                    f"{name} contains NaN at sample index {int(idx[0])} "
                    f"({idx.size} sample(s) affected, first ones: {idx[:5].tolist()}); "
                    f"expected finite values."
                )
    return n


def _validate_batch_size(batch_size) -> int:
    if batch_size is None or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer. Received: batch_size={batch_size}")
    return int(batch_size)


def _validate_seed(seed) -> int:
    if seed is None:
        raise ValueError("An explicit integer seed is required. Received: seed=None")
    return int(seed)


# ----------------------------------------------------------------------------
# per-batch seeds and augmentation


def batch_seeds(seed: int) -> tf.data.Dataset:
    """An endless dataset of ``[2]`` int32 seeds, one per batch.

    The stream is redrawn on every pass over the dataset (every epoch) and is
    the same for every dataset built with the same ``seed``.

    Args:
        seed: int. Seed of the stream.

    Returns:
        A ``tf.data.Dataset`` of int32 tensors of shape ``[2]``.
    """
    seed = _validate_seed(seed)
    stream = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    # Stateless ops accept any int32 pair; keep the values non-negative.
    return stream.batch(2, drop_remainder=True).map(
        lambda s: tf.cast(tf.math.floormod(s, 2**31 - 1), tf.int32)
    )


def _apply_augment(augment: Callable, has_y: bool):
    """Wraps ``augment(x, y, seed)`` for ``Dataset.map`` over ``(batch, seed)``."""

    if has_y:

        def fn(batch, seed):
            x, y = batch
            out = augment(x, y, seed)
            if not isinstance(out, tuple) or len(out) != 2:
                raise ValueError(
                    "augment(x_batch, y_batch, seed) must return a tuple (x, y). "
                    f"Received: {type(out).__name__}"
                )
            return out

    else:

        def fn(x, seed):
            out = augment(x, None, seed)
            # Accept either (x, None) or x alone for unlabelled data.
            if isinstance(out, tuple) and len(out) == 2 and out[1] is None:
                return out[0]
            return out

    return fn


def _finish(ds: tf.data.Dataset, augment, has_y: bool, seed: int) -> tf.data.Dataset:
    if augment is not None:
        ds = tf.data.Dataset.zip((ds, batch_seeds(seed)))
        ds = ds.map(_apply_augment(augment, has_y), num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.prefetch(AUTOTUNE)


def _resident_options(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Turns off tf.data's static graph rewrites for datasets capturing arrays.

    The rewrites serialise the dataset graph, copying every captured array
    into it on each new iterator (each epoch): about 17 s for 2.4 GB. The
    pipeline is already batched, parallel and prefetched explicitly, so the
    rewrites gain nothing here. Autotuning stays on.
    """
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    return ds.with_options(options)


# ----------------------------------------------------------------------------
# builders


def dataset_from_arrays(
    x,
    y=None,
    *,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    augment: Callable | None = None,
    cache: bool = True,
    repeat: bool = False,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """A batched, shuffled, optionally augmented dataset over in-memory arrays.

    The arrays are held as tensors; each batch is gathered from a shuffled
    index stream (one gather per batch instead of one slice per sample), then
    augmented as a whole batch in graph mode, then prefetched.

    Args:
        x: array ``[N, ...]``, or a tuple / dict of such arrays (several inputs).
        y: optional labels / targets (array, tuple or dict), ``N`` along axis 0.
        batch_size: int. Samples per batch.
        shuffle: bool, default True. Shuffle the order, reshuffled every pass
            (epoch), reproducibly from ``seed``.
        seed: int, default 0. Seed of the shuffle and of the augmentation seeds.
        augment: optional callable ``augment(x_batch, y_batch, seed) -> (x, y)``
            run in graph mode on every batch; ``seed`` is a ``[2]`` int32 tensor
            unique per batch and epoch. With ``y=None`` it receives ``None`` and
            may return ``x`` or ``(x, None)``.
        cache: bool, default True. In-memory arrays are already resident, so no
            ``Dataset.cache`` stage is added; kept for symmetry with
            :func:`dataset_from_files`.
        repeat: bool, default False. Repeat endlessly (shuffling each pass);
            batches then run across epoch boundaries.
        drop_remainder: bool, default False. Drop the last incomplete batch.

    Returns:
        ``tf.data.Dataset`` yielding ``x_batch`` or ``(x_batch, y_batch)``.

    Raises:
        ValueError: empty data, mismatched lengths, NaN samples (the index is
            named), scalar arrays, bad ``batch_size`` or ``seed=None``.

    Example:
        >>> aug = Augment2D(flip=0.5).pipeline_fn()
        >>> ds = dataset_from_arrays(images, labels, batch_size=32, seed=1, augment=aug)
    """
    del cache  # resident tensors need no cache stage
    batch_size = _validate_batch_size(batch_size)
    seed = _validate_seed(seed)
    x = _to_arrays(x)
    y = None if y is None else _to_arrays(y)
    n = _check_arrays(x, y)

    data = x if y is None else (x, y)
    tensors = tf.nest.map_structure(tf.convert_to_tensor, data)

    index = tf.data.Dataset.range(n)
    if shuffle:
        index = index.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        index = index.repeat()
    index = index.batch(batch_size, drop_remainder=drop_remainder)
    ds = index.map(
        lambda idx: tf.nest.map_structure(lambda t: tf.gather(t, idx), tensors),
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )
    return _resident_options(_finish(ds, augment, y is not None, seed))


def dataset_from_files(
    paths: Sequence[str | os.PathLike],
    labels,
    loader: Callable[[str], Any],
    *,
    output_signature,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    augment: Callable | None = None,
    cache: bool = False,
) -> tf.data.Dataset:
    """A batched dataset reading samples from files with a Python loader.

    ``loader(path) -> array`` (or a tuple of arrays matching
    ``output_signature``) is ordinary Python: it runs through
    ``tf.numpy_function`` inside a parallel ``Dataset.map``, so several files
    load concurrently (the GIL is released in NumPy / file I/O) but the loader
    itself is not traced into the graph and cannot be serialised with it.
    A loader that returns NaN raises a ``ValueError`` naming the file; TensorFlow
    surfaces it as ``tf.errors.InvalidArgumentError`` carrying that message.

    Stages: with ``cache=True``: load -> cache -> shuffle -> batch -> augment ->
    prefetch (files are read once, order reshuffled every epoch). With
    ``cache=False``: shuffle paths -> load -> batch -> augment -> prefetch.

    Args:
        paths: sequence of file paths; each must exist.
        labels: array ``[N, ...]`` (or tuple / dict of arrays), or None.
        loader: callable ``path (str) -> np.ndarray`` (or tuple of arrays).
        output_signature: ``tf.TensorSpec`` (or tuple of specs) of one loaded
            sample; dtype and shape are enforced on the loader's output.
        batch_size: int. Samples per batch.
        shuffle: bool, default True. Reshuffle every epoch, seeded.
        seed: int, default 0. Seed of the shuffle and augmentation seeds.
        augment: optional ``augment(x_batch, y_batch, seed) -> (x, y)``, as in
            :func:`dataset_from_arrays`.
        cache: bool, default False. Keep loaded samples in memory after the
            first epoch.

    Returns:
        ``tf.data.Dataset`` yielding ``x_batch`` or ``(x_batch, y_batch)``.

    Raises:
        FileNotFoundError: a path does not exist (named).
        ValueError: no paths, labels of another length, bad ``batch_size``.
    """
    batch_size = _validate_batch_size(batch_size)
    seed = _validate_seed(seed)
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("The dataset is empty: paths holds no files.")
    for i, path in enumerate(paths):
        if not os.path.exists(path):
            raise FileNotFoundError(f"Sample {i}: file not found: {path}")
    labels = None if labels is None else _to_arrays(labels)
    if labels is not None:
        for name, arr in _leaves(labels, "labels"):
            if arr.ndim == 0 or arr.shape[0] != len(paths):
                raise ValueError(
                    f"{name} must hold one entry per path along axis 0: expected "
                    f"{len(paths)}, received shape {arr.shape}."
                )

    specs = tf.nest.flatten(output_signature)
    for spec in specs:
        if not isinstance(spec, tf.TensorSpec):
            raise ValueError(
                "output_signature must be a tf.TensorSpec or a tuple of them. "
                f"Received: {output_signature!r}"
            )
    dtypes = [spec.dtype for spec in specs]

    def _py_load(path_bytes):
        path = path_bytes.decode() if isinstance(path_bytes, bytes) else str(path_bytes)
        out = loader(path)
        flat = list(out) if isinstance(out, (tuple, list)) else [out]
        if len(flat) != len(specs):
            raise ValueError(
                f"loader({path!r}) returned {len(flat)} array(s); output_signature expects {len(specs)}."
            )
        result = []
        for arr, spec in zip(flat, specs):
            arr = np.asarray(arr, dtype=spec.dtype.as_numpy_dtype)
            if np.issubdtype(arr.dtype, np.floating) and np.isnan(arr).any():
                raise ValueError(f"loader returned NaN for file {path}; expected finite values.")
            result.append(arr)
        return result

    def _load(path):
        flat = tf.numpy_function(_py_load, [path], dtypes, stateful=False)
        for tensor, spec in zip(flat, specs):
            tensor.set_shape(spec.shape)
        return tf.nest.pack_sequence_as(output_signature, flat)

    has_y = labels is not None
    source = (paths, labels) if has_y else paths
    ds = tf.data.Dataset.from_tensor_slices(source)

    def load_element(*element):
        if has_y:
            path, label = element
            return _load(path), label
        return _load(element[0])

    n = len(paths)
    if cache:
        ds = ds.map(load_element, num_parallel_calls=AUTOTUNE, deterministic=True).cache()
        if shuffle:
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    else:
        if shuffle:
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
        ds = ds.map(load_element, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size)
    return _finish(ds, augment, has_y, seed)


def _class_labels(y) -> np.ndarray:
    """Integer class labels from int labels ``[N]`` or one-hot ``[N, K]``."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return np.argmax(y, axis=1)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"Class labels must be [N] integers or [N, K] one-hot. Received: shape={y.shape}"
        )
    if np.issubdtype(y.dtype, np.floating) and not np.all(np.equal(np.mod(y, 1), 0)):
        raise ValueError("Class labels must be integers (or one-hot); received non-integral values.")
    return y.astype(np.int64)


def balanced_indices(labels, *, rng, minority_class=None) -> np.ndarray:
    """Indices of one class-balanced epoch (COVID-Net's resampling).

    Takes every sample of the minority class (the smallest class, or
    ``minority_class`` when given) and draws, without replacement, the same
    number of samples from each other class; the result is shuffled. A class
    smaller than the minority class contributes all its samples (no duplicates).

    Args:
        labels: int class labels ``[N]`` or one-hot ``[N, K]``.
        rng: ``np.random.Generator`` or int seed.
        minority_class: optional int; the class whose full count sets the draw.

    Returns:
        int64 array of sample indices, shuffled.

    Raises:
        ValueError: empty labels or a ``minority_class`` absent from labels.

    Example:
        >>> balanced_indices([0, 0, 0, 0, 1, 2, 2], rng=0)  # one 0, one 1, one 2
    """
    y = _class_labels(labels)
    if y.size == 0:
        raise ValueError("The dataset is empty: labels holds no samples.")
    rng = numpy_rng(rng)
    classes, counts = np.unique(y, return_counts=True)
    if minority_class is None:
        minority_class = int(classes[np.argmin(counts)])
    elif minority_class not in set(classes.tolist()):
        raise ValueError(
            f"minority_class={minority_class} does not occur in labels; present classes: "
            f"{classes.tolist()}"
        )
    n_min = int(counts[classes == minority_class][0])
    parts = []
    for cls in classes:
        idx = np.flatnonzero(y == cls)
        if cls == minority_class or idx.size <= n_min:
            parts.append(idx)
        else:
            parts.append(rng.choice(idx, size=n_min, replace=False))
    return rng.permutation(np.concatenate(parts)).astype(np.int64)


def balanced_steps_per_epoch(labels, batch_size: int, *, minority_class=None) -> int:
    """Batches per balanced epoch of :func:`balanced_dataset` (last batch may be partial)."""
    batch_size = _validate_batch_size(batch_size)
    size = balanced_indices(labels, rng=0, minority_class=minority_class).size
    return -(-size // batch_size)


def balanced_dataset(
    x,
    y,
    *,
    batch_size: int,
    seed: int,
    epochs: int,
    augment: Callable | None = None,
    minority_class=None,
) -> tf.data.Dataset:
    """``epochs`` consecutive class-balanced epochs, each redrawn.

    Epoch ``e`` uses :func:`balanced_indices` with the generator
    ``np.random.default_rng([seed, e])``, so the draws are reproducible from
    ``seed`` alone. Batches never straddle two epochs. The dataset is finite
    (``epochs * steps`` batches): train with
    ``model.fit(ds, epochs=epochs, steps_per_epoch=balanced_steps_per_epoch(y, batch_size))``,
    which lets Keras keep one iterator across its epochs.
    Augmentation seeds are ``[seed, global batch index]``, unique per batch.

    Args:
        x: array ``[N, ...]`` or tuple / dict of arrays.
        y: class labels ``[N]`` (int) or one-hot ``[N, K]``; yielded as given.
        batch_size: int. Samples per batch.
        seed: int. Seed of the draws and of the augmentation.
        epochs: int >= 1. Number of balanced epochs to draw.
        augment: optional ``augment(x_batch, y_batch, seed) -> (x, y)``.
        minority_class: optional int, see :func:`balanced_indices`.

    Returns:
        ``tf.data.Dataset`` of ``(x_batch, y_batch)``.

    Raises:
        ValueError: as :func:`dataset_from_arrays`, or ``epochs < 1``.
    """
    batch_size = _validate_batch_size(batch_size)
    seed = _validate_seed(seed)
    if epochs is None or int(epochs) != epochs or epochs < 1:
        raise ValueError(f"epochs must be a positive integer. Received: epochs={epochs}")
    x = _to_arrays(x)
    y = _to_arrays(y)
    _check_arrays(x, y)
    labels = _class_labels(y)
    draws = [
        balanced_indices(labels, rng=np.random.default_rng([seed, e]), minority_class=minority_class)
        for e in range(int(epochs))
    ]
    per_epoch = tf.data.Dataset.from_tensor_slices(np.stack(draws))  # [epochs, n_bal]
    index = per_epoch.flat_map(
        lambda idx: tf.data.Dataset.from_tensor_slices(idx).batch(batch_size)
    )
    tensors = tf.nest.map_structure(tf.convert_to_tensor, (x, y))
    ds = index.map(
        lambda idx: tf.nest.map_structure(lambda t: tf.gather(t, idx), tensors),
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )
    if augment is not None:
        seeds = tf.data.Dataset.counter().map(
            lambda i: tf.stack([tf.constant(seed % (2**31 - 1), tf.int32), tf.cast(i, tf.int32)])
        )
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            _apply_augment(augment, True), num_parallel_calls=AUTOTUNE, deterministic=True
        )
    return _resident_options(ds.prefetch(AUTOTUNE))


# ----------------------------------------------------------------------------
# feeding devices


def per_replica_batch_size(global_batch_size: int, strategy: tf.distribute.Strategy) -> int:
    """The batch each replica receives when a global batch is split evenly.

    Args:
        global_batch_size: int. Samples per step over all replicas (the batch
            size the dataset is built with).
        strategy: ``tf.distribute.Strategy``.

    Returns:
        ``global_batch_size // strategy.num_replicas_in_sync``.

    Raises:
        ValueError: the global batch does not divide evenly over the replicas.
    """
    if global_batch_size is None or int(global_batch_size) != global_batch_size or global_batch_size < 1:
        raise ValueError(
            f"global_batch_size must be a positive integer. Received: global_batch_size={global_batch_size}"
        )
    global_batch_size = int(global_batch_size)
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        raise ValueError(
            f"The global batch of {global_batch_size} does not split evenly over "
            f"{replicas} replicas; use a multiple of {replicas}. "
            f"Received: global_batch_size={global_batch_size}"
        )
    return global_batch_size // replicas


def _num_workers(strategy: tf.distribute.Strategy) -> int:
    # Only multi-worker strategies span several hosts; they record the count.
    return int(getattr(strategy.extended, "_num_workers", 1) or 1)


def _shard_options(num_files: int | None, workers: int) -> tf.data.Options:
    """Auto-shard policy across workers: by file when every worker gets a file."""
    policy = tf.data.experimental.AutoShardPolicy.DATA
    if num_files is not None:
        if num_files >= workers:
            policy = tf.data.experimental.AutoShardPolicy.FILE
        else:
            logger.warning(
                "%d file(s) for %d workers: sharding by batch (DATA) instead of by file; "
                "write at least as many shards as workers so each reads only its own files.",
                num_files, workers,
            )
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy
    return options


def _is_default_strategy(strategy: tf.distribute.Strategy) -> bool:
    # The default (no-op) strategy is a private class; it is what
    # tf.distribute.get_strategy() returns outside any scope.
    return type(strategy).__name__ == "_DefaultDistributionStrategy"


def distribute_dataset(
    dataset: tf.data.Dataset,
    strategy: tf.distribute.Strategy | None = None,
    *,
    global_batch_size: int,
    num_files: int | None = None,
    device: str | None = None,
    buffer_size: int = 2,
):
    """Feeds a dataset batched by the global batch to the devices of a strategy.

    * Under a real strategy (mirrored, multi-worker, one-device) the dataset
      goes through ``strategy.experimental_distribute_dataset``: each global
      batch is split into per-replica batches of
      ``global_batch_size / replicas`` (a last partial batch is split as
      evenly as it goes) and prefetched onto every replica's device. Across
      workers the auto-shard policy is ``FILE`` for data read from at least
      as many files as there are workers (each worker reads its own shard
      files), and ``DATA`` otherwise (in-memory arrays: every worker builds
      the whole pipeline and keeps its share of the batches).
    * Under the default strategy the dataset is copied ahead onto ``device``
      (``tf.data.experimental.prefetch_to_device``), by default the first GPU;
      with no GPU it is returned unchanged, since batches already sit in host
      memory.

    Call it last, after batching, augmentation and ``prefetch``. The result
    goes straight to ``model.fit`` (which does not distribute it again) or to
    a custom loop (``for batch in dist: strategy.run(step, (batch,))``).
    The copy onto a single device hides the dataset's length from Keras:
    build the dataset with ``repeat=True`` and pass ``steps_per_epoch``, or
    let ``fit`` find the end of each epoch (it then warns that the input ran
    out of data and counts one extra ``optimizer.iterations`` per epoch; the
    weights are unaffected).

    Args:
        dataset: ``tf.data.Dataset`` yielding global batches.
        strategy: ``tf.distribute.Strategy``; default: the current one
            (``tf.distribute.get_strategy()``).
        global_batch_size: int. Batch size the dataset was built with; must
            divide evenly over the replicas.
        num_files: int or None (default). Number of files the dataset reads
            through a file reader (``len(manifest["shards"])`` for
            :func:`shared.shards.dataset_from_shards`); None for in-memory or
            generated data.
        device: str or None. Target of the single-device prefetch (default:
            the first logical GPU, if any).
        buffer_size: int, default 2. Batches held on the device ahead of the
            step (single-device case).

    Returns:
        A ``tf.distribute.DistributedDataset`` under a real strategy, else a
        ``tf.data.Dataset``.

    Raises:
        ValueError: ``global_batch_size`` does not divide over the replicas,
            or bad ``num_files`` / ``buffer_size``.

    Example:
        >>> strategy = make_strategy("mirrored")
        >>> ds = dataset_from_shards(manifest, batch_size=64, seed=0)
        >>> dist = distribute_dataset(ds, strategy, global_batch_size=64,
        ...                           num_files=len(load_manifest(manifest)["shards"]))
    """
    if strategy is None:
        strategy = tf.distribute.get_strategy()
    per_replica_batch_size(global_batch_size, strategy)
    if num_files is not None and (int(num_files) != num_files or num_files < 1):
        raise ValueError(f"num_files must be a positive integer or None. Received: num_files={num_files}")
    if buffer_size is None or int(buffer_size) != buffer_size or buffer_size < 1:
        raise ValueError(f"buffer_size must be a positive integer. Received: buffer_size={buffer_size}")

    if _is_default_strategy(strategy):
        if device is None:
            gpus = tf.config.list_logical_devices("GPU")
            if not gpus:
                return dataset
            device = gpus[0].name
        return dataset.apply(tf.data.experimental.prefetch_to_device(device, int(buffer_size)))

    options = _shard_options(num_files, _num_workers(strategy))
    return strategy.experimental_distribute_dataset(dataset.with_options(options))
