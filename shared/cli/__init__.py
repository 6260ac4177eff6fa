"""The `medrepro` command line.

* `app`: the parser and `main`, the entry point (`medrepro ...`, `python -m shared`);
* `papers`: the registry of paper packages, read by the parser and the demo;
* `options`: the options every paper's `run` shares (`--preset`, `--store`, `--seed`, ...);
* `config_overrides`: `--config RUN_DIR/config.json` and `--set FIELD=VALUE` of every
  paper's `run` (a run's config read back into its dataclass, typed overrides);
* `demo`, `doctor`: `medrepro demo` and `medrepro doctor`;
* `tracking`: `medrepro report`, `medrepro store ...`, `medrepro tune-local`;
* `progress`: progress bars.
"""

from shared.cli.app import build_parser, main
from shared.cli.options import (
    DEFAULT_STORE,
    add_run_args,
    add_scale_args,
    add_store_arg,
    resolve_out_dir,
    resolve_store_url,
)
from shared.cli.papers import PAPERS, paper_modules

__all__ = [
    "DEFAULT_STORE",
    "PAPERS",
    "add_run_args",
    "add_scale_args",
    "add_store_arg",
    "build_parser",
    "main",
    "paper_modules",
    "resolve_out_dir",
    "resolve_store_url",
]
