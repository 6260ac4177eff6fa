"""Synthetic short-axis cardiac MRI cross-sections of the thesis (section 3.1).

Each image shows the right ventricle (RV) and left ventricle (LV) as two filled
annuli side by side (RV on the image's left, touching the LV), a band of
subcutaneous fat along the top edge and, in experiment 2, a 10 x 10 marker square
in the bottom-right corner of male images. The figures are those of the thesis'
released generator (`make_mri_and_seg_mask`):

* image 105 x 135 (height x width), uint8;
* classes NOR, RV (arrhythmogenic RV; subtypes "fatty" and "fatty-fibro", 10 % of
  RV cases with fat in the LV wall too), HCM, DCM; balanced;
* proportion male: NOR 0.5, RV 2.7/3.7, HCM 0.6, DCM 0.5;
* chamber radii and wall thicknesses as fractions of 17, scaled by
  25 x size multiplier; each measure `v` becomes `v + N(v, 0.02 v)` as in the
  released code, i.e. about twice the nominal figure;
* size multiplier N(1.3, 0.15) male, N(1.0, 0.15) female (experiment 1), 1 for
  everyone (experiment 2);
* body fat % N(26, 7.9) male, N(36.4, 9.7) female, +2 for DCM (experiment 1);
  N(31, 9), DCM N(33, 9) (experiment 2). Fat band 4 px deep,
  `body_fat * size_multiplier / 80 * 70` px long; heart-to-skin distance
  10 x size multiplier (experiment 1) or 18 x size multiplier (experiment 2);
* intensities (x 255): fat 0.9, cavity 0.8, myocardium 0.2, marker 1.0, each with
  N(0, 2) texture; fatty myocardium uniform between the myocardium intensity and
  `myocardium + fat_fraction * (fat - myocardium)`;
* mask codes: LV cavity 1, RV cavity 2, LV myocardium 3, RV myocardium 4, fat 5,
  marker 6; the heart is codes 1-4.

Where the thesis and its released code leave the layout open (where the chambers
sit, the background value) this module chooses: both ventricles' centres on one
row, the pair centred horizontally, its top `heart_to_skin` pixels below the top
edge (the skin), background 0 without texture.

Everything is drawn with NumPy on coordinate grids for a whole chunk of images at
once, so 13,000 images take a few seconds.
"""

import dataclasses

import numpy as np

from shared.training.seeding import numpy_rng

HEIGHT, WIDTH = 105, 135
CLASSES = ("NOR", "RV", "HCM", "DCM")
MALE_PROPORTION = {"NOR": 0.5, "RV": 2.7 / 3.7, "HCM": 0.6, "DCM": 0.5}

# Mask codes.
LV_CAVITY, RV_CAVITY, LV_MYO, RV_MYO, FAT, MARKER = 1, 2, 3, 4, 5, 6
HEART_CODES = (LV_CAVITY, RV_CAVITY, LV_MYO, RV_MYO)

# Intensities as fractions of 255.
INTENSITY = {"fat": 0.9, "cavity": 0.8, "myocardium": 0.2, "marker": 1.0}
TEXTURE_SD = 2.0

# NOR measures as fractions of the reference length 17.
REFERENCE_LENGTH = 17.0
SCALE = 25.0
NOR_MEASURES = {"rv_radius": 2.5, "rv_wall": 1.0, "lv_radius": 3.5, "lv_wall": 1.5}
VARIABILITY = 0.02
FAT_BAND_DEPTH = 4
MARKER_SIZE = 10

MEASURE_KEYS = ("rv_radius", "rv_wall", "lv_radius", "lv_wall")


@dataclasses.dataclass
class SyntheticMRI:
    """A batch of synthetic images with masks and per-image metadata.

    Attributes:
        images: uint8 [N, 105, 135].
        masks: uint8 [N, 105, 135], codes 0-6 (see module docstring).
        labels: int64 [N], index into `CLASSES`.
        meta: dict of 1-D arrays of length N: "sex" ("M"/"F"), "male" (bool),
            "subtype" ("", "fatty", "fatty-fibro"), "fatty_lv" (bool),
            "size_multiplier", "body_fat", "rv_radius", "rv_wall", "lv_radius",
            "lv_wall" (pixels, after scaling and variability), "rv_fat_fraction",
            "lv_fat_fraction", "heart_to_skin", "fat_band_length" (pixels).
        experiment: int, 1 or 2.
    """

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    meta: dict
    experiment: int

    def __len__(self):
        return int(self.labels.shape[0])

    @property
    def heart_masks(self) -> np.ndarray:
        """Binary uint8 [N, H, W]: 1 where the mask code is 1-4 (the heart)."""
        return ((self.masks >= 1) & (self.masks <= 4)).astype(np.uint8)

    @property
    def marker_masks(self) -> np.ndarray:
        """Binary uint8 [N, H, W]: 1 on the sex marker (experiment 2, male images)."""
        return (self.masks == MARKER).astype(np.uint8)

    @property
    def class_names(self) -> np.ndarray:
        return np.asarray(CLASSES)[self.labels]

    def subset(self, index) -> "SyntheticMRI":
        index = np.asarray(index)
        return SyntheticMRI(self.images[index], self.masks[index], self.labels[index],
                            {k: v[index] for k, v in self.meta.items()}, self.experiment)


def _check_experiment(experiment):
    if experiment not in (1, 2):
        raise ValueError(f"experiment must be 1 or 2. Received: experiment={experiment!r}")


def sample_parameters(n: int, *, experiment: int, rng) -> tuple:
    """Draws class, sex, size, body fat and heart measures for `n` images.

    Classes are balanced (`n // 4` each, the remainder to the first classes) and
    shuffled.

    Args:
        n: int. Number of images.
        experiment: int, 1 or 2.
        rng: numpy Generator (or int seed).

    Returns:
        (labels [n], meta dict of arrays).
    """
    _check_experiment(experiment)
    if n <= 0:
        raise ValueError(f"n must be positive. Received: n={n}")
    rng = numpy_rng(rng)
    labels = rng.permutation(np.arange(n) % len(CLASSES)).astype(np.int64)
    names = np.asarray(CLASSES)[labels]
    p_male = np.array([MALE_PROPORTION[c] for c in CLASSES])[labels]
    male = rng.random(n) < p_male

    if experiment == 1:
        size = np.where(male, rng.normal(1.3, 0.15, n), rng.normal(1.0, 0.15, n))
        fat = np.where(male, rng.normal(26.0, 7.9, n), rng.normal(36.4, 9.7, n))
        fat = fat + 2.0 * (names == "DCM")
        skin = 10.0 * size
    else:
        size = np.ones(n)
        fat = np.where(names == "DCM", rng.normal(33.0, 9.0, n), rng.normal(31.0, 9.0, n))
        skin = 18.0 * size
    fat = np.clip(fat, 0.0, None)

    is_rv = names == "RV"
    fatty_fibro = is_rv & (rng.random(n) < 0.5)
    subtype = np.where(is_rv, np.where(fatty_fibro, "fatty-fibro", "fatty"), "")
    fatty_lv = is_rv & (rng.random(n) < 0.1)

    # Class factors on the NOR measures (facts of the released generator).
    f = {k: np.ones(n) for k in MEASURE_KEYS}
    dcm = names == "DCM"
    f["rv_wall"][dcm], f["rv_radius"][dcm] = 0.9, 1.2
    f["lv_wall"][dcm], f["lv_radius"][dcm] = 0.8, 1.8
    hcm = names == "HCM"
    f["rv_radius"][hcm] = np.where(rng.random(n)[hcm] < 0.84, 1.0, 1.2)
    f["lv_wall"][hcm], f["lv_radius"][hcm] = 2.2, 0.4
    f["rv_radius"][is_rv] = 1.5
    f["lv_wall"][fatty_fibro] = 0.9
    f["lv_radius"][fatty_fibro] = np.where(rng.random(n)[fatty_fibro] < 0.9, 1.0, 1.2)

    rv_fat = np.zeros(n)
    rv_fat[is_rv & ~fatty_fibro] = rng.uniform(0.7, 0.9, n)[is_rv & ~fatty_fibro]
    rv_fat[fatty_fibro] = rng.uniform(0.3, 0.8, n)[fatty_fibro]
    lv_fat = np.where(fatty_lv, rng.uniform(0.0, 0.4, n), 0.0)

    meta = {
        "sex": np.where(male, "M", "F"),
        "male": male,
        "subtype": subtype.astype("<U11"),
        "fatty_lv": fatty_lv,
        "size_multiplier": size,
        "body_fat": fat,
        "rv_fat_fraction": rv_fat,
        "lv_fat_fraction": lv_fat,
        "heart_to_skin": skin,
        "fat_band_length": fat * size / 80.0 * 70.0,
    }
    for key in MEASURE_KEYS:
        value = NOR_MEASURES[key] * f[key] / REFERENCE_LENGTH * SCALE * size
        # The released code adds a N(value, 0.02 value) draw to the value itself.
        meta[key] = value + rng.normal(value, VARIABILITY * value)
    return labels, meta


def render(meta: dict, *, experiment: int, rng, height: int = HEIGHT, width: int = WIDTH) -> tuple:
    """Draws images and masks for the parameters from `sample_parameters`.

    Args:
        meta: dict of arrays (see `SyntheticMRI.meta`).
        experiment: int, 1 or 2 (2 adds the marker square on male images).
        rng: numpy Generator (or int seed) for texture noise and fatty walls.
        height, width: ints, default 105 x 135. Image size.

    Returns:
        (images uint8 [n, height, width], masks uint8 [n, height, width]).
    """
    _check_experiment(experiment)
    rng = numpy_rng(rng)
    n = len(meta["size_multiplier"])
    col = lambda a: np.asarray(a, dtype=np.float32)[:, None, None]  # noqa: E731
    rv_r, rv_w = col(meta["rv_radius"]), col(meta["rv_wall"])
    lv_r, lv_w = col(meta["lv_radius"]), col(meta["lv_wall"])
    rv_outer, lv_outer = rv_r + rv_w, lv_r + lv_w
    heart_width = 2.0 * (rv_outer + lv_outer)
    left = (width - heart_width) / 2.0
    cx_rv = left + rv_outer
    cx_lv = left + 2.0 * rv_outer + lv_outer
    cy = col(meta["heart_to_skin"]) + lv_outer

    yy = np.arange(height, dtype=np.float32)[None, :, None] + 0.5
    xx = np.arange(width, dtype=np.float32)[None, None, :] + 0.5
    # Squared distances to the ventricles' centres (no square roots needed).
    dy2 = (yy - cy) ** 2
    d_lv = dy2 + (xx - cx_lv) ** 2
    d_rv = dy2 + (xx - cx_rv) ** 2

    masks = np.zeros((n, height, width), dtype=np.uint8)
    band_half = col(meta["fat_band_length"]) / 2.0
    band = (yy < FAT_BAND_DEPTH) & (np.abs(xx - width / 2.0) <= band_half)
    masks[band] = FAT
    # Later assignments win: RV before LV so that the LV stays whole where they touch.
    masks[d_rv <= rv_outer ** 2] = RV_MYO
    masks[d_rv <= rv_r ** 2] = RV_CAVITY
    masks[d_lv <= lv_outer ** 2] = LV_MYO
    masks[d_lv <= lv_r ** 2] = LV_CAVITY
    if experiment == 2:
        male = np.asarray(meta["male"], dtype=bool)
        masks[male, height - MARKER_SIZE:, width - MARKER_SIZE:] = MARKER

    # Intensity per mask code, then the fatty walls on top.
    lut = np.zeros(256, dtype=np.float32)
    lut[FAT], lut[MARKER] = INTENSITY["fat"], INTENSITY["marker"]
    lut[LV_CAVITY] = lut[RV_CAVITY] = INTENSITY["cavity"]
    lut[LV_MYO] = lut[RV_MYO] = INTENSITY["myocardium"]
    base = lut[masks]
    myo, fat_i = INTENSITY["myocardium"], INTENSITY["fat"]
    uniform = rng.random(masks.shape, dtype=np.float32)
    for code, key in ((RV_MYO, "rv_fat_fraction"), (LV_MYO, "lv_fat_fraction")):
        span = (np.asarray(meta[key], dtype=np.float32) * (fat_i - myo))[:, None, None]
        wall = masks == code
        base[wall] += (uniform * span)[wall]
    noisy = base * 255.0 + rng.standard_normal(masks.shape, dtype=np.float32) * TEXTURE_SD
    np.rint(noisy, out=noisy)
    np.clip(noisy, 0, 255, out=noisy)
    noisy[masks == 0] = 0.0
    return noisy.astype(np.uint8), masks


def generate(n: int, *, experiment: int, seed, chunk_size: int = 256) -> SyntheticMRI:
    """Generates `n` synthetic cardiac MRI cross-sections with masks and metadata.

    Args:
        n: int. Number of images.
        experiment: int, 1 (sex-dependent anatomy) or 2 (sex-independent anatomy
            plus the marker square on male images).
        seed: int or numpy Generator. The same seed gives the same images.
        chunk_size: int, default 256. Images drawn at once (about 15 MB per
            temporary array; small chunks stay in cache: 13,000 images take about
            6 s of CPU).

    Returns:
        A `SyntheticMRI`.
    """
    rng = numpy_rng(seed)
    labels, meta = sample_parameters(n, experiment=experiment, rng=rng)
    images = np.empty((n, HEIGHT, WIDTH), dtype=np.uint8)
    masks = np.empty((n, HEIGHT, WIDTH), dtype=np.uint8)
    for start in range(0, n, chunk_size):
        part = slice(start, min(n, start + chunk_size))
        images[part], masks[part] = render({k: v[part] for k, v in meta.items()},
                                           experiment=experiment, rng=rng)
    return SyntheticMRI(images, masks, labels, meta, experiment)
