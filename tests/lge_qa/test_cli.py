import argparse

import numpy as np

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


def test_encoder_weights_load_a_saved_file(monkeypatch, tmp_path):
    """--encoder-weights reaches the config, and the encoder built from it holds the saved weights."""
    import lge_qa.experiment
    from lge_qa import models, training
    from lge_qa.config import get_config

    cfg = get_config("tiny")
    saved = models.build_encoder(cfg.image_size, filters=cfg.encoder_filters, blocks=cfg.encoder_blocks)
    path = tmp_path / "encoder.weights.h5"
    saved.save_weights(str(path))
    seen = {}

    def fake_run(cfg, **kwargs):
        seen["cfg"] = cfg
        return {"summary": {}, "report": tmp_path / "report.md"}

    monkeypatch.setattr(lge_qa.experiment, "run_experiment", fake_run)
    args = _parser().parse_args(["lge-qa", "run", "--preset", "tiny", "--encoder-weights", str(path),
                                 "--out", str(tmp_path / "run"), "--no-progress"])
    assert args.func(args) == 0
    assert seen["cfg"].encoder_weights == str(path)
    _, encoder = training.build_strategy_model("contrastive", seen["cfg"])
    for a, b in zip(encoder.get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(a, b)
    args = _parser().parse_args(["lge-qa", "run", "--preset", "tiny", "--encoder-weights",
                                 str(tmp_path / "missing.weights.h5"), "--out", str(tmp_path / "r2")])
    with pytest.raises(FileNotFoundError, match="--encoder-weights"):
        args.func(args)


def test_real_data_refusals_are_one_line(tmp_path, capsys):
    """A user's root (no phantom parameters): a frozen baseline without weights and the
    phantom-only powered study are refused with exit status 2 and one line."""
    from shared.cli.app import main

    root = tmp_path / "real"
    (root / phantom.SEG_SPLIT).mkdir(parents=True)
    (root / phantom.QA_SPLIT).mkdir()
    (root / phantom.SCORES_FILE).write_text("case_id\n")
    assert main(["lge-qa", "run", "--preset", "paper", "--data", str(root), "--out", str(tmp_path / "a"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--encoder-weights" in err[0] and "frozen" in err[0]
    assert not (tmp_path / "a").exists()
    assert main(["lge-qa", "run", "--preset", "powered", "--data", str(root), "--out", str(tmp_path / "b"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "phantom only" in err[0]


def test_generate_passes_the_correlation_level(monkeypatch, tmp_path):
    import lge_qa.experiment

    seen = {}
    monkeypatch.setattr(lge_qa.experiment, "write_phantom",
                        lambda cfg, root, progress=None: seen.setdefault("cfg", cfg) and root)
    args = _parser().parse_args(["lge-qa", "generate", "--out", str(tmp_path), "--preset", "tiny",
                                 "--correlation", "low", "--no-progress"])
    args.func(args)
    assert (seen["cfg"].quality_correlation, seen["cfg"].target_correlation) == (0.2, 0.2)
    assert seen["cfg"].correlation_level == "low"


def test_detect_writes_slice_selections_without_a_scores_table(tmp_path, capsys):
    import csv

    from shared.cli.app import main

    root = phantom.generate_dataset(tmp_path / "d", n_segmentation=2, n_scored=3, shape=(32, 32, 6), seed=4)
    (root / phantom.SCORES_FILE).unlink()
    (root / phantom.PARAMETERS_FILE).unlink()
    for case in ("QA0000", "QA0001"):  # cases without a mask, as a user's would be
        (root / phantom.QA_SPLIT / case / io.MASK_FILE).unlink()
    out = tmp_path / "det"
    assert main(["lge-qa", "detect", "--data", str(root), "--out", str(out), "--preset", "tiny"]) == 0
    with (out / "slice_selection.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["case_id"] for r in rows] == ["QA0000", "QA0001", "QA0002"]
    for r in rows:
        picked = [int(s) for s in r["selected_slices"].split(";") if s]
        assert int(r["slices"]) == 6 and int(r["selected"]) == len(picked) >= 1
        assert all(0 <= s < 6 for s in picked)
    import json

    det = json.loads((out / "detector.json").read_text())
    assert det["cases"] == 3 and det["metrics"]["scored_slices"] == 6  # only QA0002 has a mask
    assert (out / "la_detector.weights.h5").is_file()
    assert "3 cases" in capsys.readouterr().out
    assert main(["lge-qa", "detect", "--data", str(tmp_path / "none"), "--out", str(out)]) == 2
