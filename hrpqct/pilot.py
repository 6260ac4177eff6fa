"""The epoch budget of the powered study, chosen on a pilot data seed from validation data.

`medrepro hrpqct pilot --seed 100 --out DIR` simulates the non-test part of a powered
cohort (the powered preset's pool: 300 radius + 200 tibia scans, its grid and views) from
the pilot seed, splits it once into a unit's 350 training and 150 validation scans, and
trains both arms for `PILOT_EPOCHS` epochs without early stopping (the study's training:
`hrpqct.training.fit_grader`). No test scan exists in the pilot cohort, and the study's
seeds (0, 1) are never read. The budget is chosen by `epoch_budget`, declared before the
pilot ran:

* both arms get the same budget, the first of `BUDGET_CANDIDATES` by which the validation
  loss of *each* arm had stopped falling: its minimum over the last quarter of the budget
  is not below its minimum before by more than `SETTLED_FALL` (relative);
* if no candidate settles both, the largest, and the study's baseline check
  (`baseline_val_loss_settled`) reports per unit whether the cap was enough.

The first pilot (128 pixels, candidates 16-24) settled at none of them; its curves settle
by 28 epochs, which at 128 pixels costs more than the 45 minutes a powered run may take.
`choose_design` is the rule for paying for the epochs with smaller input slices, declared
before the 96-pixel pilot ran: input sizes in order of preference (largest first), each
with its pilot's settled budget and its CPU seconds per unit-epoch; the first size whose
settled budget fits `STUDY_BUDGET_S` at the study's units; if none fits, the smallest size
at the largest candidate that fits.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

PILOT_EPOCHS = 32
BUDGET_CANDIDATES = (16, 20, 24)
SETTLED_FALL = 0.02
PILOT_SITES = (("radius", 300), ("tibia", 200))
# A powered run must take at most 45 minutes on an idle 2-core machine. Training keeps
# about 1.5 cores busy (timed: 32.8 CPU-s in 22.2 s of wall time on a nearly idle machine),
# and simulating the 1000-scan cohort (0.36 CPU-s per scan, two workers), loading, grading
# and figures take about 270 s besides the training.
STUDY_BUDGET_S = 45 * 60
TRAINING_CORES = 1.5
FIXED_S = 270.0


def study_seconds(cpu_per_unit_epoch, epochs, units, *, cores=TRAINING_CORES, fixed_s=FIXED_S) -> float:
    """Estimated wall seconds of a powered run: training CPU over the busy cores plus the rest."""
    return fixed_s + units * epochs * cpu_per_unit_epoch / cores


def choose_design(pilots, *, units, budget_s=STUDY_BUDGET_S) -> dict:
    """The declared rule for the powered input size and epoch budget (module docstring).

    Args:
        pilots: list of dicts (largest input size first) with ``size``, ``epochs`` (the
            settled budget or the cap), ``settled`` (bool), ``candidates`` (ints) and
            ``cpu_per_unit_epoch`` (CPU seconds of one epoch of both arms).
        units: int. The study's units.
        budget_s: float. Wall-time budget of a run.

    Returns:
        dict: ``size``, ``epochs``, ``settled``, ``estimate_s`` and ``why``.

    Example:
        128 px settled at 28 epochs but 47 min; 96 px settled at 32 and 31 min -> 96 px, 32.
    """
    for p in pilots:
        t = study_seconds(p["cpu_per_unit_epoch"], p["epochs"], units)
        if p["settled"] and t <= budget_s:
            return {"size": int(p["size"]), "epochs": int(p["epochs"]), "settled": True, "estimate_s": t,
                    "why": f"{p['size']} px: settled at {p['epochs']} epochs, {t / 60:.1f} min estimated"}
    last = pilots[-1]
    fits = [c for c in sorted(last["candidates"]) if study_seconds(last["cpu_per_unit_epoch"], c, units) <= budget_s]
    epochs = min(last["epochs"], fits[-1]) if fits else min(last["candidates"])
    t = study_seconds(last["cpu_per_unit_epoch"], epochs, units)
    return {"size": int(last["size"]), "epochs": int(epochs), "settled": bool(last["settled"] and epochs >= last["epochs"]),
            "estimate_s": t, "why": f"no settled budget fits; {last['size']} px at {epochs} epochs, "
                                    f"{t / 60:.1f} min estimated"}


def late_fall(val_loss, budget) -> float:
    """Relative fall of the validation loss in the last quarter of `budget` epochs.

    ``(min(before) - min(last quarter)) / min(before)``, where the last quarter is epochs
    ``budget - budget // 4 + 1 .. budget`` (1-based). Positive: the loss still fell.

    Example:
        Losses 1.0, 0.9, 0.8, 0.7 with budget 4: before 0.8, last 0.7 -> 0.125.
    """
    loss = np.asarray(val_loss, dtype=float)[: int(budget)]
    if len(loss) < int(budget) or budget < 4:
        raise ValueError(f"late_fall: need {budget} >= 4 epochs of validation loss. Received: {len(loss)}")
    cut = int(budget) - int(budget) // 4
    before, last = float(np.min(loss[:cut])), float(np.min(loss[cut:]))
    return (before - last) / before


def epoch_budget(curves, *, candidates=BUDGET_CANDIDATES, settled_fall=SETTLED_FALL) -> dict:
    """The declared rule: the first candidate by which every arm's validation loss settled.

    Args:
        curves: dict arm -> list of validation losses per epoch (at least max(candidates)).
        candidates: ints, ascending.
        settled_fall: float. Largest relative fall in the last quarter that counts as settled.

    Returns:
        dict: ``epochs`` (the budget), ``settled`` (bool), ``late_fall`` {candidate: {arm: fall}}.
    """
    falls = {int(c): {arm: late_fall(loss, c) for arm, loss in curves.items()} for c in candidates}
    for c in candidates:
        if all(f <= settled_fall for f in falls[int(c)].values()):
            return {"epochs": int(c), "settled": True, "late_fall": falls}
    return {"epochs": int(max(candidates)), "settled": False, "late_fall": falls}


def _cpu_seconds() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_pilot(out_dir, *, seed=100, preset="powered", workers=2, epochs=PILOT_EPOCHS, image_size=None,
              candidates=BUDGET_CANDIDATES, progress=None) -> dict:
    """Simulates the pilot pool, trains both arms of one unit, applies `epoch_budget`;
    writes and returns pilot.json's content (pilot.json, or pilot_<size>.json when
    `image_size` resamples the preset's scans to another input size)."""
    from hrpqct.config import ARMS, get_config
    from hrpqct.data import generate_dataset, load_dataset
    from hrpqct.experiment import unit_split
    from hrpqct.grading import mean_and_std, standardize
    from hrpqct.training import train_grader_on_scans
    from shared.io.atomic import write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = get_config(preset)
    sites = PILOT_SITES if preset == "powered" else config.scans_per_site
    config = dataclasses.replace(config, epochs=int(epochs), patience=int(epochs))
    if image_size is not None:
        config = dataclasses.replace(config, input_size=int(image_size))
    t0 = time.perf_counter()
    data_dir = out / "data"
    if not (data_dir / "grades.csv").is_file():
        generate_dataset(data_dir, scans_per_site=dict(sites), image_size=config.image_size,
                         oversample=config.oversample, stack_slices=config.stack_slices,
                         n_projections=config.n_projections, field_of_view_mm=config.field_of_view_mm,
                         projection_noise=config.projection_noise, fbp_window=config.fbp_window,
                         grade_counts=config.grade_counts, rater_noise=config.rater_noise, seed=seed,
                         projections="none", workers=workers, slices_per_scan=config.slices_per_scan,
                         progress=progress)
    data = load_dataset(data_dir, slices_per_scan=config.slices_per_scan, image_size=config.model_size,
                        field_of_view_mm=config.field_of_view_mm, prefilter_mm=config.prefilter_mm)
    consensus = data["consensus"]
    pool = np.arange(len(consensus))
    # The powered unit's validation share of its pool: 0.15 of the cohort of a 0.5 pool.
    val_of_pool = config.val_fraction / max(1e-9, 1.0 - config.test_fraction)
    train_idx, val_idx = unit_split(consensus, pool, val_fraction=val_of_pool, seed=seed * 100_003 + 50_000)
    images = standardize(data["images"], stats=mean_and_std(data["images"], pool), out=data["images"])
    t_data = time.perf_counter() - t0
    curves, timing, cpu = {}, {}, {}
    for arm in ARMS:
        t, c = time.perf_counter(), _cpu_seconds()
        _, hist = train_grader_on_scans(arm, images, train_idx, val_idx, consensus, config=config,
                                        seed=seed * 100_003)
        timing[arm], cpu[arm] = time.perf_counter() - t, _cpu_seconds() - c
        curves[arm] = hist
    budget = epoch_budget({arm: h["val_loss"] for arm, h in curves.items()}, candidates=candidates)
    result = {"seed": int(seed), "preset": preset, "scans": int(len(consensus)), "n_train": int(len(train_idx)),
              "n_val": int(len(val_idx)), "pilot_epochs": int(epochs),
              "image_size": int(config.model_size),
              "rule": {"candidates": [int(c) for c in candidates], "settled_fall": SETTLED_FALL},
              "budget": budget, "curves": curves, "timing_s": {"data": t_data, **timing},
              "cpu_s": cpu, "cpu_per_unit_epoch": float(sum(cpu.values()) / int(epochs))}
    write_json(out / ("pilot.json" if image_size is None else f"pilot_{int(image_size)}.json"), result)
    return result
