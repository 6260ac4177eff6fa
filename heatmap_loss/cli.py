"""`medrepro heatmap-loss ...`: run (synthetic data or ACDC), generate, acdc-info."""

import logging
from pathlib import Path

from shared.cli.config_overrides import run_config
from shared.cli.predict import add_predict_args, print_predictions
from shared.cli.options import (SEED, add_run_args, count, number, prepared_run_folder,
                                resolve_store_url)

log = logging.getLogger(__name__)

PAPER = "heatmap-loss"


def register(subparsers) -> None:
    """Adds the `heatmap-loss` command group with `run`, `generate` and `acdc-info`."""
    parser = subparsers.add_parser(
        PAPER, help="feature attribution in the loss (Callanan 2022): synthetic cardiac MRI")
    sub = parser.add_subparsers(dest="heatmap_command", metavar="SUBCOMMAND")

    run = sub.add_parser("run", help="experiment 1 or 2: Bayesian search per group, "
                                     "overlaps, statistical report")
    add_run_args(run, presets=("quick", "powered", "paper", "tiny"))
    run.add_argument("--experiment", type=int, choices=(1, 2), default=1,
                     help="1: sex-dependent anatomy; 2: marker square on male images (default 1)")
    run.add_argument("--models-per-group", type=count(1), default=None,
                     help="override the preset's number of models (trials) per group")
    run.add_argument("--weights", default=None,
                     help="backbone weights: 'imagenet' (download; full width only) or a "
                          ".weights.h5 path (default: random initialisation)")
    run.add_argument("--heatmap-weight", type=number(low=0), default=None,
                     help="override the weight of the attribution penalty")
    run.add_argument("--method", choices=("hirescam", "gradcam"), default=None,
                     help="attribution method of the loss and the overlaps (default hirescam)")
    run.add_argument("--data", type=Path, default=None, metavar="PATH",
                     help="train on this data instead of generating images: an ACDC folder "
                          "(patientNNN/ folders, or one holding training/) or a folder of "
                          "train.npz/val.npz/test.npz written by `generate`")
    run.add_argument("--task", choices=("binary", "4class", "5class"), default="binary",
                     help="ACDC labels: normal vs diseased (thesis), NOR/DCM/HCM/RV, or all "
                          "five groups (default binary)")
    run.add_argument("--skip-bad-patients", action="store_true",
                     help="ACDC: report and skip a patient whose files cannot be read "
                          "instead of stopping")
    run.set_defaults(func=_cmd_run)

    gen = sub.add_parser("generate", help="write synthetic train/val/test .npz files and a sample sheet")
    gen.add_argument("--experiment", type=int, choices=(1, 2), default=1)
    gen.add_argument("--n", type=count(1), default=13_000,
                     help="total images, split 10:3 train/val as in the thesis (default 13000)")
    gen.add_argument("--n-test", type=count(0), default=0, help="test images (default 0)")
    gen.add_argument("--out", type=Path, required=True, help="output folder")
    gen.add_argument("--seed", type=SEED, default=0)
    gen.set_defaults(func=_cmd_generate)

    acdc = sub.add_parser("acdc-info", help="load an ACDC folder and print slice and class counts")
    acdc.add_argument("root", type=Path, help="ACDC training/ or testing/ folder")
    acdc.add_argument("--task", choices=("binary", "4class", "5class"), default="binary")
    acdc.add_argument("--skip-bad-patients", action="store_true",
                      help="report and skip a patient whose files cannot be read")
    acdc.set_defaults(func=_cmd_acdc)

    predict = sub.add_parser(
        "predict", help="classify image files with a run's saved group classifier",
        description="Classifies PNG / JPEG / TIFF images (8 or 16 bit, grey or colour) with the "
                    "classifier a run kept for a group (RUN_DIR/bundles/<group>, chosen by "
                    "validation accuracy): one line per file with the predicted class and the "
                    "softmax probability of every class, or --json.")
    add_predict_args(predict, files_help="PNG, JPEG or TIFF images", arms=("cce", "heatmap"),
                     default_arm="heatmap")
    predict.set_defaults(func=_cmd_predict)
    parser.set_defaults(func=lambda args: parser.print_help() or 0)


def _cmd_predict(args) -> int:
    from heatmap_loss.bundle import predict_files
    from shared.io.bundle import resolve_bundle

    bundle = resolve_bundle(args.model, name=args.arm)
    classes, rows = predict_files(bundle, args.files)
    print_predictions(classes, rows, as_json=args.json, bundle=bundle)
    return 0


def _cmd_run(args) -> int:
    from heatmap_loss.config import get_config
    from shared.training.scale import configure

    overrides = {}
    if args.models_per_group is not None:
        overrides["models_per_group"] = args.models_per_group
    if args.weights is not None:
        overrides["backbone_weights"] = args.weights
    if args.heatmap_weight is not None:
        overrides["heatmap_weight"] = args.heatmap_weight
    if args.method is not None:
        overrides["method"] = args.method
    if args.weights not in (None, "imagenet") and not Path(args.weights).is_file():
        raise FileNotFoundError(f"--weights: file not found: {args.weights} (expected "
                                "'imagenet' or a .weights.h5 file)")
    config = run_config(args, get_config, overrides=overrides)
    kind = None if args.data is None else data_kind(args.data)
    settings = configure(args.strategy, args.precision, xla=args.xla)
    if args.smoke:
        from heatmap_loss.smoke import run_smoke
        from shared.cli.resources import peak_memory_line

        out = prepared_run_folder(args, "heatmap_loss", f"{args.preset}_exp{args.experiment}_smoke")
        summary = run_smoke(config, out, experiment=args.experiment, seed=args.seed)
        for line in summary:
            print(line)
        print(peak_memory_line())
        return 0
    name = "acdc" if kind == "acdc" else f"exp{args.experiment}"
    out = prepared_run_folder(args, "heatmap_loss", f"{args.preset}_{name}")
    common = dict(out_dir=out, store_url=resolve_store_url(args.store), seed=args.seed,
                  progress=not args.no_progress,
                  strategy=None if args.strategy == "default" else settings.strategy,
                  jit_compile=settings.jit_compile, allow_dirty=args.allow_dirty)
    if kind == "acdc":
        from heatmap_loss.experiment import run_acdc

        report = run_acdc(config, args.data, task=args.task,
                          skip_bad_patients=args.skip_bad_patients, **common)
    else:
        from heatmap_loss.experiment import run_experiment

        report = run_experiment(config, experiment=args.experiment, data_dir=args.data, **common)
    print(f"Report: {report}")
    return 0


def data_kind(path) -> str:
    """"acdc" or "synthetic": what `run --data PATH` holds.

    Raises:
        FileNotFoundError: no such folder.
        ValueError: the folder holds neither layout (names the folder).
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"--data: folder not found: {path}")
    if (path / "train.npz").exists():
        return "synthetic"
    from heatmap_loss.acdc import find_acdc_root

    find_acdc_root(path)  # raises naming the folder
    return "acdc"


def _cmd_generate(args) -> int:
    import time

    from heatmap_loss.data import write_dataset

    if args.n < 2:
        raise ValueError(f"--n must be at least 2. Received: {args.n}")
    n_train = round(args.n * 10 / 13)
    start = time.perf_counter()
    paths = write_dataset(args.out, experiment=args.experiment, n_train=n_train,
                          n_val=args.n - n_train, n_test=args.n_test, seed=args.seed)
    print(f"Wrote {args.n + args.n_test} images in {time.perf_counter() - start:.1f} s:")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return 0


def _cmd_acdc(args) -> int:
    import numpy as np

    from heatmap_loss.acdc import load_acdc

    data = load_acdc(args.root, task=args.task, skip_bad_patients=args.skip_bad_patients)
    counts = np.bincount(data["labels"], minlength=len(data["classes"]))
    print(f"{len(data['labels'])} slices from {len(set(data['patients']))} patients")
    for patient, reason in data["skipped"]:
        print(f"  skipped {patient}: {reason}")
    for name, count in zip(data["classes"], counts):
        print(f"  {name}: {count} slices, class weight {data['class_weight'][list(data['classes']).index(name)]:.3f}")
    return 0


def demo(out_dir, store_url, progress=True) -> Path:
    """Runs experiment 1 at the quick preset into `out_dir`; returns its report.md."""
    from heatmap_loss.config import get_config
    from heatmap_loss.experiment import run_experiment

    return run_experiment(get_config("quick"), experiment=1, out_dir=out_dir,
                          store_url=store_url, seed=0, progress=progress)
