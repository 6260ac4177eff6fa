from pathlib import Path

import pytest

from shared.testing.notebooks import execute_notebook

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_notebook_runs_at_tiny_size(tmp_path):
    nb = execute_notebook(ROOT / "notebooks" / "lge_qa.ipynb", cwd=tmp_path,
                          env={"MEDREPRO_NOTEBOOK_PRESET": "tiny"})
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert any(o.get("output_type") == "display_data" for o in outputs)
    assert (tmp_path / "runs" / "lge-qa-notebook" / "tiny" / "report.md").is_file()
