"""`medrepro hrpqct ...`: run, generate, grade."""

import dataclasses
import logging
import time
from pathlib import Path

from shared.cli.config_overrides import run_config
from shared.cli.options import (SEED, add_pilot_args, add_run_args, count, prepared_run_folder,
                                resolve_store_url)

log = logging.getLogger(__name__)

PAPER = "hrpqct"


def register(subparsers) -> None:
    """Adds the `hrpqct` command group with `run`, `pilot`, `generate`, `info` and `predict`."""
    parser = subparsers.add_parser(
        PAPER, help="motion-artefact grading of HR-pQCT (Strunck; Walle et al.; Sode et al.): simulated scans")
    sub = parser.add_subparsers(dest="hrpqct_command", metavar="SUBCOMMAND")

    run = sub.add_parser("run", help="simulate a cohort, train baseline and proposed ensembles, QME, report")
    add_run_args(run, presets=("quick", "powered", "paper", "tiny"))
    run.add_argument("--data", type=Path, default=None,
                     help="existing dataset folder (grades.csv + aim/; default: simulate one)")
    run.add_argument("--seeds", type=count(1), default=None, help="override the ensembles per arm")
    run.add_argument("--ensemble-size", type=count(1), default=None, help="override the models per ensemble")
    run.add_argument("--epochs", type=count(1), default=None, help="override the maximum epochs")
    run.add_argument("--workers", type=count(1, 256), default=None,
                     help="processes simulating the cohort (default: up to 4, one per CPU core)")
    run.add_argument("--image-size", type=count(16, 4096), default=None,
                     help="slice size of the graders' input in pixels (default: the preset's); every AIM's "
                          "field is centred on the limb, cropped or padded and resampled to it")
    run.set_defaults(func=_cmd_run)

    pilot = sub.add_parser(
        "pilot", help="choose the powered study's epoch budget on a pilot data seed (validation data only)",
        description="Simulates the powered pool (300 radius + 200 tibia scans) from the pilot seed, trains "
                    "both arms of one unit for 32 epochs and applies the declared rule of hrpqct/pilot.py "
                    "to their validation losses. Writes pilot.json and the cohort into --out.")
    add_pilot_args(pilot, presets=("powered", "tiny"), preset_help="cohort and training settings")
    pilot.add_argument("--epochs", type=count(4), default=None, help="pilot epochs (default 32)")
    pilot.add_argument("--workers", type=count(1, 256), default=None, help="simulating processes")
    pilot.add_argument("--image-size", type=count(16, 4096), default=None,
                       help="input size the simulated scans are resampled to (default: the preset's grid)")
    pilot.add_argument("--candidates", type=count(4), nargs="+", default=None,
                       help="epoch budgets the rule considers (default 16 20 24)")
    pilot.set_defaults(func=_cmd_pilot)

    gen = sub.add_parser("generate", help="write simulated AIM files, grades.csv and projections")
    gen.add_argument("--preset", choices=("quick", "powered", "paper", "tiny"), default="quick",
                     help="simulation settings of this preset (default quick)")
    gen.add_argument("--radius", type=count(0), default=None, help="radius scans (default: the preset's)")
    gen.add_argument("--tibia", type=count(0), default=None, help="tibia scans (default: the preset's)")
    gen.add_argument("--projections", choices=("qme", "all", "none"), default="qme",
                     help="views kept per scan: 'qme' (0 degrees, the next view, 180 degrees: what the QME "
                          "needs; default), 'all' or 'none'")
    gen.add_argument("--out", type=Path, required=True, help="output folder")
    gen.add_argument("--seed", type=SEED, default=0)
    gen.add_argument("--workers", type=count(1, 256), default=None,
                     help="processes simulating the cohort (default: up to 4, one per CPU core)")
    gen.set_defaults(func=_cmd_generate)

    info = sub.add_parser("info", help="load a dataset folder and print grades, agreement and QME")
    info.add_argument("root", type=Path, help="folder with grades.csv and aim/")
    info.add_argument("--slices", type=count(1), default=8, help="equally spaced slices per scan (default 8)")
    info.set_defaults(func=_cmd_info)

    predict = sub.add_parser(
        "predict", help="grade the motion of AIM scans with a run's saved slice grader",
        description="Reads each AIM file as `hrpqct run --data` reads its scans (equally spaced slices, the "
                    "field centred on the limb, cropped or padded to a square and resampled to the model's "
                    "input size), standardises the slices with the run's statistics, grades every slice and "
                    "prints the scan's grade (the vote: rounded mean of the slice grades) and the mean "
                    "probability of each grade 1-5, one line per file, or --json. --model: a bundle folder "
                    "or a run folder with --arm (hrpqct/bundle.py).")
    from hrpqct.config import ARMS
    from shared.cli.predict import add_predict_args

    add_predict_args(predict, files_help="AIM files (XtremeCT grey-value stacks, any in-plane size)",
                     arms=ARMS, default_arm=None)
    predict.set_defaults(func=_cmd_predict)
    parser.set_defaults(func=lambda args: parser.print_help() or 0)


def _workers(value) -> int:
    import os

    return value if value is not None else max(1, min(4, os.cpu_count() or 1))


def _cmd_run(args) -> int:
    from hrpqct.config import get_config
    from hrpqct.experiment import run_experiment
    from shared.training.scale import configure

    overrides = {}
    if args.seeds is not None:
        overrides["seeds"] = args.seeds
    if args.ensemble_size is not None:
        overrides["ensemble_size"] = args.ensemble_size
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.image_size is not None:
        overrides["input_size"] = args.image_size
    config = run_config(args, get_config, overrides=overrides)
    if args.epochs is not None and config.patience >= get_config(config.preset).epochs:
        # A preset without early stopping keeps none at another budget: equal budgets.
        config = dataclasses.replace(config, patience=config.epochs)
    smoke = {}
    if args.smoke:
        from hrpqct.smoke import smoke_config, smoke_run_arguments

        config = smoke_config(config)
        smoke = smoke_run_arguments(config)
    settings = configure(args.strategy, args.precision, xla=args.xla)
    out = prepared_run_folder(args, PAPER, args.preset + ("_smoke" if args.smoke else ""))
    start = time.perf_counter()
    report = run_experiment(config, out_dir=out, store_url=resolve_store_url(args.store), seed=args.seed,
                            progress=not args.no_progress, data_dir=args.data,
                            strategy=None if args.strategy == "default" else settings.strategy,
                            jit_compile=settings.jit_compile, workers=_workers(args.workers),
                            allow_dirty=args.allow_dirty, **smoke)
    print(f"Report: {report}")
    if args.smoke:
        from shared.cli.resources import peak_memory_line

        print(f"wall time: {time.perf_counter() - start:.0f} s")
        print(peak_memory_line())
    return 0


def _cmd_predict(args) -> int:
    from hrpqct.bundle import predict_files
    from shared.cli.predict import print_predictions
    from shared.io.bundle import resolve_bundle

    bundle = resolve_bundle(args.model, name=args.arm)
    classes, rows = predict_files(bundle, args.files)
    print_predictions(classes, rows, as_json=args.json, bundle=bundle)
    return 0


def _cmd_pilot(args) -> int:
    from hrpqct.pilot import PILOT_EPOCHS, run_pilot

    from hrpqct.pilot import BUDGET_CANDIDATES

    result = run_pilot(args.out, seed=args.seed, preset=args.preset, workers=_workers(args.workers),
                       epochs=args.epochs or PILOT_EPOCHS, image_size=args.image_size,
                       candidates=tuple(args.candidates or BUDGET_CANDIDATES))
    budget = result["budget"]
    for c, falls in budget["late_fall"].items():
        print(f"  budget {c}: late fall of the validation loss " +
              ", ".join(f"{arm} {100 * f:+.1f} %" for arm, f in falls.items()))
    print(f"Epoch budget: {budget['epochs']} ({'settled' if budget['settled'] else 'not settled: the cap'}); "
          f"{args.out / ('pilot.json' if args.image_size is None else f'pilot_{args.image_size}.json')}")
    return 0


def _cmd_generate(args) -> int:
    import time

    from hrpqct.config import get_config
    from hrpqct.data import generate_dataset

    c = get_config(args.preset)
    sites = c.sites
    if args.radius is not None:
        sites["radius"] = args.radius
    if args.tibia is not None:
        sites["tibia"] = args.tibia
    if any(n < 0 for n in sites.values()) or sum(sites.values()) < 1:
        raise ValueError(f"need at least one scan. Received: {sites}")
    start = time.perf_counter()
    root = generate_dataset(args.out, scans_per_site={k: v for k, v in sites.items() if v > 0},
                            image_size=c.image_size, oversample=c.oversample, stack_slices=c.stack_slices,
                            n_projections=c.n_projections, field_of_view_mm=c.field_of_view_mm,
                            projection_noise=c.projection_noise, fbp_window=c.fbp_window,
                            grade_counts=c.grade_counts, rater_noise=c.rater_noise, seed=args.seed,
                            projections=args.projections, workers=_workers(args.workers),
                            slices_per_scan=c.slices_per_scan)
    print(f"Wrote {sum(sites.values())} scans in {time.perf_counter() - start:.1f} s to {root}")
    return 0


def _cmd_info(args) -> int:
    import numpy as np

    from hrpqct.data import load_dataset
    from hrpqct.experiment import rater_agreement

    data = load_dataset(args.root, slices_per_scan=args.slices)
    print(f"{len(data['scan_ids'])} scans, slices {data['images'].shape[1:]}")
    for site in np.unique(data["sites"]):
        counts = np.bincount(data["consensus"][data["sites"] == site], minlength=6)[1:]
        print(f"  {site}: consensus grades 1-5 = {counts.tolist()}")
    for key, value in rater_agreement(data["rater_grades"], data["consensus"]).items():
        print(f"  {key}: {value:.3f}")
    if "qme_ssd" in data:
        from scipy.stats import spearmanr

        print(f"  Spearman(QME_SSD, grade) = {spearmanr(data['qme_ssd'], data['consensus'])[0]:.3f}")
    return 0


def demo(out_dir, store_url, progress=True) -> Path:
    """Runs the quick preset into `out_dir`; returns its report.md."""
    from hrpqct.config import get_config
    from hrpqct.experiment import run_experiment

    return run_experiment(get_config("quick"), out_dir=out_dir, store_url=store_url, seed=0, progress=progress,
                          workers=_workers(None))
