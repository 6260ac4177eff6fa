"""On-disk format of the synthetic dataset, resizing to the model grid, sample sheets.

A dataset file is a compressed NumPy archive (`.npz`) holding

* `images` uint8 [N, 105, 135], `masks` uint8 [N, 105, 135] (codes 0-6),
  `labels` int64 [N] (index into `classes`), `classes` (the class names);
* one array per metadata field, prefixed `meta_` (sex, subtype, size multiplier,
  body fat %, chamber radii and wall thicknesses in pixels, fat fractions, ...);
* `info`: a JSON string with the experiment, seed and package version.

`write_dataset` writes `train.npz`, `val.npz` (and `test.npz`) plus a sample sheet
PNG; `load_dataset` reads one file back into a `SyntheticMRI`.
"""

import json
import logging
from pathlib import Path

import cv2
import numpy as np

from heatmap_loss.phantom import CLASSES, SyntheticMRI, generate
from shared import __version__

log = logging.getLogger(__name__)


def save_dataset(path, data: SyntheticMRI, *, seed=None) -> Path:
    """Writes `data` as a compressed `.npz` (see the module docstring); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"experiment": data.experiment, "seed": seed, "n": len(data),
            "generator": "heatmap_loss.phantom", "medrepro_version": __version__}
    arrays = {f"meta_{k}": np.asarray(v) for k, v in data.meta.items()}
    np.savez_compressed(path, images=data.images, masks=data.masks, labels=data.labels,
                        classes=np.asarray(CLASSES), info=np.asarray(json.dumps(info)), **arrays)
    return path


def load_dataset(path) -> SyntheticMRI:
    """Reads a file written by `save_dataset`.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a required array is missing or the shapes disagree (names the file).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Synthetic MRI dataset not found: {path}")
    with np.load(path, allow_pickle=False) as archive:
        missing = [k for k in ("images", "masks", "labels", "info") if k not in archive.files]
        if missing:
            raise ValueError(f"{path}: missing array(s) {missing}; expected a file written by "
                             "`medrepro heatmap-loss generate`.")
        images, masks, labels = archive["images"], archive["masks"], archive["labels"]
        info = json.loads(str(archive["info"]))
        meta = {k[len("meta_"):]: archive[k] for k in archive.files if k.startswith("meta_")}
    if images.shape != masks.shape or images.shape[0] != labels.shape[0]:
        raise ValueError(f"{path}: images {images.shape}, masks {masks.shape} and labels "
                         f"{labels.shape} do not describe the same samples.")
    return SyntheticMRI(images, masks, labels.astype(np.int64), meta, int(info["experiment"]))


def resize_batch(images, size, *, nearest=False) -> np.ndarray:
    """Resizes [N, H, W] arrays to `size` = (height, width).

    Area averaging for images, nearest neighbour for masks (`nearest=True`).
    """
    images = np.asarray(images)
    size = (int(size[0]), int(size[1]))
    if images.shape[1:3] == size:
        return images
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    out = np.empty((images.shape[0],) + size, dtype=images.dtype)
    for i, image in enumerate(images):
        out[i] = cv2.resize(image, (size[1], size[0]), interpolation=interpolation)
    return out


def model_arrays(data: SyntheticMRI, size=None) -> dict:
    """Arrays for `HeatmapLossModel`: images float32 [N, h, w, 1], masks, labels.

    Args:
        data: SyntheticMRI.
        size: (height, width), optional. Model grid; default the native 105 x 135.

    Returns:
        dict with "images", "heart" (uint8 heart masks), "marker" (uint8 marker
        masks), "labels", "male".
    """
    size = data.images.shape[1:3] if size is None else size
    return {
        "images": resize_batch(data.images, size).astype(np.float32)[..., None],
        "heart": resize_batch(data.heart_masks, size, nearest=True),
        "marker": resize_batch(data.marker_masks, size, nearest=True),
        "labels": data.labels.astype(np.int64),
        "male": np.asarray(data.meta["male"], dtype=bool),
    }


def save_sample_sheet(data: SyntheticMRI, path, *, per_class=4) -> Path:
    """A PNG grid: `per_class` images of each class, titled class/subtype, sex, size."""
    from shared.report.figures import save_image_grid

    images, titles = [], []
    for k, name in enumerate(CLASSES):
        for i in np.flatnonzero(data.labels == k)[:per_class]:
            subtype = str(data.meta["subtype"][i])
            label = f"{name} {subtype}".strip()
            titles.append(f"{label}, {data.meta['sex'][i]}, x{data.meta['size_multiplier'][i]:.2f}")
            images.append(data.images[i])
    return save_image_grid(images, path, titles=titles, ncols=per_class)


def write_dataset(out_dir, *, experiment, n_train, n_val, n_test=0, seed) -> dict:
    """Generates and writes train/val(/test) files and `samples.png` into `out_dir`.

    The splits use seeds `seed`, `seed + 1`, `seed + 2`.

    Returns:
        dict split name -> Path (plus "samples").
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for offset, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        if n <= 0:
            continue
        data = generate(n, experiment=experiment, seed=seed + offset)
        paths[split] = save_dataset(out / f"{split}.npz", data, seed=seed + offset)
        if split == "train":
            paths["samples"] = save_sample_sheet(data, out / "samples.png")
        log.info("wrote %s (%d images)", paths[split], n)
    return paths
