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


def test_distribute_flag_reaches_the_experiment(monkeypatch, tmp_path, capsys):
    """--strategy is the paper's QA strategy; --distribute the tf.distribute strategy,
    passed on with --xla (and the --precision policy set) to the experiment."""
    import keras
    import tensorflow as tf

    import lge_qa.experiment

    seen = {}

    def fake_run(cfg, **kwargs):
        seen.update(kwargs, policy=keras.mixed_precision.global_policy().name)
        return {"summary": {}, "report": tmp_path / "report.md"}

    monkeypatch.setattr(lge_qa.experiment, "run_experiment", fake_run)
    args = _parser().parse_args(["lge-qa", "run", "--preset", "tiny", "--strategy", "contrastive",
                                 "--distribute", "mirrored", "--precision", "mixed_bfloat16", "--xla",
                                 "--out", str(tmp_path), "--no-progress"])
    try:
        assert args.func(args) == 0
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert seen["strategies"] == ("contrastive",)
    assert isinstance(seen["distribute"], tf.distribute.MirroredStrategy)
    assert seen["jit_compile"] is True and seen["policy"] == "mixed_bfloat16"
    args = _parser().parse_args(["lge-qa", "run", "--preset", "tiny", "--out", str(tmp_path)])
    assert args.distribute == "default" and args.qa_strategy == "all"
    args.func(args)
    assert seen["distribute"] is None and seen["jit_compile"] is False
    with pytest.raises(SystemExit):
        _parser().parse_args(["lge-qa", "run", "--distribute", "baseline"])
