"""`run --smoke`: proves a preset on this machine in a few minutes.

Writes a handful of full-size synthetic images through the real COVIDx layout (PNGs
and split files) and reads them back with the loader, builds every arm's full-size
model, runs two training steps of each, then the evaluation path (templates, test
prediction, Grad-CAM). Nothing here is a result: it checks that the preset builds,
trains and fits in memory.
"""

import dataclasses
import time

import numpy as np

from covidnet_siamese.data import generate_covidx, load_covidx
from covidnet_siamese.models import gradcam_layer_name
from covidnet_siamese.training import (class_templates, embed, make_pairs, new_siamese, new_single,
                                       predict_siamese)
from shared.io.atomic import write_json
from shared.training.scale import clear_session
from shared.training.seeding import set_global_seed

SMOKE_COUNTS = {"train": (3, 3, 3), "val": (1, 1, 1), "test": (1, 1, 1)}
STEPS = 2


def run_smoke(config, out_dir, *, seed=0, batch_size=4) -> list:
    """Runs the smoke check into `out_dir`; returns the summary lines it prints.

    Args:
        config: `CovidNetSiameseConfig` (its sizes and networks; the counts are
            replaced by three images per class).
        out_dir: Path. Folder for the data and `smoke.json`.
        seed: int, default 0.
        batch_size: int, default 4. Images (or pairs) per training step.
    """
    from covidnet_siamese.experiment import siamese_gradcam, single_gradcam

    from shared.tracking.runs import make_run_dir

    start = time.perf_counter()
    # The run marker first: the folder is then a run (--resume / --overwrite apply).
    out_dir = make_run_dir(out_dir, {"config": config, "smoke": True, "seed": seed})
    set_global_seed(seed)
    small = dataclasses.replace(config, counts=SMOKE_COUNTS)
    root = out_dir / "covidx"
    generate_covidx(root, counts=small.counts, size=small.raw_size, seed=seed, difficulty=small.difficulty)
    load = dict(size=small.image_size, val_fraction=small.val_fraction, seed=seed, val_counts=small.counts["val"])
    data = load_covidx(root, **load)
    cropped = load_covidx(root, crop_fraction=small.crop_fraction, **load)
    layer = gradcam_layer_name(small.depths)
    rng = np.random.default_rng(seed)
    report = {"preset": config.name, "image_size": small.image_size, "images": {
        "train": int(len(data.y_train)), "val": int(len(data.y_val)), "test": int(len(data.y_test))}, "arms": {}}
    for arm in ("siamese", "single", "single_cropped"):
        t_arm = time.perf_counter()
        d = cropped if arm == "single_cropped" else data
        if arm == "siamese":
            model = new_siamese(small, small.default_learning_rate)
            losses = []
            for _ in range(STEPS):
                a, b, same = make_pairs(d.y_train, batch_size, rng)
                losses.append(float(np.asarray(model.train_on_batch((d.x_train[a], d.x_train[b]), same)).ravel()[0]))
            templates = class_templates(embed(model, d.x_train), d.y_train)
            pred, _ = predict_siamese(model, d.x_test, templates)
            maps = siamese_gradcam(model, d.x_test, pred, templates, layer_name=layer)
        else:
            model = new_single(small, small.default_learning_rate)
            losses = []
            for _ in range(STEPS):
                idx = rng.choice(len(d.y_train), size=batch_size, replace=False)
                losses.append(float(np.asarray(model.train_on_batch(d.x_train[idx], d.y_train[idx])).ravel()[0]))
            pred = np.argmax(model.predict(d.x_test, verbose=0), axis=1)
            maps = single_gradcam(model, d.x_test, pred, layer_name=layer)
        if not (np.all(np.isfinite(losses)) and np.all(np.isfinite(maps))):
            raise RuntimeError(f"smoke: arm {arm} produced a non-finite loss or map: losses {losses}")
        report["arms"][arm] = {"parameters": int(model.count_params()), "losses": losses,
                               "test_accuracy": float(np.mean(pred == d.y_test)),
                               "seconds": time.perf_counter() - t_arm}
        clear_session()
    report["seconds"] = time.perf_counter() - start
    write_json(out_dir / "smoke.json", report)
    lines = [f"smoke {config.name}: {small.image_size} x {small.image_size}, "
             f"{report['images']['train']} / {report['images']['val']} / {report['images']['test']} images "
             f"written and read back"]
    for arm, r in report["arms"].items():
        lines.append(f"  {arm}: {r['parameters'] / 1e6:.1f} M parameters, {STEPS} steps, losses "
                     + ", ".join(f"{v:.3f}" for v in r["losses"]) + f", {r['seconds']:.0f} s")
    lines.append(f"smoke finished in {report['seconds']:.0f} s")
    return lines
