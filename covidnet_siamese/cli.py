"""`medrepro covidnet-siamese ...`: run, generate, search, predict."""

from pathlib import Path

PAPER = "covidnet-siamese"


def register(subparsers):
    """Adds `covidnet-siamese` with its `run`, `generate` and `search` subcommands."""
    from shared.cli.options import SEED, add_pilot_args, add_run_args, add_scale_args, add_store_arg, count, number

    parser = subparsers.add_parser(PAPER, help="Siamesifying the COVID-Net: siamese vs single COVID-Net")
    sub = parser.add_subparsers(dest="covidnet_command", metavar="SUBCOMMAND")

    run = sub.add_parser("run", help="end-to-end reproduction (search, final runs, Grad-CAM, report)")
    add_run_args(run, presets=("quick", "powered", "paper", "tiny"))
    run.add_argument("--data", type=Path, default=None,
                     help="COVIDx folder (train/, test/, train_split.txt, test_split.txt); "
                          "default: generate synthetic data into the run folder")
    run.add_argument("--train-split", type=Path, default=None,
                     help="training split file (default: <data>/train_split.txt)")
    run.add_argument("--test-split", type=Path, default=None,
                     help="test split file (default: <data>/test_split.txt)")
    run.add_argument("--skip-bad-images", action="store_true",
                     help="leave unreadable images and bad split-file lines out and list them in "
                          "skipped.json and the report (default: stop at the first)")
    run.add_argument("--batch-norm", choices=("on", "off"), default=None,
                     help="batch normalisation in the trunk (default: the preset's; off in paper, "
                          "which names none)")
    run.add_argument("--no-search", action="store_true",
                     help="skip the grid search; use the preset's default learning rate and batch size")
    run.set_defaults(func=_cmd_run)

    gen = sub.add_parser("generate", help="write synthetic chest X-rays in the COVIDx layout")
    gen.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    gen.add_argument("--preset", choices=("quick", "powered", "paper", "tiny"), default="quick",
                     help="image counts and size of this preset (default: quick)")
    gen.add_argument("--size", type=count(8, 4096), default=None, help="PNG side in pixels (default: the preset's)")
    gen.add_argument("--seed", type=SEED, default=0, help="random seed (default: 0)")
    gen.add_argument("--artefact-strength", type=number(low=0), default=None,
                     help="0..1, how much the border artefacts depend on the class (default: the preset's)")
    gen.set_defaults(func=_cmd_generate)

    search = sub.add_parser("search", help="grid search of learning rate x batch size for one net")
    search.add_argument("--net", choices=("single", "siamese"), required=True)
    search.add_argument("--preset", choices=("quick", "powered", "paper", "tiny"), default="quick")
    search.add_argument("--data", type=Path, required=True, help="COVIDx folder")
    search.add_argument("--out", type=Path, default=None, help="tuner folder (default: runs/covidnet_siamese/search)")
    search.add_argument("--seed", type=SEED, default=0)
    add_store_arg(search)
    add_scale_args(search)
    search.set_defaults(func=_cmd_search)

    pilot = sub.add_parser(
        "pilot", help="choose a reduced preset's head width and budget on a pilot data seed",
        description="Generates the preset's training split from a pilot data seed (not a study "
                    "seed), trains the single net at every candidate head width and the siamese "
                    "net at the paper's step ratio, scores both on the whole validation split after "
                    "every epoch and prints the head width and budget share the declared rule "
                    "chooses (covidnet_siamese/pilot.py). The test split is never read. Writes "
                    "pilot.json and the data into --out.")
    add_pilot_args(pilot, presets=("powered", "quick", "tiny"), preset_help="the preset whose sizes and trunk the pilot uses")
    pilot.set_defaults(func=_cmd_pilot)

    predict = sub.add_parser(
        "predict", help="classify image files with a finished run's saved model",
        description="Classifies PNG / JPEG images with an arm's bundle (RUN_DIR/bundles/<arm>, or the "
                    "bundle folder itself; run folders of earlier versions with bundle.json are read "
                    "too): one line per file with the class and a score per class (similarity to "
                    "the class templates for the siamese net, softmax probability otherwise), or --json.")
    from shared.cli.predict import add_predict_args

    add_predict_args(predict, files_help="PNG or JPEG files (8 or 16 bit, grey or colour)",
                     arms=("siamese", "single", "single_cropped"), default_arm="siamese")
    predict.set_defaults(func=_cmd_predict)
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])


def _scaled(args, config=None):
    """The config (default: the preset) with `--xla` applied, after setting `--precision`;
    and the `--strategy`.

    The strategy (None for the default) is handed to the run, which builds and trains
    each model inside its scope: a scope around the whole run would be dropped by the
    Keras session clears between models.
    """
    import dataclasses

    from covidnet_siamese.config import get_preset
    from shared.training.scale import make_strategy, set_precision

    if config is None:
        config = get_preset(args.preset)
    set_precision(args.precision)
    # --xla compiles; without it a config read back from a run keeps its own setting.
    config = dataclasses.replace(config, jit_compile=bool(args.xla) or bool(config.jit_compile))
    return config, (None if args.strategy == "default" else make_strategy(args.strategy))


def _cmd_run(args) -> int:
    from covidnet_siamese.config import get_preset
    from covidnet_siamese.experiment import run_experiment
    from shared.cli.config_overrides import run_config
    from shared.cli.options import resolve_store_url, prepared_run_folder

    overrides = {}
    if args.no_search:
        overrides["run_search"] = False
    if args.batch_norm is not None:
        overrides["batch_norm"] = args.batch_norm == "on"
    config, strategy = _scaled(args, run_config(args, get_preset, preset_field="name",
                                                overrides=overrides))
    if args.data is not None and not Path(args.data).is_dir():
        raise ValueError(f"--data {args.data}: no such folder; expected a COVIDx folder with train/ and test/")
    for flag, path in (("--train-split", args.train_split), ("--test-split", args.test_split)):
        if path is not None and args.data is None:
            raise ValueError(f"{flag} {path}: needs --data (the synthetic data writes its own split files)")
        if path is not None and not Path(path).is_file():
            raise ValueError(f"{flag} {path}: split file not found")
    if args.smoke:
        from covidnet_siamese.smoke import run_smoke
        from shared.cli.resources import peak_memory_line

        out = prepared_run_folder(args, "covidnet_siamese", f"{args.preset}_smoke")
        for line in run_smoke(config, out, seed=args.seed):
            print(line)
        print(peak_memory_line())
        return 0
    out = prepared_run_folder(args, "covidnet_siamese", args.preset)
    report = run_experiment(config, out, store_url=resolve_store_url(args.store), seed=args.seed,
                            data_root=args.data, show_progress=not args.no_progress, strategy=strategy,
                            train_split_file=args.train_split, test_split_file=args.test_split,
                            on_error="skip" if args.skip_bad_images else "raise",
                            allow_dirty=args.allow_dirty)
    print(f"Report: {report}")
    return 0


def _cmd_predict(args) -> int:
    from covidnet_siamese.inference import predict_images

    from shared.cli.predict import print_predictions

    names, rows = predict_images(args.model, args.files, arm=args.arm)
    print_predictions(names, rows, as_json=args.json, bundle=args.model)
    return 0


def _cmd_generate(args) -> int:
    from covidnet_siamese.config import get_preset
    from covidnet_siamese.data import generate_covidx

    config = get_preset(args.preset)
    written = generate_covidx(args.out, counts=config.counts, size=args.size or config.raw_size, seed=args.seed,
                              difficulty=config.difficulty, artefact_strength=args.artefact_strength)
    for split, path in written.items():
        print(f"{split}: {path}")
    return 0


def _cmd_search(args) -> int:
    import json

    from covidnet_siamese.data import load_covidx
    from covidnet_siamese.experiment import EXPERIMENT
    from covidnet_siamese.search import grid_search
    from shared.cli.options import resolve_store_url

    config, strategy = _scaled(args)
    data = load_covidx(args.data, size=config.image_size, val_fraction=config.val_fraction, seed=args.seed,
                       val_counts=config.counts["val"])
    out = args.out or Path("runs") / "covidnet_siamese" / "search"
    result = grid_search(args.net, config, data, store=resolve_store_url(args.store),
                         experiment=EXPERIMENT, directory=out, seed=args.seed, strategy=strategy)
    print(json.dumps(result, indent=2))
    return 0


def demo(out_dir, store_url, progress=True) -> Path:
    """Runs the quick preset into `out_dir`; returns the path of its report.md."""
    from covidnet_siamese.config import quick
    from covidnet_siamese.experiment import run_experiment

    return run_experiment(quick(), out_dir, store_url=store_url, seed=0, show_progress=progress)


def _cmd_pilot(args) -> int:
    import dataclasses

    from covidnet_siamese.config import get_preset
    from covidnet_siamese.pilot import PILOT_SINGLE_EPOCHS, pilot_markdown, run_pilot

    config = get_preset(args.preset)
    epochs = PILOT_SINGLE_EPOCHS
    if args.preset == "tiny":
        config, epochs = dataclasses.replace(config, final_pairs_per_epoch=64), 2
    result = run_pilot(config, args.out, seed=args.seed, single_epochs=epochs)
    print(pilot_markdown(result), end="")
    chosen = result["choice"]["chosen"]
    print(f"chosen: head {result['choice']['fc_units']} units, budget share {chosen['share']:g} "
          f"(single {chosen['single_epochs']} epochs, siamese {chosen['siamese_epochs']} epochs)")
    print(f"Pilot: {Path(args.out) / 'pilot.json'}")
    return 0
