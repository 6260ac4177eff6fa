"""A tiny end-to-end run through the CLI: search, final runs, Grad-CAM, report, store rows."""

import dataclasses
import json

import numpy as np
import pytest

from covidnet_siamese.config import get_preset, quick, tiny


def test_presets():
    assert get_preset("paper").counts["train"] == (6373, 4361, 179)
    assert get_preset("paper").search_learning_rates == (1e-3, 1e-4, 1e-5)
    assert quick().image_size < 224 and tiny().final_epochs_siamese <= 2
    with pytest.raises(ValueError, match="Unknown preset"):
        get_preset("huge")
    with pytest.raises(ValueError, match="crop_fraction"):
        dataclasses.replace(tiny(), crop_fraction=0.6)


def test_powered_seeds_are_sized_one_sided_and_the_claims_tested_so():
    from covidnet_siamese.config import POWERED_SEEDS, powered_seeds, study_protocol
    from shared.stats import units_for_mde

    # One-sided, the paper's gap 0.06 at SD 0.078 needs 12 seeds; two-sided it would need 16.
    assert POWERED_SEEDS == powered_seeds() == len(get_preset("powered").seeds) == 12
    assert units_for_mde(0.06, 0.078, alternative="two-sided") == 16
    protocol = study_protocol(get_preset("powered"))
    assert {h.id: h.alternative for h in protocol.hypotheses} == {
        "H1": "greater", "H2": "greater", "H3": "less"}
    assert protocol.design == ""


@pytest.mark.slow
def test_tiny_end_to_end_through_cli(tmp_path, monkeypatch):
    from covidnet_siamese import config
    from shared.cli.app import main
    from shared.tracking.store import open_store

    data = tmp_path / "covidx"
    assert main(["covidnet-siamese", "generate", "--out", str(data), "--preset", "tiny"]) == 0
    assert (data / "train_split.txt").is_file()
    # Two seeds: the second run clears the Keras session between models, which must not
    # lose the strategy (the search's trials clear it too).
    monkeypatch.setitem(config.PRESETS, "tiny", lambda: dataclasses.replace(tiny(), seeds=(0, 1), run_search=True,
                                                                       gradcam_images=10))
    store = f"sqlite:///{tmp_path / 'store.sqlite'}"
    out = tmp_path / "run"
    assert main(["covidnet-siamese", "run", "--preset", "tiny", "--out", str(out), "--store", store,
                 "--data", str(data), "--no-progress", "--strategy", "mirrored"]) == 0
    report = (out / "report.md").read_text()
    assert "Test accuracy" in report and report.index("## Claims") < report.index("Test accuracy")
    from shared.study import read_claims, read_protocol

    claims = read_claims(out)  # validates against the schema
    assert claims["protocol_sha256"] == read_protocol(out / "protocol.json")["sha256"]
    verdicts = {c["id"]: c for c in claims["claims"]}
    # 4 COVID-19 test images fail the data gate; 2 seeds are too few units to test.
    assert verdicts["H2"]["verdict"] == "untestable" and "covid_test_images" in verdicts["H2"]["note"]
    assert verdicts["H1"]["verdict"] == "inconclusive" and verdicts["H1"]["n"] == 2
    assert verdicts["H1"]["trivial"]["name"] == "always normal"
    assert verdicts["H1"]["sides"] == 1  # tested one-sided, as the powered seeds are sized
    # The run read a user's folder: a SHA-256 per file goes into the run folder's
    # data_manifest.json, none into the data folder, which is only read.
    import hashlib

    from shared.study.provenance import manifest_sha256, read_data_manifest

    assert claims["provenance"]["allow_dirty"] is False
    assert claims["data"]["source"] == "user" and claims["data"]["manifest"] == "data_manifest.json"
    assert not (data / "data_manifest.json").exists()
    manifest = read_data_manifest(out / "data_manifest.json")
    on_disk = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file())
    assert [f["path"] for f in manifest["files"]] == on_disk and claims["data"]["files"] == len(on_disk)
    split = next(f for f in manifest["files"] if f["path"] == "train_split.txt")
    assert split["sha256"] == hashlib.sha256((data / "train_split.txt").read_bytes()).hexdigest()
    assert split["bytes"] == (data / "train_split.txt").stat().st_size
    assert claims["data"]["manifest_sha256"] == manifest_sha256(manifest)
    assert "Precision policy `float32`, 1 replica(s) (`MirroredStrategy`)" in report and "XLA off" in report
    results = json.loads((out / "results.json").read_text())
    for arm in ("siamese", "single", "single_cropped"):
        acc = results[arm][0]["accuracy"]
        assert 0.0 <= acc <= 1.0
        assert len(results[arm][0]["confusion_matrix"]) == 3
    assert (out / "bundles" / "siamese" / "metadata.json").is_file() and (out / "figures" / "gradcam_siamese.png").is_file()
    gates = json.loads((out / "gates.json").read_text())
    assert set(gates) >= {"recall", "covid_pneumonia_confusion"}
    assert gates["scored_on"] == "training split, out of fold" and gates["folds"] == 5
    for arm in ("siamese", "single", "single_cropped"):
        r = results[arm][0]
        assert r["dead_unit_totals"]["conv"][1] == sum(t for name, (_, t) in r["dead_units"].items()
                                                        if not name.startswith("fc"))
        assert 0.0 <= r["validation"]["balanced_accuracy"] <= 1.0
        assert sum(r["predicted_share"]) == pytest.approx(1.0)
    assert results["single"][0]["dead_unit_totals"]["dense"][1] == 16 + 4 + 4  # the tiny head
    rows = claims["arm_validity"]
    assert {r["check"] for r in rows} == {"learned_val_accuracy", "not_collapsed_onto_one_class"}
    assert {r["arm"] for r in rows if r["check"] == "learned_val_accuracy"} == {"siamese", "single",
                                                                               "single_cropped"}
    for r in rows:  # value - reference (the validation majority rate) against the declared margin
        if r["check"] == "learned_val_accuracy":
            assert r["reference"] == pytest.approx(np.mean(results["single"][0]["validation"]["majority_rate"]))
            assert r["passed"] == (r["value"] - r["reference"] >= -1.0)
    # H3's secondary measure: region occlusion of the border band for its two nets only.
    assert results["siamese"][0]["occlusion_full_frame"] == {}
    for arm in ("single", "single_cropped"):
        occlusion = results[arm][0]["occlusion_full_frame"]
        assert np.isfinite(occlusion["border_drop"]) and np.isfinite(occlusion["border_complement_drop"])
        assert occlusion["artefact_images"] == results["single"][0]["attention_full_frame"]["artefact_images"]
    assert "Region occlusion, secondary to H3" in report
    # Grad-CAM on the declared 10 of the 18 test images only.
    assert 0 < results["single"][0]["attention"]["artefact_images"] <= 10
    assert json.loads((out / "protocol.json").read_text())["protocol"]["test_set"]["gradcam_images"].startswith("10,")
    # The run folder alone classifies a new image, with the same answer as the run's own test.
    from covidnet_siamese.inference import predict_images
    from shared.testing.bad_input import run_cli

    image = data / "test" / sorted((data / "test").iterdir())[0].name
    code, printed, _ = run_cli(["covidnet-siamese", "predict", "--model", out, image])
    assert code == 0 and printed.splitlines()[0] == "file\tclass\tnormal\tpneumonia\tCOVID-19"
    names, rows = predict_images(out, [image])
    assert printed.splitlines()[1].split("\t")[1] == rows[0][1] and len(rows[0][2]) == 3
    rows = open_store(store).evaluations("covidnet_siamese", metric="test_accuracy")
    assert {r["group"] for r in rows} == {"siamese", "single", "single_cropped"}
    trials = open_store(store).trials("covidnet_siamese")
    assert {t["status"] for t in trials} == {"completed"} and len(trials) == 2


def test_summary_claims_from_hand_made_results():
    from covidnet_siamese.experiment import summarize

    def run(acc, per_class, artefact):
        return {"accuracy": acc, "per_class_accuracy": per_class,
                "attention": {"border": 0.3, "artefact": artefact, "lung": 0.2},
                "attention_full_frame": {"artefact_lift": 10 * artefact if artefact == artefact else 1.0}}

    results = {"siamese": [run(0.9, [0.9, 0.9, 0.5], 0.1), run(0.8, [0.8, 0.8, 0.3], 0.1)],
               "single": [run(0.7, [0.7, 0.7, 0.9], 0.3), run(0.8, [0.8, 0.8, 0.7], 0.5)],
               "single_cropped": [run(0.7, [0.7, 0.7, 0.7], 0.0), run(0.7, [0.7, 0.7, 0.7], float("nan"))]}
    summary = summarize(results)
    assert summary["test_accuracy"]["siamese"] == pytest.approx(0.85)
    assert summary["per_class_accuracy"]["single"][2] == pytest.approx(0.8)
    assert summary["attention"]["single_cropped"]["artefact"] == 0.0  # NaN (no artefact left) ignored
    assert summary["attention"]["single"]["full_frame_artefact_lift"] == pytest.approx(4.0)
    assert summary["claims"] == {"siamese_above_single": True, "single_better_on_covid": True,
                                 "cropping_reduces_artefact_attention": True}


def test_run_honours_strategy_precision_and_xla(tmp_path, monkeypatch):
    import keras
    import tensorflow as tf

    from covidnet_siamese import experiment
    from shared.cli.app import main

    seen = {}

    def fake_run(config, out_dir, **kwargs):
        strategy = kwargs["strategy"]
        seen.update(jit=config.jit_compile, search=config.run_search,
                    policy=keras.mixed_precision.global_policy().name,
                    strategy=type(strategy).__name__, replicas=strategy.num_replicas_in_sync)
        return tmp_path / "report.md"

    monkeypatch.setattr(experiment, "run_experiment", fake_run)
    try:
        assert main(["covidnet-siamese", "run", "--preset", "tiny", "--out", str(tmp_path), "--no-progress",
                     "--store", f"sqlite:///{tmp_path / 's.sqlite'}", "--strategy", "mirrored",
                     "--precision", "mixed_float16", "--xla", "--no-search"]) == 0
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert seen == {"jit": True, "search": False, "policy": "mixed_float16", "strategy": "MirroredStrategy",
                    "replicas": len(tf.config.list_logical_devices("CPU"))}


def test_batch_norm_follows_the_paper_and_the_switch(tmp_path, monkeypatch):
    import keras

    from covidnet_siamese import experiment
    from covidnet_siamese.training import new_single
    from shared.cli.app import main

    # The paper names no normalisation (Figure 4: ReLU and max-pooling only).
    assert get_preset("paper").batch_norm is False
    assert quick().batch_norm and tiny().batch_norm and get_preset("powered").batch_norm
    from covidnet_siamese.config import study_protocol

    assert study_protocol(get_preset("paper")).deviations == ()
    assert any("batch normalisation" in d for d in study_protocol(quick()).deviations)
    seen = []
    monkeypatch.setattr(experiment, "run_experiment",
                        lambda config, out_dir, **kw: seen.append(config.batch_norm) or tmp_path / "report.md")
    for flag, expected in ((None, True), ("off", False), ("on", True)):
        argv = ["covidnet-siamese", "run", "--preset", "tiny", "--out", str(tmp_path / str(flag)), "--no-progress",
                "--store", f"sqlite:///{tmp_path / 's.sqlite'}"] + ([] if flag is None else ["--batch-norm", flag])
        assert main(argv) == 0
        assert seen[-1] is expected
    plain = new_single(dataclasses.replace(tiny(), batch_norm=False), 1e-3)
    normed = new_single(tiny(), 1e-3)

    def count(model):
        return sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model._flatten_layers())

    assert count(plain) == 0 and count(normed) > 0


@pytest.mark.slow
def test_search_command_takes_the_scale_switches(tmp_path, capsys):
    import keras

    from shared.cli.app import main
    from shared.tracking.store import open_store

    data = tmp_path / "covidx"
    assert main(["covidnet-siamese", "generate", "--out", str(data), "--preset", "tiny"]) == 0
    store = f"sqlite:///{tmp_path / 'store.sqlite'}"
    assert main(["covidnet-siamese", "search", "--net", "single", "--preset", "tiny",
                 "--data", str(data), "--out", str(tmp_path / "search"), "--store", store,
                 "--strategy", "mirrored", "--precision", "mixed_float16"]) == 0
    # The policy was set for the trials (the autouse fixture resets it afterwards).
    assert keras.mixed_precision.global_policy().name == "mixed_float16"
    out = capsys.readouterr().out
    result = json.loads(out[out.index('{\n  "learning_rate"'):])
    assert result["learning_rate"] == 1e-3 and result["batch_size"] == 8
    trials = open_store(store).trials("covidnet_siamese")
    assert len(trials) == 1 and trials[0]["status"] == "completed"


@pytest.mark.slow
def test_smoke_writes_reads_back_and_steps_every_arm(tmp_path):
    import cv2

    from covidnet_siamese.smoke import SMOKE_COUNTS, STEPS
    from shared.testing.bad_input import run_cli

    out = tmp_path / "smoke"
    code, printed, err = run_cli(["covidnet-siamese", "run", "--preset", "tiny", "--smoke", "--out", out,
                                  "--no-progress", "--store", f"sqlite:///{tmp_path / 's.sqlite'}"])
    assert code == 0, err
    report = json.loads((out / "smoke.json").read_text())
    # The images went to disk as PNGs at the preset's raw size and came back through the loader.
    pngs = sorted((out / "covidx" / "train").glob("*.png")) + sorted((out / "covidx" / "test").glob("*.png"))
    assert len(pngs) == sum(sum(v) for v in SMOKE_COUNTS.values())
    assert cv2.imread(str(pngs[0]), cv2.IMREAD_UNCHANGED).shape == (tiny().raw_size, tiny().raw_size)
    assert report["images"]["test"] == sum(SMOKE_COUNTS["test"])
    assert report["images"]["train"] + report["images"]["val"] == sum(SMOKE_COUNTS["train"]) + sum(
        SMOKE_COUNTS["val"])
    assert set(report["arms"]) == {"siamese", "single", "single_cropped"}
    for arm in report["arms"].values():
        assert len(arm["losses"]) == STEPS and all(v == v and abs(v) < 1e6 for v in arm["losses"])
        assert arm["parameters"] > 0
    assert "smoke finished" in printed and "peak" in printed.lower()
