"""The saved slice grader of each arm and `predict` on AIM files.

A run keeps, for each arm, the first network of its first unit's ensemble (the epoch of
the best validation kappa restored, never chosen on the test scans) as a bundle in the
shared layout (`shared.io.bundle`): `RUN_DIR/bundles/<arm>/` with `config.json`,
`model.weights.h5` and `metadata.json`. The metadata hold what turns an AIM file into
the network's input: the graded slices per scan, the field of view, the prefilter, the
input size and the standardisation (mean and standard deviation of the run's pool of
non-test scans).

`predict` reads each AIM file the way `hrpqct run --data` reads its scans
(`hrpqct.data.load_scan_input`: equally spaced slices, the field centred on the limb,
cropped or padded with air, prefiltered and resampled to the input size), standardises
the slices with the run's statistics and grades every slice. The scan's grade is the
vote of its slices as Walle's tool takes it for an ensemble of one (most probable grade
per slice, rounded mean, `hrpqct.training.scan_grades_of_slices`); the per-grade scores
are the slices' mean probabilities.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.io.bundle import (BUNDLES_DIR, METADATA_FILE, bundle_metadata, image_input_spec, load_bundle_model,
                              probabilities_output_spec, read_metadata, resolve_bundle, write_bundle)

PAPER = "hrpqct"
GRADES = tuple(f"grade {g}" for g in range(1, 6))
REFERENCE = ("Strunck (thesis); Walle et al., motion grading of HR-pQCT scans with an ensemble of "
             "convolutional networks (slice votes, scan grade the vote)")
PREPROCESSING_KEYS = ("slices_per_scan", "field_of_view_mm", "image_size", "prefilter_mm", "mean", "std")


def arm_metadata(config, arm: str, *, run_dir, seed: int, unit, stats, simulated: bool) -> dict:
    """The bundle metadata of one arm's slice grader.

    Args:
        config: HrpqctConfig.
        arm: "baseline" or "proposed".
        run_dir: Path. The run folder.
        seed: int. The network's initialisation seed.
        unit: the unit whose ensemble the network belongs to.
        stats: (mean, std) of the pool's slices the run standardised with.
        simulated: bool. The run's scans were simulated.
    """
    n = int(config.model_size)
    return bundle_metadata(
        paper=PAPER, name=arm,
        task="motion grade (1-5) of an HR-pQCT scan from its graded slices",
        description=(f"Slice grader of the '{arm}' arm, preset {config.preset}: the first network of unit "
                     f"{unit}'s ensemble. Grades each slice (softmax over grades 1-5); the scan's grade is "
                     f"the vote of its {config.slices_per_scan} slices (rounded mean of the slice grades)."),
        inputs={"slice": image_input_spec([n, n], modality="CT", channel="standardised attenuation",
                                          value_range=["-inf", "inf"])},
        outputs={"pred": probabilities_output_spec(GRADES)},
        preprocessing={"reader": "hrpqct.data.load_scan_input",
                       "slices_per_scan": int(config.slices_per_scan),
                       "field_of_view_mm": float(config.field_of_view_mm), "image_size": n,
                       "prefilter_mm": float(config.prefilter_mm),
                       "field": "square field centred on the limb, cropped or padded with air, resampled",
                       "intensity": "attenuation in 1/cm (raw values divided by the log's Mu_Scaling)",
                       "mean": float(stats[0]), "std": float(stats[1]),
                       "normalisation": "(x - mean) / std with the run's pool (non-test scans) statistics"},
        training={"run": str(Path(run_dir).resolve()), "seed": int(seed), "preset": config.preset,
                  "selected_by": "the first network of the first unit's ensemble (epoch of the best "
                                 "validation kappa)", "unit": str(unit)},
        data_source=("the run's simulated HR-pQCT cohort (hrpqct.data.generate_dataset)" if simulated
                     else "the run's AIM dataset folder (--data)"),
        data_type="aim", references=[REFERENCE],
        extra={"classes": list(GRADES), "scan_grade": "vote: rounded mean of the slices' most probable grades"})


def write_arm_bundle(run_dir, arm: str, model, config, *, seed: int, unit, stats, simulated: bool) -> Path:
    """Writes `RUN_DIR/bundles/<arm>/`; returns the folder."""
    meta = arm_metadata(config, arm, run_dir=run_dir, seed=seed, unit=unit, stats=stats, simulated=simulated)
    return write_bundle(Path(run_dir) / BUNDLES_DIR / arm, model, meta)


def _preprocessing(folder, meta) -> dict:
    prep = meta.get("preprocessing") or {}
    for key in PREPROCESSING_KEYS:
        value = prep.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
            raise ValueError(f"{folder / METADATA_FILE}: field 'preprocessing.{key}': expected a number. "
                             f"Received: {value!r}")
    if prep["std"] <= 0 or prep["image_size"] < 1 or prep["slices_per_scan"] < 1:
        raise ValueError(f"{folder / METADATA_FILE}: field 'preprocessing': expected a positive std, image_size "
                         f"and slices_per_scan. Received: {prep['std']!r}, {prep['image_size']!r}, "
                         f"{prep['slices_per_scan']!r}")
    return prep


def scan_input(path, prep) -> np.ndarray:
    """The standardised slices of one AIM file as the bundle's grader takes them: [S, n, n, 1]."""
    from hrpqct.data import load_scan_input

    x, _ = load_scan_input(path, slices_per_scan=int(prep["slices_per_scan"]),
                           field_of_view_mm=float(prep["field_of_view_mm"]), image_size=int(prep["image_size"]),
                           prefilter_mm=float(prep["prefilter_mm"]))
    return ((x - np.float32(prep["mean"])) / np.float32(prep["std"])).astype(np.float32)[..., None]


def predict_files(model_path, paths, *, arm=None):
    """Grades AIM files with a saved slice grader.

    Args:
        model_path: str or Path. A bundle folder, or a run folder (with `arm`, or its
            only bundle).
        paths: AIM files of any in-plane size and element size.
        arm: str, optional.

    Returns:
        (grade names, list of (path, scan grade name, [mean probability of grades 1-5])).

    Raises:
        ValueError: not a bundle of this paper, or a file that is not a readable grey-value
            AIM with a limb; the message names the file.
    """
    from hrpqct.training import scan_grades_of_slices

    folder = resolve_bundle(model_path, name=arm)
    meta = read_metadata(folder, paper=PAPER)
    prep = _preprocessing(folder, meta)
    inputs = [scan_input(p, prep) for p in paths]
    model = load_bundle_model(folder)
    rows = []
    for path, x in zip(paths, inputs):
        probs = np.asarray(model.predict(x, verbose=0), np.float64)
        grade = int(scan_grades_of_slices(probs, len(x))[0])
        rows.append((str(path), GRADES[grade - 1], [float(v) for v in probs.mean(axis=0)]))
    return list(GRADES), rows
