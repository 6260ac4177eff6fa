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
    parser.add_argument("--combine", action="store_true",
                        help="one line per claim across the runs of one design at different "
                             "seeds (a combined test over all their units, stratified by run; "
                             "see docs/studies.md), then each run's line; runs grouped as one "
                             "design that declare different designs are refused (with "
                             "--markdown they are shown run by run under a 'not one design' "
                             "line)")
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


def check_data_manifest(path: Path, document) -> None:
    """A run on a user's data keeps `data_manifest.json` beside its claims: when it is
    there, it must read and hash to what the claims recorded.

    Raises:
        ValueError: a malformed manifest, or one whose hash differs (one line).
    """
    from shared.study.provenance import manifest_sha256, read_data_manifest

    data = document.get("data") or {}
    if data.get("source") != "user":
        return
    folder = path if path.is_dir() else path.parent
    manifest_path = folder / data["manifest"]
    if not manifest_path.is_file():
        return  # a kept copy of the claims, away from its run folder
    actual = manifest_sha256(read_data_manifest(manifest_path))
    if actual != data["manifest_sha256"]:
        raise ValueError(f"{manifest_path}: field 'files': the listed files hash to "
                         f"{actual[:12]}..., the claims recorded "
                         f"{data['manifest_sha256'][:12]}... (edited after the run?)")


def run_label(path: Path) -> str:
    """What names a run in a table: its folder, or a kept copy's file name."""
    path = Path(path)
    if path.is_dir():
        return path.name
    return path.parent.name if path.name == "claims.json" else path.stem


def _cmd_claims(args) -> int:
    from shared.study.claims import (claims_table_markdown, claims_table_text,
                                     combined_table_markdown, combined_table_text, read_claims)

    documents, labels, paths, errors = [], [], [], []
    for run in args.runs:
        for path in _claim_files(run):
            try:
                document = read_claims(path)
                check_data_manifest(path, document)
                documents.append(document)
                labels.append(run_label(path))
                paths.append(str(path))
            except (ValueError, OSError, KeyError, TypeError, RecursionError) as err:
                # One run's bad file never hides the others' table.
                text = " ".join(str(err).split()) or type(err).__name__
                if str(path) not in text:
                    text = f"{path}: {type(err).__name__}: {text}"
                errors.append(text)
    if documents and args.combine:
        try:
            sys.stdout.write(combined_table_markdown(documents, labels, sources=paths)
                             if args.markdown else combined_table_text(documents, paths))
        except ValueError as err:
            errors.append(str(err))
    elif documents:
        sys.stdout.write(claims_table_markdown(documents, labels) if args.markdown
                         else claims_table_text(documents))
    for error in errors:
        print(f"medrepro: error: {error}", file=sys.stderr)
    return 2 if errors else 0
