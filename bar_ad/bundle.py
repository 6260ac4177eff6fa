"""The saved classifier of each framework and `predict` on NIfTI scans.

A run keeps, for each framework, the fine-tuned classifier of its first unit (fold
or draw; the fine-tuning epoch chosen on validation scans where the design has them,
never on the test set) as a bundle in the shared layout (`shared.io.bundle`):
`RUN_DIR/bundles/<framework>/` with `config.json`, `model.weights.h5`,
`metadata.json` and, when the run centres its inputs (`center_inputs`), the training
scans' voxel-wise mean volume `mean_volume.npy` (the standard deviation is in the
metadata).

`predict` reads each NIfTI scan as the run read its training scans
(`bar_ad.data.load_volume`: MNI placement and alignment checks, resampling onto the
atlas grid, brain intensities scaled to [0, 1] by their 99.5th percentile), centres it
with the training statistics and reports P(AD) from the sigmoid output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.io.bundle import (BUNDLES_DIR, bundle_metadata, load_bundle_array, load_bundle_model,
                              read_metadata, resolve_bundle, write_bundle)

PAPER = "bar_ad"
CLASSES = ("CN", "AD")
REFERENCE = ("Brain-Aware Replacements for supervised contrastive learning in detection of "
             "Alzheimer's disease (3D ViT, T1 MRI)")


def centering_stats(x, train_idx) -> tuple:
    """The training scans' voxel-wise mean volume [1, ...] and their overall std (>= 1e-6)."""
    ref = x[train_idx].astype(np.float32)
    mean = ref.mean(axis=0, keepdims=True)
    return mean, max(float((ref - mean).std()), 1e-6)


def framework_metadata(config, framework: str, *, run_dir, seed: int, unit, centered: bool,
                       std=None) -> dict:
    """The bundle metadata of one framework's classifier."""
    grid = int(config.grid)
    return bundle_metadata(
        paper=PAPER, name=framework,
        task="AD vs CN classification of a skull-stripped T1 MRI in MNI space",
        description=(f"3D ViT encoder + MLP head of framework '{framework}', preset {config.preset}, "
                     f"the model of unit {unit}. Outputs P(AD)."),
        inputs={"volume": {"type": "image", "format": "magnitude", "modality": "MR", "num_channels": 1,
                           "spatial_shape": [grid, grid, grid], "dtype": "float32",
                           "value_range": [0, 1] if not centered else ["-inf", "inf"],
                           "is_patch_data": False, "channel_def": {"0": "T1"}}},
        outputs={"pred": {"type": "probabilities", "format": "classification", "num_channels": 1,
                          "spatial_shape": [1], "dtype": "float32", "value_range": [0, 1],
                          "channel_def": {"0": "AD"}}},
        preprocessing={"reader": "bar_ad.data.load_volume", "grid": grid,
                       "atlas_source": config.atlas_source,
                       "intensity": "brain voxels divided by their 99.5th percentile, clipped to [0, 1]",
                       "center": bool(centered), "std": None if std is None else float(std),
                       "normalisation": ("(x - mean_volume) / std with the training scans' statistics"
                                         if centered else "none beyond the intensity scaling")},
        training={"run": str(Path(run_dir).resolve()), "seed": int(seed), "preset": config.preset,
                  "selected_by": "the first unit's model (fine-tuning epoch chosen on validation scans)",
                  "unit": str(unit)},
        data_source="the run's ADNI-layout cohort (synthetic unless --data named an ADNI folder)",
        data_type="nifti", references=[REFERENCE], extra={"classes": list(CLASSES)})


def write_framework_bundle(run_dir, framework: str, model, config, *, seed: int, unit,
                           center=None) -> Path:
    """Writes `RUN_DIR/bundles/<framework>/`; `center` is (mean volume, std) or None."""
    arrays = None if center is None else {"mean_volume": np.asarray(center[0], np.float32)[0]}
    meta = framework_metadata(config, framework, run_dir=run_dir, seed=seed, unit=unit,
                              centered=center is not None,
                              std=None if center is None else center[1])
    return write_bundle(Path(run_dir) / BUNDLES_DIR / framework, model, meta, arrays=arrays)


def predict_files(model_path, paths, *, framework=None):
    """Classifies NIfTI scans with a saved framework classifier.

    Args:
        model_path: str or Path. A bundle folder, or a run folder (with `framework`,
            or its only bundle).
        paths: NIfTI files (`.nii`, `.nii.gz`), skull-stripped, in MNI space.
        framework: str, optional.

    Returns:
        (class names, list of (path, predicted class, [P(CN), P(AD)])).
    """
    from bar_ad.atlas import load_atlas
    from bar_ad.data import load_volume

    folder = resolve_bundle(model_path, name=framework)
    meta = read_metadata(folder, paper=PAPER)
    prep = meta.get("preprocessing") or {}
    for key in ("grid", "atlas_source", "center"):
        if key not in prep:
            raise ValueError(f"{folder / 'metadata.json'}: field 'preprocessing.{key}' missing")
    atlas = load_atlas(int(prep["grid"]), source=prep["atlas_source"])
    x = np.stack([load_volume(p, atlas) for p in paths])[..., None].astype(np.float32)
    if prep["center"]:
        mean = load_bundle_array(folder, meta, "mean_volume")
        std = prep.get("std")
        if mean.shape != x.shape[1:]:
            raise ValueError(f"{folder / meta['files']['mean_volume']}: expected a mean volume of "
                             f"shape {list(x.shape[1:])}, found {list(mean.shape)}")
        if not isinstance(std, (int, float)) or isinstance(std, bool) or not np.isfinite(std) or std <= 0:
            raise ValueError(f"{folder / 'metadata.json'}: field 'preprocessing.std': expected a "
                             f"positive number. Received: {std!r}")
        x = ((x - mean[None]) / float(std)).astype(np.float32)
    model = load_bundle_model(folder)
    ad = np.asarray(model.predict(x, verbose=0), np.float64)[:, 0]
    return list(CLASSES), [(str(p), CLASSES[int(a >= 0.5)], [float(1.0 - a), float(a)])
                           for p, a in zip(paths, ad)]
