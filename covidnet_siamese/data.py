"""COVIDx loading and the paper's preprocessing (Section 3.1).

COVIDx layout: split text files with one image per line, space separated
`patient_id filename class source` (the first COVIDx release used three columns,
`id filename label`), and the images in `<root>/train/` and `<root>/test/`. Classes are
`normal`, `pneumonia` and `COVID-19` (`CLASS_NAMES` order: 0, 1, 2).

Preprocessing, exactly as the paper's Section 3.1:

1. convert to grey scale,
2. resize to 224 x 224 with OpenCV's INTER_AREA interpolation,
3. divide by 255,
4. subtract the training set's global mean and divide by its global standard deviation.

The synthetic generator lives in `covidnet_siamese.phantom` and writes this layout.
"""

import dataclasses
import logging
from pathlib import Path

import cv2
import numpy as np

from covidnet_siamese.config import CLASS_NAMES
from covidnet_siamese.phantom import MASK_ARTEFACT, MASK_LUNG, SPLIT_FILES, generate_covidx  # noqa: F401
from shared.inputs import resolve_inside
from shared.io.images import MIN_IMAGE_SIDE, read_grayscale  # noqa: F401 (re-exported)
from shared.training.seeding import numpy_rng

log = logging.getLogger(__name__)

# Spellings met in COVIDx releases, mapped to the class names above.
CLASS_ALIASES = {"normal": "normal", "pneumonia": "pneumonia", "covid-19": "COVID-19", "covid19": "COVID-19"}


@dataclasses.dataclass
class SplitEntry:
    """One line of a COVIDx split file."""

    line: int
    patient_id: str
    filename: str
    label: int
    source: str


@dataclasses.dataclass
class LoadedSplit:
    """Images of one split, preprocessed up to step 3 (not yet standardised).

    Attributes:
        images: float32 [N, S, S, 1] in [0, 1].
        labels: int64 [N].
        entries: the split file lines the images came from.
        skipped: (split file line, image path, reason) of every skipped line.
    """

    images: np.ndarray
    labels: np.ndarray
    entries: list
    skipped: list


def parse_split_file(path, *, on_error="raise"):
    """Reads a COVIDx split file (4-column or the old 3-column form).

    Args:
        path: str or Path. The split file.
        on_error: "raise" (default) or "skip". With "skip", bad lines are left out
            and reported in the second return value.

    Returns:
        (entries, skipped): list of `SplitEntry`, list of (line number, text, reason).

    Raises:
        FileNotFoundError: the split file does not exist.
        ValueError: a line has the wrong number of columns or an unknown class
            (message names the file and line), when `on_error="raise"`.
    """
    path = Path(path)
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip'. Received: on_error={on_error!r}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: COVIDx split file not found; expected lines "
                                f"'patient_id filename class source'")
    try:
        # utf-8-sig: a byte-order mark written by some editors is not part of the first id.
        lines = path.read_bytes().decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: split file must be UTF-8 text; byte {err.start} is not") from None
    entries, skipped, seen = [], [], {}
    for number, text in enumerate(lines, start=1):
        fields = text.split()
        if not fields:
            continue
        problem = None
        if len(fields) == 4:
            patient_id, filename, cls, source = fields
        elif len(fields) == 3:
            patient_id, filename, cls = fields
            source = ""
        else:
            problem = (f"expected 4 columns 'patient_id filename class source' "
                       f"(or 3: 'id filename label'), found {len(fields)}")
        if problem is None:
            name = CLASS_ALIASES.get(cls.lower())
            if name is None:
                problem = f"field 'class': unknown class {cls!r}; expected one of {list(CLASS_NAMES)}"
            elif filename in seen:
                problem = f"field 'filename': {filename!r} is listed twice (first on line {seen[filename]})"
        if problem is not None:
            if on_error == "raise":
                raise ValueError(f"{path}, line {number}: {problem}")
            skipped.append((number, text, problem))
            continue
        seen[filename] = number
        entries.append(SplitEntry(number, patient_id, filename, CLASS_NAMES.index(name), source))
    return entries, skipped


def crop_border(image: np.ndarray, fraction: float) -> np.ndarray:
    """Cuts `fraction` of the height and width off each side (the cropping experiment)."""
    if fraction <= 0:
        return image
    h, w = image.shape[:2]
    dy, dx = int(round(h * fraction)), int(round(w * fraction))
    return image[dy:h - dy, dx:w - dx]


def preprocess_image(image: np.ndarray, size: int, *, crop_fraction: float = 0.0) -> np.ndarray:
    """Steps 2 (and the optional border crop before it): INTER_AREA resize to size x size.

    Args:
        image: float32 [H, W] grey image in [0, 1].
        size: int. Output side (224 in the paper).
        crop_fraction: float, default 0. Border share cut from each side first.
    """
    image = crop_border(image, crop_fraction)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def load_split(root, split, *, size, split_file=None, crop_fraction=0.0, on_error="raise",
               min_side=MIN_IMAGE_SIDE):
    """Loads one COVIDx split: grey scale, INTER_AREA resize, /255 (steps 1-3).

    Args:
        root: str or Path. Dataset folder holding `train/`, `test/` and the split files.
        split: "train" or "test" (the image folder).
        size: int. Output side in pixels.
        split_file: str or Path, optional. Default `<root>/train_split.txt` or
            `<root>/test_split.txt`.
        crop_fraction: float, default 0. Border share cut from each side before resizing.
        on_error: "raise" (default) or "skip": bad lines, missing or unreadable images
            are then left out and listed in `LoadedSplit.skipped` (and logged).
        min_side: int, default `MIN_IMAGE_SIDE`. Smallest accepted image side.

    Returns:
        `LoadedSplit`.

    Raises:
        FileNotFoundError / ValueError naming the split file line and the image file.
        A file name that leads out of `<root>/<split>/` (an absolute path, `..`, a link
        pointing elsewhere) is refused even with `on_error="skip"`: it would silently
        mix images of another split (or of anywhere on disk) into this one.
    """
    root = Path(root)
    split_file = Path(split_file) if split_file is not None else root / SPLIT_FILES[split]
    entries, skipped = parse_split_file(split_file, on_error=on_error)
    images, kept = [], []
    for entry in entries:
        path = resolve_inside(root / split, entry.filename, where=f"{split_file}, line {entry.line}")
        try:
            image = read_grayscale(path, min_side=min_side)
        except (FileNotFoundError, ValueError) as err:
            message = f"{split_file}, line {entry.line}: {err}"
            if on_error == "raise":
                raise type(err)(message) from None
            skipped.append((entry.line, str(path), str(err)))
            continue
        images.append(preprocess_image(image, size, crop_fraction=crop_fraction))
        kept.append(entry)
    if skipped:
        log.warning("%s: skipped %d line(s): %s", split_file, len(skipped),
                    "; ".join(f"line {n}: {why}" for n, _, why in skipped[:5]))
    array = np.stack(images)[..., None].astype(np.float32) if images else np.zeros((0, size, size, 1), np.float32)
    labels = np.asarray([e.label for e in kept], np.int64)
    return LoadedSplit(array, labels, kept, skipped)


def load_masks(root, split, entries, *, size, crop_fraction=0.0):
    """Ground-truth masks of the synthetic data (`masks/<split>/<filename>`), resized
    with nearest neighbours; returns (lung [N, S, S] bool, artefact [N, S, S] bool)."""
    root = Path(root)
    lungs, arts = [], []
    for entry in entries:
        path = root / "masks" / split / entry.filename
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if mask is None:
            raise FileNotFoundError(f"mask file not found or unreadable: {path}")
        mask = cv2.resize(crop_border(mask, crop_fraction), (size, size), interpolation=cv2.INTER_NEAREST)
        lungs.append(mask == MASK_LUNG)
        arts.append(mask == MASK_ARTEFACT)
    return np.asarray(lungs, bool), np.asarray(arts, bool)


def border_mask(size: int, fraction: float) -> np.ndarray:
    """A [size, size] float mask: 1 on the outer band `fraction` wide on each side."""
    mask = np.ones((size, size), np.float32)
    d = int(round(size * fraction))
    if d > 0:
        mask[d:size - d, d:size - d] = 0.0
    else:
        mask[:] = 0.0
    return mask


def split_validation(labels, fraction, *, seed, val_counts=None):
    """Draws `fraction` of each class out of the training split (Section 3.1).

    Args:
        labels: int array [N].
        fraction: float. Share of each class drawn (rounded per class).
        seed: int. Seed of the draw.
        val_counts: optional (normal, pneumonia, COVID-19) exact numbers to draw
            instead (the paper's 1593 / 1090 / 44; rounding 20 % of 223 gives 45).

    Returns:
        (train_indices, val_indices), both sorted.
    """
    rng = numpy_rng(seed)
    labels = np.asarray(labels)
    val = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n_val = int(round(len(idx) * fraction)) if val_counts is None else int(val_counts[c])
        if n_val >= len(idx):
            raise ValueError(f"validation draw: class {CLASS_NAMES[c]!r} has {len(idx)} training image(s), "
                             f"cannot hold {n_val} out for validation")
        val.append(rng.choice(idx, size=n_val, replace=False))
    val = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    train = np.setdiff1d(np.arange(len(labels)), val)
    return train, val


def standardize(images, mean, std):
    """Step 4: (x - mean) / std with the training set's global statistics."""
    if not np.isfinite(mean) or not np.isfinite(std) or std <= 0:
        raise ValueError(f"the training set's mean and standard deviation must be finite and the "
                         f"deviation positive. Received: mean={mean}, std={std}")
    return ((images - mean) / std).astype(np.float32)


@dataclasses.dataclass
class CovidxData:
    """Train / validation / test arrays after all four preprocessing steps."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: float
    std: float
    test_entries: list
    skipped: list
    val_entries: list = dataclasses.field(default_factory=list)


def load_covidx(root, *, size, val_fraction=0.2, seed=0, crop_fraction=0.0, on_error="raise",
                train_split_file=None, test_split_file=None, val_counts=None, min_side=MIN_IMAGE_SIDE,
                min_test_per_class=1):
    """Loads COVIDx, draws the validation set and standardises with training statistics.

    Args:
        root: str or Path. Dataset folder.
        size: int. Image side after resizing (224 in the paper).
        val_fraction: float, default 0.2. Share of each class moved from train to validation.
        seed: int. Seed of the validation draw.
        crop_fraction: float, default 0. Border share cut before resizing.
        on_error: "raise" or "skip" (see `load_split`).
        train_split_file / test_split_file: optional explicit split files.
        val_counts: optional exact validation counts per class (see `split_validation`);
            used only when the training split holds more images of every class.
        min_side: int, default `MIN_IMAGE_SIDE`. Smallest accepted image side.
        min_test_per_class: int, default 1. Images of every class the test split must
            hold: the per-class accuracy (COVID-19 recall) of a class with none is
            undefined, which would only show after every model has trained.

    Returns:
        `CovidxData`.

    Raises:
        FileNotFoundError / ValueError naming the split file (and line): see
        `load_split`; too few training images of a class; too few test images of a
        class.
    """
    train = load_split(root, "train", size=size, split_file=train_split_file,
                       crop_fraction=crop_fraction, on_error=on_error, min_side=min_side)
    test = load_split(root, "test", size=size, split_file=test_split_file,
                      crop_fraction=crop_fraction, on_error=on_error, min_side=min_side)
    train_file = Path(train_split_file) if train_split_file is not None else Path(root) / SPLIT_FILES["train"]
    test_file = Path(test_split_file) if test_split_file is not None else Path(root) / SPLIT_FILES["test"]
    for loaded, split_file in ((train, train_file), (test, test_file)):
        if len(loaded.labels) == 0:
            raise ValueError(f"{split_file}: no images could be loaded (empty split file or every line "
                             f"skipped); expected at least one line 'patient_id filename class source'")
    present = np.bincount(train.labels, minlength=len(CLASS_NAMES))
    if np.any(present < 2):
        missing = [CLASS_NAMES[c] for c in range(len(CLASS_NAMES)) if present[c] < 2]
        raise ValueError(f"{train_file}: field 'class' needs at least 2 training images of every class; "
                         f"too few of {missing}")
    in_test = np.bincount(test.labels, minlength=len(CLASS_NAMES))
    if np.any(in_test < min_test_per_class):
        missing = {CLASS_NAMES[c]: int(in_test[c]) for c in range(len(CLASS_NAMES)) if in_test[c] < min_test_per_class}
        raise ValueError(f"{test_file}: field 'class' needs at least {min_test_per_class} test image(s) of every "
                         f"class (per-class accuracy and COVID-19 recall are undefined without); found {missing}")
    if val_counts is not None and np.any(present <= np.asarray(val_counts)):
        log.warning("training split too small for the validation counts %s; drawing %.0f %% per class",
                    tuple(val_counts), 100 * val_fraction)
        val_counts = None
    tr, va = split_validation(train.labels, val_fraction, seed=seed, val_counts=val_counts)
    x_train = train.images[tr]
    mean = float(x_train.mean(dtype=np.float64))
    std = float(x_train.std(dtype=np.float64))
    return CovidxData(
        x_train=standardize(x_train, mean, std), y_train=train.labels[tr],
        x_val=standardize(train.images[va], mean, std), y_val=train.labels[va],
        x_test=standardize(test.images, mean, std), y_test=test.labels,
        mean=mean, std=std, test_entries=test.entries, skipped=train.skipped + test.skipped,
        val_entries=[train.entries[i] for i in va])
