import argparse
import json

import pytest

from hrpqct import cli, data
from hrpqct.config import get_config


def _parser():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    return parser


def test_cli_arguments_and_generate(tmp_path, capsys):
    args = _parser().parse_args(["hrpqct", "run", "--preset", "tiny", "--seeds", "3", "--ensemble-size", "2"])
    assert args.func is cli._cmd_run and args.preset == "tiny" and args.seeds == 3 and args.ensemble_size == 2
    with pytest.raises(SystemExit):
        _parser().parse_args(["hrpqct", "run", "--preset", "huge"])
    args = _parser().parse_args(["hrpqct", "generate", "--preset", "tiny", "--radius", "2", "--tibia", "1",
                                 "--out", str(tmp_path / "d")])
    assert args.func(args) == 0
    assert "Wrote 3 scans" in capsys.readouterr().out
    assert len(data.read_grades(tmp_path / "d" / "grades.csv")) == 3
    args = _parser().parse_args(["hrpqct", "info", str(tmp_path / "d")])
    assert args.func(args) == 0
    assert "3 scans" in capsys.readouterr().out
    with pytest.raises(ValueError, match="preset"):
        get_config("huge")


@pytest.mark.slow
def test_tiny_end_to_end(tmp_path):
    from shared.tracking.store import open_store

    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    from hrpqct.experiment import run_experiment

    path = run_experiment(get_config("tiny"), out_dir=tmp_path / "run", store_url=url, seed=0, progress=False)
    text = path.read_text()
    assert "quadratic weighted kappa" in text and "QME_SSD" in text
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["arms"]) == {"baseline", "proposed"}
    assert len(results["arms"]["proposed"]["runs"]) == 2
    assert -1.0 <= results["arms"]["baseline"]["mean"]["kappa"] <= 1.0
    for name in ("example_slices", "qme_ssd_vs_grade", "confusion_proposed", "gradcam_proposed"):
        assert (tmp_path / "run" / "figures" / f"{name}.png").is_file(), name
    assert (tmp_path / "run" / "comparison" / "report.md").is_file()
    store = open_store(url)
    rows = store.evaluations("hrpqct", metric="kappa")
    assert {r["group"] for r in rows} == {"baseline", "proposed"} and len(rows) == 4
