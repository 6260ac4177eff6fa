"""How much memory a preset needs: the arrays a run holds at its peak, worked out from its sizes.

Two phases peak: simulating a scan (per worker process) and grading the cohort (one
process). All arrays are float32 (the phantom, the views, the reconstructions, the
slices), the simulation works a few slices or views at a time where the whole stack
would be large, and the graders read batches gathered from the one array of slices
(`hrpqct.pipeline`), so the estimate is the sum of the arrays below. It leaves out
TensorFlow's and Python's own overhead (about 1-2 GB), which `--smoke` measures.
"""

from __future__ import annotations

import numpy as np

from hrpqct import tomography

_F32 = 4
GIB = 2.0 ** 30


def simulation_bytes(config) -> dict:
    """Peak arrays of one worker simulating one scan of `config` (bytes per component)."""
    fine = config.image_size * config.oversample
    stack, views = config.stack_slices, config.n_projections
    pixel_cm = config.field_of_view_mm / 10.0 / config.image_size
    det = tomography.default_detector_bins(fine, pixel_cm / config.oversample, pixel_cm)
    n_fft = int(2 ** np.ceil(np.log2(2 * det)))
    margin_views = 8
    out = {
        "phantom and texture": 2 * stack * fine * fine * _F32,
        "views with motion, still views, extended still views": 3 * (views + margin_views) * stack * det * _F32,
        "reconstruction (stack + artefact slices)": (stack + config.slices_per_scan) * config.image_size ** 2 * _F32,
        "FBP working set (16 slices)": 16 * views * (n_fft * 3 * _F32 + det * _F32) + config.image_size ** 2 * 16 * 8,
        # A matrix chunk: 4e6 pixel-views x 2 entries x (float64 data + int64 index) and the
        # float64 temporaries of its construction (about 4 more of that size).
        "projection matrix chunk": int(4e6) * 2 * 16 * 5,
    }
    out["total"] = sum(out.values())
    return out


def grading_bytes(config, *, batch_size=None) -> dict:
    """Peak arrays of the grading phase of `config` (bytes per component).

    The slices of every scan, one copy of a chunk of test scans for prediction, and the
    activations of one training batch of the larger network (forward and backward, a rough
    factor 3 over the forward activations of the first two stages).
    """
    n = sum(dict(config.scans_per_site).values())
    s, size = config.slices_per_scan, config.image_size
    b = config.batch_size if batch_size is None else int(batch_size)
    first = max(config.baseline_filters[0], config.proposed_filters[0])
    out = {
        "slices of the cohort": n * s * size * size * _F32,
        "prediction chunk (32 scans)": 32 * s * size * size * _F32,
        "training batch activations": 3 * b * size * size * first * _F32 * 2,
    }
    out["total"] = sum(out.values())
    return out


def estimate_peak_gib(config, *, workers=1) -> dict:
    """The larger of the two phases in GiB: ``simulation`` (all workers), ``grading``, ``peak``."""
    sim = workers * simulation_bytes(config)["total"] / GIB
    grade = grading_bytes(config)["total"] / GIB
    return {"simulation": sim, "grading": grade, "peak": max(sim, grade)}
