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
import logging
from pathlib import Path

import cv2
import numpy as np

from shared.inputs import check_declared_size, read_table, resolve_inside

IMAGE_FILE = "lgemri.nrrd"
MASK_FILE = "laendo.nrrd"
SCORE_COLUMNS = ("myocardium_nulling", "sharpness", "aorta_valve_enhancement", "fibrosis_quality")
# Short output names, in SCORE_COLUMNS order.
LABEL_NAMES = ("nulling", "sharpness", "enhancement", "qa")

log = logging.getLogger(__name__)


def read_nrrd(path):
    """Reads one NRRD file; a file that is not readable NRRD raises naming it.

    Args:
        path: str or Path.

    Returns:
        `(array, header)` as `nrrd.read` returns them.

    Raises:
        ValueError: the file is truncated, corrupt or not NRRD; its header declares
            more voxels than the file holds or than memory should take (checked before
            the data are read); it names a detached data file outside its own folder
            (the message names the file and what was expected).
    """
    import nrrd

    path = Path(path)
    _check_nrrd_header(path)
    try:
        return nrrd.read(str(path))
    except Exception as err:  # noqa: BLE001 - pynrrd raises NRRDError, ValueError, zlib / EOF errors
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: not a readable NRRD volume ({reason}); expected a complete "
                         f"NRRD file holding a 3D uint8 volume") from None


def _check_nrrd_header(path) -> None:
    """Checks what an NRRD header declares before `nrrd.read` allocates it.

    Headers pynrrd cannot parse are left to `nrrd.read`, whose error `read_nrrd` reports.
    """
    import nrrd

    with open(path, "rb") as handle:
        head = handle.read(65536)
    end = head.find(b"\n\n")
    if not head.startswith(b"NRRD") or end < 0:
        return
    try:
        header = nrrd.read_header(head[:end + 1].decode("ascii").splitlines(keepends=True)[:])
        dtype = nrrd.reader._determine_datatype(header)  # noqa: SLF001 - pynrrd's own type table
        sizes = [int(v) for v in header["sizes"]]
    except Exception:  # noqa: BLE001 - reported by nrrd.read below
        return
    detached = header.get("data file") or header.get("datafile")
    if detached:
        resolve_inside(path.parent, str(detached).split()[0], where=str(path), field="data file")
        return
    encoding = str(header.get("encoding", "raw")).lower()
    stored = path.stat().st_size - (end + 2)
    if encoding in ("raw",):
        check_declared_size(path, sizes, dtype, field="sizes", stored_bytes=stored, working_itemsize=4)
    elif encoding in ("gzip", "gz"):
        check_declared_size(path, sizes, dtype, field="sizes", stored_bytes=stored, compressed=True,
                            working_itemsize=4)
    else:  # text, hex, bzip2: no fixed ratio; the memory bound still holds
        check_declared_size(path, sizes, dtype, field="sizes", working_itemsize=4)


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
        ValueError: a file is not readable NRRD, the volume is not 3D or not numeric,
            holds NaN / Inf voxels, the mask's shape differs from the image's, or the
            mask holds values other than 0 and 255 (or 0 and 1). Every message names
            the case and the file.
    """
    case_dir = Path(case_dir)
    image_path = case_dir / IMAGE_FILE
    if not image_path.is_file():
        raise FileNotFoundError(f"case {case_dir.name}: image file not found: {image_path}")
    image, _ = read_nrrd(image_path)
    _check_volume(image, image_path, case_dir.name)
    mask_path = case_dir / MASK_FILE
    if not mask_path.is_file():
        if require_mask:
            raise FileNotFoundError(f"case {case_dir.name}: mask file not found: {mask_path}")
        return image.astype(np.float32), None
    mask, _ = read_nrrd(mask_path)
    if mask.shape != image.shape:
        raise ValueError(
            f"case {case_dir.name}: image and mask shapes differ: {IMAGE_FILE} {image.shape} "
            f"vs {MASK_FILE} {mask.shape}"
        )
    if not (np.issubdtype(mask.dtype, np.number) or mask.dtype == bool):
        raise ValueError(f"case {case_dir.name}: {mask_path} has dtype {mask.dtype}; expected "
                         f"an integer mask of 0/255")
    values = np.unique(mask)
    if not (set(values.tolist()) <= {0, 255} or set(values.tolist()) <= {0, 1}):
        raise ValueError(f"case {case_dir.name}: {mask_path} must hold 0/255 (or 0/1) only. "
                         f"Received values {values[:10].tolist()}")
    return image.astype(np.float32), mask > 0


def _check_volume(image, path, case_id):
    """An LGE volume: 3D, real numbers, every voxel finite."""
    if image.ndim != 3:
        raise ValueError(f"case {case_id}: {path} must be a 3D volume (X, Y, Z). "
                         f"Received shape {image.shape}")
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise ValueError(f"case {case_id}: {path} has dtype {image.dtype}; expected integer "
                         f"or floating-point intensities")
    if min(image.shape) < 1:
        raise ValueError(f"case {case_id}: {path} is empty (shape {image.shape}); expected a "
                         f"3D volume with at least one voxel per axis")
    if np.issubdtype(image.dtype, np.floating):
        bad = ~np.isfinite(image)
        if bad.any():
            kinds = "NaN" if np.isnan(image).any() else "Inf"
            raise ValueError(f"case {case_id}: {path} holds {int(bad.sum())} non-finite voxels "
                             f"({kinds}); expected finite intensities")


def list_cases(split_dir, *, allow_empty=False) -> list:
    """Sorted case ids (folders holding `lgemri.nrrd`) under `split_dir`.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: it holds no case (unless `allow_empty`); the message names it.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise FileNotFoundError(f"split folder not found: {split_dir}")
    cases = sorted(p.name for p in split_dir.iterdir() if (p / IMAGE_FILE).is_file())
    if not cases and not allow_empty:
        raise ValueError(f"{split_dir}: no cases; expected case folders "
                         f"<CASE>/{IMAGE_FILE} in this split folder")
    return cases


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
    # A byte-order mark (spreadsheet exports) is not part of the first column's name; a
    # column named twice is refused (only one of the two would be read).
    fieldnames, table = read_table(path, expected=f"a CSV file with columns case_id and {list(SCORE_COLUMNS)}",
                                   strip=False)
    missing = [c for c in ("case_id",) + SCORE_COLUMNS if c not in fieldnames]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected case_id and {list(SCORE_COLUMNS)}")
    for line, row in table:
        if any(row.get(c) is None for c in ("case_id",) + SCORE_COLUMNS):
            raise ValueError(f"{path} line {line}: expected {1 + len(SCORE_COLUMNS)} fields "
                             f"(case_id and the four scores)")
        case_id = row["case_id"].strip()
        if not case_id:
            raise ValueError(f"{path} line {line}: column case_id is empty; expected a case "
                             f"folder name")
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
    if not out:
        raise ValueError(f"{path}: no scored cases; expected one row per scored case after the header")
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


def match_scored_cases(split_dir, scores, *, scores_path="scores table", strict=False) -> list:
    """The scored cases of `split_dir`: those both on disk and in the scores table.

    Cases only in the table or only on disk are reported (a logged warning naming
    them) or, with `strict`, refused.

    Args:
        split_dir: str or Path. Folder of case folders.
        scores: dict from `read_scores_csv`.
        scores_path: str or Path. Named in the messages.
        strict: bool, default False. Raise instead of warning.

    Returns:
        Sorted list of the case ids present in both.

    Raises:
        ValueError: no case in both; or, with `strict`, a case in only one of them.
    """
    on_disk = list_cases(split_dir)
    only_disk = [c for c in on_disk if c not in scores]
    only_table = [c for c in scores if c not in set(on_disk)]
    both = [c for c in on_disk if c in scores]
    problems = []
    if only_table:
        problems.append(f"{len(only_table)} cases of {scores_path} have no folder in {split_dir} "
                        f"({', '.join(only_table[:5])}{', ...' if len(only_table) > 5 else ''})")
    if only_disk:
        problems.append(f"{len(only_disk)} case folders of {split_dir} have no row in {scores_path} "
                        f"({', '.join(only_disk[:5])}{', ...' if len(only_disk) > 5 else ''})")
    if problems and strict:
        raise ValueError("; ".join(problems) + "; expected the same cases in both (--strict)")
    for problem in problems:
        log.warning("%s; those cases are left out", problem)
    if not both:
        raise ValueError(f"{scores_path}: none of its cases has a folder in {split_dir}; expected "
                         f"case_id values naming the case folders")
    return both


def load_cohort(split_dir, *, size, scores=None, require_mask=True, case_ids=None):
    """Loads every case of a split as normalised, resized axial slices.

    Args:
        split_dir: str or Path. Folder of case folders.
        size: int. Output slice size (the paper: 128).
        scores: dict from `read_scores_csv`, optional. When given, only scored cases
            are loaded and each gets its scores.
        require_mask: bool, default True. See `read_case`.
        case_ids: sequence of str, optional. Subset (and order) of cases (for a scored
            cohort, usually `match_scored_cases`).

    Returns:
        dict with `images` float32 [N, size, size, 1], `masks` uint8 [N, size, size, 1]
        (zeros where a case has no mask), `case_index` [N] (index into `case_ids`),
        `slice_index` [N], `case_ids` list, `has_mask` bool [n_cases] and, with
        scores, `scores` int [n_cases, 4].

    Raises:
        ValueError: the split holds no case, a case has no scores, or a case is bad
            (see `read_case`).
    """
    split_dir = Path(split_dir)
    if case_ids is None:
        case_ids = list_cases(split_dir)
        if scores is not None:
            case_ids = [c for c in case_ids if c in scores]
    if not case_ids:
        raise ValueError(f"{split_dir}: no cases to load; expected case folders <CASE>/{IMAGE_FILE}")
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
