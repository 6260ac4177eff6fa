"""`medrepro tensorboard RUN_DIR` and `medrepro index RUN_DIR`."""

import html.parser
import json
from pathlib import Path

import numpy as np
import pytest

from shared.testing.bad_input import assert_one_line_error, run_cli

pytestmark = pytest.mark.no_keras


def test_tensorboard_prints_or_runs_the_command(tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "tensorboard" / "cce").mkdir(parents=True)
    code, printed, _ = run_cli(["tensorboard", run, "--print", "--port", "6010"])
    assert code == 0 and printed.strip() == f"tensorboard --logdir {run / 'tensorboard'} --port 6010"
    called = []
    monkeypatch.setattr("shared.cli.browse.subprocess.call", lambda command: called.append(command) or 0)
    code, _, _ = run_cli(["tensorboard", run])
    assert code == 0 and called[0][-2:] == ["--logdir", str(run / "tensorboard")]
    # A demo folder (runs one level down) opens as a whole.
    code, printed, _ = run_cli(["tensorboard", tmp_path, "--print"])
    assert printed.strip() == f"tensorboard --logdir {tmp_path}"


def test_tensorboard_refuses_a_folder_without_logs(tmp_path):
    assert_one_line_error(["tensorboard", tmp_path / "absent"], "absent", "no such run folder")
    (tmp_path / "bare").mkdir()
    assert_one_line_error(["tensorboard", tmp_path / "bare"], "tensorboard", "no TensorBoard logs")
    code, printed, _ = run_cli(["tensorboard", "--help"])
    assert code == 0 and "HParams" in printed


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "a":
            self.links.append(attrs["href"])


def test_index_writes_a_page_for_any_run_folder(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    plt.imsave(run / "figures" / "curve one.png", np.zeros((4, 4)))
    (run / "bundles" / "heatmap").mkdir(parents=True)
    (run / "bundles" / "heatmap" / "metadata.json").write_text(json.dumps({"paper": "heatmap_loss"}))
    (run / "tensorboard").mkdir()
    code, printed, _ = run_cli(["index", run])
    assert code == 0 and Path(printed.strip()) == run / "index.html"
    page = (run / "index.html").read_text()
    parser = _Links()
    parser.feed(page)
    assert parser.images == ["figures/curve%20one.png"]
    assert "bundles/heatmap/metadata.json" in parser.links
    assert "tensorboard --logdir" in page and "No <code>claims.json</code>" in page
    for src in parser.images + parser.links:
        assert (run / src.replace("%20", " ")).is_file(), src
    assert_one_line_error(["index", tmp_path / "absent"], "absent", "no such run folder")
