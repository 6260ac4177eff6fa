"""End to end at the tiny size: generate, load, pre-train, fine-tune, report, store; CLI."""

import json

import pytest

from bar_ad.cli import _resolve_frameworks, register
from bar_ad.config import ABLATIONS, TABLE1, get_config
from bar_ad.experiment import run_experiment
from bar_ad.report import claim_checks


@pytest.mark.slow
def test_tiny_run_end_to_end(tmp_path):
    from shared.tracking.store import open_store

    config = get_config("tiny", folds_run=1)
    url = f"sqlite:///{tmp_path / 'results.sqlite'}"
    report = run_experiment(config, tmp_path / "run", store_url=url, seed=0, progress=False)
    text = report.read_text()
    assert "ViT from scratch" in text and "Supervised: BAR + recon" in text
    assert "86.2 ± 3.0" in text  # the paper's BAR + recon precision beside ours
    run = tmp_path / "run"
    for name in ("config.json", "run_info.json", "results.json", "figures/bar_vs_cutmix.png",
                 "figures/curves_bar_recon.png"):
        assert (run / name).is_file(), name
    results = json.loads((run / "results.json").read_text())
    assert set(results["table"]) == {"scratch", "bar_recon"}
    assert results["folds"]["bar_recon"][0]["pretrain_history"]["recon"]
    rows = open_store(url).evaluations("bar_ad_tiny")
    assert {r["group"] for r in rows} == {"scratch", "bar_recon"}
    assert {r["metric"] for r in rows} == {"precision", "recall", "accuracy", "auc"}
    from shared.study import read_claims, read_protocol

    assert text.index("## Claims") < text.index("| framework | precision")
    claims = read_claims(run)  # validates against the schema
    protocol = read_protocol(run / "protocol.json")
    assert claims["protocol_sha256"] == protocol["sha256"]
    assert protocol["protocol"]["units"] == ["s0-f0"]
    # Only BAR + recon vs scratch runs at the tiny size; its one test fold of a few scans
    # fails the fold-size gate, so H5 is untestable.
    (claim,) = claims["claims"]
    assert claim["id"] == "H5" and claim["arms"] == ["bar_recon", "scratch"]
    gate = claims["gates"][0]
    assert gate["name"] == "min_test_fold_scans" and gate["value"] == results["folds"]["scratch"][0]["n_test"]
    assert not gate["passed"] and claim["verdict"] == "untestable"
    assert claim["trivial"]["name"] == "always CN" and claim["n"] == 1


def test_config_and_framework_resolution():
    assert get_config("paper").grid == 96 and get_config("paper").width == 768
    assert get_config("paper").pretrain_lr == 1e-4 and get_config("paper").finetune_lr == 3e-5
    with pytest.raises(ValueError, match="Unknown config field"):
        get_config("quick", widht=3)
    with pytest.raises(ValueError, match="preset"):
        get_config("huge")
    assert _resolve_frameworks(["table1"]) == TABLE1
    assert _resolve_frameworks(["bar", "ablations"]) == ("bar",) + ABLATIONS
    with pytest.raises(ValueError, match="Unknown framework"):
        _resolve_frameworks(["mixup"])


def test_study_protocol_declares_the_claims_whose_frameworks_run():
    import numpy as np

    from bar_ad.config import study_protocol
    from bar_ad.experiment import trivial_predictor

    quick = study_protocol(get_config("quick"), seed=2)
    assert quick.units == ("s2-f0", "s2-f1") and quick.arms == get_config("quick").frameworks
    assert [h.id for h in quick.hypotheses] == ["H1", "H3", "H4", "H5"]
    assert all(h.test == "paired_t" and h.endpoint == "accuracy" for h in quick.hypotheses)
    assert [h.id for h in study_protocol(get_config("paper")).hypotheses] == ["H1", "H2", "H3", "H4", "H5"]
    assert study_protocol(get_config("paper", folds_run=3)).units == ("s0-f0", "s0-f1", "s0-f2")
    with pytest.raises(ValueError, match="no claim"):
        study_protocol(get_config("quick"), frameworks=ABLATIONS)
    # Trivial predictor by hand: training majority CN in both folds; test folds hold
    # 3 CN of 4 and 1 CN of 2 scans.
    y = np.array([0, 0, 0, 1, 0, 1, 0, 0])
    folds = [(np.array([4, 5, 6, 7]), np.array([0, 1, 2, 3])), (np.array([0, 1, 2, 3]), np.array([5, 6]))]
    assert trivial_predictor(y, folds) == {"accuracy": {"name": "always CN", "value": 62.5}}


def test_claim_checks():
    table = {fw: {"accuracy": (acc, 0.0)} for fw, acc in
             (("scratch", 70), ("ssl_recon", 75), ("cutmix_recon", 80), ("bar_recon", 85))}
    checks = {text: ok for text, ok, _ in claim_checks(table)}
    assert all(checks.values()) and len(checks) == 4


def test_cli_generate_writes_adni_layout(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["bar-ad", "generate", "--out", str(tmp_path / "adni"),
                              "--preset", "tiny", "--n-ad", "1", "--n-cn", "1", "--no-progress"])
    assert args.func(args) == 0
    assert len(list((tmp_path / "adni").glob("*.csv"))) == 1
    assert list((tmp_path / "adni" / "ADNI").glob("*/*/*/I*/ADNI_*_MR_*.nii"))


def test_cli_run_honours_scale_flags_and_overrides(monkeypatch, tmp_path):
    """`bar-ad run` passes --strategy/--precision/--xla and --set on to the experiment."""
    import argparse

    import keras

    import bar_ad.experiment
    from bar_ad.cli import parse_overrides

    seen = {}

    def fake_run(config, out, **kwargs):
        seen.update(kwargs, config=config, policy=keras.mixed_precision.global_policy().name)
        return tmp_path / "report.md"

    monkeypatch.setattr(bar_ad.experiment, "run_experiment", fake_run)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["bar-ad", "run", "--preset", "tiny", "--strategy", "mirrored",
                              "--precision", "mixed_float16", "--xla", "--set", "sigma=0.2",
                              "--set", "class_token=false", "--framework", "ablations",
                              "--out", str(tmp_path), "--no-progress"])
    try:
        assert args.func(args) == 0
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert seen["policy"] == "mixed_float16" and seen["precision"] == "mixed_float16"
    assert seen["jit_compile"] is True
    assert seen["strategy"] is not None and seen["strategy"].num_replicas_in_sync >= 1
    assert seen["config"].sigma == 0.2 and seen["config"].class_token is False
    assert seen["frameworks"] == ABLATIONS
    assert parse_overrides(["head_units=16,8", "folds_run=none", "n_folds=4"]) == dict(
        head_units=(16, 8), folds_run=None, n_folds=4)
    for bad in (["sigmaa=1"], ["sigma"], ["class_token=maybe"], ["n_folds=many"]):
        with pytest.raises(ValueError, match="--set"):
            parse_overrides(bad)


def test_center_volumes_uses_training_scans_only():
    import numpy as np

    from bar_ad.experiment import center_volumes

    x = np.stack([np.full((2, 2, 2, 1), v, np.float32) for v in (1.0, 3.0, 5.0)])
    x[1, 0, 0, 0, 0] = 5.0  # one voxel of the second training scan differs
    out = center_volumes(x, np.array([0, 1]))
    # Mean volume 2 (3 at the odd voxel); deviations +-1 everywhere (+-2 at the odd voxel):
    # std = sqrt((14 * 1 + 2 * 4) / 16).
    std = np.sqrt(22 / 16)
    np.testing.assert_allclose(out[2, 1, 1, 1, 0], (5 - 2) / std, rtol=1e-6)
    np.testing.assert_allclose(out[2, 0, 0, 0, 0], (5 - 3) / std, rtol=1e-6)
    np.testing.assert_allclose(out[0, 0, 0, 0, 0], (1 - 3) / std, rtol=1e-6)
    assert out.dtype == np.float32 and out.shape == x.shape


# ----------------------------------------------------------------------------- results store


def test_unreachable_store_spools_fold_rows_that_sync_later(tmp_path):
    from bar_ad.experiment import SPOOL_FILE, experiment_name, open_results_sink, record_fold
    from shared.tracking.spool import sync_spool
    from shared.tracking.store import open_store

    config = get_config("tiny")
    (tmp_path / "blocker").write_text("")  # a file where the store's folder should be
    sink = open_results_sink(f"sqlite:///{tmp_path / 'blocker' / 's.sqlite'}", config,
                             tmp_path / "run")
    assert sink.store is None
    fold = {"fold": 1, "seed": 10, "scores": {"precision": 50.0, "recall": 25.0, "accuracy": 62.5}}
    assert record_fold(sink, config, "bar_recon", fold) == 3
    sink.close()
    assert sink.spooled == 3 and (tmp_path / "run" / SPOOL_FILE).is_file()
    store = open_store(f"sqlite:///{tmp_path / 'good.sqlite'}")
    assert sync_spool(store, tmp_path / "run" / SPOOL_FILE) == 3
    rows = store.evaluations(experiment_name(config), metric="accuracy")
    store.close()
    assert [(r["model_id"], r["value"], r["group"]) for r in rows] == [
        ("bar_recon_fold1", 62.5, "bar_recon")]


def test_store_is_opened_before_anything_trains(tmp_path, monkeypatch):
    from bar_ad import experiment
    from shared.testing.call_order import TrainingStopped, store_then_training

    events = store_then_training(monkeypatch, experiment, "run_fold")
    with pytest.raises(TrainingStopped, match="stop here"):
        run_experiment(get_config("tiny"), tmp_path / "run", progress=False,
                       store_url=f"sqlite:///{tmp_path / 's.sqlite'}")
    assert events == ["store opened", "training"]


@pytest.mark.slow
def test_tiny_draws_design_end_to_end(tmp_path):
    from shared.study import read_claims, read_protocol

    config = get_config("tiny", design="draws", n_ad=6, n_cn=8, scans_per_subject=(1, 1),
                        n_test_subjects=6, n_draws=2, draw_subjects=6,
                        frameworks=("scratch", "bar_recon", "bar_recon_shuffled"))
    report = run_experiment(config, tmp_path / "run", seed=0, progress=False,
                            store_url=f"sqlite:///{tmp_path / 's.sqlite'}")
    run = tmp_path / "run"
    results = json.loads((run / "results.json").read_text())
    folds = results["folds"]["bar_recon"]
    assert [f["n_test"] for f in folds] == [6, 6] and all(f["n_train"] == 6 for f in folds)
    assert all(0.0 <= f["scores"]["auc"] <= 1.0 for f in folds)
    assert {"cls_cosine", "kernel_min", "kernel_max"} <= set(folds[0]["pretrain_history"])
    protocol = read_protocol(run / "protocol.json")
    assert protocol["protocol"]["units"] == ["s0-d0", "s0-d1"]
    claims = read_claims(run)
    by_id = {c["id"]: c for c in claims["claims"]}
    assert set(by_id) == {"H1c", "C1"}
    gates = {g["name"]: g for g in claims["gates"]}
    assert gates["test_subjects"]["value"] == 6 and not gates["test_subjects"]["passed"]
    assert 0.5 <= gates["best_single_region_auc"]["value"] <= 1.0
    assert all(c["verdict"] == "untestable" for c in claims["claims"])
    text = report.read_text()
    assert "## Collapse of the pre-trained encoder" in text and "## Paired comparisons" in text
    assert (run / "figures" / "collapse.png").is_file()
