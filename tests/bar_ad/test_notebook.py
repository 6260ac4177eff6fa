"""The Colab notebook runs end to end at the tiny size."""

from pathlib import Path

import pytest

from shared.testing.notebooks import execute_notebook

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_notebook_runs_tiny(tmp_path):
    nb = execute_notebook(ROOT / "notebooks" / "bar_ad.ipynb",
                          env={"MEDREPRO_NOTEBOOK_PRESET": "tiny"},
                          cwd=tmp_path)
    assert (tmp_path / "bar_ad_notebook" / "tiny" / "run" / "report.md").is_file()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any(o.get("output_type") == "display_data" for o in outputs)
