"""`--smoke`: a preset proved on this machine in minutes.

Full-size data for a few scans (the preset's grid, views and stack height, written as
AIM files and read back through the loader), each arm's full-size network, two
training steps of each (one epoch of two batches), then the evaluation, figures and
report of a normal run. Only the graded slices are simulated (`simulated_slices`):
every other slice of the written stack repeats its nearest simulated one, so the file
has the preset's size and the loader reads the simulated slices back.
"""

import dataclasses

from hrpqct.config import HrpqctConfig

# Two training steps per network: one epoch of two batches.
SMOKE_MAX_STEPS = 2


def smoke_config(config: HrpqctConfig) -> HrpqctConfig:
    """`config` cut to a few scans, one ensemble member per arm and one epoch; sizes kept.

    Four scans with uniform grades (a full-size scan takes minutes of CPU to simulate;
    each part of the split gets at least one, see `hrpqct.experiment.stratified_split`),
    one unit and one member per arm (the ensemble repeats the same network; one proves
    its size), one epoch.
    """
    return dataclasses.replace(
        config, scans_per_site=(("radius", 2), ("tibia", 2)), grade_counts="uniform", seeds=1,
        ensemble_size=1, epochs=1, patience=1, test_fraction=0.3, val_fraction=0.2,
        gradcam_slices=2, min_high_grade_test_scans=1)


def smoke_run_arguments(config: HrpqctConfig) -> dict:
    """Extra `run_experiment` arguments of a smoke run: simulate only the graded slices and
    stop each network after `SMOKE_MAX_STEPS` batches."""
    return {"simulated_slices": int(config.slices_per_scan), "max_steps": SMOKE_MAX_STEPS}
