"""Loader of the ACDC dataset (Bernard et al., 2018) for the heatmap-loss classifier.

Layout (`training/` or `testing/` of the challenge download)::

    <root>/patientNNN/Info.cfg                  ED: 1 / ES: 12 / Group: DCM / Height / Weight / NbFrame
    <root>/patientNNN/patientNNN_frameMM.nii.gz      short-axis volume (X, Y, slices)
    <root>/patientNNN/patientNNN_frameMM_gt.nii.gz   labels 0 background, 1 RV cavity,
                                                     2 myocardium, 3 LV cavity

The thesis trained binary classifiers (normal vs diseased; 20 NOR against 80
others, hence class weights) on ACDC with the heart (labels 1-3) as the allowed
region of the heatmap loss. `load_acdc` returns the 2D short-axis slices of the
end-diastolic and end-systolic frames that contain heart, resized to the model grid,
with heart masks, labels (binary or the 5 groups) and Keras class weights.
"""

import re
from pathlib import Path

import numpy as np

from heatmap_loss.data import resize_batch

GROUPS = ("NOR", "MINF", "DCM", "HCM", "RV")
BINARY_CLASSES = ("normal", "diseased")
_PATIENT = re.compile(r"patient(\d{3})$")


def read_info_cfg(path) -> dict:
    """Parses an ACDC `Info.cfg` (`Key: value` lines) and checks ED, ES and Group.

    Returns:
        dict with "ED", "ES" (ints), "Group" (str) and any other keys as strings.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line without ':' or a missing / bad ED, ES or Group (names the file).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"ACDC patient info not found: {path}")
    info = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        if ":" not in line:
            raise ValueError(f"{path}, line {number}: expected 'Key: value'. Received: {line!r}")
        key, value = line.split(":", 1)
        info[key.strip()] = value.strip()
    for field in ("ED", "ES", "Group"):
        if field not in info:
            raise ValueError(f"{path}: field {field!r} is missing (expected ED, ES and Group).")
    for field in ("ED", "ES"):
        try:
            info[field] = int(float(info[field]))
        except ValueError:
            raise ValueError(f"{path}: field {field!r} must be a frame number. "
                             f"Received: {info[field]!r}") from None
    if info["Group"] not in GROUPS:
        raise ValueError(f"{path}: field 'Group' must be one of {GROUPS}. Received: {info['Group']!r}")
    return info


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
    import nibabel as nib

    if not path.exists():
        raise FileNotFoundError(f"ACDC volume not found: {path}")
    data = np.asarray(nib.load(str(path)).get_fdata(dtype=np.float32))
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3D volume (X, Y, slices). Received shape {data.shape}")
    return data


def load_frame(patient_dir, frame: int) -> tuple:
    """(image volume float32, label volume int) of one frame, both (X, Y, slices)."""
    patient_dir = Path(patient_dir)
    stem = f"{patient_dir.name}_frame{frame:02d}"
    image_path = patient_dir / f"{stem}.nii.gz"
    gt_path = patient_dir / f"{stem}_gt.nii.gz"
    image = _read_nifti(image_path)
    labels = _read_nifti(gt_path)
    if image.shape != labels.shape:
        raise ValueError(f"{gt_path}: shape {labels.shape} does not match the image "
                         f"{image_path} of shape {image.shape}.")
    labels = np.rint(labels).astype(np.int64)
    bad = (labels < 0) | (labels > 3)
    if bad.any():
        raise ValueError(f"{gt_path}: labels must be 0-3. Received value {labels[bad][0]} "
                         f"at voxel {tuple(int(i) for i in np.argwhere(bad)[0])}.")
    return image, labels


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


def load_acdc(root, *, size=(105, 135), task="binary", frames=("ED", "ES"),
              min_heart_pixels=1, percentile=99.5) -> dict:
    """Loads ACDC short-axis slices with heart masks and labels.

    Args:
        root: str or Path. The `training/` (or `testing/`) folder.
        size: (height, width), default (105, 135). Model grid.
        task: "binary" (NOR = 0 normal, the rest 1 diseased; thesis) or "5class"
            (index into `GROUPS`).
        frames: tuple of "ED" / "ES", default both.
        min_heart_pixels: int, default 1. Slices with fewer heart voxels (labels 1-3)
            are skipped: the heatmap loss needs a non-empty allowed region.
        percentile: float, default 99.5. Per-volume intensity scaling to 0-255.

    Returns:
        dict: "images" float32 [N, h, w, 1], "heart" uint8 [N, h, w], "labels"
        int64 [N], "patients" [N] (folder names), "slices" [N], "frames" [N],
        "classes" (names), "class_weight" (dict for Keras).

    Raises:
        FileNotFoundError / ValueError: naming the file and what was expected.
    """
    if task not in ("binary", "5class"):
        raise ValueError(f"task must be 'binary' or '5class'. Received: task={task!r}")
    for frame in frames:
        if frame not in ("ED", "ES"):
            raise ValueError(f"frames must be 'ED' and/or 'ES'. Received: {frames!r}")
    images, hearts, labels, patients, slices, frame_names = [], [], [], [], [], []
    for patient in list_patients(root):
        info = read_info_cfg(patient / "Info.cfg")
        group = info["Group"]
        label = (0 if group == "NOR" else 1) if task == "binary" else GROUPS.index(group)
        for frame_name in frames:
            volume, gt = load_frame(patient, info[frame_name])
            volume = _to_uint8_range(volume, percentile)
            # (X, Y, slices) -> (slices, Y, X): rows are the image's y axis.
            volume = np.transpose(volume, (2, 1, 0))
            heart = np.transpose(((gt >= 1) & (gt <= 3)).astype(np.uint8), (2, 1, 0))
            keep = np.flatnonzero(heart.reshape(heart.shape[0], -1).sum(axis=1) >= min_heart_pixels)
            if keep.size == 0:
                continue
            images.append(resize_batch(volume[keep], size))
            hearts.append(resize_batch(heart[keep], size, nearest=True))
            n = keep.size
            labels += [label] * n
            patients += [patient.name] * n
            slices += keep.tolist()
            frame_names += [frame_name] * n
    if not images:
        raise ValueError(f"{root}: no slice with at least {min_heart_pixels} heart voxels.")
    classes = BINARY_CLASSES if task == "binary" else GROUPS
    labels = np.asarray(labels, dtype=np.int64)
    return {
        "images": np.concatenate(images)[..., None].astype(np.float32),
        "heart": np.concatenate(hearts),
        "labels": labels,
        "patients": np.asarray(patients),
        "slices": np.asarray(slices),
        "frames": np.asarray(frame_names),
        "classes": classes,
        "class_weight": class_weights(labels, len(classes)),
    }
