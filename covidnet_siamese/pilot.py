"""Choosing the reduced presets' head width and training budget on a pilot data seed,
from validation data only.

The rule, fixed before the pilot ran:

* data: the preset's training split generated from the pilot seed (`PILOT_SEED`, not a
  study seed) and its validation draw; the pilot's test split holds one film per class
  and is never read;
* per training seed in `PILOT_TRAIN_SEEDS`: the single net with every head width in
  `PILOT_FC_UNITS` (first dense layer; the next two have a quarter) for the long budget
  `PILOT_SINGLE_EPOCHS`, the siamese net for the long budget in the paper's ratio of
  siamese to single-net steps (`PAPER_STEP_RATIO`); validation after every epoch;
* endpoint: balanced accuracy on the whole validation split under each net's own
  decision rule (softmax argmax; most similar class template), best so far, i.e. what a
  run of that budget would keep;
* head width: the largest mean endpoint at the long budget; ties (within
  `PILOT_TOLERANCE`) go to the narrower head;
* budget: the smallest share in `PILOT_BUDGET_SHARES` of the long budgets at which both
  nets are within `PILOT_TOLERANCE` of their long-budget endpoint (same share for both,
  so the paper's step ratio holds).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

PILOT_SEED = 100
PILOT_TRAIN_SEEDS = (0, 1)
PILOT_FC_UNITS = (32, 256)
PILOT_SINGLE_EPOCHS = 100
PILOT_BUDGET_SHARES = (0.25, 0.5, 1.0)
PILOT_TOLERANCE = 0.01
PAPER_STEP_RATIO = (50 * 12000 / 32) / (100 * (179 * 3) / 16)
"""Siamese to single-net optimizer steps in the paper's final runs: 50 epochs of 12,000
pairs at batch 32 against 100 epochs of the balanced 537 films at batch 16 (5.6)."""


def best_so_far(curve) -> np.ndarray:
    """Running maximum of a per-epoch curve: what a run stopped at each epoch keeps."""
    return np.maximum.accumulate(np.asarray(curve, float))


def siamese_epochs(single_epochs, single_steps_per_epoch, pairs_per_epoch, batch_size,
                   ratio=PAPER_STEP_RATIO) -> int:
    """Siamese epochs of `pairs_per_epoch` pairs whose steps are `ratio` times the single
    net's (`single_epochs` x `single_steps_per_epoch`), rounded to the nearest epoch."""
    steps_per_epoch = int(np.ceil(pairs_per_epoch / batch_size))
    return max(1, int(round(ratio * single_epochs * single_steps_per_epoch / steps_per_epoch)))


def choose(curves, *, tolerance=PILOT_TOLERANCE, shares=PILOT_BUDGET_SHARES) -> dict:
    """The module's rule over validation curves.

    Args:
        curves: dict with "single" -> {fc_units: [per-seed per-epoch endpoint]} and
            "siamese" -> [per-seed per-epoch endpoint].

    Returns:
        dict with fc_units, share (of the long budgets) and the mean endpoints.
    """
    def mean_best(runs):
        return np.mean([best_so_far(r) for r in runs], axis=0)

    heads = {int(u): mean_best(runs) for u, runs in curves["single"].items()}
    top = max(h[-1] for h in heads.values())
    fc_units = min(u for u, h in heads.items() if h[-1] >= top - tolerance)
    single, siamese = heads[fc_units], mean_best(curves["siamese"])
    share_rows = []
    chosen = None
    for share in sorted(shares):
        k_single = max(1, int(round(share * len(single)))) - 1
        k_siamese = max(1, int(round(share * len(siamese)))) - 1
        row = {"share": share, "single_epochs": k_single + 1, "siamese_epochs": k_siamese + 1,
               "single": float(single[k_single]), "siamese": float(siamese[k_siamese])}
        row["within"] = bool(single[k_single] >= single[-1] - tolerance
                             and siamese[k_siamese] >= siamese[-1] - tolerance)
        share_rows.append(row)
        if chosen is None and row["within"]:
            chosen = row
    return {"fc_units": fc_units, "head_endpoints": {u: float(h[-1]) for u, h in heads.items()},
            "shares": share_rows, "chosen": chosen}


def run_pilot(config, out_dir, *, seed=PILOT_SEED, train_seeds=PILOT_TRAIN_SEEDS, fc_units=PILOT_FC_UNITS,
              single_epochs=PILOT_SINGLE_EPOCHS, progress=None) -> dict:
    """Trains every candidate on the pilot data and writes `pilot.json`.

    Args:
        config: `CovidNetSiameseConfig` of the preset being set (sizes, trunk, lr, batch).
        out_dir: folder for the pilot data and `pilot.json`.
        seed: int, default `PILOT_SEED`. The pilot data seed.

    Returns:
        dict with the curves, dead units, timings and `choose`'s result.
    """
    from covidnet_siamese.data import generate_covidx, load_covidx
    from covidnet_siamese.training import dead_units, fit_siamese, fit_single, new_siamese, new_single
    from shared.io.atomic import write_json
    from shared.training.scale import clear_session
    from shared.training.seeding import set_global_seed

    out = Path(out_dir)
    data_root = out / "covidx"
    counts = dict(config.counts, test=(1, 1, 1))
    if not (data_root / "train_split.txt").is_file():
        generate_covidx(data_root, counts=counts, size=config.raw_size, seed=seed, difficulty=config.difficulty)
    data = load_covidx(data_root, size=config.image_size, val_fraction=config.val_fraction, seed=seed,
                       val_counts=config.counts["val"])
    data = dataclasses.replace(data, x_test=data.x_test[:0], y_test=data.y_test[:0])  # never read
    lr = config.default_learning_rate
    batch = config.default_batch_size
    single_steps = int(np.ceil(3 * np.sum(data.y_train == 2) / batch["single"]))
    n_siamese = siamese_epochs(single_epochs, single_steps, config.final_pairs_per_epoch, batch["siamese"])
    result = {"pilot_seed": int(seed), "train_seeds": list(train_seeds), "learning_rate": lr,
              "batch_size": dict(batch), "single_epochs": int(single_epochs),
              "single_steps_per_epoch": single_steps, "siamese_epochs": n_siamese,
              "siamese_pairs_per_epoch": int(config.final_pairs_per_epoch),
              "val_counts": np.bincount(data.y_val, minlength=3).tolist(),
              "single": {}, "siamese": [], "dead_units": {}, "seconds": {}}
    for train_seed in train_seeds:
        for units in fc_units:
            set_global_seed(int(train_seed))
            cfg = dataclasses.replace(config, fc_units=int(units))
            model = new_single(cfg, lr)
            start = time.perf_counter()
            hist, _ = fit_single(model, data, batch_size=batch["single"], epochs=single_epochs, seed=int(train_seed),
                                 select_on="val_balanced_accuracy")
            key = str(int(units))
            result["seconds"].setdefault(f"single_{key}", []).append(time.perf_counter() - start)
            result["single"].setdefault(key, []).append({k: [float(v) for v in vals]
                                                         for k, vals in hist.history.items()})
            result["dead_units"].setdefault(f"single_{key}", []).append(dead_units(model, data.x_val))
            clear_session()
            if progress:
                progress(f"single fc {units} seed {train_seed}")
        set_global_seed(int(train_seed))
        model = new_siamese(config, lr)
        start = time.perf_counter()
        hist, _ = fit_siamese(model, data, batch_size=batch["siamese"], epochs=n_siamese,
                              n_pairs=config.final_pairs_per_epoch, n_trials=config.three_way_trials,
                              seed=int(train_seed), select_on="val_balanced_accuracy")
        result["seconds"].setdefault("siamese", []).append(time.perf_counter() - start)
        result["siamese"].append({k: [float(v) for v in vals] for k, vals in hist.history.items()})
        clear_session()
        if progress:
            progress(f"siamese seed {train_seed}")
        write_json(out / "pilot.json", result)
    result["choice"] = choose({
        "single": {u: [r["val_balanced_accuracy"] for r in runs] for u, runs in result["single"].items()},
        "siamese": [r["val_balanced_accuracy"] for r in result["siamese"]]})
    write_json(out / "pilot.json", result)
    return result


def pilot_markdown(result) -> str:
    """The pilot's figures: validation endpoint per head width and budget share, the choice."""
    choice = result["choice"]
    lines = [f"Pilot data seed {result['pilot_seed']}, training seeds {result['train_seeds']}; "
             f"validation balanced accuracy (best so far, mean over training seeds).", "",
             "| single-net head (fc1 units) | at the long budget | dead dense units (per seed) |",
             "| ---: | ---: | --- |"]
    for units, value in choice["head_endpoints"].items():
        dead = result["dead_units"].get(f"single_{units}", [])
        per_seed = ", ".join(f"{sum(v[0] for k, v in d.items() if k.startswith('fc'))}/"
                             f"{sum(v[1] for k, v in d.items() if k.startswith('fc'))}" for d in dead)
        mark = " **chosen**" if int(units) == int(choice["fc_units"]) else ""
        lines.append(f"| {units}{mark} | {value:.3f} | {per_seed} |")
    lines += ["", "| budget share | single epochs | siamese epochs | single | siamese | within tolerance |",
              "| ---: | ---: | ---: | ---: | ---: | --- |"]
    for row in choice["shares"]:
        mark = " **chosen**" if choice["chosen"] and row["share"] == choice["chosen"]["share"] else ""
        lines.append(f"| {row['share']:g}{mark} | {row['single_epochs']} | {row['siamese_epochs']} | "
                     f"{row['single']:.3f} | {row['siamese']:.3f} | {'yes' if row['within'] else 'no'} |")
    return "\n".join(lines) + "\n"
