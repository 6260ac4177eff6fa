"""The report reads results and writes Markdown and figures: it needs nothing of the
experiment module (which trains), so the two import each other in neither direction."""

import ast
from pathlib import Path

import pytest

import heatmap_loss

pytestmark = pytest.mark.no_keras


def _imported_modules(path):
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_the_report_does_not_import_the_experiment():
    report = Path(heatmap_loss.__file__).parent / "report.py"
    assert "heatmap_loss.experiment" not in set(_imported_modules(report))


def test_experiment_name_lives_in_the_config():
    from heatmap_loss.config import experiment_name

    assert experiment_name(1) == "heatmap_loss_exp1" and experiment_name("acdc") == "heatmap_loss_acdc"
