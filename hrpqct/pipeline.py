"""Batches of graded slices gathered from the cohort's one array, without copies.

The paper preset's slices are 1110 scans x 8 x 512^2 float32 = 9.3 GB. Copying the
training scans' slices into a new array and that into a tensor (what an in-memory
pipeline does) would add about 14 GB per unit. Here the dataset holds only slice
indices; each batch is gathered from the NumPy array by `tf.numpy_function`, then
augmented with per-batch seeds (`shared.data.pipeline.batch_seeds`), as
`shared.data.pipeline.dataset_from_arrays` does for resident arrays.
"""

from __future__ import annotations

import numpy as np


def slice_index(scan_idx, slices_per_scan) -> np.ndarray:
    """Flat slice indices of the given scans: scan i -> i * S .. i * S + S - 1."""
    scan_idx = np.asarray(scan_idx, dtype=np.int64)
    return (scan_idx[:, None] * int(slices_per_scan) + np.arange(int(slices_per_scan))[None, :]).ravel()


def gather_slices(images, scan_idx) -> np.ndarray:
    """Slices of the given scans as one float32 batch [scans * S, H, W, 1] (a copy of those only)."""
    x = np.asarray(images)[np.asarray(scan_idx, dtype=np.int64)]
    return x.reshape((-1,) + x.shape[2:] + (1,)).astype(np.float32, copy=False)


def slice_dataset(images, scan_idx, labels, *, batch_size, shuffle, seed, augment=None):
    """A tf.data pipeline over the slices of `scan_idx`, labelled with their scan's label.

    Args:
        images: float32 array [scans, S, H, W] (not copied; must stay alive and unchanged).
        scan_idx: int array. Scans whose slices are served.
        labels: int array [len(scan_idx)]. One label per scan (grade index 0-4).
        batch_size: int.
        shuffle: bool. Reshuffled every epoch, reproducibly from `seed`.
        seed: int.
        augment: callable ``augment(x, y, seed) -> (x, y)``, optional (batch-wise).

    Returns:
        tf.data.Dataset of (x [b, H, W, 1] float32, y [b] int32).
    """
    import tensorflow as tf

    from shared.data.pipeline import batch_seeds

    images = np.asarray(images)
    if images.dtype != np.float32 or images.ndim != 4:
        raise ValueError(f"images must be float32 [scans, slices, H, W]. Received: {images.dtype} {images.shape}")
    n_slices, height, width = images.shape[1:]
    flat = images.reshape(-1, height, width)  # a view: the array is C-contiguous
    index = slice_index(scan_idx, n_slices)
    y = np.repeat(np.asarray(labels, dtype=np.int32), n_slices)
    if len(index) == 0:
        raise ValueError("slice_dataset: no scans given")
    ds = tf.data.Dataset.from_tensor_slices((index, y))
    if shuffle:
        ds = ds.shuffle(len(index), seed=int(seed), reshuffle_each_iteration=True)
    ds = ds.batch(int(batch_size))

    def gather(idx, lab):
        x = tf.numpy_function(lambda i: flat[i][..., None], [idx], tf.float32)
        x.set_shape((None, height, width, 1))
        return x, lab

    ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if augment is not None:
        ds = tf.data.Dataset.zip((ds, batch_seeds(int(seed))))
        ds = ds.map(lambda batch, s: augment(batch[0], batch[1], s), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
