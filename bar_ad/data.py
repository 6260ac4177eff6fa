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
import re
from pathlib import Path

import numpy as np

from bar_ad import alignment
from bar_ad.atlas import Atlas, alignment_score, resample
from shared.inputs import check_affine, load_nifti_header, read_table

log = logging.getLogger(__name__)

CSV_COLUMNS = ("Image Data ID", "Subject", "Group", "Sex", "Age", "Visit", "Modality",
               "Description", "Type", "Acq Date", "Format", "Downloaded")
GROUPS = ("CN", "MCI", "AD")
# ADNI-2/GO diagnostic subgroups that collection exports also carry.
SUBGROUPS = ("EMCI", "LMCI", "SMC")
# How rows of those subgroups are read: "skip" leaves them out (counted); "adni" maps them
# onto the three diagnoses (early / late MCI are MCI, significant memory concern is CN).
GROUP_MAPS = {"skip": {}, "adni": {"EMCI": "MCI", "LMCI": "MCI", "SMC": "CN"}}
DESCRIPTION = "MPRAGE_MNI_brain"
# Subject and Image Data ID name folders of the ADNI layout: plain names only, so a
# table cannot point the loader outside `<root>/ADNI/` or glob several folders.
_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


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


def read_collection(path, *, group_map="skip") -> dict:
    """Reads and validates an ADNI collection CSV.

    Args:
        path: str or Path.
        group_map: str, default "skip". How rows of the subgroups EMCI / LMCI / SMC are
            read (`GROUP_MAPS`): "skip" leaves them out, "adni" maps EMCI and LMCI to MCI
            and SMC to CN.

    Returns:
        dict(rows=list of dict rows (all CSV columns, `Group` upper-cased and mapped),
        skipped={group: rows left out}, mapped={"EMCI->MCI": rows, ...}).

    Raises:
        FileNotFoundError: no such CSV.
        ValueError: not UTF-8 text; a column named twice (e.g. two Group columns, of
            which only one would be read); a row with more fields than the header;
            missing columns; a Group that is neither CN / MCI / AD nor a known
            subgroup; an empty Image Data ID or Subject, or one that is not a plain
            folder name; an image listed twice (names the file, the rows and the value).
    """
    if group_map not in GROUP_MAPS:
        raise ValueError(f"group_map must be one of {sorted(GROUP_MAPS)}. "
                         f"Received: group_map={group_map!r}")
    mapping = GROUP_MAPS[group_map]
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ADNI collection CSV not found: {path}")
    skipped, mapped, first_row = {}, {}, {}
    header, table = read_table(path, expected=f"the ADNI collection columns {', '.join(CSV_COLUMNS)}")
    required = ("Image Data ID", "Subject", "Group")
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected the ADNI "
                         f"collection columns {', '.join(CSV_COLUMNS)}. Received: {header}")
    rows = []
    for row_no, raw in table:
        row = {k: (v or "") for k, v in raw.items()}
        group = row["Group"].upper()
        if group not in GROUPS + SUBGROUPS:
            raise ValueError(f"{path}, row {row_no} (Image Data ID {row['Image Data ID']!r}): "
                             f"Group must be one of {'/'.join(GROUPS + SUBGROUPS)}. "
                             f"Received: Group={row['Group']!r}")
        if not row["Image Data ID"] or not row["Subject"]:
            raise ValueError(f"{path}, row {row_no}: empty Image Data ID or Subject")
        for column in ("Subject", "Image Data ID"):
            if not _FOLDER_NAME.fullmatch(row[column]) or ".." in row[column]:
                raise ValueError(f"{path}, row {row_no}: column {column!r} must be a plain folder "
                                 f"name (letters, digits, '_', '.', '-'; no '/' or '..'). "
                                 f"Received: {row[column]!r}")
        image = row["Image Data ID"].upper()
        if image in first_row:
            raise ValueError(f"{path}, rows {first_row[image]} and {row_no}: Image Data ID "
                             f"{row['Image Data ID']!r} is listed twice; expected each image "
                             "once (remove the repeated row)")
        first_row[image] = row_no
        if group in SUBGROUPS:
            if group not in mapping:
                skipped[group] = skipped.get(group, 0) + 1
                continue
            key = f"{group}->{mapping[group]}"
            mapped[key] = mapped.get(key, 0) + 1
            group = mapping[group]
        row["Group"] = group
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: the collection CSV has no rows of the groups "
                         f"{'/'.join(GROUPS)} (skipped: {skipped or 'none'})")
    if skipped:
        log.warning("%s: skipped %s rows of groups outside CN/MCI/AD (%s); "
                    "group_map='adni' maps them", path, sum(skipped.values()),
                    ", ".join(f"{g} {n}" for g, n in sorted(skipped.items())))
    return dict(rows=rows, skipped=skipped, mapped=mapped)


def read_collection_csv(path, *, group_map="skip") -> list:
    """The rows of `read_collection` (see there)."""
    return read_collection(path, group_map=group_map)["rows"]


def find_scan_file(root, subject, image_id) -> Path:
    """The NIfTI file of `image_id` ("I12345") of `subject` under `<root>/ADNI`.

    Raises:
        FileNotFoundError: no NIfTI file in the image's folder.
        ValueError: a subject or image id that is not a plain folder name, or more than
            one NIfTI file for the image (taking one would be a guess: it may be another
            subject's scan copied there); names the folder and the files.
    """
    for what, name in (("subject", subject), ("image id", image_id)):
        if not _FOLDER_NAME.fullmatch(str(name)) or ".." in str(name):
            raise ValueError(f"{what} {name!r}: expected a plain folder name under "
                             f"{Path(root) / 'ADNI'} (letters, digits, '_', '.', '-')")
    image_dir = image_id if image_id.upper().startswith("I") else f"I{image_id}"
    base = Path(root) / "ADNI" / subject
    hits = sorted(p for p in base.glob(f"*/*/{image_dir}/*")
                  if p.name.lower().endswith((".nii", ".nii.gz")))
    if not hits:
        raise FileNotFoundError(f"No NIfTI for subject {subject}, image {image_dir} under "
                                f"{base}/<Description>/<date>/{image_dir}/")
    if len(hits) > 1:
        folders = sorted({p.parent for p in hits})
        where = str(folders[0]) if len(folders) == 1 else f"{base} ({len(folders)} folders named {image_dir})"
        names = ", ".join(p.name for p in hits[:4]) + (", ..." if len(hits) > 4 else "")
        raise ValueError(f"{where}: {len(hits)} NIfTI files for subject {subject}, image {image_dir} "
                         f"({names}); expected exactly one scan per image folder")
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


def _finite_or_raise(data, path):
    finite = np.isfinite(data)
    if not finite.all():
        n_nan = int(np.isnan(data).sum())
        n_inf = int((~finite).sum()) - n_nan
        kinds = " and ".join(k for k, n in (("NaN", n_nan), ("infinite", n_inf)) if n)
        first = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise ValueError(f"{path}: {n_nan + n_inf} voxel(s) are {kinds} (first at voxel "
                         f"{first}); expected finite intensities")


def _placement_or_raise(img, path):
    header = img.header
    codes = (int(header["qform_code"]), int(header["sform_code"]))
    if codes == (0, 0):
        raise ValueError(f"{path}: the NIfTI header holds no placement (qform_code and "
                         "sform_code are 0), so the scan's position in MNI space is unknown; "
                         "expected a scan registered to the ICBM/MNI template")


def load_volume(path, atlas: Atlas, *, min_alignment=0.9, max_shift_mm=alignment.MAX_SHIFT_MM,
                max_rotation_deg=alignment.MAX_ROTATION_DEG, details=None) -> np.ndarray:
    """Loads one NIfTI scan onto the atlas grid, checked and normalised.

    Args:
        path: str or Path. A 3D NIfTI in MNI space (brain-extracted).
        atlas: `Atlas`. Defines the working grid.
        min_alignment: float, default 0.9. Minimum share of intensity mass inside the
            atlas brain (see `bar_ad.atlas.alignment_score`).
        max_shift_mm: float, default 3.0. Largest accepted shift from the template
            (`bar_ad.alignment.measure_misalignment`); None skips the check.
        max_rotation_deg: float, default 3.5. Largest accepted rotation; None skips it.
        details: dict, optional. Filled with the measured misalignment and the scan on
            the check grid (`check_volume`, for `bar_ad.alignment.mirror_scores`).

    Returns:
        float32 [D, H, W] in [0, 1].

    Raises:
        ValueError: a header declaring more voxels than the file holds (or than memory
            should take), complex or RGB voxels, not 3D, NaN or infinite voxels, no
            placement in the header, a NaN, infinite or singular affine or voxel sizes
            outside 0.05-20 mm, or not aligned with the atlas (names the file and the
            measured misalignment).
    """
    import zlib

    import nibabel as nib

    path = Path(path)
    try:
        img = load_nifti_header(path)
        data = np.asarray(img.dataobj, dtype=np.float32)
    except (OSError, EOFError, zlib.error, nib.filebasedimages.ImageFileError) as err:
        raise ValueError(f"{path}: cannot read the NIfTI file "
                         f"({type(err).__name__}: {' '.join(str(err).split())})") from None
    except ValueError as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"{path}: cannot read the NIfTI file "
                         f"({type(err).__name__}: {' '.join(str(err).split())})") from None
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3D volume. Received: shape={data.shape}")
    _finite_or_raise(data, path)
    _placement_or_raise(img, path)
    check_affine(path, img.affine, field="affine")
    volume = resample(data, img.affine, atlas.affine, atlas.shape, order=1)
    score = alignment_score(volume, atlas)
    if score < min_alignment:
        raise ValueError(
            f"{path}: volume is not aligned with the atlas grid (MNI space): only {score:.0%} "
            f"of its intensity lies inside the atlas brain (expected >= {min_alignment:.0%}). "
            "Register it to the ICBM/MNI template and skull-strip it first.")
    if max_shift_mm is not None or max_rotation_deg is not None:
        reference = alignment.reference_for(atlas.source_key)
        found = alignment.measure_misalignment(np.clip(data, 0, None), img.affine, reference)
        shift, turn = found["shift_mm"], found["rotation_deg"]
        if (max_shift_mm is not None and not shift < max_shift_mm) or \
                (max_rotation_deg is not None and not turn < max_rotation_deg):
            raise ValueError(
                f"{path}: not aligned with the MNI template: shifted {shift:.1f} mm "
                f"(x, y, z {', '.join(f'{v:+.1f}' for v in found['shift_xyz_mm'])}) and "
                f"rotated {turn:.1f} degrees (about x, y, z "
                f"{', '.join(f'{v:+.1f}' for v in found['rotation_xyz_deg'])}); expected "
                f"under {max_shift_mm} mm and {max_rotation_deg} degrees. Register it to the "
                "ICBM/MNI template first.")
        if details is not None:
            details.update(found)
            check = reference.to_check_grid(np.clip(data, 0, None), img.affine)
            details["check_volume"] = normalize_intensity(check, reference.check.brain_mask)
    return normalize_intensity(np.where(volume > 0, volume, 0.0), atlas.brain_mask)


def check_not_mirrored(check_volumes, paths, *, min_score=0.0):
    """Raises ValueError when a scan's left-right asymmetry is the mirror of the cohort's.

    Args:
        check_volumes: list of N arrays on the check grid (`load_volume(details=...)`).
        paths: list of N paths, named in the error.
        min_score: float, default 0. Lowest accepted `bar_ad.alignment.mirror_scores`.

    Returns:
        float array [N] of the scores (empty when N < 3: nothing to compare with).
    """
    if len(check_volumes) < 3:
        return np.zeros(0)
    scores = alignment.mirror_scores(np.stack(check_volumes))
    bad = np.flatnonzero(scores < min_score)
    if len(bad):
        worst = int(bad[np.argmin(scores[bad])])
        more = f" ({len(bad) - 1} more scan(s) likewise)" if len(bad) > 1 else ""
        raise ValueError(
            f"{paths[worst]}: looks left-right flipped: its left-right asymmetry correlates "
            f"{scores[worst]:+.2f} with the other scans' (expected >= {min_score:+.2f}){more}; "
            "check the orientation in its NIfTI header (qform/sform)")
    return scores


def load_adni(root, atlas: Atlas, *, csv_path=None, groups=("CN", "AD"), min_alignment=0.9,
              max_shift_mm=alignment.MAX_SHIFT_MM,
              max_rotation_deg=alignment.MAX_ROTATION_DEG, check_mirror=True,
              group_map="skip", progress=None) -> dict:
    """Loads an ADNI collection for AD-vs-CN classification.

    Args:
        root: str or Path. Folder holding `ADNI/` (and the CSV unless `csv_path`).
        atlas: `Atlas` defining the working grid.
        csv_path: str or Path, optional. The collection CSV; default: the only `*.csv`
            in `root`.
        groups: tuple, default ("CN", "AD"). Groups kept, in label order (index = label).
        min_alignment, max_shift_mm, max_rotation_deg: float. See `load_volume`.
        check_mirror: bool, default True. Refuse a scan whose left-right asymmetry is
            the mirror of the other scans' (`check_not_mirrored`; needs 3 scans).
        group_map: str, default "skip". See `read_collection`.
        progress: callable wrapping an iterable, optional.

    Returns:
        dict(x float32 [N, D, H, W, 1], y int32 [N] (index in `groups`), subjects str [N],
        image_ids str [N], ages float32 [N], paths list, groups tuple, skipped and mapped
        (row counts of `read_collection`), misalignment (per scan: shift_mm,
        rotation_deg, mirror_score)).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ADNI folder not found: {root} (expected ADNI/ and the "
                                "collection CSV)")
    if csv_path is None:
        candidates = sorted(root.glob("*.csv"))
        if len(candidates) != 1:
            raise FileNotFoundError(f"Expected one collection CSV in {root}, found "
                                    f"{[c.name for c in candidates]}; pass csv_path")
        csv_path = candidates[0]
    collection = read_collection(csv_path, group_map=group_map)
    rows = [r for r in collection["rows"] if r["Group"] in groups]
    if not rows:
        raise ValueError(f"{csv_path}: no rows of groups {groups}")
    absent = [g for g in groups if not any(r["Group"] == g for r in rows)]
    if absent:
        present = sorted({r["Group"] for r in rows})
        raise ValueError(f"{csv_path}: column 'Group' holds no row of {absent} (only {present}); expected "
                         f"rows of every group {groups}: a classifier needs both classes")
    iterator = progress(rows) if progress is not None else rows
    volumes, paths, found, seen = [], [], [], {}
    for row in iterator:
        path = find_scan_file(root, row["Subject"], row["Image Data ID"])
        if path in seen:
            raise ValueError(f"{csv_path}: Image Data IDs {seen[path]!r} and "
                             f"{row['Image Data ID']!r} both resolve to {path}; expected each "
                             "image once")
        seen[path] = row["Image Data ID"]
        details = {}
        volumes.append(load_volume(path, atlas, min_alignment=min_alignment,
                                   max_shift_mm=max_shift_mm, max_rotation_deg=max_rotation_deg,
                                   details=details))
        paths.append(path)
        found.append(details)
    mirror = np.full(len(rows), np.nan)
    if check_mirror and all("check_volume" in d for d in found):
        scores = check_not_mirrored([d["check_volume"] for d in found], paths)
        if len(scores):
            mirror = scores
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
        skipped=collection["skipped"], mapped=collection["mapped"],
        misalignment=dict(shift_mm=[d.get("shift_mm", float("nan")) for d in found],
                          rotation_deg=[d.get("rotation_deg", float("nan")) for d in found],
                          mirror_score=[float(v) for v in mirror]),
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


def draw_splits(subjects, labels, *, n_test_subjects, n_draws, draw_subjects, seed=0):
    """A fixed subject-level test set and independent training draws from the rest.

    The powered study's design: `n_test_subjects` subjects (stratified by label) are held
    out once; each of `n_draws` training sets is `draw_subjects` subjects drawn without
    replacement from the remaining pool, stratified by the pool's class shares, each draw
    from its own seed.

    Args:
        subjects: array [N] of subject ids (one per scan).
        labels: array [N] of int labels.
        n_test_subjects, n_draws, draw_subjects: int.
        seed: int.

    Returns:
        (list of (train_indices, test_indices) over scans, one per draw, pool indices)

    Raises:
        ValueError: the cohort is too small for the test set plus one draw.
    """
    subjects = np.asarray(subjects)
    labels = np.asarray(labels)
    uniq, first = np.unique(subjects, return_index=True)
    sub_label = labels[first]
    if n_test_subjects + draw_subjects > len(uniq):
        raise ValueError(f"the cohort has {len(uniq)} subjects; the draws design needs "
                         f"n_test_subjects + draw_subjects = {n_test_subjects + draw_subjects}")

    def stratified(pool, n, rng):
        picked = []
        shares = np.array([np.mean(sub_label[pool] == c) for c in (0, 1)])
        counts = np.round(shares * n).astype(int)
        counts[1] = n - counts[0]
        for c, k in zip((0, 1), counts):
            members = pool[sub_label[pool] == c]
            picked.extend(rng.choice(members, size=min(k, len(members)), replace=False).tolist())
        return np.sort(np.array(picked, int))

    everyone = np.arange(len(uniq))
    test_sub = stratified(everyone, n_test_subjects, np.random.default_rng([seed, 7919]))
    pool_sub = np.setdiff1d(everyone, test_sub)
    test_idx = np.flatnonzero(np.isin(subjects, uniq[test_sub]))
    pool_idx = np.flatnonzero(np.isin(subjects, uniq[pool_sub]))
    splits = []
    for k in range(n_draws):
        draw = stratified(pool_sub, draw_subjects, np.random.default_rng([seed, 104729, k]))
        splits.append((np.flatnonzero(np.isin(subjects, uniq[draw])), test_idx))
    return splits, pool_idx
