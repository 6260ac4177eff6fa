"""`run --smoke`: proves a preset on this machine in a few minutes.

Full-size synthetic images for a few samples are written through the real on-disk
format (`write_dataset`) and read back through the loader (`synthetic_splits`);
the full-size model of each group is built, given trial 0's initial weights,
trained for two steps and evaluated (accuracy, overlaps and overlay maps), as a
real run does. Nothing is compared and no claim is made.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from heatmap_loss.data import write_dataset
from heatmap_loss.experiment import (GROUPS, build_model, evaluate_model, initial_weights_of,
                                     raw_maps)
from heatmap_loss.phantom import CLASSES
from heatmap_loss.sources import synthetic_splits
from heatmap_loss.trials import start_trial, trial_init_seed
from shared.io.atomic import write_json
from shared.tracking.runs import make_run_dir

SMOKE_SIZES = {"n_train": 8, "n_val": 4, "n_test": 4}
SMOKE_BATCH = 4  # 8 training images: two steps


def run_smoke(config, out_dir, *, experiment: int = 1, seed: int = 0) -> list:
    """Runs the smoke check into `out_dir`; returns the summary lines it prints.

    Args:
        config: HeatmapLossConfig (the preset to prove, usually `paper`).
        out_dir: Path. Folder for the data files and `smoke.json`.
        experiment: int, default 1.
        seed: int, default 0.
    """
    from shared.training.seeding import set_global_seed

    set_global_seed(seed)
    started = time.perf_counter()
    make_run_dir(out_dir, {"config": dataclasses.asdict(config), "experiment": experiment,
                           "seed": seed, "smoke": True})
    small = dataclasses.replace(config, **SMOKE_SIZES, batch_size=SMOKE_BATCH)
    write_dataset(out_dir / "data", experiment=experiment, n_train=small.n_train,
                  n_val=small.n_val, n_test=small.n_test, seed=seed)
    splits, _, _ = synthetic_splits(small, experiment=experiment, seed=seed,
                                    data_dir=out_dir / "data")
    train, val, test = splits["train"], splits["val"], splits["test"]
    regions = {"heart_overlap": test["heart"]}
    if "marker" in test:
        regions["marker_overlap"] = test["marker"]
    lines, results = [], {}
    for group in GROUPS:
        t0 = time.perf_counter()
        low, _ = config.lr_cce if group == "cce" else config.lr_heatmap
        model = build_model(small, group, low, num_classes=len(CLASSES))
        start_trial(model, initial_weights_of(model, small), init_seed=trial_init_seed(seed, 0),
                    learning_rate=low)
        history = model.fit((train["images"], train["heart"]), train["labels"],
                            validation_data=((val["images"], val["heart"]), val["labels"]),
                            epochs=1, batch_size=SMOKE_BATCH, verbose=0)
        steps = int(model.optimizer.iterations.numpy())
        scores = evaluate_model(model, test["images"], test["labels"], regions,
                                method=small.method)
        maps = raw_maps(model, test["images"], test["labels"], method=small.method)
        loss = float(history.history["loss"][-1])
        results[group] = {"parameters": int(model.count_params()), "steps": steps,
                          "loss": loss, "test_accuracy": scores["accuracy"],
                          "heart_overlap": float(np.nanmean(scores["heart_overlap"])),
                          "maps_shape": list(maps.shape), "seconds": time.perf_counter() - t0}
        lines.append(f"{group}: {model.count_params():,} parameters, {steps} training steps, "
                     f"loss {loss:.4f}, test accuracy {scores['accuracy']:.2f}, "
                     f"{results[group]['seconds']:.1f} s")
    elapsed = time.perf_counter() - started
    write_json(out_dir / "smoke.json", {"preset": config.preset, "experiment": experiment,
                                        "image_size": list(config.image_size),
                                        "groups": results, "seconds": elapsed})
    lines.append(f"smoke {config.preset} preset, experiment {experiment}, images "
                 f"{config.image_size[0]} x {config.image_size[1]}: done in {elapsed:.1f} s")
    return lines
