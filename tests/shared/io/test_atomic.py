"""Atomic writes: the old file stays whole when a write fails half-way."""

import json
import math

import pytest

from shared.io.atomic import atomic_path, save_figure, write_json, write_text

pytestmark = pytest.mark.no_keras


def test_write_text_and_json_replace_the_file(tmp_path):
    path = write_text(tmp_path / "sub" / "report.md", "new\n")
    assert path.read_text() == "new\n"
    write_json(tmp_path / "claims.json", {"b": 1, "a": [1.5]})
    assert json.loads((tmp_path / "claims.json").read_text()) == {"a": [1.5], "b": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["claims.json", "sub"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "claims.json"
    path.write_text('{"old": true}\n')
    with pytest.raises(ValueError):
        write_json(path, {"x": math.nan})  # strict JSON refuses NaN before any rename
    assert path.read_text() == '{"old": true}\n'
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == '{"old": true}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["claims.json"]


def test_save_figure_keeps_the_format_of_the_final_name(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    FigureCanvasAgg(fig)
    path = save_figure(fig, tmp_path / "plot.png", dpi=20)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]
