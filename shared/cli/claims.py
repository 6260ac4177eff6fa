"""`medrepro claims RUN_DIR...`: the verdicts of several runs in one table."""

import sys
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "claims", help="print the claims and verdicts of one or more run folders",
        description="Reads each run folder's claims.json (written by every paper's 'run'), "
                    "checks it against the schema and prints one table: several seeds of one "
                    "paper, or every paper of a demo. Exits with status 2 when a file is "
                    "missing or malformed (the valid ones are still printed).")
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="run folders (or claims.json files); a demo folder is searched "
                             "one level down")
    parser.add_argument("--markdown", action="store_true",
                        help="print a Markdown table (which run: its folder or file name, "
                             "paper, preset, seed, revision; then each claim) instead of "
                             "plain text")
    parser.set_defaults(func=_cmd_claims)


def _claim_files(path: Path) -> list:
    if path.is_dir() and not (path / "claims.json").exists():
        found = sorted(path.glob("*/claims.json"))
        return found or [path]
    return [path]


def run_label(path: Path) -> str:
    """What names a run in a table: its folder, or a kept copy's file name."""
    path = Path(path)
    if path.is_dir():
        return path.name
    return path.parent.name if path.name == "claims.json" else path.stem


def _cmd_claims(args) -> int:
    from shared.study.claims import claims_table_markdown, claims_table_text, read_claims

    documents, labels, errors = [], [], []
    for run in args.runs:
        for path in _claim_files(run):
            try:
                documents.append(read_claims(path))
                labels.append(run_label(path))
            except (ValueError, FileNotFoundError) as err:
                errors.append(str(err))
    if documents:
        sys.stdout.write(claims_table_markdown(documents, labels) if args.markdown
                         else claims_table_text(documents))
    for error in errors:
        print(f"medrepro: error: {error}", file=sys.stderr)
    return 2 if errors else 0
