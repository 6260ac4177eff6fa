"""Reading and writing the 2018 Atrial Segmentation Challenge layout plus a scores table.

On disk (what `lge_qa.phantom.generate_dataset` writes and `load_cohort` reads)::

    <root>/<split>/<CASE>/lgemri.nrrd   uint8 LGE volume, (X, Y, Z), Z = axial slices
    <root>/<split>/<CASE>/laendo.nrrd   uint8 left-atrium blood-pool mask, 0 / 255
    <root>/quality_scores.csv           case_id + four observer scores, integers 1-5

The challenge's own volumes are 576 or 640 pixels square with 88 slices at 0.625 mm.
Scores columns are `SCORE_COLUMNS`; a score >= 3 is diagnostic (1), below is
non-diagnostic (0), as in the paper's Section 4.1.
"""

import csv
from pathlib import Path

import cv2
import numpy as np

IMAGE_FILE = "lgemri.nrrd"
MASK_FILE = "laendo.nrrd"
SCORE_COLUMNS = ("myocardium_nulling", "sharpness", "aorta_valve_enhancement", "fibrosis_quality")
# Short output names, in SCORE_COLUMNS order.
LABEL_NAMES = ("nulling", "sharpness", "enhancement", "qa")


def write_case(split_dir, case_id, image, mask=None, *, spacing=(0.625, 0.625, 0.625)) -> Path:
    """Writes one case as `<split_dir>/<case_id>/lgemri.nrrd` (+ `laendo.nrrd`).

    Args:
        split_dir: str or Path. The split folder.
        case_id: str. Folder name of the case.
        image: uint8 array (X, Y, Z).
        mask: bool or 0/1 array (X, Y, Z), optional; written as 0 / 255.
        spacing: 3 floats, default (0.625, 0.625, 0.625). Voxel size in mm.

    Returns:
        The case folder.
    """
    import nrrd

    case_dir = Path(split_dir) / case_id
    case_dir.mkdir(parents=True, exist_ok=True)
    header = {"space": "left-posterior-superior", "space directions": np.diag(spacing).astype(float),
              "encoding": "gzip"}
    nrrd.write(str(case_dir / IMAGE_FILE), np.ascontiguousarray(image, dtype=np.uint8), header)
    if mask is not None:
        nrrd.write(str(case_dir / MASK_FILE), (np.asarray(mask) > 0).astype(np.uint8) * 255, header)
    return case_dir


def read_case(case_dir, *, require_mask=True):
    """Reads `lgemri.nrrd` and `laendo.nrrd` of one case.

    Args:
        case_dir: str or Path. The case folder.
        require_mask: bool, default True. Raise when `laendo.nrrd` is missing
            (otherwise the mask is returned as None).

    Returns:
        `(image, mask)`: image float32 (X, Y, Z) in its stored units, mask bool
        (X, Y, Z) or None.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: the volume is not 3D, the mask's shape differs from the image's,
            or the mask holds values other than 0 and 255 (or 0 and 1).
    """
    import nrrd

    case_dir = Path(case_dir)
    image_path = case_dir / IMAGE_FILE
    if not image_path.is_file():
        raise FileNotFoundError(f"case {case_dir.name}: image file not found: {image_path}")
    image, _ = nrrd.read(str(image_path))
    if image.ndim != 3:
        raise ValueError(f"case {case_dir.name}: {image_path} must be a 3D volume (X, Y, Z). "
                         f"Received shape {image.shape}")
    mask_path = case_dir / MASK_FILE
    if not mask_path.is_file():
        if require_mask:
            raise FileNotFoundError(f"case {case_dir.name}: mask file not found: {mask_path}")
        return image.astype(np.float32), None
    mask, _ = nrrd.read(str(mask_path))
    if mask.shape != image.shape:
        raise ValueError(
            f"case {case_dir.name}: image and mask shapes differ: {IMAGE_FILE} {image.shape} "
            f"vs {MASK_FILE} {mask.shape}"
        )
    values = np.unique(mask)
    if not (set(values.tolist()) <= {0, 255} or set(values.tolist()) <= {0, 1}):
        raise ValueError(f"case {case_dir.name}: {mask_path} must hold 0/255 (or 0/1) only. "
                         f"Received values {values[:10].tolist()}")
    return image.astype(np.float32), mask > 0


def list_cases(split_dir) -> list:
    """Sorted case ids (folders holding `lgemri.nrrd`) under `split_dir`."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise FileNotFoundError(f"split folder not found: {split_dir}")
    return sorted(p.name for p in split_dir.iterdir() if (p / IMAGE_FILE).is_file())


def write_scores_csv(path, scores) -> Path:
    """Writes `{case_id: four ints}` (SCORE_COLUMNS order) as a CSV file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("case_id",) + SCORE_COLUMNS)
        for case_id, row in scores.items():
            writer.writerow([case_id] + [int(v) for v in row])
    return path


def read_scores_csv(path) -> dict:
    """Reads the observer scores table.

    Args:
        path: str or Path. CSV with a `case_id` column and the four `SCORE_COLUMNS`.

    Returns:
        dict case_id -> int array [4] (SCORE_COLUMNS order), in file order.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a column is missing, a case repeats, or a score is not an
            integer in 1-5 (the message names the line, case and column).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scores file not found: {path}")
    out = {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("case_id",) + SCORE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}; expected case_id and {list(SCORE_COLUMNS)}")
        for line, row in enumerate(reader, start=2):
            case_id = row["case_id"].strip()
            if case_id in out:
                raise ValueError(f"{path} line {line}: case {case_id} appears twice")
            values = []
            for col in SCORE_COLUMNS:
                raw = (row[col] or "").strip()
                try:
                    value = float(raw)
                except ValueError:
                    value = float("nan")
                if not (value == int(value) if np.isfinite(value) else False) or not 1 <= value <= 5:
                    raise ValueError(
                        f"{path} line {line}: case {case_id}, column {col}: score must be an integer "
                        f"in 1-5. Received {raw!r}"
                    )
                values.append(int(value))
            out[case_id] = np.asarray(values, dtype=np.int64)
    return out


def binarise_scores(scores, threshold=3):
    """Scores >= `threshold` are diagnostic (1), others non-diagnostic (0) (Section 4.1).

    Args:
        scores: int array of any shape, values 1-5.
        threshold: int, default 3.

    Returns:
        int array of 0/1, same shape.
    """
    scores = np.asarray(scores)
    if scores.size and (scores.min() < 1 or scores.max() > 5):
        raise ValueError(f"scores must lie in 1-5. Received min {scores.min()}, max {scores.max()}")
    return (scores >= threshold).astype(np.int64)


def normalise_volume(image, *, upper_percentile=99.5):
    """Scales a volume to [0, 1]: 0 stays 0, the upper percentile maps to 1, clipped.

    One factor per scan keeps the intensity relations between tissues (myocardium vs
    blood pool) that the quality attributes are about.
    """
    image = np.asarray(image, dtype=np.float32)
    top = float(np.percentile(image, upper_percentile))
    if top <= 0:
        top = float(image.max()) or 1.0
    return np.clip(image / top, 0.0, 1.0)


def volume_to_slices(image, size) -> np.ndarray:
    """Axial slices of an (X, Y, Z) volume resized to size x size, linear interpolation.

    Returns:
        float32 [Z, size, size].
    """
    image = np.asarray(image, dtype=np.float32)
    return np.stack([cv2.resize(image[:, :, z], (size, size), interpolation=cv2.INTER_LINEAR)
                     for z in range(image.shape[2])]).astype(np.float32)


def mask_to_slices(mask, size) -> np.ndarray:
    """Axial mask slices resized to size x size (linear, then >= 0.5). Returns uint8 [Z, size, size]."""
    return (volume_to_slices(np.asarray(mask, dtype=np.float32), size) >= 0.5).astype(np.uint8)


def select_slices(probabilities, threshold, *, case_id="?"):
    """Indices of slices where any pixel's probability exceeds `threshold` (Section 3.1).

    Args:
        probabilities: array [Z, H, W] (or [Z, H, W, 1]) of LA probabilities.
        threshold: float. The paper's t.
        case_id: str. Named in the error.

    Returns:
        int array of slice indices.

    Raises:
        ValueError: no slice has a pixel above the threshold.
    """
    p = np.asarray(probabilities)
    keep = np.flatnonzero(p.reshape(p.shape[0], -1).max(axis=1) > threshold)
    if keep.size == 0:
        raise ValueError(
            f"case {case_id}: no slice has a left-atrium probability above threshold t={threshold} "
            f"(max {float(p.max()) if p.size else float('nan'):.3f})"
        )
    return keep


def load_cohort(split_dir, *, size, scores=None, require_mask=True, case_ids=None):
    """Loads every case of a split as normalised, resized axial slices.

    Args:
        split_dir: str or Path. Folder of case folders.
        size: int. Output slice size (the paper: 128).
        scores: dict from `read_scores_csv`, optional. When given, only scored cases
            are loaded and each gets its scores.
        require_mask: bool, default True. See `read_case`.
        case_ids: sequence of str, optional. Subset (and order) of cases.

    Returns:
        dict with `images` float32 [N, size, size, 1], `masks` uint8 [N, size, size, 1]
        (zeros where a case has no mask), `case_index` [N] (index into `case_ids`),
        `slice_index` [N], `case_ids` list, `has_mask` bool [n_cases] and, with
        scores, `scores` int [n_cases, 4].
    """
    split_dir = Path(split_dir)
    if case_ids is None:
        case_ids = list_cases(split_dir)
        if scores is not None:
            case_ids = [c for c in case_ids if c in scores]
    if scores is not None:
        missing = [c for c in case_ids if c not in scores]
        if missing:
            raise ValueError(f"{split_dir}: no scores for cases {missing[:5]}")
    images, masks, case_index, slice_index, has_mask = [], [], [], [], []
    for i, case_id in enumerate(case_ids):
        image, mask = read_case(split_dir / case_id, require_mask=require_mask)
        sl = volume_to_slices(normalise_volume(image), size)
        images.append(sl)
        if mask is None:
            masks.append(np.zeros(sl.shape, np.uint8))
        else:
            masks.append(mask_to_slices(mask, size))
        has_mask.append(mask is not None)
        case_index.append(np.full(sl.shape[0], i))
        slice_index.append(np.arange(sl.shape[0]))
    out = {
        "images": np.concatenate(images)[..., None],
        "masks": np.concatenate(masks)[..., None],
        "case_index": np.concatenate(case_index),
        "slice_index": np.concatenate(slice_index),
        "case_ids": list(case_ids),
        "has_mask": np.asarray(has_mask),
    }
    if scores is not None:
        out["scores"] = np.stack([scores[c] for c in case_ids])
    return out
