"""The `predict` subcommand every paper shares: its options and its output.

    medrepro <paper> predict --model BUNDLE_OR_RUN_DIR [--arm NAME] FILE... [--json]

One line per file (`file`, predicted class, one score per class, tab-separated,
after a header line), or with `--json` one JSON document:
`{"bundle": ..., "classes": [...], "predictions": [{"file", "class", "scores"}]}`.
"""

from __future__ import annotations

import json
from pathlib import Path


def add_predict_args(parser, *, files_help: str, arms=(), default_arm=None) -> None:
    """Adds --model, --arm, the FILE arguments and --json to `parser`.

    `arms`: the accepted --arm names (empty: any name, checked against the run folder's
    bundles); `default_arm`: the bundle a run folder gives without --arm (None: its
    only one)."""
    parser.add_argument("--model", type=Path, required=True, metavar="BUNDLE",
                        help="a model bundle folder (metadata.json, config.json, "
                             "model.weights.h5) or a run folder holding bundles/")
    default = default_arm if default_arm is not None else "the run folder's only bundle"
    parser.add_argument("--arm", choices=tuple(arms) or None, default=default_arm, metavar="NAME",
                        help=f"which of a run folder's bundles/<NAME> to use"
                             f"{' (' + ', '.join(arms) + ')' if arms else ''}; ignored for a "
                             f"bundle folder (default: {default})")
    parser.add_argument("files", type=Path, nargs="+", metavar="FILE", help=files_help)
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document instead of one line per file")


def print_predictions(classes, rows, *, as_json: bool, bundle=None) -> None:
    """Prints `rows` ((file, class, scores) tuples) as lines or as one JSON document."""
    if as_json:
        print(json.dumps({"bundle": None if bundle is None else str(bundle),
                          "classes": list(classes),
                          "predictions": [{"file": f, "class": c, "scores": dict(zip(classes, s))}
                                          for f, c, s in rows]}, indent=2))
        return
    print("file\tclass\t" + "\t".join(classes))
    for path, name, scores in rows:
        print(f"{path}\t{name}\t" + "\t".join(f"{v:.4f}" for v in scores))
