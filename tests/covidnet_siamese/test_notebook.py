"""The Colab notebook runs end to end at the tiny size."""

from pathlib import Path

import pytest

from shared.testing.notebooks import execute_notebook

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "covidnet_siamese.ipynb"


@pytest.mark.slow
def test_notebook_runs_tiny(tmp_path):
    nb = execute_notebook(NOTEBOOK, env={"MEDREPRO_NOTEBOOK_PRESET": "tiny"}, cwd=tmp_path)
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any(o.get("output_type") == "display_data" for o in outputs)
    assert (tmp_path / "runs" / "covidnet_siamese_notebook" / "tiny" / "report.md").is_file()
