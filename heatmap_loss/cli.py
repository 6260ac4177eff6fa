"""`medrepro heatmap-loss ...`: run, generate, acdc-info."""

import logging
from pathlib import Path

from shared.cli.options import add_run_args, resolve_store_url, prepared_run_folder

log = logging.getLogger(__name__)

PAPER = "heatmap-loss"


def register(subparsers) -> None:
    """Adds the `heatmap-loss` command group with `run`, `generate` and `acdc-info`."""
    parser = subparsers.add_parser(
        PAPER, help="feature attribution in the loss (Callanan 2022): synthetic cardiac MRI")
    sub = parser.add_subparsers(dest="heatmap_command", metavar="SUBCOMMAND")

    run = sub.add_parser("run", help="experiment 1 or 2: Bayesian search per group, "
                                     "overlaps, statistical report")
    add_run_args(run, presets=("quick", "paper", "tiny"))
    run.add_argument("--experiment", type=int, choices=(1, 2), default=1,
                     help="1: sex-dependent anatomy; 2: marker square on male images (default 1)")
    run.add_argument("--models-per-group", type=int, default=None,
                     help="override the preset's number of models (trials) per group")
    run.add_argument("--weights", default=None,
                     help="backbone weights: 'imagenet' (download; full width only) or a "
                          ".weights.h5 path (default: random initialisation)")
    run.add_argument("--heatmap-weight", type=float, default=None,
                     help="override the weight of the attribution penalty")
    run.add_argument("--method", choices=("hirescam", "gradcam"), default=None,
                     help="attribution method of the loss and the overlaps (default hirescam)")
    run.set_defaults(func=_cmd_run)

    gen = sub.add_parser("generate", help="write synthetic train/val/test .npz files and a sample sheet")
    gen.add_argument("--experiment", type=int, choices=(1, 2), default=1)
    gen.add_argument("--n", type=int, default=13_000,
                     help="total images, split 10:3 train/val as in the thesis (default 13000)")
    gen.add_argument("--n-test", type=int, default=0, help="test images (default 0)")
    gen.add_argument("--out", type=Path, required=True, help="output folder")
    gen.add_argument("--seed", type=int, default=0)
    gen.set_defaults(func=_cmd_generate)

    acdc = sub.add_parser("acdc-info", help="load an ACDC folder and print slice and class counts")
    acdc.add_argument("root", type=Path, help="ACDC training/ or testing/ folder")
    acdc.add_argument("--task", choices=("binary", "5class"), default="binary")
    acdc.set_defaults(func=_cmd_acdc)
    parser.set_defaults(func=lambda args: parser.print_help() or 0)


def _cmd_run(args) -> int:
    from heatmap_loss.config import get_config
    from heatmap_loss.experiment import run_experiment
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
    config = get_config(args.preset, **overrides)
    settings = configure(args.strategy, args.precision, xla=args.xla)
    out = prepared_run_folder(args, "heatmap_loss", f"{args.preset}_exp{args.experiment}")
    report = run_experiment(config, experiment=args.experiment, out_dir=out,
                            store_url=resolve_store_url(args.store), seed=args.seed,
                            progress=not args.no_progress,
                            strategy=None if args.strategy == "default" else settings.strategy,
                            jit_compile=settings.jit_compile)
    print(f"Report: {report}")
    return 0


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

    data = load_acdc(args.root, task=args.task)
    counts = np.bincount(data["labels"], minlength=len(data["classes"]))
    print(f"{len(data['labels'])} slices from {len(set(data['patients']))} patients")
    for name, count in zip(data["classes"], counts):
        print(f"  {name}: {count} slices, class weight {data['class_weight'][list(data['classes']).index(name)]:.3f}")
    return 0


def demo(out_dir, store_url, progress=True) -> Path:
    """Runs experiment 1 at the quick preset into `out_dir`; returns its report.md."""
    from heatmap_loss.config import get_config
    from heatmap_loss.experiment import run_experiment

    return run_experiment(get_config("quick"), experiment=1, out_dir=out_dir,
                          store_url=store_url, seed=0, progress=progress)
