import argparse

import pytest

from lge_qa import cli, io, phantom


def _parser():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    return parser


def test_run_arguments():
    args = _parser().parse_args(["lge-qa", "run", "--preset", "tiny", "--strategy", "multitask",
                                 "--threshold", "0.3"])
    assert args.qa_strategy == "multitask" and args.preset == "tiny" and args.threshold == 0.3
    assert args.func is cli._cmd_run
    assert cli._strategy_args("all") == ("baseline", "multitask", "contrastive")
    with pytest.raises(SystemExit):
        _parser().parse_args(["lge-qa", "run", "--strategy", "mirrored"])


def test_generate_writes_the_layout(tmp_path, capsys):
    args = _parser().parse_args(["lge-qa", "generate", "--out", str(tmp_path / "d"), "--preset", "tiny",
                                 "--n-segmentation", "1", "--n-scored", "3", "--no-progress"])
    assert args.func(args) == 0
    assert io.list_cases(tmp_path / "d" / phantom.QA_SPLIT) == ["QA0000", "QA0001", "QA0002"]
    assert len(io.read_scores_csv(tmp_path / "d" / phantom.SCORES_FILE)) == 3
    assert "wrote 1 masks-only and 3 scored" in capsys.readouterr().out
