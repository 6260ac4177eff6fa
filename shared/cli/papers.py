"""The registry of paper packages and suite-wide command modules.

`shared.cli.app` builds the parser from it and `shared.cli.demo` runs every paper's
demo from it; neither imports the other.
"""

import importlib

# Paper subcommand name -> module exposing `register(subparsers)` and
# `demo(out_dir, store_url, progress) -> Path` (the Markdown report it wrote).
PAPERS = {
    "heatmap-loss": "heatmap_loss.cli",
    "covidnet-siamese": "covidnet_siamese.cli",
    "lge-qa": "lge_qa.cli",
    "hrpqct": "hrpqct.cli",
    "bar-ad": "bar_ad.cli",
}
# Modules exposing `register(subparsers)` for suite-wide commands.
SUITE_COMMANDS = ["shared.cli.tracking", "shared.cli.claims", "shared.cli.browse"]


def import_optional(module_name):
    """Imports a command module; None only when the module itself does not exist."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            return None
        raise


def paper_modules() -> dict:
    """The paper command modules that are installed, by subcommand name."""
    found = {}
    for name, module_name in PAPERS.items():
        module = import_optional(module_name)
        if module is not None:
            found[name] = module
    return found


def suite_command_modules() -> list:
    """The suite-wide command modules that are installed."""
    return [m for m in map(import_optional, SUITE_COMMANDS) if m is not None]
