"""Command-line options every paper's `run` command shares.

Only entry points read flags or environment variables; they pass explicit values
on to library functions.
"""

import argparse
import math
import os
from pathlib import Path

DEFAULT_STORE = "sqlite:///runs/results.sqlite"
# Seeds reach NumPy, TensorFlow and Python's `random`: NumPy takes 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1


def _bound_text(low, high, low_open, high_open) -> str:
    def show(v):
        return str(v) if isinstance(v, int) else f"{v:g}"

    if low is not None and high is not None:
        return (f"in {'(' if low_open else '['}{show(low)}, {show(high)}"
                f"{')' if high_open else ']'}")
    if low is not None:
        return f"{'>' if low_open else '>='} {show(low)}"
    if high is not None:
        return f"{'<' if high_open else '<='} {show(high)}"
    return ""


def number(kind=float, *, low=None, high=None, low_open=False, high_open=False):
    """An argparse `type` that accepts only finite numbers in a range.

    Checked when the command line is parsed, so a bad value is refused before any
    file is read or written, in one line naming the flag
    (`medrepro: error: argument --threshold: expected a finite number in (0, 1),
    got 'nan'`).

    Args:
        kind: int or float, default float.
        low, high: the bounds, or None for none.
        low_open, high_open: bool, default False. Whether a bound is excluded.
    """
    noun = "a whole number" if kind is int else "a finite number"
    expected = " ".join(part for part in (noun, _bound_text(low, high, low_open, high_open))
                        if part)

    def parse(text):
        try:
            value = int(text, 10) if kind is int else float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        if low is not None and (value < low or (low_open and value == low)):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        if high is not None and (value > high or (high_open and value == high)):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = "integer" if kind is int else "number"
    return parse


def count(low=1, high=None):
    """A whole number >= `low` (a count of folds, models, workers, epochs, ...)."""
    return number(int, low=low, high=high)


SEED = number(int, low=0, high=MAX_SEED)


def add_store_arg(parser) -> None:
    parser.add_argument(
        "--store", default=None, metavar="URL",
        help="results store: sqlite:///path or postgresql://user@host/db "
             f"(default: $MEDREPRO_STORE, else {DEFAULT_STORE})",
    )


class _PresetAction(argparse.Action):
    """Stores --preset and notes that it was given (`preset_given`): with --config, a
    preset not given is the one the file names (`shared.cli.config_overrides.run_config`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.preset_given = True


def add_pilot_args(parser, *, presets, preset_help, default_seed=100) -> None:
    """`--out`, `--seed` (the pilot data seed, not a study seed) and `--preset` of a
    paper's `pilot` command, which chooses settings on validation data before a study."""
    parser.add_argument("--out", type=Path, required=True, help="folder for pilot.json and data")
    parser.add_argument("--seed", type=SEED, default=default_seed,
                        help=f"pilot data seed (default: {default_seed}; the study seeds are 0 and 1)")
    parser.add_argument("--preset", choices=tuple(presets), default=presets[0],
                        help=f"{preset_help} (default: {presets[0]})")


def add_run_args(parser, *, presets=("quick", "paper"), default_preset="quick") -> None:
    """Adds --preset, --config, --set, --out, --resume, --overwrite, --store, --seed, --smoke,
    --allow-dirty, --strategy, --precision, --xla, --no-progress.

    A paper's `run` builds its config with `shared.cli.config_overrides.run_config(args,
    get_preset)`, which reads --preset, --config and --set.
    """
    from shared.cli.config_overrides import add_config_args

    parser.add_argument("--preset", choices=list(presets), default=default_preset,
                        action=_PresetAction,
                        help="'paper' = the paper's exact settings; 'quick' = minutes on a CPU "
                             f"(default: {default_preset}; with --config, the file's preset, "
                             "and the file's values win over the preset's)")
    parser.set_defaults(preset_given=False)
    add_config_args(parser)
    parser.add_argument("--out", type=Path, default=None,
                        help="run folder (default: runs/<paper>/<preset>)")
    add_run_folder_args(parser)
    add_store_arg(parser)
    parser.add_argument("--seed", type=SEED, default=0, help="base random seed (default: 0)")
    parser.add_argument("--smoke", action="store_true",
                        help="prove a preset on this machine: full-size data for a few samples, "
                             "every arm's full-size model, two training steps each and the "
                             "evaluation; prints the peak memory (meant for --preset paper)")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="run a powered or paper study on a source tree with uncommitted "
                             "changes (refused otherwise); recorded in claims.json")
    add_scale_args(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _precision(value):
    """--precision's value, with "auto" resolved for this machine."""
    if value != "auto":
        return value
    from shared.training.scale import resolve_precision  # imports TensorFlow

    return resolve_precision(value)


def add_scale_args(parser) -> None:
    """Adds --strategy, --precision and --xla (see docs/scaling.md)."""
    parser.add_argument("--strategy", choices=["default", "mirrored", "multi-worker"],
                        default="default", help="tf.distribute strategy (default: default)")
    parser.add_argument("--precision", type=_precision,
                        choices=["float32", "mixed_float16", "mixed_bfloat16", "auto"],
                        default="float32",
                        help="Keras dtype policy (default: float32); 'auto': mixed_bfloat16 on "
                             "a CPU with bfloat16 units and no GPU, else float32, resolved here "
                             "so the run records the policy it used")
    parser.add_argument("--xla", action="store_true", help="compile train steps with XLA")


def resolve_store_url(cli_value) -> str:
    """--store, else $MEDREPRO_STORE, else the SQLite file under runs/."""
    if cli_value:
        return cli_value
    return os.environ.get("MEDREPRO_STORE") or DEFAULT_STORE


def resolve_out_dir(cli_value, paper: str, preset: str, seed=None) -> Path:
    """--out, else runs/<paper>/<preset> (with `_seed<k>` when a seed is given, so runs
    at two seeds never share a folder)."""
    if cli_value is not None:
        return Path(cli_value)
    name = preset if seed is None else f"{preset}_seed{seed}"
    return Path("runs") / paper / name


def prepared_run_folder(args, paper: str, preset: str) -> Path:
    """The run folder of a paper's `run` command, checked by the run-folder rule.

    Nothing is written here: the folder stays pending (`shared.io.run_folder.
    open_run_folder`) until the run starts training; a command that fails before
    then leaves it as it was (`medrepro`'s main() puts it back).

    A `powered` or `paper` study on a modified source tree is refused before the folder
    is created or touched, unless `--allow-dirty` is given
    (`shared.study.provenance.check_clean_tree`); a `--smoke` run writes no claims and
    is not checked.

    Args:
        args: argparse.Namespace of a command set up by `add_run_args` (`preset`,
            `smoke` and `allow_dirty` default to `preset`, False and False when absent).
        paper: str. The paper's folder name under runs/.
        preset: str. The folder name's preset part ("powered", "paper_smoke").

    Raises:
        ValueError: the tree is modified and not allowed (`DirtyTreeError`), or the
            folder breaks the run-folder rule (`shared.io.run_folder`).
    """
    from shared.io.run_folder import open_run_folder

    if not getattr(args, "smoke", False):
        from shared.study.provenance import check_clean_tree
        from shared.tracking.runs import git_revision

        check_clean_tree(getattr(args, "preset", preset), git_revision(),
                         allow_dirty=getattr(args, "allow_dirty", False))
    return open_run_folder(resolve_out_dir(args.out, paper, preset, seed=args.seed),
                              resume=args.resume, overwrite=args.overwrite)


def add_run_folder_args(parser) -> None:
    """Adds --resume and --overwrite (see `shared.io.run_folder`)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true",
                       help="continue the run already in the run folder")
    group.add_argument("--overwrite", action="store_true",
                       help="clear the run folder of an earlier run first")
