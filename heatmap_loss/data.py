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
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np

from heatmap_loss.phantom import CLASSES, SyntheticMRI, generate
from shared import __version__
from shared.inputs import check_npz

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
    """Reads a file written by `save_dataset`, checking what a run relies on.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be read (truncated, not an archive), an array
            header declares more data than the archive stores or than memory should
            take (checked before any array is allocated), a required array is
            missing, or an array has the wrong shape, dtype or values (NaN or infinite
            pixels, mask codes outside 0-6, labels outside the classes); the message
            names the file and the array.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Synthetic MRI dataset not found: {path}")
    if zipfile.is_zipfile(path):
        check_npz(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("a single array, not an archive")
            arrays = {k: archive[k] for k in archive.files}
        info = json.loads(str(arrays["info"])) if "info" in arrays else None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"{path}: cannot read the dataset (truncated or not a .npz written by "
                         f"`medrepro heatmap-loss generate`): {type(err).__name__}") from None
    missing = [k for k in ("images", "masks", "labels", "info") if k not in arrays]
    if missing:
        raise ValueError(f"{path}: missing array(s) {missing}; expected a file written "
                         "by `medrepro heatmap-loss generate`.")
    images, masks, labels = arrays["images"], arrays["masks"], arrays["labels"]
    meta = {k[len("meta_"):]: v for k, v in arrays.items() if k.startswith("meta_")}
    _check_arrays(path, images, masks, labels, info)
    return SyntheticMRI(images, masks, labels.astype(np.int64), meta, int(info["experiment"]))


def _check_arrays(path, images, masks, labels, info) -> None:
    if images.ndim != 3:
        raise ValueError(f"{path}: array 'images' has shape {images.shape}; expected "
                         "[N, height, width]")
    if len(images) == 0:
        raise ValueError(f"{path}: array 'images' holds no images; expected at least one")
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise ValueError(f"{path}: array 'images' has dtype {images.dtype}; expected uint8 "
                         "(or a real number type)")
    if np.issubdtype(images.dtype, np.floating) and not np.all(np.isfinite(images)):
        index = int(np.argmin(np.isfinite(images).reshape(len(images), -1).all(axis=1)))
        raise ValueError(f"{path}: array 'images', image {index} contains NaN or infinite "
                         "pixels; expected finite intensities")
    if images.shape != masks.shape or images.shape[0] != labels.shape[0] or labels.ndim != 1:
        raise ValueError(f"{path}: images {images.shape}, masks {masks.shape} and labels "
                         f"{labels.shape} do not describe the same samples.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: array 'labels' has dtype {labels.dtype}; expected integers")
    bad = (labels < 0) | (labels >= len(CLASSES))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{path}: array 'labels', sample {i} has label {labels[i]}; expected "
                         f"0-{len(CLASSES) - 1} ({', '.join(CLASSES)})")
    if not np.issubdtype(masks.dtype, np.integer) or masks.min() < 0 or masks.max() > 6:
        raise ValueError(f"{path}: array 'masks' must hold integer codes 0-6; received dtype "
                         f"{masks.dtype}, range {masks.min()}-{masks.max()}")
    if not isinstance(info, dict) or info.get("experiment") not in (1, 2):
        raise ValueError(f"{path}: field 'experiment' of 'info' must be 1 or 2. Received: "
                         f"{info.get('experiment') if isinstance(info, dict) else info!r}")


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
