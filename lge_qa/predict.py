"""The saved networks of a run and `predict` on NRRD LGE volumes.

A run keeps, as bundles in the shared layout (`shared.io.bundle`):

- `RUN_DIR/bundles/la_detector/`: the stage-1 U-Net (the run trains one);
- `RUN_DIR/bundles/<strategy>/`: per QA strategy (or arm), the network of the first
  repetition (`run`) or of the first unit at the largest training size (the powered
  study), the epoch early stopping chose on validation scans restored (never the test
  scans).

`predict` takes a QA bundle and reads each NRRD volume as the run reads its scans
(`lge_qa.io`: intensities scaled to [0, 1] by the volume's 99.5th percentile, every axial
slice resized to the input size with linear interpolation). The slices go through the
same selection as the run's QA input: the run's LA detector (the `la_detector` bundle
beside the QA bundle) keeps the slices with an LA probability above the run's threshold
t, or the three most probable slices when none passes (`experiment.detect_slices`).
The QA network scores each kept slice; each of the four quality scores printed is the
mean over those slices of the sigmoid output, the probability that the observers' score
is diagnostic (>= the run's score threshold). The class is the run's scan label: the
mode of the slices' fibrosis-quality predictions at 0.5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lge_qa import io, models
from shared.io.bundle import (BUNDLES_DIR, METADATA_FILE, bundle_metadata, bundle_folders, image_input_spec,
                              load_bundle_model, probabilities_output_spec, read_metadata, resolve_bundle,
                              write_bundle)

PAPER = "lge_qa"
DETECTOR = "la_detector"
SCORES = io.SCORE_COLUMNS  # printed in the order of the network's outputs, `models.OUTPUTS`
CLASSES = ("non-diagnostic", "diagnostic")
FALLBACK_TOP = 3
REFERENCE = ("Sultan et al., two-stage quality assessment of LGE-MRI of the left atrium (LA detector, "
             "QA networks: baseline, multi-task, SupCon pre-trained)")
_PREPROCESSING = {
    "reader": "lge_qa.io.read_nrrd (a 3D volume, X, Y, Z; Z = axial slices)",
    "intensity": "lge_qa.io.normalise_volume: divided by the volume's 99.5th percentile, clipped to [0, 1]",
    "normalisation": "none beyond the intensity scaling (per volume)",
    "slices": "lge_qa.io.volume_to_slices: every axial slice resized to image_size x image_size, "
              "linear interpolation"}


def _slice_input(size) -> dict:
    return {"slice": image_input_spec([size, size], modality="MR", channel="LGE", value_range=[0, 1])}


def _data_source(simulated: bool) -> str:
    return ("the run's phantom cohort (lge_qa.phantom.generate_dataset)" if simulated
            else "the run's dataset root in the challenge layout (--data)")


def _training(cfg, run_dir, seed, selected_by, **more) -> dict:
    return {"run": str(Path(run_dir).resolve()), "seed": int(seed), "preset": cfg.preset,
            "selected_by": selected_by, **{k: str(v) for k, v in more.items()}}


def detector_metadata(cfg, *, run_dir, simulated: bool) -> dict:
    """The bundle metadata of the run's LA detector."""
    size = int(cfg.image_size)
    return bundle_metadata(
        paper=PAPER, name=DETECTOR, task="left-atrium probability of each axial slice of an LGE-MRI volume",
        description=(f"Stage-1 U-Net of preset {cfg.preset}; a slice is kept for quality assessment when a "
                     f"pixel's LA probability exceeds t = {cfg.detection_threshold:g}."),
        inputs=_slice_input(size),
        outputs={"pred": {"type": "probabilities", "format": "segmentation", "num_channels": 1,
                          "spatial_shape": [size, size], "dtype": "float32", "value_range": [0, 1],
                          "channel_def": {"0": "left atrium"}}},
        preprocessing={**_PREPROCESSING, "image_size": size},
        training=_training(cfg, run_dir, cfg.seed, "the run's only detector (its last epoch)"),
        data_source=_data_source(simulated), data_type="nrrd", references=[REFERENCE],
        extra={"role": "detector", "threshold": float(cfg.detection_threshold), "fallback_top": FALLBACK_TOP})


def strategy_metadata(cfg, strategy: str, *, run_dir, seed: int, unit, simulated: bool, selected_by: str) -> dict:
    """The bundle metadata of one QA strategy's network."""
    size = int(cfg.image_size)
    return bundle_metadata(
        paper=PAPER, name=strategy,
        task="quality of an LGE-MRI volume of the left atrium: four observer scores, diagnostic or not",
        description=(f"QA network of strategy '{strategy}', preset {cfg.preset}, {unit}. Four sigmoid outputs "
                     f"per slice: P(score >= {cfg.score_threshold}) of {', '.join(SCORES)}; the volume's scores "
                     f"are their means over the slices the LA detector keeps."),
        inputs=_slice_input(size),
        outputs={name: probabilities_output_spec([f"{column} diagnostic"])
                 for name, column in zip(models.OUTPUTS, SCORES)},
        preprocessing={**_PREPROCESSING, "image_size": size,
                       "slice_selection": (f"the {DETECTOR} bundle beside this one: slices with an LA probability "
                                           f"above t = {cfg.detection_threshold:g}, else the {FALLBACK_TOP} most "
                                           f"probable")},
        training=_training(cfg, run_dir, seed, selected_by, unit=unit),
        data_source=_data_source(simulated), data_type="nrrd", references=[REFERENCE],
        extra={"role": "qa", "detector": DETECTOR, "scores": list(SCORES), "outputs": list(models.OUTPUTS),
               "score_threshold": int(cfg.score_threshold), "classes": list(CLASSES),
               "scan_label": "mode of the slices' fibrosis-quality predictions at 0.5"})


def write_detector_bundle(run_dir, model, cfg, *, simulated: bool) -> Path:
    """Writes `RUN_DIR/bundles/la_detector/`; returns the folder."""
    return write_bundle(Path(run_dir) / BUNDLES_DIR / DETECTOR, model,
                        detector_metadata(cfg, run_dir=run_dir, simulated=simulated))


def write_strategy_bundle(run_dir, strategy: str, model, cfg, *, seed: int, unit, simulated: bool,
                          selected_by: str) -> Path:
    """Writes `RUN_DIR/bundles/<strategy>/`; returns the folder."""
    meta = strategy_metadata(cfg, strategy, run_dir=run_dir, seed=seed, unit=unit, simulated=simulated,
                             selected_by=selected_by)
    return write_bundle(Path(run_dir) / BUNDLES_DIR / strategy, model, meta)


def resolve_qa_bundle(path, *, name=None) -> Path:
    """The QA bundle meant by `path`: a bundle folder, or a run folder's `bundles/<name>`
    (without a name: its only bundle besides the detector)."""
    path = Path(path)
    if name is None and (path / BUNDLES_DIR).is_dir():
        qa = [p for p in bundle_folders(path) if p.name != DETECTOR]
        if len(qa) == 1:
            return qa[0]
    return resolve_bundle(path, name=name)


def volume_slices(path, size) -> np.ndarray:
    """The axial slices of one NRRD volume as the run reads them: float32 [Z, size, size, 1].

    Raises:
        ValueError: not a readable 3D volume of finite numbers (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such NRRD file; expected an LGE volume (lgemri.nrrd)")
    image, _ = io.read_nrrd(path)
    io._check_volume(image, path, path.parent.name)
    return io.volume_to_slices(io.normalise_volume(image), int(size))[..., None]


def _image_size(folder, meta) -> int:
    size = (meta.get("preprocessing") or {}).get("image_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"{folder / METADATA_FILE}: field 'preprocessing.image_size': expected a positive "
                         f"integer. Received: {size!r}")
    return size


def _detector(folder, meta):
    """(detector model, threshold) of the bundle `meta` names beside `folder`."""
    name = (meta.get("extra") or {}).get("detector")
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise ValueError(f"{folder / METADATA_FILE}: field 'extra.detector': expected the name of the run's "
                         f"LA detector bundle. Received: {name!r}")
    det_folder = folder.parent / name
    if not (det_folder / METADATA_FILE).is_file():
        raise ValueError(f"{det_folder / METADATA_FILE}: not found; the slice selection of {folder} needs the "
                         f"run's LA detector bundle beside it ({BUNDLES_DIR}/{name})")
    det_meta = read_metadata(det_folder, paper=PAPER)
    threshold = (det_meta.get("extra") or {}).get("threshold")
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 < threshold < 1:
        raise ValueError(f"{det_folder / METADATA_FILE}: field 'extra.threshold': expected a number in (0, 1). "
                         f"Received: {threshold!r}")
    if _image_size(det_folder, det_meta) != _image_size(folder, meta):
        raise ValueError(f"{det_folder / METADATA_FILE}: field 'preprocessing.image_size' differs from "
                         f"{folder / METADATA_FILE}'s; expected the detector of the same run")
    return load_bundle_model(det_folder), float(threshold)


def select_volume_slices(detector, slices, threshold, *, name) -> np.ndarray:
    """Indices of the slices the run's selection keeps (`experiment.detect_slices`)."""
    from lge_qa.experiment import detect_slices

    prob = np.asarray(detector.predict(slices, batch_size=256, verbose=0))
    keep = detect_slices(prob, np.zeros(len(slices), int), [name], threshold, fallback_top=FALLBACK_TOP)
    return np.flatnonzero(keep)


def predict_files(model_path, paths, *, strategy=None):
    """Scores the quality of NRRD LGE volumes with a run's QA network and LA detector.

    Args:
        model_path: str or Path. A QA bundle folder, or a run folder (with `strategy`,
            or its only QA bundle).
        paths: NRRD files, each a 3D LGE volume (X, Y, Z).
        strategy: str, optional.

    Returns:
        (score names, list of (path, class, [four mean probabilities]), list of the kept
        slice indices per file).

    Raises:
        ValueError: not a QA bundle of this paper, its detector missing, or a file that
            is not a readable volume; the message names the file.
    """
    from shared.metrics import scan_mode

    folder = resolve_qa_bundle(model_path, name=strategy)
    meta = read_metadata(folder, paper=PAPER)
    if (meta.get("extra") or {}).get("role") != "qa":
        raise ValueError(f"{folder / METADATA_FILE}: field 'extra.role' is "
                         f"{(meta.get('extra') or {}).get('role')!r}; expected 'qa' (a QA strategy's bundle, "
                         f"not the LA detector's)")
    size = _image_size(folder, meta)
    volumes = [volume_slices(p, size) for p in paths]
    detector, threshold = _detector(folder, meta)
    model = load_bundle_model(folder)
    rows, kept = [], []
    for path, slices in zip(paths, volumes):
        keep = select_volume_slices(detector, slices, threshold, name=str(path))
        out = model.predict(slices[keep], batch_size=256, verbose=0)
        probs = np.stack([np.asarray(out[name], np.float64).reshape(-1) for name in models.OUTPUTS], axis=1)
        label = scan_mode((probs[:, -1] >= 0.5).astype(int), np.zeros(len(keep), int))[0]
        rows.append((str(path), CLASSES[int(label)], [float(v) for v in probs.mean(axis=0)]))
        kept.append(keep)
    return list(SCORES), rows, kept
