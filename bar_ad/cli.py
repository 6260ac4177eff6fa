"""`medrepro bar-ad ...`: run, generate, frameworks."""

from pathlib import Path

PAPER = "bar-ad"


def register(subparsers):
    """Adds `bar-ad` with its `run`, `generate` and `frameworks` subcommands."""
    from shared.cli.options import SEED, add_pilot_args, add_run_args, count

    parser = subparsers.add_parser(
        PAPER, help="Brain-Aware Replacements + continuous supervised contrastive pre-training (AD vs CN)")
    sub = parser.add_subparsers(dest="bar_ad_command", metavar="SUBCOMMAND")

    run = sub.add_parser("run", help="Table 1 reproduction: pre-train, fine-tune, 5-fold CV, report")
    add_run_args(run, presets=("quick", "powered", "paper", "tiny"))
    run.add_argument("--framework", nargs="+", default=None, metavar="NAME",
                     help="frameworks to run (see `medrepro bar-ad frameworks`); 'table1' = all "
                          "Table 1 rows, 'ablations' = all ablations (default: the preset's)")
    run.add_argument("--data", type=Path, default=None,
                     help="ADNI folder (ADNI/ + collection CSV); default: generate the "
                          "synthetic cohort into the run folder")
    run.add_argument("--folds", type=count(1), default=None,
                     help="run only the first N folds (default: the preset's)")
    run.add_argument("--epochs", type=count(0), nargs=2, default=None, metavar=("PRE", "FINE"),
                     help="pre-training and fine-tuning epochs (default: the preset's)")
    run.set_defaults(func=_cmd_run)

    gen = sub.add_parser("generate", help="write the synthetic AD/CN cohort in the ADNI layout")
    gen.add_argument("--out", type=Path, required=True, help="folder to write (gets ADNI/ and a CSV)")
    gen.add_argument("--preset", choices=("quick", "paper", "tiny"), default="quick",
                     help="cohort size and voxel size of this preset (default: quick)")
    gen.add_argument("--n-ad", type=count(1), default=None, help="AD subjects (default: the preset's)")
    gen.add_argument("--n-cn", type=count(1), default=None, help="CN subjects (default: the preset's)")
    gen.add_argument("--seed", type=SEED, default=0, help="random seed (default: 0)")
    gen.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    gen.set_defaults(func=_cmd_generate)

    pilot = sub.add_parser(
        "pilot", help="choose the anchored arm's settings on a pilot data seed",
        description="Pre-trains the anchored soft-label arm's candidate settings (kernel "
                    "width x anchor weight) and Eq. 4 as printed on the powered cohort of a "
                    "pilot seed, measures collapse and label-distance agreement on held-out "
                    "pool scans (no fine-tuning, no test set, no arm comparison) and prints "
                    "the table and the setting the declared rule chooses (bar_ad/pilot.py). "
                    "Writes pilot.json and the cohort into --out.")
    add_pilot_args(pilot, presets=("powered", "tiny"), preset_help="cohort and pre-training settings")
    pilot.set_defaults(func=_cmd_pilot)
    schedule = sub.add_parser(
        "schedule-pilot", help="choose the powered study's epochs and learning rates on a pilot seed",
        description="Generates the powered cohort from the pilot seed, pre-trains one arm per "
                    "objective at the paper's rate (1e-4) and fine-tunes at each candidate "
                    "rate with the epoch of best validation AUC kept (validation scans "
                    "outside the training draw, never the test set); prints the tables and "
                    "the settings the declared rules choose (bar_ad/schedule_pilot.py). "
                    "Writes schedule_pilot.json and the cohort into --out.")
    add_pilot_args(schedule, presets=("powered", "tiny"),
                   preset_help="cohort and fine-tuning settings")
    schedule.set_defaults(func=_cmd_schedule_pilot)

    predict = sub.add_parser(
        "predict", help="classify NIfTI scans (AD vs CN) with a run's saved classifier",
        description="Reads each NIfTI scan as a run reads its training scans (MNI placement and "
                    "alignment checks, resampling to the atlas grid, intensity scaling), centres it "
                    "with the bundle's training statistics and prints P(CN) and P(AD), one line "
                    "per file, or --json. --model: a bundle folder or a run folder with --arm.")
    from shared.cli.predict import add_predict_args

    add_predict_args(predict, files_help="NIfTI scans (.nii, .nii.gz), skull-stripped, in MNI space",
                     arms=(), default_arm=None)
    predict.set_defaults(func=_cmd_predict)

    fws = sub.add_parser("frameworks", help="list the Table 1 frameworks and ablations")
    fws.set_defaults(func=_cmd_frameworks)
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])


def _resolve_frameworks(names):
    from bar_ad.config import ABLATIONS, TABLE1, get_framework

    if names is None:
        return None
    out = []
    for name in names:
        expanded = {"table1": TABLE1, "ablations": ABLATIONS}.get(name, (name,))
        for fw in expanded:
            get_framework(fw)
            if fw not in out:
                out.append(fw)
    return tuple(out)


def _cmd_predict(args) -> int:
    from bar_ad.bundle import predict_files
    from shared.cli.predict import print_predictions
    from shared.io.bundle import resolve_bundle

    bundle = resolve_bundle(args.model, name=args.arm)
    classes, rows = predict_files(bundle, args.files)
    print_predictions(classes, rows, as_json=args.json, bundle=bundle)
    return 0


def _cmd_run(args) -> int:
    import dataclasses

    from bar_ad.config import get_config
    from bar_ad.experiment import run_experiment
    from shared.cli.config_overrides import run_config
    from shared.cli.options import resolve_store_url, prepared_run_folder
    from shared.training.scale import configure

    config = run_config(args, get_config)
    settings = configure(args.strategy, args.precision, xla=args.xla)
    if args.folds is not None:
        config = dataclasses.replace(config, folds_run=args.folds)
    if args.epochs is not None:
        config = dataclasses.replace(config, pretrain_epochs=args.epochs[0],
                                     finetune_epochs=args.epochs[1])
    frameworks = _resolve_frameworks(args.framework)
    smoke = {}
    if args.smoke:
        from bar_ad.smoke import smoke_config, smoke_run_arguments

        config = smoke_config(config)
        smoke = smoke_run_arguments(config.frameworks if frameworks is None else frameworks)
    out = prepared_run_folder(args, "bar_ad", f"{args.preset}_smoke" if args.smoke
                              else args.preset)
    report = run_experiment(config, out, store_url=resolve_store_url(args.store),
                            frameworks=frameworks, seed=args.seed,
                            data_root=args.data, progress=not args.no_progress,
                            strategy=None if args.strategy == "default" else settings.strategy,
                            jit_compile=settings.jit_compile, precision=args.precision,
                            allow_dirty=args.allow_dirty, **smoke)
    print(f"Report: {report}")
    if args.smoke:
        from shared.cli.resources import peak_memory_line

        print(peak_memory_line())
    return 0


def parse_overrides(items):
    """["sigma=0.2", "class_token=false", "head_units=16,8"] -> typed `BarConfig` overrides
    (`shared.cli.config_overrides.parse_overrides` against the paper preset's fields)."""
    from bar_ad.config import BarConfig
    from shared.cli.config_overrides import parse_overrides as parse

    return parse(items, BarConfig())


def _cmd_pilot(args) -> int:
    from bar_ad.pilot import pilot_markdown, run_pilot

    result = run_pilot(_pilot_config(args.preset), args.out, seed=args.seed)
    print(pilot_markdown(result), end="")
    chosen = result["chosen"]
    print("chosen: none (every candidate collapsed)" if chosen is None else
          f"chosen: sigma {chosen['sigma']:g}, anchor weight {chosen['instance_weight']:g}")
    print(f"Pilot: {Path(args.out) / 'pilot.json'}")
    return 0


def _cmd_schedule_pilot(args) -> int:
    from bar_ad.schedule_pilot import run_schedule_pilot, schedule_pilot_markdown

    result = run_schedule_pilot(_pilot_config(args.preset), args.out, seed=args.seed)
    print(schedule_pilot_markdown(result), end="")
    print(f"chosen: pre-training {result['pretrain_epochs']} epochs at "
          f"{result['pretrain_lr']:g}, fine-tuning at {result['finetune_lr']:g}, "
          f"from scratch at {result['scratch_lr']:g}")
    print(f"Pilot: {Path(args.out) / 'schedule_pilot.json'}")
    return 0


def _pilot_config(preset):
    """The powered preset, or a tiny cohort in the powered study's design (tests)."""
    from bar_ad.config import get_config

    if preset == "tiny":
        return get_config("tiny", design="draws", n_ad=6, n_cn=8, scans_per_subject=(1, 1),
                          n_test_subjects=4, n_draws=1, draw_subjects=6, val_subjects=4,
                          select_on="val_auc")
    return get_config(preset)


def _cmd_generate(args) -> int:
    import dataclasses

    from bar_ad.config import get_config
    from bar_ad.experiment import generate_cohort
    from shared.cli.progress import progress

    config = get_config(args.preset)
    if args.n_ad is not None:
        config = dataclasses.replace(config, n_ad=args.n_ad)
    if args.n_cn is not None:
        config = dataclasses.replace(config, n_cn=args.n_cn)
    csv_path = generate_cohort(config, args.out, seed=args.seed,
                               progress=lambda it: progress(it, desc="generate",
                                                            enabled=not args.no_progress))
    print(f"Collection CSV: {csv_path}")
    return 0


def _cmd_frameworks(args) -> int:
    from bar_ad.config import ABLATIONS, FRAMEWORKS, TABLE1

    for title, names in (("Table 1", TABLE1), ("Ablations", ABLATIONS)):
        print(f"{title}:")
        for name in names:
            print(f"  {name:28s} {FRAMEWORKS[name].label}")
    return 0


def demo(out_dir, store_url, progress=True) -> Path:
    """Runs the quick preset into `out_dir`; returns the path of its report.md."""
    from bar_ad.config import get_config
    from bar_ad.experiment import run_experiment

    return run_experiment(get_config("quick"), out_dir, store_url=store_url, seed=0,
                          progress=progress)
