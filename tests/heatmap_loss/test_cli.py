import argparse

from heatmap_loss import cli
from heatmap_loss.data import load_dataset
from shared.cli.app import main


def test_register_adds_subcommands():
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["heatmap-loss", "run", "--experiment", "2", "--preset", "tiny"])
    assert args.experiment == 2 and args.preset == "tiny" and callable(args.func)
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
