import argparse
import json

import pytest

from heatmap_loss import cli
from heatmap_loss.data import load_dataset
from shared.cli.app import main


def test_register_adds_subcommands():
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["heatmap-loss", "run", "--experiment", "2", "--preset", "tiny"])
    assert args.experiment == 2 and args.preset == "tiny" and callable(args.func)
    args = parser.parse_args(["heatmap-loss", "run", "--preset", "powered", "--data", "acdc",
                              "--task", "4class", "--skip-bad-patients"])
    assert args.preset == "powered" and args.task == "4class" and args.skip_bad_patients
    args = parser.parse_args(["heatmap-loss", "generate", "--out", "x", "--n", "26"])
    assert args.func is cli._cmd_generate
    assert callable(cli.demo)


def test_generate_writes_splits_and_sample_sheet(tmp_path, capsys):
    assert main(["heatmap-loss", "generate", "--experiment", "2", "--n", "26",
                 "--n-test", "4", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "samples.png").stat().st_size > 0
    train, val = load_dataset(tmp_path / "train.npz"), load_dataset(tmp_path / "val.npz")
    assert (len(train), len(val), len(load_dataset(tmp_path / "test.npz"))) == (20, 6, 4)
    assert train.experiment == 2
    assert "Wrote 30 images" in capsys.readouterr().out


def test_acdc_info_error_is_one_line(tmp_path, capsys):
    assert main(["heatmap-loss", "acdc-info", str(tmp_path / "missing")]) == 2
    assert "ACDC folder not found" in capsys.readouterr().err


def test_data_kind(tmp_path):
    from heatmap_loss.data import write_dataset
    from tests.heatmap_loss.test_acdc import _write_patient

    write_dataset(tmp_path / "npz", experiment=1, n_train=2, n_val=2, n_test=2, seed=0)
    assert cli.data_kind(tmp_path / "npz") == "synthetic"
    _write_patient(tmp_path / "acdc" / "training", 1, "NOR")
    assert cli.data_kind(tmp_path / "acdc") == "acdc"


@pytest.mark.slow
def test_smoke_reads_back_full_size_files_and_trains_two_steps(tmp_path, capsys):
    out = tmp_path / "smoke"
    assert main(["heatmap-loss", "run", "--preset", "tiny", "--smoke", "--experiment", "2",
                 "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("peak memory:")
    summary = json.loads((out / "smoke.json").read_text())
    assert {g["steps"] for g in summary["groups"].values()} == {2}
    assert summary["groups"]["cce"]["parameters"] == summary["groups"]["heatmap"]["parameters"]
    assert load_dataset(out / "data" / "test.npz").images.shape[1:] == (105, 135)


@pytest.mark.slow
def test_acdc_run_trains_on_patient_level_splits(tmp_path, capsys):
    from tests.heatmap_loss.test_acdc import _write_patient

    root = tmp_path / "acdc"
    for i, group in enumerate(["NOR"] * 3 + ["DCM"] * 3, start=1):
        _write_patient(root, i, group, spacing=(1.5, 1.5))
    bad = _write_patient(root, 9, "HCM")
    (bad / "patient009_frame01.nii.gz").write_bytes(b"not a volume")
    run = tmp_path / "run"
    argv = ["heatmap-loss", "run", "--preset", "tiny", "--data", str(root), "--out", str(run),
            "--store", f"sqlite:///{tmp_path}/s.sqlite", "--no-progress", "--seed", "4"]
    assert main(argv) == 2  # the bad patient stops the run ...
    assert "patient009_frame01.nii.gz" in capsys.readouterr().err
    assert main(argv + ["--skip-bad-patients", "--overwrite"]) == 0  # ... or is skipped
    protocol = json.loads((run / "protocol.json").read_text())
    test_patients = protocol["protocol"]["test_set"]["patients"]
    assert len(test_patients) == 2 and protocol["protocol"]["test_set"]["skipped"] == ["patient009"]
    models = json.loads((run / "models.json").read_text())
    assert len(models) == 4 and all(0 <= m["heart_overlap"] <= 1 for m in models)
    assert "acdc data" in (run / "report.md").read_text()
