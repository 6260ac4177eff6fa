"""Loader of the ACDC dataset (Bernard et al., 2018) for the heatmap-loss classifier.

Layout (`training/` or `testing/` of the challenge download)::

    <root>/patientNNN/Info.cfg                  ED: 1 / ES: 12 / Group: DCM / Height / Weight / NbFrame
    <root>/patientNNN/patientNNN_frameMM.nii.gz      short-axis volume (X, Y, slices)
    <root>/patientNNN/patientNNN_frameMM_gt.nii.gz   labels 0 background, 1 RV cavity,
                                                     2 myocardium, 3 LV cavity

The thesis trained binary classifiers (normal vs diseased; 20 NOR against 80
others, hence class weights) on ACDC with the heart (labels 1-3) as the allowed
region of the heatmap loss. `load_acdc` returns the 2D short-axis slices of the
end-diastolic and end-systolic frames that contain heart, with heart masks, labels
(binary, the four groups of the synthetic data, or all five) and Keras class
weights. Every slice is first resampled by its voxel spacing (the NIfTI header's
in-plane `pixdim`) to a 1 mm grid, centre-cropped or zero-padded to one field of
view in millimetres, and only then resized to the model grid, so one model pixel
is the same length in every patient. `acdc_splits` splits by patient (no patient
in two splits), stratified by group.

A patient whose files cannot be read (missing, truncated, NaN or infinite voxels,
labels outside 0-3) stops the load with an error naming the file, or, with
`skip_bad_patients=True`, is reported (a logging warning and the `skipped` list)
and left out.
"""

import logging

import re
import zlib
from pathlib import Path

import numpy as np

from heatmap_loss.data import resize_batch
from shared.inputs import check_declared_size, check_spacing, load_nifti_header

log = logging.getLogger(__name__)

GROUPS = ("NOR", "MINF", "DCM", "HCM", "RV")
BINARY_CLASSES = ("normal", "diseased")
# The synthetic data's four classes (its "RV" is ACDC's abnormal right ventricle).
FOUR_CLASSES = ("NOR", "RV", "HCM", "DCM")
TASKS = ("binary", "4class", "5class")
DEFAULT_FIELD_OF_VIEW_MM = (210.0, 270.0)
_PATIENT = re.compile(r"patient(\d{3})$")
# Frame numbers of Info.cfg: ACDC cine series hold 12-35 frames, numbered from 1.
MAX_FRAME = 999


def read_info_cfg(path) -> dict:
    """Parses an ACDC `Info.cfg` (`Key: value` lines) and checks ED, ES and Group.

    Returns:
        dict with "ED", "ES" (ints), "Group" (str) and any other keys as strings.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line without ':' or a missing / bad ED, ES or Group: a frame
            number that is not a whole number from 1 to `MAX_FRAME` (names the file).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"ACDC patient info not found: {path}")
    info = {}
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerates a byte-order mark
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); expected "
                         "'Key: value' lines") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if ":" not in line:
            raise ValueError(f"{path}, line {number}: expected 'Key: value'. Received: {line!r}")
        key, value = line.split(":", 1)
        if key.strip() in info:
            raise ValueError(f"{path}, line {number}: field {key.strip()!r} appears twice; "
                             "expected each key once")
        info[key.strip()] = value.strip()
    for field in ("ED", "ES", "Group"):
        if field not in info:
            raise ValueError(f"{path}: field {field!r} is missing (expected ED, ES and Group).")
    for field in ("ED", "ES"):
        try:
            value = float(info[field])
        except ValueError:
            value = float("nan")
        if not (np.isfinite(value) and value == int(value) and 1 <= value <= MAX_FRAME):
            raise ValueError(f"{path}: field {field!r} must be a frame number (a whole number from 1 to "
                             f"{MAX_FRAME}). Received: {info[field]!r}")
        info[field] = int(value)
    if info["Group"] not in GROUPS:
        raise ValueError(f"{path}: field 'Group' must be one of {GROUPS}. Received: {info['Group']!r}")
    return info


def find_acdc_root(path) -> Path:
    """`path` if it holds patientNNN folders, else its `training/` subfolder if that does."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"ACDC folder not found: {path}")
    for candidate in (path, path / "training"):
        if candidate.is_dir() and any(p.is_dir() and _PATIENT.match(p.name)
                                      for p in candidate.iterdir()):
            return candidate
    raise FileNotFoundError(f"{path}: no patientNNN folders (expected the ACDC training/ "
                            "or testing/ layout, or train.npz/val.npz/test.npz)")


def list_patients(root) -> list:
    """The `patientNNN` folders under `root`, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ACDC folder not found: {root}")
    patients = sorted(p for p in root.iterdir() if p.is_dir() and _PATIENT.match(p.name))
    if not patients:
        raise FileNotFoundError(f"{root}: no patientNNN folders (expected the ACDC training/ "
                                "or testing/ layout).")
    return patients


def _read_nifti(path):
    """(volume float32 (X, Y, slices), in-plane spacing (x mm, y mm)) of a NIfTI file.

    The header is checked before the voxels are read (`shared.inputs.load_nifti_header`:
    declared size against the file and a memory bound, no complex or RGB voxels), and
    the in-plane spacing must lie in `shared.inputs.SPACING_RANGE_MM`, with the slices
    on the millimetre grid within the memory bound too.
    """
    import nibabel as nib
    from nibabel.openers import ImageOpener

    if not path.exists():
        raise FileNotFoundError(f"ACDC volume not found: {path}")
    image = load_nifti_header(path)  # raises naming the file and the header field
    try:
        data = np.asarray(image.get_fdata(dtype=np.float32))
        # nibabel's load silently replaces a zero pixdim by 1 mm; the spacing check needs
        # the header as written.
        with ImageOpener(str(path)) as handle:
            written = type(image.header).from_fileobj(handle, check=False)
        zooms = tuple(float(z) for z in written["pixdim"][1:3])
    except (OSError, EOFError, ValueError, zlib.error, nib.filebasedimages.ImageFileError) as err:
        raise ValueError(f"{path}: cannot read the NIfTI volume (truncated or corrupt file?): "
                         f"{type(err).__name__}: {err}".splitlines()[0]) from None
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3D volume (X, Y, slices). Received shape {data.shape}")
    if not np.all(np.isfinite(data)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(data))[0])
        raise ValueError(f"{path}: voxel {bad} is NaN or infinite; expected finite intensities")
    if len(zooms) != 2 or not all(np.isfinite(z) and z > 0 for z in zooms):
        raise ValueError(f"{path}: field 'pixdim' gives in-plane spacing {zooms}; expected two "
                         "positive millimetre values")
    check_spacing(path, zooms, field="pixdim")
    # The slices are resampled to 1 mm pixels: that grid must fit in memory too.
    grid = (max(1, round(data.shape[0] * zooms[0])), max(1, round(data.shape[1] * zooms[1])), data.shape[2])
    check_declared_size(path, grid, np.float32, field="pixdim x dim (the 1 mm grid)")
    return data, zooms


def load_frame(patient_dir, frame: int) -> tuple:
    """(image volume float32, label volume int, (x mm, y mm)) of one frame, (X, Y, slices)."""
    patient_dir = Path(patient_dir)
    stem = f"{patient_dir.name}_frame{frame:02d}"
    image_path = patient_dir / f"{stem}.nii.gz"
    gt_path = patient_dir / f"{stem}_gt.nii.gz"
    image, spacing = _read_nifti(image_path)
    labels, _ = _read_nifti(gt_path)
    if image.shape != labels.shape:
        raise ValueError(f"{gt_path}: shape {labels.shape} does not match the image "
                         f"{image_path} of shape {image.shape}.")
    labels = np.rint(labels).astype(np.int64)
    bad = (labels < 0) | (labels > 3)
    if bad.any():
        raise ValueError(f"{gt_path}: labels must be 0-3. Received value {labels[bad][0]} "
                         f"at voxel {tuple(int(i) for i in np.argwhere(bad)[0])}.")
    return image, labels, spacing


def _to_uint8_range(volume, percentile):
    """Scales a volume to 0-255 by its `percentile` (robust to bright outliers)."""
    top = float(np.percentile(volume, percentile))
    if top <= 0:
        return np.zeros_like(volume, dtype=np.float32)
    return np.clip(volume / top * 255.0, 0.0, 255.0).astype(np.float32)


def class_weights(labels, num_classes) -> dict:
    """Keras `class_weight`: n / (num_classes * count_c), absent classes weight 0."""
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
    return {int(c): float(w) for c, w in enumerate(weights)}


def to_millimetre_grid(slices, spacing, field_of_view_mm, *, nearest=False) -> np.ndarray:
    """Resamples [N, rows, cols] slices to 1 mm pixels, then crops / pads to the view.

    Args:
        slices: array [N, rows, cols]; rows run along the volume's y axis, columns
            along x.
        spacing: (x mm, y mm). In-plane voxel size (NIfTI `pixdim[1:3]`).
        field_of_view_mm: (height mm, width mm). The centred window kept (zero padding
            where the image is smaller).
        nearest: bool, default False. Nearest neighbour (label masks) instead of
            linear interpolation.

    Returns:
        array [N, round(height), round(width)] on a 1 mm grid.
    """
    import cv2

    slices = np.asarray(slices)
    sx, sy = float(spacing[0]), float(spacing[1])
    rows = max(1, int(round(slices.shape[1] * sy)))
    cols = max(1, int(round(slices.shape[2] * sx)))
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    resampled = np.stack([cv2.resize(s, (cols, rows), interpolation=interpolation)
                          for s in slices])
    height, width = (int(round(v)) for v in field_of_view_mm)
    out = np.zeros((len(slices), height, width), dtype=slices.dtype)
    src_r, dst_r, n_r = _centred(rows, height)
    src_c, dst_c, n_c = _centred(cols, width)
    out[:, dst_r:dst_r + n_r, dst_c:dst_c + n_c] = resampled[:, src_r:src_r + n_r,
                                                             src_c:src_c + n_c]
    return out


def _centred(size, window):
    """(source start, destination start, length) of centring `size` in `window`."""
    if size >= window:
        return (size - window) // 2, 0, window
    return 0, (window - size) // 2, size


def _label_of(group, task):
    if task == "binary":
        return 0 if group == "NOR" else 1
    if task == "4class":
        return FOUR_CLASSES.index(group) if group in FOUR_CLASSES else None
    return GROUPS.index(group)


def _load_patient(patient, *, size, task, frames, min_heart_pixels, percentile, field_of_view_mm):
    info = read_info_cfg(patient / "Info.cfg")
    label = _label_of(info["Group"], task)
    parts = []
    if label is None:  # MINF in the four-class task
        return info["Group"], parts
    for frame_name in frames:
        volume, gt, spacing = load_frame(patient, info[frame_name])
        volume = _to_uint8_range(volume, percentile)
        # (X, Y, slices) -> (slices, Y, X): rows are the image's y axis.
        volume = np.transpose(volume, (2, 1, 0))
        heart = np.transpose(((gt >= 1) & (gt <= 3)).astype(np.uint8), (2, 1, 0))
        keep = np.flatnonzero(heart.reshape(heart.shape[0], -1).sum(axis=1) >= min_heart_pixels)
        if keep.size == 0:
            continue
        images, hearts = volume[keep], heart[keep]
        if field_of_view_mm is not None:
            images = to_millimetre_grid(images, spacing, field_of_view_mm)
            hearts = to_millimetre_grid(hearts, spacing, field_of_view_mm, nearest=True)
        parts.append((frame_name, keep, resize_batch(images, size),
                      resize_batch(hearts, size, nearest=True), label))
    return info["Group"], parts


def load_acdc(root, *, size=(105, 135), task="binary", frames=("ED", "ES"),
              min_heart_pixels=1, percentile=99.5, field_of_view_mm=DEFAULT_FIELD_OF_VIEW_MM,
              skip_bad_patients=False) -> dict:
    """Loads ACDC short-axis slices with heart masks and labels.

    Args:
        root: str or Path. The `training/` (or `testing/`) folder.
        size: (height, width), default (105, 135). Model grid.
        task: "binary" (NOR = 0 normal, the rest 1 diseased; thesis), "4class"
            (`FOUR_CLASSES`, the synthetic data's classes; MINF patients left out) or
            "5class" (index into `GROUPS`).
        frames: tuple of "ED" / "ES", default both.
        min_heart_pixels: int, default 1. Slices with fewer heart voxels (labels 1-3)
            are skipped: the heatmap loss needs a non-empty allowed region.
        percentile: float, default 99.5. Per-volume intensity scaling to 0-255.
        field_of_view_mm: (height, width) in mm, default (210, 270): slices are
            resampled to 1 mm pixels and centre-cropped / padded to this window
            before resizing to `size` (2 mm per pixel at 105 x 135). None resizes
            the native grid directly (ignores the spacing).
        skip_bad_patients: bool, default False. Leave out (and report) a patient
            whose files cannot be read instead of raising.

    Returns:
        dict: "images" float32 [N, h, w, 1], "heart" uint8 [N, h, w], "labels"
        int64 [N], "patients" [N] (folder names), "groups" [N], "slices" [N],
        "frames" [N], "classes" (names), "class_weight" (dict for Keras),
        "skipped" (list of (patient, reason)).

    Raises:
        FileNotFoundError / ValueError: naming the file and what was expected.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}. Received: task={task!r}")
    for frame in frames:
        if frame not in ("ED", "ES"):
            raise ValueError(f"frames must be 'ED' and/or 'ES'. Received: {frames!r}")
    columns = {k: [] for k in ("images", "heart", "labels", "patients", "groups", "slices",
                                "frames")}
    skipped = []
    for patient in list_patients(root):
        try:
            group, parts = _load_patient(patient, size=size, task=task, frames=frames,
                                         min_heart_pixels=min_heart_pixels,
                                         percentile=percentile,
                                         field_of_view_mm=field_of_view_mm)
        except (OSError, ValueError) as err:
            if not skip_bad_patients:
                raise
            reason = str(err).splitlines()[0]
            log.warning("skipping ACDC patient %s: %s", patient.name, reason)
            skipped.append((patient.name, reason))
            continue
        for frame_name, keep, images, hearts, label in parts:
            n = keep.size
            columns["images"].append(images)
            columns["heart"].append(hearts)
            columns["labels"] += [label] * n
            columns["patients"] += [patient.name] * n
            columns["groups"] += [group] * n
            columns["slices"] += keep.tolist()
            columns["frames"] += [frame_name] * n
    if not columns["images"]:
        raise ValueError(f"{root}: no slice with at least {min_heart_pixels} heart voxels"
                         + (f" ({len(skipped)} patients skipped)" if skipped else "") + ".")
    classes = {"binary": BINARY_CLASSES, "4class": FOUR_CLASSES, "5class": GROUPS}[task]
    labels = np.asarray(columns["labels"], dtype=np.int64)
    return {
        "images": np.concatenate(columns["images"])[..., None].astype(np.float32),
        "heart": np.concatenate(columns["heart"]),
        "labels": labels,
        "patients": np.asarray(columns["patients"]),
        "groups": np.asarray(columns["groups"]),
        "slices": np.asarray(columns["slices"]),
        "frames": np.asarray(columns["frames"]),
        "classes": classes,
        "class_weight": class_weights(labels, len(classes)),
        "skipped": skipped,
    }


def split_patients(patients, groups, *, fractions=(0.6, 0.2, 0.2), seed=0) -> dict:
    """Patient-level train / val / test split, stratified by group.

    Args:
        patients: sequence of patient names (one per slice or one per patient).
        groups: sequence of the patients' groups, aligned with `patients`.
        fractions: (train, val, test), default (0.6, 0.2, 0.2).
        seed: int. Seed of the shuffle.

    Returns:
        dict "train", "val", "test" -> sorted list of patient names; every patient
        is in exactly one split, and each group with at least three patients has one
        in every split.
    """
    if seed is None:
        raise ValueError("split_patients needs an integer seed. Received: seed=None")
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be three positive numbers summing to 1. "
                         f"Received: fractions={fractions}")
    by_group = {}
    for patient, group in dict(zip(patients, groups)).items():
        by_group.setdefault(str(group), []).append(str(patient))
    rng = np.random.default_rng(seed)
    out = {"train": [], "val": [], "test": []}
    for group in sorted(by_group):
        members = sorted(by_group[group])
        rng.shuffle(members)
        n = len(members)
        n_test = max(1, int(round(fractions[2] * n))) if n >= 3 else 0
        n_val = max(1, int(round(fractions[1] * n))) if n >= 3 else 0
        out["test"] += members[:n_test]
        out["val"] += members[n_test:n_test + n_val]
        out["train"] += members[n_test + n_val:]
    return {k: sorted(v) for k, v in out.items()}


def acdc_splits(root, *, size, task="binary", seed=0, skip_bad_patients=False,
                field_of_view_mm=DEFAULT_FIELD_OF_VIEW_MM) -> tuple:
    """(splits, source, classes, class_weight) of an ACDC run, split by patient.

    The class weights come from the training split only.

    Raises:
        ValueError: a split without slices (too few patients; names the folder).
    """
    root = find_acdc_root(root)
    data = load_acdc(root, size=size, task=task, field_of_view_mm=field_of_view_mm,
                     skip_bad_patients=skip_bad_patients)
    parts = split_patients(data["patients"], data["groups"], seed=seed)
    splits = {}
    classes = data["classes"]
    for name, members in parts.items():
        rows = np.isin(data["patients"], members)
        if not rows.any():
            raise ValueError(f"{root}: the {name} split has no patient; expected at least "
                             "three patients per group")
        present = sorted({classes[int(c)] for c in np.unique(data["labels"][rows])})
        if len(present) < 2:
            raise ValueError(f"{root}: field 'Group' of Info.cfg: the {name} split holds only class "
                             f"{present} ({task} task); expected at least two classes in every split "
                             f"(patients of {', '.join(classes)})")
        splits[name] = {"images": data["images"][rows], "heart": data["heart"][rows],
                        "labels": data["labels"][rows]}
    source = {"source": f"ACDC slices from {root}, split by patient (seed {seed})",
              "seed": int(seed), "patients": parts["test"],
              "images": int(len(splits["test"]["labels"])),
              "skipped": [p for p, _ in data["skipped"]]}
    weights = class_weights(splits["train"]["labels"], len(classes))
    return splits, source, classes, weights
