"""ADNI on-disk layout: writer (for the synthetic cohort), loader, and subject-level folds.

Layout of an ADNI download (LONI IDA "collection" export), which this module writes and
reads::

    <root>/ADNI/<PTID>/<Description>/<YYYY-MM-DD_HH_MM_SS.0>/I<id>/
        ADNI_<PTID>_MR_<Description>_br_raw_<YYYYMMDDHHMMSSmmm>_S<series>_I<id>.nii
    <root>/<collection>.csv   with the columns
        Image Data ID,Subject,Group,Sex,Age,Visit,Modality,Description,Type,Acq Date,Format,Downloaded

Scans are expected registered to MNI space and skull-stripped (the paper's
preprocessing: ICBM registration, skull stripping, bias correction). The loader
resamples each scan through its NIfTI affine into the working grid of the atlas
(`bar_ad.atlas.load_atlas(size)`), checks that it is aligned with the atlas, and scales
intensities to [0, 1] (clipped at the 99.5th brain percentile).
"""

import csv
import datetime as _dt
import logging
from pathlib import Path

import numpy as np

from bar_ad.atlas import Atlas, alignment_score, resample

log = logging.getLogger(__name__)

CSV_COLUMNS = ("Image Data ID", "Subject", "Group", "Sex", "Age", "Visit", "Modality",
               "Description", "Type", "Acq Date", "Format", "Downloaded")
GROUPS = ("CN", "MCI", "AD")
DESCRIPTION = "MPRAGE_MNI_brain"


def scan_path(root, subject, description, acq_datetime, image_id, series_id) -> Path:
    """Path of one scan in the ADNI layout (`image_id` an int, without the 'I')."""
    stamp = acq_datetime.strftime("%Y-%m-%d_%H_%M_%S.0")
    fname = (f"ADNI_{subject}_MR_{description}_br_raw_"
             f"{acq_datetime.strftime('%Y%m%d%H%M%S')}000_S{series_id}_I{image_id}.nii")
    return Path(root) / "ADNI" / subject / description / stamp / f"I{image_id}" / fname


def write_adni_cohort(root, scans, atlas: Atlas, *, collection="bar_ad_collection",
                      description=DESCRIPTION, seed=0, progress=None) -> Path:
    """Writes scans as int16 NIfTI files in the ADNI layout plus the collection CSV.

    Args:
        root: str or Path. Output folder (gets `ADNI/` and `<collection>.csv`).
        scans: iterable of `bar_ad.phantom.Scan` (volumes on `atlas`'s grid).
        atlas: `Atlas`. Its affine becomes the files' affine (MNI space).
        collection: str. CSV file stem.
        description: str. The ADNI series description.
        seed: int. Seeds the acquisition dates.
        progress: callable wrapping an iterable (e.g. a tqdm factory), optional.

    Returns:
        Path of the CSV.
    """
    import nibabel as nib

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    baseline = {}
    iterator = progress(scans) if progress is not None else scans
    now = _dt.date.today()
    today = f"{now.month}/{now.day:02d}/{now.year}"
    for scan in iterator:
        if scan.subject not in baseline:
            baseline[scan.subject] = _dt.datetime(2006, 1, 1) + _dt.timedelta(
                days=int(rng.integers(0, 12 * 365)), hours=int(rng.integers(7, 18)),
                minutes=int(rng.integers(0, 60)))
        when = baseline[scan.subject] + _dt.timedelta(days=int(round(scan.years * 365.25)))
        path = scan_path(root, scan.subject, description, when, scan.image_id,
                         scan.image_id // 3)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = np.clip(np.rint(scan.volume * 2000.0), 0, 32767).astype(np.int16)
        img = nib.Nifti1Image(data, atlas.affine)
        img.header.set_xyzt_units("mm", "sec")
        img.header["descrip"] = b"synthetic MNI-space T1 (skull-stripped)"
        nib.save(img, str(path))
        rows.append({
            "Image Data ID": f"I{scan.image_id}", "Subject": scan.subject, "Group": scan.group,
            "Sex": scan.sex, "Age": int(round(scan.age)), "Visit": scan.visit,
            "Modality": "MRI", "Description": description, "Type": "Processed",
            "Acq Date": f"{when.month}/{when.day:02d}/{when.year}", "Format": "NiFTI",
            "Downloaded": today,
        })
    csv_path = root / f"{collection}.csv"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


def read_collection_csv(path) -> list:
    """Reads and validates an ADNI collection CSV.

    Returns:
        list of dict rows (all CSV columns, `Group` upper-cased).

    Raises:
        FileNotFoundError: no such CSV.
        ValueError: missing columns, or a row whose Group is not CN / MCI / AD (names the
            file, the row number and the value).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ADNI collection CSV not found: {path}")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        required = ("Image Data ID", "Subject", "Group")
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; expected the ADNI "
                             f"collection columns {', '.join(CSV_COLUMNS)}. Received: {header}")
        rows = []
        for row_no, raw in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
            group = row["Group"].upper()
            if group not in GROUPS:
                raise ValueError(f"{path}, row {row_no} (Image Data ID {row['Image Data ID']!r}): "
                                 f"Group must be one of {'/'.join(GROUPS)}. "
                                 f"Received: Group={row['Group']!r}")
            row["Group"] = group
            if not row["Image Data ID"] or not row["Subject"]:
                raise ValueError(f"{path}, row {row_no}: empty Image Data ID or Subject")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: the collection CSV has no rows")
    return rows


def find_scan_file(root, subject, image_id) -> Path:
    """The NIfTI file of `image_id` ("I12345") of `subject` under `<root>/ADNI`."""
    image_dir = image_id if image_id.upper().startswith("I") else f"I{image_id}"
    base = Path(root) / "ADNI" / subject
    hits = sorted(p for p in base.glob(f"*/*/{image_dir}/*")
                  if p.name.endswith((".nii", ".nii.gz")))
    if not hits:
        raise FileNotFoundError(f"No NIfTI for subject {subject}, image {image_dir} under "
                                f"{base}/<Description>/<date>/{image_dir}/")
    return hits[0]


def normalize_intensity(volume, brain=None, *, percentile=99.5) -> np.ndarray:
    """Scales to [0, 1]: divides by the `percentile` of the brain voxels, clips."""
    volume = np.asarray(volume, np.float32)
    inside = volume[brain] if brain is not None else volume[volume > 0]
    if inside.size == 0:
        return np.zeros_like(volume)
    scale = float(np.percentile(inside, percentile))
    if scale <= 0:
        return np.zeros_like(volume)
    return np.clip(volume / scale, 0.0, 1.0)


def load_volume(path, atlas: Atlas, *, min_alignment=0.9) -> np.ndarray:
    """Loads one NIfTI scan onto the atlas grid, checked and normalised.

    Args:
        path: str or Path. A 3D NIfTI in MNI space (brain-extracted).
        atlas: `Atlas`. Defines the working grid.
        min_alignment: float, default 0.9. Minimum share of intensity mass inside the
            atlas brain (see `bar_ad.atlas.alignment_score`).

    Returns:
        float32 [D, H, W] in [0, 1].

    Raises:
        ValueError: not 3D, or not aligned with the atlas grid (names the file).
    """
    import nibabel as nib

    path = Path(path)
    img = nib.load(str(path))
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3D volume. Received: shape={data.shape}")
    volume = resample(data, img.affine, atlas.affine, atlas.shape, order=1)
    score = alignment_score(volume, atlas)
    if score < min_alignment:
        raise ValueError(
            f"{path}: volume is not aligned with the atlas grid (MNI space): only {score:.0%} "
            f"of its intensity lies inside the atlas brain (expected >= {min_alignment:.0%}). "
            "Register it to the ICBM/MNI template and skull-strip it first.")
    return normalize_intensity(np.where(volume > 0, volume, 0.0), atlas.brain_mask)


def load_adni(root, atlas: Atlas, *, csv_path=None, groups=("CN", "AD"), min_alignment=0.9,
              progress=None) -> dict:
    """Loads an ADNI collection for AD-vs-CN classification.

    Args:
        root: str or Path. Folder holding `ADNI/` (and the CSV unless `csv_path`).
        atlas: `Atlas` defining the working grid.
        csv_path: str or Path, optional. The collection CSV; default: the only `*.csv`
            in `root`.
        groups: tuple, default ("CN", "AD"). Groups kept, in label order (index = label).
        min_alignment: float. See `load_volume`.
        progress: callable wrapping an iterable, optional.

    Returns:
        dict(x float32 [N, D, H, W, 1], y int32 [N] (index in `groups`), subjects str [N],
        image_ids str [N], ages float32 [N], paths list, groups tuple).
    """
    root = Path(root)
    if csv_path is None:
        candidates = sorted(root.glob("*.csv"))
        if len(candidates) != 1:
            raise FileNotFoundError(f"Expected one collection CSV in {root}, found "
                                    f"{[c.name for c in candidates]}; pass csv_path")
        csv_path = candidates[0]
    rows = [r for r in read_collection_csv(csv_path) if r["Group"] in groups]
    if not rows:
        raise ValueError(f"{csv_path}: no rows of groups {groups}")
    iterator = progress(rows) if progress is not None else rows
    volumes, paths = [], []
    for row in iterator:
        path = find_scan_file(root, row["Subject"], row["Image Data ID"])
        volumes.append(load_volume(path, atlas, min_alignment=min_alignment))
        paths.append(path)
    ages = []
    for row in rows:
        try:
            ages.append(float(row.get("Age") or "nan"))
        except ValueError:
            ages.append(float("nan"))
    return dict(
        x=np.stack(volumes)[..., None].astype(np.float32),
        y=np.array([groups.index(r["Group"]) for r in rows], np.int32),
        subjects=np.array([r["Subject"] for r in rows]),
        image_ids=np.array([r["Image Data ID"] for r in rows]),
        ages=np.array(ages, np.float32), paths=paths, groups=tuple(groups),
    )


def subject_folds(subjects, labels, *, n_folds=5, seed=0):
    """Subject-level stratified K-fold: no subject has scans in two folds.

    Args:
        subjects: array [N] of subject ids (one per scan).
        labels: array [N] of int labels (stratification by subject label).
        n_folds: int, default 5 (the paper's 5-fold cross-validation).
        seed: int. Shuffling seed.

    Returns:
        list of (train_indices, test_indices) int arrays over scans.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    subjects = np.asarray(subjects)
    labels = np.asarray(labels)
    n_subjects = len(np.unique(subjects))
    if n_folds < 2 or n_folds > n_subjects:
        raise ValueError(f"n_folds must be in [2, number of subjects={n_subjects}]. "
                         f"Received: n_folds={n_folds}")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [(np.sort(tr), np.sort(te))
            for tr, te in splitter.split(np.zeros(len(labels)), labels, groups=subjects)]


def subject_holdout(indices, subjects, labels, *, fraction, seed=0):
    """Splits `indices` into (train, validation) by subject, stratified by label.

    Args:
        indices: int array. Scans to split.
        subjects, labels: arrays over all scans.
        fraction: float in (0, 1). Share of subjects (per class) held out.
        seed: int.
    """
    rng = np.random.default_rng(seed)
    indices = np.asarray(indices)
    subs = np.asarray(subjects)[indices]
    labs = np.asarray(labels)[indices]
    held = []
    for label in np.unique(labs):
        uniq = np.unique(subs[labs == label])
        n = int(round(fraction * len(uniq)))
        if n > 0:
            held.extend(rng.choice(uniq, size=n, replace=False).tolist())
    is_val = np.isin(subs, held)
    return indices[~is_val], indices[is_val]
