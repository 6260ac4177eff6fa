"""The `medrepro` command: doctor, demo, tracking commands and one group per paper."""

import argparse
import logging
import os
import sys
import traceback
import zipfile
from pathlib import Path

# TensorFlow's C++ start-up lines (CPU instruction sets, a failed CUDA probe on
# machines without a GPU) say nothing a user can act on; `medrepro doctor` reports
# the devices. Set TF_CPP_MIN_LOG_LEVEL yourself to see them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from shared import __version__
from shared.cli import papers
from shared.cli.options import add_store_arg, resolve_store_url


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, `medrepro: error: ...`, exit 2.

    Its subcommands' parsers are of the same class, so a bad option of any command
    ends the same way as a bad input file; `--help` shows the usage.
    """

    def error(self, message):
        self.exit(2, f"medrepro: error: {' '.join(str(message).split())} "
                     f"(see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="medrepro",
        description=(
            "Reproductions of five medical-imaging deep-learning papers. Each paper has "
            "'run' (the end-to-end experiment; --preset quick|paper), 'generate' (synthetic "
            "data written in the real dataset's on-disk format) and further commands. A run "
            "declares its study in protocol.json before training and writes one verdict per "
            "claim to claims.json ('medrepro claims RUN_DIR...' tabulates them). "
            "Results go to a results store: SQLite under runs/ by default, PostgreSQL "
            "with --store postgresql://... or $MEDREPRO_STORE."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"medrepro {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    doctor = sub.add_parser("doctor", help="check TensorFlow, devices, optional readers, store")
    add_store_arg(doctor)
    doctor.set_defaults(func=_cmd_doctor)

    demo = sub.add_parser("demo", help="run every paper's quick reproduction, write runs/demo/index.html")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="demo folder (default: runs/demo)")
    demo.add_argument("--papers", nargs="*", default=None, metavar="PAPER",
                      help=f"subset of papers (default: all of {', '.join(papers.PAPERS)})")
    add_store_arg(demo)
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(func=_cmd_demo)

    for module in papers.suite_command_modules():
        module.register(sub)
    for module in papers.paper_modules().values():
        module.register(sub)
    return parser


def _cmd_doctor(args) -> int:
    from shared.cli.doctor import run_doctor

    return run_doctor(resolve_store_url(args.store))


def _cmd_demo(args) -> int:
    from shared.cli.demo import run_demo

    return run_demo(args.out, resolve_store_url(args.store), papers=args.papers,
                    show_progress=not args.no_progress)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    from shared.io.run_folder import finish_run_folders

    finish_run_folders(ok=True)  # nothing pending belongs to this command
    ok = False
    try:
        code = int(args.func(args) or 0)
        ok = True
    except input_errors() as err:
        # Errors about the user's input or environment: one clear line, no traceback
        # (with -v or MEDREPRO_DEBUG=1, the traceback too).
        if args.verbose or os.environ.get("MEDREPRO_DEBUG") == "1":
            traceback.print_exc()
        print(f"medrepro: error: {error_line(err)}", file=sys.stderr)
        return 2
    finally:
        # A run folder the command did not start training in is left as it was.
        started = finish_run_folders(ok=ok)
    if started:
        # Every paper's `run` ends here, so each run folder gets its page in one place
        # (logged, not printed: a command's last printed line is its own).
        from shared.report.index_html import write_run_pages

        for page in write_run_pages(started):
            logging.getLogger(__name__).info("run page: %s", page)
    return code


def input_errors() -> tuple:
    """Exception types that report bad input or a broken environment, not a bug.

    Besides ValueError, OSError (missing, unreadable or truncated files), EOFError
    (a truncated gzip stream), zipfile.BadZipFile (a corrupt .npz), KeyError,
    UnicodeError, RuntimeError, ArithmeticError (an overflowing time or size),
    MemoryError (an input that asks for more memory than there is), TypeError and
    AttributeError (a field of the wrong type deep in a reader), ImportError (a
    missing optional driver) and RecursionError (deeply nested JSON): the errors of
    the readers and the store, where installed (SQLAlchemy, OpenCV, pynrrd).
    """
    types = [ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, UnicodeError,
             RuntimeError, ArithmeticError, MemoryError, TypeError, AttributeError,
             ImportError]
    for module_name, attribute in (("sqlalchemy.exc", "SQLAlchemyError"), ("cv2", "error"),
                                   ("nrrd", "NRRDError")):
        module = sys.modules.get(module_name)
        if module is not None and isinstance(getattr(module, attribute, None), type):
            types.append(getattr(module, attribute))
    return tuple(types)


def error_line(err) -> str:
    """One line for an error: its message, prefixed by its kind when that says more."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, (ValueError, RuntimeError, FileNotFoundError)) \
            and not isinstance(err, UnicodeError):
        return text
    if isinstance(err, KeyError):
        return f"missing key {text}"
    if isinstance(err, MemoryError):
        return (f"MemoryError: {text}; an input asks for more memory than this machine "
                f"has (check the sizes in its header or options)")
    if isinstance(err, ImportError):
        return (f"ImportError: {text}; expected an installed module (`medrepro doctor` "
                f"lists the optional ones)")
    return f"{type(err).__name__}: {text}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
