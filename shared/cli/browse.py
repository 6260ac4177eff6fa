"""Commands that open a finished run: `medrepro tensorboard RUN_DIR`, `medrepro index RUN_DIR`.

* `medrepro tensorboard RUN_DIR [--print] [--port P]`: runs `tensorboard --logdir
  RUN_DIR/tensorboard` (a demo folder: every paper's runs), or with `--print` prints the
  command (for a notebook: `%tensorboard --logdir ...`).
* `medrepro index RUN_DIR`: writes RUN_DIR/index.html (claims, verdicts, figures, reports,
  model bundles, TensorBoard logs) and prints its path.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path


def register(subparsers) -> None:
    """Adds `tensorboard` and `index` to the `medrepro` command."""
    from shared.cli.options import count

    board = subparsers.add_parser(
        "tensorboard", help="open a run folder's TensorBoard logs (scalars per epoch, HParams)",
        description="Runs `tensorboard --logdir RUN_DIR/tensorboard`: per-epoch loss, metrics and "
                    "learning rate of every arm and tuner trial, the searches' hyperparameters and the "
                    "study's arm x unit results in the HParams dashboard. Given a demo folder, every "
                    "paper's run is shown. In a notebook: `%load_ext tensorboard` then "
                    "`%tensorboard --logdir RUN_DIR/tensorboard`.")
    board.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder (or the demo folder)")
    board.add_argument("--print", dest="print_only", action="store_true",
                       help="print the command instead of running it")
    board.add_argument("--port", type=count(1, 65535), default=None, help="TensorBoard's port (default: its own)")
    board.set_defaults(func=_cmd_tensorboard)

    index = subparsers.add_parser(
        "index", help="write RUN_DIR/index.html: claims, verdicts, figures, reports, bundles",
        description="Writes a self-contained index.html (no script, no network) into a run folder: "
                    "its claims and verdicts, links to its reports, model bundles and TensorBoard "
                    "logs, and every figure inline. Runs write it themselves when they finish; this "
                    "rewrites it for any run folder.")
    index.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder")
    index.set_defaults(func=_cmd_index)


def _cmd_tensorboard(args) -> int:
    from shared.training.tensorboard import tensorboard_command

    command = tensorboard_command(args.run_dir)
    if args.port is not None:
        command += ["--port", str(args.port)]
    if args.print_only:
        print(shlex.join(command))
        return 0
    print(shlex.join(command), flush=True)
    if shutil.which("tensorboard") is None:  # installed in this interpreter, not on PATH
        import tensorboard  # noqa: F401 (ImportError: one line naming the module)

        command = [sys.executable, "-m", "tensorboard.main"] + command[1:]
    return subprocess.call(command)


def _cmd_index(args) -> int:
    from shared.report.index_html import write_run_page

    if not Path(args.run_dir).is_dir():
        raise ValueError(f"{args.run_dir}: no such run folder")
    print(write_run_page(args.run_dir))
    return 0
