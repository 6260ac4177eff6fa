"""`medrepro lge-qa {run,generate,detect,predict}`: the command line of the LGE-MRI quality reproduction."""

import logging
from pathlib import Path

from shared.cli.config_overrides import run_config
from shared.cli.options import (SEED, add_run_args, add_store_arg, count, number,
                                prepared_run_folder, resolve_store_url)

PAPER = "lge-qa"
DISTRIBUTE_CHOICES = ("default", "mirrored", "multi-worker")  # shared.scale.STRATEGIES


def register(subparsers) -> None:
    """Adds `lge-qa` with its `run`, `generate`, `detect` and `predict` subcommands."""
    parser = subparsers.add_parser(
        PAPER, help="two-stage LGE-MRI quality assessment (Sultan et al.)",
        description="LA detector + QA networks (baseline, multi-task, SupCon-pretrained) on LGE-MRI.")
    sub = parser.add_subparsers(dest="lge_qa_command", metavar="SUBCOMMAND", required=True)

    run = sub.add_parser("run", help="end-to-end reproduction (Table 2, Figs. 2-3)",
                         conflict_handler="resolve")
    add_run_args(run, presets=("tiny", "quick", "powered", "paper"), default_preset="quick")
    # --strategy names the paper's QA training strategy here (the paper's word for its
    # three methods); it replaces the shared tf.distribute flag, which is --distribute.
    run.add_argument("--strategy", dest="qa_strategy", default="all",
                     choices=["baseline", "multitask", "contrastive", "all"],
                     help="the paper's QA training strategy (default: all three). Not the "
                          "tf.distribute strategy: that one is --distribute in this command")
    run.add_argument("--distribute", choices=list(DISTRIBUTE_CHOICES), default="default",
                     help="tf.distribute strategy every network is built and compiled under: "
                          "default (one device), mirrored (all local GPUs, or the CPUs), "
                          "multi-worker (reads TF_CONFIG). Other papers' run commands call this "
                          "flag --strategy; here --strategy is the paper's QA strategy "
                          "(default: default)")
    run.add_argument("--data", type=Path, default=None,
                     help="dataset root in the challenge layout (<root>/segmentation/<CASE>/, "
                          "<root>/quality/<CASE>/, <root>/quality_scores.csv), only read; "
                          "default: a phantom written into the run folder")
    run.add_argument("--strict", action="store_true",
                     help="refuse scored cases found only in quality_scores.csv or only on disk "
                          "(default: leave them out with a warning)")
    run.add_argument("--repetitions", type=count(1), default=None,
                     help="override the preset's repetitions (the paired seeds of --preset powered)")
    run.add_argument("--correlation", choices=("high", "low"), default=None,
                     help="declared correlation of the phantom's quality attributes: high (as the "
                          "paper states, default) or low (the second condition)")
    run.add_argument("--threshold",
                     type=number(low=0, high=1, low_open=True, high_open=True), default=None, help="LA detector threshold t")
    run.add_argument("--encoder-weights", type=Path, default=None, metavar="PATH",
                     help="a .weights.h5 file of the ResNet34 encoder (same filters and blocks as the "
                          "preset), e.g. ImageNet weights converted by the user; a frozen baseline "
                          "encoder on real data (--data) is refused without it")
    run.add_argument("--gates-only", action="store_true",
                     help="--preset powered: measure the gates (data, oracle feature, baseline on the "
                          "gate cohort) and stop before any arm trains")
    run.set_defaults(func=_cmd_run)

    gen = sub.add_parser("generate", help="write the synthetic LGE phantom in the challenge layout")
    gen.add_argument("--out", type=Path, required=True, help="output folder")
    gen.add_argument("--preset", choices=("tiny", "quick", "powered", "paper"), default="quick",
                     help="cohort sizes and volume shape of this preset (default: quick)")
    gen.add_argument("--correlation", choices=("high", "low"), default=None,
                     help="declared correlation of the quality attributes: high (default) or low")
    gen.add_argument("--seed", type=SEED, default=0)
    gen.add_argument("--n-segmentation", type=count(0), default=None, help="masks-only scans")
    gen.add_argument("--n-scored", type=count(1), default=None, help="scored scans")
    gen.add_argument("--no-progress", action="store_true")
    gen.set_defaults(func=_cmd_generate)
    add_store_arg(gen)

    det = sub.add_parser("detect", help="stage one only: train the LA detector and select the LA slices "
                                        "of NRRD cases (no scores table needed)")
    det.add_argument("--data", type=Path, required=True,
                     help="root holding segmentation/<CASE>/lgemri.nrrd + laendo.nrrd (the detector's "
                          "training cohort); only read")
    det.add_argument("--cases", type=Path, default=None,
                     help="folder of <CASE>/lgemri.nrrd to select slices of (default: <data>/quality)")
    det.add_argument("--out", type=Path, required=True, help="output folder (slice_selection.csv, "
                                                             "detector.json, the detector's weights)")
    det.add_argument("--preset", choices=("tiny", "quick", "paper"), default="paper",
                     help="image size and U-Net of this preset (default: paper)")
    det.add_argument("--seed", type=SEED, default=0)
    det.add_argument("--threshold", type=number(low=0, high=1, low_open=True, high_open=True), default=None,
                     help="LA detector threshold t (default: the preset's)")
    det.set_defaults(func=_cmd_detect)

    predict = sub.add_parser(
        "predict", help="score the image quality of NRRD LGE volumes with a run's saved networks",
        description="Reads each NRRD volume as a run reads its scans (intensities scaled by the volume's "
                    "99.5th percentile, axial slices resized to the bundle's input size), keeps the slices "
                    "the run's LA detector selects (the la_detector bundle beside the QA bundle: an LA "
                    "probability above the run's threshold t, else the three most probable slices; the "
                    "same selection as the run's QA input, not central slices), scores each kept slice "
                    "with the QA network and prints, per volume, the mean probability that each of the "
                    "four observer scores is diagnostic and the scan label (mode of the slices' "
                    "fibrosis-quality predictions), one line per file, or --json. --model: a QA bundle "
                    "folder or a run folder with --arm (its only QA bundle without).")
    from lge_qa.config import ARMS
    from shared.cli.predict import add_predict_args

    add_predict_args(predict, files_help="NRRD LGE volumes (lgemri.nrrd), 3D (X, Y, Z), Z axial",
                     arms=ARMS, default_arm=None)
    predict.set_defaults(func=_cmd_predict)


def _strategy_args(name):
    from lge_qa.config import STRATEGIES

    return STRATEGIES if name == "all" else (name,)


def _cmd_run(args) -> int:
    from lge_qa.config import RECORD_KEYS, get_config, with_overrides
    from shared.cli.resources import peak_memory_line
    from shared.training.scale import configure

    overrides = {"seed": args.seed}
    if args.repetitions is not None:
        overrides["repetitions"] = args.repetitions
    if args.threshold is not None:
        overrides["detection_threshold"] = args.threshold
    if args.correlation is not None:
        overrides["correlation_level"] = args.correlation
    if args.encoder_weights is not None:
        if not args.encoder_weights.is_file():
            raise FileNotFoundError(f"--encoder-weights {args.encoder_weights}: no such file; expected a "
                                    f".weights.h5 file of the ResNet34 encoder")
        overrides["encoder_weights"] = str(args.encoder_weights)
    cfg = run_config(args, get_config, record_keys=RECORD_KEYS, replace=with_overrides,
                     overrides=overrides)
    check_real_data(cfg, args.data, _strategy_args(args.qa_strategy))
    if args.gates_only and (args.smoke or not cfg.training_sizes):
        raise ValueError(f"--gates-only: expected --preset powered (a preset with training sizes) "
                         f"without --smoke. Received: --preset {args.preset}"
                         f"{' --smoke' if args.smoke else ''}")
    scale = configure(args.distribute, args.precision, args.xla)
    distribute = None if args.distribute == "default" else scale.strategy
    out = prepared_run_folder(args, PAPER, args.preset)
    common = dict(out_dir=out, store_url=resolve_store_url(args.store), data_root=args.data,
                  progress=not args.no_progress, distribute=distribute, jit_compile=scale.jit_compile,
                  strict=args.strict, allow_dirty=args.allow_dirty)
    if args.smoke:
        from lge_qa.smoke import smoke_config

        cfg = smoke_config(cfg)
    if cfg.training_sizes:
        from lge_qa.limited import run_limited_study

        result = run_limited_study(cfg, gates_only=args.gates_only, **common)
        print(result["table"] if not args.gates_only else gates_summary(result))
    else:
        from lge_qa.experiment import run_experiment
        from lge_qa.report import table_markdown

        result = run_experiment(cfg, strategies=_strategy_args(args.qa_strategy),
                                require_both_classes=not args.smoke, **common)
        print(table_markdown(result["summary"]))
    print(f"report: {result['report']}")
    if args.smoke:
        print(peak_memory_line())
    return 0


def check_real_data(cfg, data_root, strategies) -> None:
    """Refuses, in one line, what would run but answer nothing on a user's data (a root
    without the phantom's parameters table): the limited-label study, whose gates and
    headroom need the phantom's oracle, and a frozen baseline encoder without weights (a
    frozen random ResNet34).

    Raises:
        ValueError: naming the flag and what to pass instead.
    """
    if data_root is None or (Path(data_root) / "phantom_parameters.csv").is_file():
        return
    if cfg.training_sizes:
        raise ValueError(f"--data {data_root}: --preset {cfg.preset} (the limited-label study) runs on the "
                         f"phantom only: its gates and headroom need the phantom's oracle fibrosis "
                         f"contrast; on real data run --preset paper (or detect)")
    if cfg.baseline_encoder == "frozen" and cfg.encoder_weights is None and "baseline" in strategies:
        raise ValueError(f"--data {data_root}: the baseline's encoder is frozen (baseline_encoder=frozen) "
                         f"and no --encoder-weights was given, so it would be a frozen random ResNet34; "
                         f"expected --encoder-weights PATH or --set baseline_encoder=end_to_end")


def gates_summary(result) -> str:
    """The lines `run --gates-only` prints: every gate, the gate baselines per size, each
    headroom check (ceiling, baseline, shortcut, room against the required room) and the
    seconds of the parts."""
    fmt = lambda v: "not measured" if v is None else f"{v:.3f}"  # noqa: E731
    passed = result.get("gate_passed", {})
    lines = [f"gate {k}: {fmt(v)}{'' if k not in passed else (': pass' if passed[k] else ': FAIL')}"
             for k, v in result["gates"].items()]
    lines += [f"gate baseline n={n}: {fmt(v)}" for n, v in result.get("gate_sizes", {}).items()]
    lines += [f"headroom {h['hypothesis']}: ceiling {fmt(h['ceiling'])}, baseline {fmt(h['baseline'])}, "
              f"shortcut {fmt(h['shortcut'])}, room {fmt(h['room'])} (required {fmt(h['required'])}): "
              f"{'pass' if h['passed'] else 'FAIL'}" for h in result.get("headroom", [])]
    lines += [f"seconds {k}: {v:.0f}" for k, v in result["seconds"].items()]
    return "\n".join(lines)


def _cmd_generate(args) -> int:
    from lge_qa.config import get_config
    from lge_qa.experiment import write_phantom
    from shared.cli.progress import progress

    overrides = {"seed": args.seed}
    if args.n_segmentation is not None:
        overrides["n_segmentation"] = args.n_segmentation
    if args.n_scored is not None:
        overrides["n_scored"] = args.n_scored
    if args.correlation is not None:
        overrides["correlation_level"] = args.correlation
    cfg = get_config(args.preset, **overrides)
    root = write_phantom(cfg, args.out, progress=lambda it, desc: progress(it, desc=desc,
                                                                             enabled=not args.no_progress))
    print(f"wrote {cfg.n_segmentation} masks-only and {cfg.n_scored} scored scans to {root}")
    return 0


def _cmd_predict(args) -> int:
    from lge_qa.predict import predict_files, resolve_qa_bundle
    from shared.cli.predict import print_predictions

    bundle = resolve_qa_bundle(args.model, name=args.arm)
    scores, rows, _ = predict_files(bundle, args.files)
    print_predictions(scores, rows, as_json=args.json, bundle=bundle)
    return 0


def _cmd_detect(args) -> int:
    from lge_qa.config import get_config
    from lge_qa.detect import run_detection

    overrides = {"seed": args.seed}
    if args.threshold is not None:
        overrides["detection_threshold"] = args.threshold
    result = run_detection(get_config(args.preset, **overrides), args.data, args.out, cases_dir=args.cases)
    selected = sum(row["selected"] for row in result["rows"])
    print(f"{len(result['rows'])} cases, {selected} slices selected: {result['selection']}")
    return 0


def demo(out_dir, store_url, progress=True) -> Path:
    """Runs the quick preset, all three strategies, into `out_dir`; returns its report.md."""
    from lge_qa.config import get_config
    from lge_qa.experiment import run_experiment

    logging.getLogger(__name__).info("lge-qa demo into %s", out_dir)
    result = run_experiment(get_config("quick"), out_dir=out_dir, store_url=store_url, progress=progress)
    return Path(result["report"])
