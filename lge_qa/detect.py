"""Stage one alone on a user's cases: the LA detector and the slice selection (Section 3.1).

`run_detection` trains the U-Net on the masks-only cohort (`<root>/segmentation/`),
predicts every axial slice of the cases to select (`<root>/quality/` by default, any
folder of `<CASE>/lgemri.nrrd` with or without `laendo.nrrd`) and writes which slices
pass the threshold `t`. No scores table is read: this is the part of the method that
needs none.
"""

import csv
import io as text_io
import logging
from pathlib import Path

import numpy as np

from lge_qa import io, phantom
from lge_qa.config import LgeQaConfig

log = logging.getLogger(__name__)

SELECTION_FILE = "slice_selection.csv"
DETECTOR_FILE = "detector.json"
WEIGHTS_FILE = "la_detector.weights.h5"
SELECTION_COLUMNS = ("case_id", "slices", "selected", "selected_slices", "peak_probability", "fallback")


def selection_rows(probabilities, cohort, selected, threshold) -> list:
    """One row per case: slice count, the selected slice indices (axial, 0-based), the
    highest LA probability of any pixel and whether the threshold selected nothing (the
    three most probable slices were kept instead, `experiment.detect_slices`)."""
    rows = []
    peak = probabilities.reshape(len(probabilities), -1).max(axis=1)
    for i, case_id in enumerate(cohort["case_ids"]):
        idx = np.flatnonzero(cohort["case_index"] == i)
        keep = idx[selected[idx]]
        rows.append({"case_id": case_id, "slices": int(len(idx)), "selected": int(len(keep)),
                     "selected_slices": ";".join(str(int(s)) for s in cohort["slice_index"][keep]),
                     "peak_probability": round(float(peak[idx].max()), 6),
                     "fallback": bool(not np.any(peak[idx] > threshold))})
    return rows


def run_detection(cfg: LgeQaConfig, data_root, out_dir, *, cases_dir=None, verbose=0) -> dict:
    """Trains the LA detector on `<data_root>/segmentation/` and selects the slices of
    every case under `cases_dir` (default `<data_root>/quality/`).

    Args:
        cfg: LgeQaConfig (image size, U-Net, threshold, seed).
        data_root: str or Path. Root holding the masks-only cohort; only read.
        out_dir: str or Path. Written: `slice_selection.csv`, `detector.json` (Dice and
            slice-selection precision / recall over the cases with a stored mask, none
            without) and the detector's weights.
        cases_dir: str or Path, optional. Folder of the cases to select slices of.
        verbose: int, default 0. Keras verbosity.

    Returns:
        dict with "rows" (`selection_rows`), "detector" (metrics) and "selection" (path).

    Raises:
        FileNotFoundError: a folder is missing (named, with the layout expected).
    """
    from lge_qa.experiment import detect_slices
    from lge_qa.training import detector_metrics, train_la_detector
    from shared.io.atomic import write_json, write_text
    from shared.training.seeding import set_global_seed

    root = Path(data_root)
    seg_dir = root / phantom.SEG_SPLIT
    cases = Path(cases_dir) if cases_dir is not None else root / phantom.QA_SPLIT
    for folder, what in ((seg_dir, f"the masks-only cohort (<CASE>/{io.IMAGE_FILE} and laendo.nrrd)"),
                         (cases, f"the cases to select slices of (<CASE>/{io.IMAGE_FILE})")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder; expected {what}")
    set_global_seed(cfg.seed)
    seg = io.load_cohort(seg_dir, size=cfg.image_size)
    cohort = io.load_cohort(cases, size=cfg.image_size, require_mask=False)
    detector = train_la_detector(cfg, seg, seed=cfg.seed, verbose=verbose)
    prob = detector.predict(cohort["images"], batch_size=256, verbose=0)
    selected = detect_slices(prob, cohort["case_index"], cohort["case_ids"], cfg.detection_threshold)
    det = detector_metrics(prob, cohort["masks"], selected, cfg.detection_threshold,
                           has_mask=cohort["has_mask"][cohort["case_index"]])
    rows = selection_rows(prob, cohort, selected, cfg.detection_threshold)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buffer = text_io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SELECTION_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    path = write_text(out / SELECTION_FILE, buffer.getvalue())
    write_json(out / DETECTOR_FILE, {"threshold": cfg.detection_threshold, "image_size": cfg.image_size,
                                     "cases": len(rows), "masks_only_scans": len(seg["case_ids"]),
                                     "metrics": det})
    detector.save_weights(str(out / WEIGHTS_FILE))
    log.info("LA detector on %d cases: %s", len(rows), det)
    return {"rows": rows, "detector": det, "selection": path}
