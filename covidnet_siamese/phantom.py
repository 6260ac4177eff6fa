"""Synthetic chest X-rays written in the COVIDx on-disk layout.

Each image is a frontal (PA/AP) chest radiograph drawn from a few analytic shapes:
the thorax, two lung fields (dark: air attenuates little), the heart and spine
(bright), posterior ribs and clavicles, smooth lung markings and film noise. Classes:

- normal: no opacity.
- pneumonia: lobar consolidation, a dense, fairly homogeneous opacity filling part of
  one lobe of one lung, bounded by the lung edge.
- COVID-19: bilateral ground-glass opacity, hazy and patchy, weighted to the
  periphery and the lower zones of both lungs.

How much the classes overlap is set by `config.Difficulty`, declared before any arm
is compared: pneumonia may be bilateral and drawn with COVID-19's patchy texture,
COVID-19 may be unilateral or dense, opacity strength varies within a class.

Border artefacts (corner text tags, side letters, ECG electrodes with wires) appear
with class-dependent rates (`ARTEFACT_RATES`), so a network can learn the shortcut
the paper found with Grad-CAM (its Figure 8); `artefact_strength` scales how much the
rates differ between classes (0: the same for every class).

The generator is vectorised over batches of images with NumPy; only the text and
devices are drawn per image with OpenCV. It writes PNGs into `<root>/train/` and
`<root>/test/`, split files `train_split.txt` / `test_split.txt` with the COVIDx
columns `patient_id filename class source`, and (not part of COVIDx) ground-truth
masks `<root>/masks/<split>/<filename>` with 1 = lung and 2 = artefact, used to
score where the Grad-CAM maps lie.
"""

import logging
from pathlib import Path

import cv2
import numpy as np

from covidnet_siamese.config import CLASS_NAMES, Difficulty
from shared.io.atomic import write_text
from shared.training.seeding import numpy_rng

log = logging.getLogger(__name__)

MASK_LUNG = 1
MASK_ARTEFACT = 2

# Probability of each artefact per class (normal, pneumonia, COVID-19) at
# artefact_strength 1. COVID-19 films were often portable AP films with a corner tag
# and monitoring devices; the side letter carries no class information.
ARTEFACT_RATES = {
    "tag": (0.05, 0.15, 0.85),
    "letter": (0.6, 0.6, 0.6),
    "device": (0.1, 0.45, 0.5),
}

SPLIT_FILES = {"train": "train_split.txt", "test": "test_split.txt"}


def _smooth_noise(rng, n, size, cells):
    """Smooth random fields in [0, 1]: low-resolution noise upsampled bicubically."""
    coarse = rng.random((n, cells, cells)).astype(np.float32)
    out = np.empty((n, size, size), np.float32)
    for i in range(n):
        out[i] = cv2.resize(coarse[i], (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(out, 0.0, 1.0)


def _col(values):
    return np.asarray(values, np.float32)[:, None, None]


def _soft(x, width):
    """A soft step from 0 (x << 0) to 1 (x >> 0)."""
    return 1.0 / (1.0 + np.exp(np.clip(-x / width, -30.0, 30.0)))


def draw_chest_xrays(labels, *, size, rng, difficulty=None, artefact_strength=None):
    """Draws a batch of synthetic chest X-rays.

    Args:
        labels: int array [N]. Class per image (indices into `CLASS_NAMES`).
        size: int. Side of the square images in pixels.
        rng: np.random.Generator or int seed.
        difficulty: `config.Difficulty`, default `Difficulty()`. Class overlap,
            within-class heterogeneity and artefact-class co-occurrence.
        artefact_strength: float in [0, 1], optional. Overrides the difficulty's
            artefact strength (how strongly the artefact rates depend on the class,
            see `ARTEFACT_RATES`).

    Returns:
        (images uint8 [N, size, size], masks uint8 [N, size, size]) with mask codes
        `MASK_LUNG` and `MASK_ARTEFACT` (artefacts drawn over lungs win).
    """
    rng = numpy_rng(rng)
    difficulty = Difficulty() if difficulty is None else difficulty
    if artefact_strength is None:
        artefact_strength = difficulty.artefact_strength
    labels = np.asarray(labels, np.int64)
    if labels.ndim != 1 or np.any((labels < 0) | (labels >= len(CLASS_NAMES))):
        raise ValueError(f"labels must be a 1-D array of class indices in [0, {len(CLASS_NAMES)}). "
                         f"Received: labels={labels!r}")
    if not 0.0 <= artefact_strength <= 1.0:
        raise ValueError(f"artefact_strength must be in [0, 1]. Received: artefact_strength={artefact_strength}")
    n = len(labels)
    if n == 0:
        return np.zeros((0, size, size), np.uint8), np.zeros((0, size, size), np.uint8)
    lin = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    yy, xx = np.meshgrid(lin, lin, indexing="ij")
    yy, xx = yy[None], xx[None]

    # Patient geometry: position, scale, slight tilt.
    cx = _col(rng.normal(0.0, 0.03, n))
    cy = _col(rng.normal(0.02, 0.03, n))
    sc = _col(rng.uniform(0.9, 1.05, n))
    tilt = _col(rng.normal(0.0, 0.04, n))
    x = (xx - cx) / sc
    y = (yy - cy) / sc + tilt * x

    thorax = _soft(1.0 - ((x / 0.86) ** 2 + ((y - 0.1) / 1.0) ** 2), 0.04)
    img = 0.06 + 0.5 * thorax * _col(rng.uniform(0.85, 1.1, n))

    # Lungs: ellipses above a domed diaphragm; the left lung (image right) is smaller.
    lungs = np.zeros((n, size, size), np.float32)
    lung_side = np.zeros((n, size, size), np.int8)  # -1 right lung (image left), +1 left lung
    lat = np.zeros((n, size, size), np.float32)  # 0 at the mediastinal edge, 1 at the lateral edge
    for side in (-1, 1):
        lx = side * _col(rng.normal(0.37, 0.02, n))
        ax = _col(rng.normal(0.25 if side < 0 else 0.23, 0.015, n))
        ay = _col(rng.normal(0.56, 0.03, n))
        ly = _col(rng.normal(-0.08, 0.03, n))
        r = ((x - lx) / ax) ** 2 + ((y - ly) / ay) ** 2
        dome = y - (ly + 0.72 * ay + 0.3 * ay * ((x - lx) / ax) ** 2)
        field = _soft(1.0 - r, 0.05) * _soft(-dome, 0.03)
        lungs = np.maximum(lungs, field)
        lung_side = np.where(field > 0.5, side, lung_side).astype(np.int8)
        lat = np.where(field > 0.5, np.clip(side * (x - lx) / ax * 0.5 + 0.5, 0, 1), lat)
    heart = _soft(1.0 - (((x - 0.1) / 0.3) ** 2 + ((y - 0.3) / 0.25) ** 2), 0.08)
    lungs = lungs * (1.0 - heart)
    lung_mask = lungs > 0.5
    img = img - 0.34 * lungs * _col(rng.uniform(0.8, 1.1, n))
    img = img + 0.08 * heart * thorax
    spine = _soft(0.06 - np.abs(x), 0.015) * thorax
    img = img + 0.12 * spine

    # Lung markings: faint smooth texture.
    img = img + 0.06 * lungs * (_smooth_noise(rng, n, size, 12) - 0.5)

    # Posterior ribs: 9 arcs per side sagging laterally, evaluated as the distance to
    # the nearest arc (O(1) per pixel); clavicles on top.
    spacing = _col(rng.normal(0.13, 0.008, n))
    top = _col(rng.normal(-0.62, 0.03, n))
    offset = y - top - 0.55 * (np.abs(x) - 0.1) ** 2
    phase = np.mod(offset, spacing)
    dist = np.minimum(phase, spacing - phase)
    rib_index = np.floor(offset / spacing + 0.5)
    ribs = np.exp(-(dist / 0.022) ** 2) * (rib_index >= 0) * (rib_index < 9) * (np.abs(x) > 0.07)
    clav = np.exp(-((y - (-0.7 + 0.18 * np.abs(x))) / 0.025) ** 2) * (np.abs(x) < 0.55)
    img = img + thorax * (0.1 * ribs + 0.1 * clav)

    # Disease.
    severity = _col(rng.uniform(*difficulty.severity_range, n))
    is_pneu = _col(labels == 1)
    is_covid = _col(labels == 2)
    patches = _smooth_noise(rng, n, size, 10)
    # Pneumonia: one lung, one lobe-sized zone (upper, middle or lower), dense; with
    # `pneumonia_bilateral` a smaller second zone in the other lung; with
    # `shared_texture` drawn patchy like ground glass instead of dense.
    side = _col(rng.choice([-1, 1], n))
    bilateral = _col(rng.random(n) < difficulty.pneumonia_bilateral)
    patchy = _col(rng.random(n) < difficulty.shared_texture)
    texture = np.where(patchy > 0, 1.6 * (0.2 + patches) * 0.6, 1.0)
    consolidation = np.zeros((n, size, size), np.float32)
    for lobe_side, scale in ((side, 1.0), (-side, 0.6)):
        zone_y = _col(rng.choice([-0.35, 0.0, 0.3], n) + rng.normal(0, 0.05, n))
        zone_x = lobe_side * _col(rng.normal(0.38, 0.04, n))
        blob = _soft(1.0 - (((x - zone_x) / (0.22 * scale)) ** 2 + ((y - zone_y) / (0.2 * scale)) ** 2)
                     + 0.4 * (_smooth_noise(rng, n, size, 6) - 0.5), 0.04)
        weight = 1.0 if scale == 1.0 else bilateral
        consolidation = np.maximum(consolidation, weight * blob * lungs * (lung_side == lobe_side))
    img = img + is_pneu * severity * 0.4 * consolidation * texture
    # COVID-19: peripheral, lower zones, patchy haze in both lungs; with
    # `covid_unilateral` in one lung only, with `covid_density` dense.
    lower = _soft(y - _col(rng.normal(0.0, 0.06, n)), 0.12)
    periphery = 0.2 + 0.8 * lat
    one_side = _col(rng.random(n) < difficulty.covid_unilateral)
    covid_side = _col(rng.choice([-1, 1], n))
    which = np.where(one_side > 0, (lung_side == covid_side).astype(np.float32), 1.0)
    ggo = lungs * lower * periphery * (0.2 + patches) * which
    dense = _col(rng.random(n) < difficulty.covid_density)
    ggo = np.where(dense > 0, np.clip(1.6 * ggo, 0.0, 1.0), ggo)
    img = img + is_covid * severity * 0.6 * ggo

    img = img + rng.normal(0.0, 0.018, (n, size, size)).astype(np.float32)
    images = np.clip(img * 255.0, 0, 255).astype(np.uint8)
    masks = np.where(lung_mask, MASK_LUNG, 0).astype(np.uint8)

    # Border artefacts.
    mix = {name: artefact_strength * np.asarray(rates) + (1 - artefact_strength) * np.mean(rates)
           for name, rates in ARTEFACT_RATES.items()}
    for i in range(n):
        art = np.zeros((size, size), np.uint8)
        c = labels[i]
        if rng.random() < mix["tag"][c]:
            _draw_tag(images[i], art, rng, size)
        if rng.random() < mix["letter"][c]:
            _draw_letter(images[i], art, rng, size)
        if rng.random() < mix["device"][c]:
            _draw_device(images[i], art, rng, size)
        masks[i][art > 0] = MASK_ARTEFACT
    return images, masks


def _draw_tag(image, art, rng, size):
    """A white box with dark text in the top-left corner."""
    h = max(3, int(round(size * rng.uniform(0.06, 0.08))))
    w = max(6, int(round(size * rng.uniform(0.24, 0.3))))
    x0 = int(round(size * rng.uniform(0.005, 0.02)))
    y0 = int(round(size * rng.uniform(0.005, 0.02)))
    cv2.rectangle(image, (x0, y0), (x0 + w, y0 + h), 235, -1)
    cv2.putText(image, str(rng.choice(["PORTABLE", "AP", "ICU", "SUPINE"])), (x0 + 1, y0 + h - 1),
                cv2.FONT_HERSHEY_PLAIN, max(0.25, h / 16.0), 40, 1)
    cv2.rectangle(art, (x0, y0), (x0 + w, y0 + h), 1, -1)


def _draw_letter(image, art, rng, size):
    """A bright side marker letter near the top-right border."""
    scale = max(0.3, size / 160.0)
    x0 = int(round(size * rng.uniform(0.86, 0.9)))
    y0 = int(round(size * rng.uniform(0.08, 0.12)))
    letter = str(rng.choice(["L", "R"]))
    cv2.putText(image, letter, (x0, y0), cv2.FONT_HERSHEY_SIMPLEX, scale, 250, max(1, size // 100))
    cv2.putText(art, letter, (x0, y0), cv2.FONT_HERSHEY_SIMPLEX, scale, 1, max(1, size // 100) + 1)


def _draw_device(image, art, rng, size):
    """ECG electrodes near the lower and side borders, with wires running off the image."""
    radius = max(2, int(round(size * 0.025)))
    for _ in range(int(rng.integers(2, 4))):
        if rng.random() < 0.5:
            cx, cy = int(size * rng.uniform(0.1, 0.9)), int(size * rng.uniform(0.92, 0.96))
            end = (cx + int(size * rng.uniform(-0.1, 0.1)), size - 1)
        else:
            left = rng.random() < 0.5
            cx = int(size * (rng.uniform(0.03, 0.07) if left else rng.uniform(0.93, 0.97)))
            cy = int(size * rng.uniform(0.4, 0.9))
            end = (0 if left else size - 1, cy + int(size * rng.uniform(-0.1, 0.1)))
        cv2.circle(image, (cx, cy), radius, 245, -1)
        cv2.circle(image, (cx, cy), max(1, radius // 2), 120, -1)
        cv2.line(image, (cx, cy), end, 230, max(1, size // 128))
        cv2.circle(art, (cx, cy), radius, 1, -1)
        cv2.line(art, (cx, cy), end, 1, max(1, size // 128) + 1)


def generate_covidx(root, *, counts, size=256, seed=0, difficulty=None, artefact_strength=None,
                    batch_size=64, write_masks=True):
    """Writes a synthetic COVIDx dataset: PNGs, split files and (optionally) masks.

    Args:
        root: str or Path. Dataset folder; created if missing.
        counts: dict with "train", "test" and optionally "val" entries, each a triple
            of images per class in `CLASS_NAMES` order. "train" and "val" are written
            together into the training split, as in COVIDx (the paper draws 20 % of the
            training split back out for validation).
        size: int, default 256. Side of the PNGs.
        seed: int. Seed of the generator.
        difficulty: `config.Difficulty`, default `Difficulty()`. See `draw_chest_xrays`.
        artefact_strength: float, optional. Overrides the difficulty's.
        batch_size: int, default 64. Images drawn per vectorised batch.
        write_masks: bool, default True. Also write `masks/<split>/<filename>`.

    Returns:
        dict split -> path of the split file written.
    """
    if seed is None:
        raise ValueError("generate_covidx needs an explicit seed. Received: seed=None")
    rng = numpy_rng(seed)
    root = Path(root)
    per_split = {
        "train": np.asarray(counts["train"]) + np.asarray(counts.get("val", (0, 0, 0))),
        "test": np.asarray(counts["test"]),
    }
    written = {}
    patient = 0
    for split, per_class in per_split.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        if write_masks:
            (root / "masks" / split).mkdir(parents=True, exist_ok=True)
        labels = np.repeat(np.arange(len(CLASS_NAMES)), per_class)
        labels = labels[rng.permutation(len(labels))]
        lines = []
        for start in range(0, len(labels), batch_size):
            chunk = labels[start:start + batch_size]
            images, masks = draw_chest_xrays(chunk, size=size, rng=rng, difficulty=difficulty,
                                             artefact_strength=artefact_strength)
            for j, label in enumerate(chunk):
                patient += 1
                fname = f"synth-{split}-{start + j:06d}.png"
                cv2.imwrite(str(root / split / fname), images[j])
                if write_masks:
                    cv2.imwrite(str(root / "masks" / split / fname), masks[j])
                lines.append(f"synth{patient:06d} {fname} {CLASS_NAMES[label]} synthetic")
        path = root / SPLIT_FILES[split]
        write_text(path, "\n".join(lines) + "\n")
        written[split] = path
        log.info("wrote %d %s images to %s", len(labels), split, root / split)
    return written
