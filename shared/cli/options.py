"""Command-line options every paper's `run` command shares.

Only entry points read flags or environment variables; they pass explicit values
on to library functions.
"""

import os
from pathlib import Path

DEFAULT_STORE = "sqlite:///runs/results.sqlite"


def add_store_arg(parser) -> None:
    parser.add_argument(
        "--store", default=None, metavar="URL",
        help="results store: sqlite:///path or postgresql://user@host/db "
             f"(default: $MEDREPRO_STORE, else {DEFAULT_STORE})",
    )


def add_run_args(parser, *, presets=("quick", "paper"), default_preset="quick") -> None:
    """Adds --preset, --out, --store, --seed, --strategy, --precision, --xla, --no-progress."""
    parser.add_argument("--preset", choices=list(presets), default=default_preset,
                        help="'paper' = the paper's exact settings; 'quick' = minutes on a CPU "
                             f"(default: {default_preset})")
    parser.add_argument("--out", type=Path, default=None,
                        help="run folder (default: runs/<paper>/<preset>)")
    add_store_arg(parser)
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default: 0)")
    add_scale_args(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_scale_args(parser) -> None:
    """Adds --strategy, --precision and --xla (see docs/scaling.md)."""
    parser.add_argument("--strategy", choices=["default", "mirrored", "multi-worker"],
                        default="default", help="tf.distribute strategy (default: default)")
    parser.add_argument("--precision", choices=["float32", "mixed_float16", "mixed_bfloat16"],
                        default="float32", help="Keras dtype policy (default: float32)")
    parser.add_argument("--xla", action="store_true", help="compile train steps with XLA")


def resolve_store_url(cli_value) -> str:
    """--store, else $MEDREPRO_STORE, else the SQLite file under runs/."""
    if cli_value:
        return cli_value
    return os.environ.get("MEDREPRO_STORE") or DEFAULT_STORE


def resolve_out_dir(cli_value, paper: str, preset: str) -> Path:
    return Path(cli_value) if cli_value is not None else Path("runs") / paper / preset
