"""Input pipelines and augmentations.

* `pipeline`: tf.data builders from arrays and files, class-balanced sampling,
  per-replica batch sizes and distribution;
* `shards`: TFRecord shards with a manifest, written once and streamed;
* `augment2d`: seeded, batched 2D augmentations (flip, shift-scale-rotate, perspective,
  rotation, noise) that move masks with the images;
* `augment3d`: seeded 3D augmentations (flip, coarse dropout, local pixel shuffle).
"""

from shared.data.augment2d import (
    Augment2D,
    random_flip,
    random_gaussian_noise,
    random_perspective,
    random_rotation,
    random_shift_scale_rotate,
)
from shared.data.augment3d import (
    Augment3D,
    coarse_dropout_3d,
    local_pixel_shuffle_3d,
    random_flip_3d,
)
from shared.data.pipeline import (
    AUTOTUNE,
    balanced_dataset,
    balanced_indices,
    balanced_steps_per_epoch,
    batch_seeds,
    dataset_from_arrays,
    dataset_from_files,
    distribute_dataset,
    per_replica_batch_size,
)
from shared.data.shards import dataset_from_shards, load_manifest, ShardWriter, write_shards

__all__ = [
    "AUTOTUNE",
    "Augment2D",
    "Augment3D",
    "ShardWriter",
    "balanced_dataset",
    "balanced_indices",
    "balanced_steps_per_epoch",
    "batch_seeds",
    "coarse_dropout_3d",
    "dataset_from_arrays",
    "dataset_from_files",
    "dataset_from_shards",
    "distribute_dataset",
    "load_manifest",
    "local_pixel_shuffle_3d",
    "per_replica_batch_size",
    "random_flip",
    "random_flip_3d",
    "random_gaussian_noise",
    "random_perspective",
    "random_rotation",
    "random_shift_scale_rotate",
    "write_shards",
]
