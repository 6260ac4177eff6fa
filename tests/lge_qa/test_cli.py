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


@pytest.mark.slow
def test_smoke_reads_back_full_size_files_and_trains_two_steps(tmp_path, capsys):
    """--smoke: the preset's volume shape on disk, read back; every network two steps."""
    import json

    from lge_qa.config import get_config
    from shared.cli.app import main

    cfg = get_config("tiny")
    out = tmp_path / "smoke"
    assert main(["lge-qa", "run", "--preset", "tiny", "--smoke", "--out", str(out), "--no-progress",
                 "--store", f"sqlite:///{tmp_path / 's.sqlite'}"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("peak memory:")
    image, _ = io.read_nrrd(out / "data" / phantom.QA_SPLIT / "QA0000" / io.IMAGE_FILE)
    assert image.shape == cfg.volume_shape
    assert len(io.list_cases(out / "data" / phantom.QA_SPLIT)) == 6
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["detector"]["train_steps"] == 2
    runs = {s: r[0] for s, r in metrics["results"].items()}
    assert set(runs) == {"baseline", "multitask", "contrastive"}
    assert {r["train_steps"] for r in runs.values()} == {2}
    assert len(runs["contrastive"]["pretrain_loss"]) == 2
    # The preset's networks: the multi-task model is the baseline's plus its decoder.
    assert runs["multitask"]["parameters"] > runs["baseline"]["parameters"]
    assert (out / "report.md").is_file() and (out / "figures" / "fig3_embedding.png").is_file()
