import logging
import os
import sys
import types
import warnings

from shared.cli import papers
from shared.cli.quiet import output_to_log


def test_library_chatter_goes_to_the_log_and_bars_to_the_terminal(tmp_path, capfd):
    print("before")
    with output_to_log(tmp_path / "run" / "log.txt") as terminal:
        print("keras progress line")                      # Python stdout
        os.write(1, b"C-level stdout\n")                   # e.g. TensorFlow's C++ lines
        os.write(2, b"C-level stderr\n")
        warnings.warn("a scikit-learn warning")
        logging.getLogger("keras_tuner").warning("trial table")
        sys.stderr.write("progress bar\n")                 # tqdm writes to sys.stderr
        assert terminal is sys.stderr
    print("after")
    out, err = capfd.readouterr()
    log = (tmp_path / "run" / "log.txt").read_text()
    for line in ("keras progress line", "C-level stdout", "C-level stderr",
                 "a scikit-learn warning", "trial table"):
        assert line in log and line not in out + err
    assert "progress bar" in err and "progress bar" not in log
    assert out == "before\nafter\n"


def test_demo_writes_each_papers_output_to_its_log(tmp_path, monkeypatch, capfd):
    from shared import cli

    module = types.ModuleType("fake_loud.cli")

    def demo(out_dir, store_url, progress=True):
        print("Epoch 1/30 ......")
        warnings.warn("noisy")
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.md").write_text("# loud\n")
        return out_dir / "report.md"

    module.register = lambda sub: sub.add_parser("fake-loud")
    module.demo = demo
    monkeypatch.setitem(sys.modules, "fake_loud.cli", module)
    monkeypatch.setattr(papers, "PAPERS", {"fake-loud": "fake_loud.cli"})
    assert cli.main(["demo", "--out", str(tmp_path), "--no-progress",
                     "--store", f"sqlite:///{tmp_path}/r.sqlite"]) == 0
    out, err = capfd.readouterr()
    assert "Epoch 1/30" not in out + err and "noisy" not in out + err
    assert "fake-loud: no claims.json" in out
    log = (tmp_path / "fake_loud" / "log.txt").read_text()
    assert "Epoch 1/30" in log and "noisy" in log
