"""A tiny end-to-end run through the CLI: search, final runs, Grad-CAM, report, store rows."""

import dataclasses
import json

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
    monkeypatch.setitem(config.PRESETS, "tiny", lambda: dataclasses.replace(tiny(), seeds=(0, 1), run_search=True))
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
    assert "Precision policy `float32`, 1 replica(s) (`MirroredStrategy`)" in report and "XLA off" in report
    results = json.loads((out / "results.json").read_text())
    for arm in ("siamese", "single", "single_cropped"):
        acc = results[arm][0]["accuracy"]
        assert 0.0 <= acc <= 1.0
        assert len(results[arm][0]["confusion_matrix"]) == 3
    assert (out / "siamese.keras").is_file() and (out / "figures" / "gradcam_siamese.png").is_file()
    assert set(json.loads((out / "gates.json").read_text())) >= {"recall", "covid_pneumonia_confusion"}
    assert all(len(r["dead_stem_units"]) == 2 for r in results["single"])
    # The run folder alone classifies a new image, with the same answer as the run's own test.
    from covidnet_siamese.inference import predict_images
    from shared.testing.bad_input import run_cli

    image = data / "test" / sorted((data / "test").iterdir())[0].name
    code, printed, _ = run_cli(["covidnet-siamese", "predict", "--model", out, image])
    assert code == 0 and printed.splitlines()[0] == "image\tclass\tnormal\tpneumonia\tCOVID-19"
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
