from pathlib import Path

import pytest

from shared.testing.notebooks import execute_notebook

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "heatmap_loss.ipynb"


@pytest.mark.slow
def test_notebook_runs_at_tiny_size(tmp_path):
    nb = execute_notebook(NOTEBOOK, env={"MEDREPRO_NOTEBOOK_PRESET": "tiny"}, cwd=tmp_path)
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert (tmp_path / "runs/heatmap_loss_notebook/tiny_exp1/report.md").exists()
