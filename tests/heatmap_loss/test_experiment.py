import json

import numpy as np
import pytest

from heatmap_loss.config import PRESETS, get_config, powered_models_per_group, study_protocol
from heatmap_loss.experiment import model_status, run_experiment
from heatmap_loss.report import draw_overlay_models, save_overlays, status_counts
from shared.tracking.store import open_store
from tests.heatmap_loss.test_dependence import check_dependence_run


def test_presets():
    paper = PRESETS["paper"]
    assert paper.image_size == (105, 135) and paper.filters == (64, 128, 256, 512, 512)
    assert paper.lr_cce == (5e-6, 1e-3) and paper.lr_heatmap == (5e-7, 5e-5)
    assert (paper.n_train, paper.n_val, paper.n_test) == (10_000, 3_000, 10_000)
    assert paper.val_accuracy_threshold == 0.95 and paper.dense_units == 100
    assert get_config("quick", models_per_group=3).models_per_group == 3
    with pytest.raises(ValueError, match="preset"):
        get_config("huge")


def test_powered_preset_is_sized_by_units_for_mde():
    from shared.stats import units_for_mde

    powered = PRESETS["powered"]
    assert powered.models_per_group == powered_models_per_group() == 22
    # By hand: 15 pairs for H1 (Wilcoxon, alpha 0.05/3), 15 / 0.7 -> 22 trials.
    assert units_for_mde(0.05, 0.0562, alpha=0.05 / 3, alternative="greater",
                         test="wilcoxon") == 15
    assert powered.image_size == PRESETS["quick"].image_size
    # H1 is tested the way it is sized: one-sided.
    h1 = study_protocol(powered, 1).hypotheses[0]
    assert h1.id == "H1" and h1.alternative == "greater"


def test_protocol_pairs_trials_and_states_the_male_images():
    protocol = study_protocol(get_config("quick"), 2, seed=3)
    assert protocol.units == tuple(range(6)) and "trial index" in protocol.pairing_unit
    tests = {h.id: (h.test, h.direction) for h in protocol.hypotheses}
    assert tests == {"H1": ("wilcoxon", "greater"), "H2": ("paired_t", "equivalent"),
                     "H3": ("wilcoxon", "less"), "H4": ("wilcoxon", "less"),
                     "H5": ("wilcoxon", "greater")}
    assert "male images" in protocol.hypotheses[2].statement
    assert protocol.test_set["seed"] == 5
    assert [h.id for h in study_protocol(get_config("quick"), "acdc").hypotheses] == ["H1", "H2"]
    # The directional claims one-sided (H2, TOST, is two one-sided tests by construction).
    assert [h.sides for h in protocol.hypotheses] == [1, 2, 1, 1, 1]
    assert [study_protocol(get_config("quick"), e).design for e in (1, 2, "acdc")] == [
        "exp1", "exp2", "acdc"]


def test_data_block_hashes_the_splits_read_into_the_run_folder(tmp_path):
    import hashlib

    from heatmap_loss.sources import data_block

    folder = tmp_path / "data"
    folder.mkdir()
    for split in ("train", "val", "test"):
        (folder / f"{split}.npz").write_bytes(split.encode())
    (folder / "notes.txt").write_text("not read by the run")
    block = data_block(get_config("tiny"), experiment=1, seed=0, data_dir=folder, run_dir=tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "data_manifest.json").read_text())
    assert [f["path"] for f in manifest["files"]] == ["test.npz", "train.npz", "val.npz"]
    assert manifest["files"][1] == {"path": "train.npz", "bytes": 5,
                                    "sha256": hashlib.sha256(b"train").hexdigest()}
    assert block["source"] == "user" and block["files"] == 3
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "test.npz", "train.npz", "val.npz"]
    # Generated images: the settings' hash changes with the seed, not with the run folder.
    first = data_block(get_config("tiny"), experiment=1, seed=0, run_dir=tmp_path / "a")
    assert first == data_block(get_config("tiny"), experiment=1, seed=0, run_dir=tmp_path / "b")
    assert first != data_block(get_config("tiny"), experiment=1, seed=1, run_dir=tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_model_status_by_hand():
    history = {"loss": [1.0, 0.5], "val_loss": [0.9, 0.6]}
    assert model_status(history, 0.97, threshold=0.95, majority_rate=0.25) == "kept"
    assert model_status(history, 0.90, threshold=0.95, majority_rate=0.25) == "below_filter"
    assert model_status(history, 0.25, threshold=0.95, majority_rate=0.25) == "not_trained"
    nan = {"loss": [1.0, float("nan")], "val_loss": [0.9]}
    assert model_status(nan, 0.97, threshold=0.95, majority_rate=0.25) == "not_trained"


def _records():
    out = []
    for g in ("cce", "heatmap"):
        for k, status in enumerate(("kept", "kept", "kept", "below_filter", "not_trained")):
            out.append({"group": g, "model_id": f"{g}-{k}", "status": status,
                        "kept": status == "kept"})
    return out


def test_status_counts_and_seeded_overlay_draw():
    records = _records()
    records[-2]["status"], records[-2]["kept"] = "not_trained", False
    counts = status_counts(records)
    assert counts["cce"] == {"trained": 5, "kept": 3, "below_filter": 1, "not_trained": 1}
    assert counts["heatmap"] == {"trained": 5, "kept": 3, "below_filter": 0, "not_trained": 2}
    draws = [draw_overlay_models(records, seed)["cce"]["model_id"] for seed in range(12)]
    assert set(draws) == {"cce-0", "cce-1", "cce-2"}  # only kept models, not always the first
    assert draws == [draw_overlay_models(records, seed)["cce"]["model_id"] for seed in range(12)]
    none_kept = [dict(r, kept=False) for r in records]
    assert draw_overlay_models(none_kept, 0) == {"cce": None, "heatmap": None}


def test_unnormalised_overlays_share_one_scale(tmp_path, monkeypatch):
    import shared.report.figures as figures

    seen = []
    monkeypatch.setattr(figures, "save_image_grid", lambda panels, path, **kw: seen.append(panels))
    images = np.zeros((2, 4, 4), np.uint8)
    maps = np.stack([np.full((4, 4), 1.0), np.full((4, 4), 4.0)])
    maps[:, 0, 0] = 0.0
    save_overlays(images, maps, [0, 1], ("a", "b"), tmp_path / "x.png", normalized=False,
                  title="t", ncols=2)
    save_overlays(images, maps, [0, 1], ("a", "b"), tmp_path / "y.png", normalized=True,
                  title="t", ncols=2)
    raw, norm = seen
    # One scale: the weaker map is drawn paler than the stronger; normalised, they match.
    assert not np.array_equal(raw[0][1, 1], raw[1][1, 1])
    assert np.array_equal(norm[0][1, 1], norm[1][1, 1])


@pytest.mark.slow
def test_tiny_experiment_2_end_to_end(tmp_path):
    url = f"sqlite:///{tmp_path}/store.sqlite"
    report = run_experiment(get_config("tiny"), experiment=2, out_dir=tmp_path / "run",
                            store_url=url, seed=0, progress=False)
    text = report.read_text()
    assert "marker_overlap" in text and "heart_overlap" in text
    run = tmp_path / "run"
    from shared.study import read_claims, read_protocol

    claims = read_claims(run)  # validates against the schema
    assert claims["protocol_sha256"] == read_protocol(run / "protocol.json")["sha256"]
    assert [c["id"] for c in claims["claims"]] == ["H1", "H2", "H3", "H4", "H5"]
    # Two models per group: too few units for any test.
    assert all(c["verdict"] in ("inconclusive", "untestable") and c["p"] is None
               for c in claims["claims"])
    assert claims["claims"][0]["paired"] and claims["claims"][1]["test"] == "tost_paired_t"
    # The directional claims are tested one-sided, as the powered trials are sized.
    assert [c["sides"] for c in claims["claims"]] == [1, 2, 1, 1, 1]
    assert claims["design"] == "exp2"
    # The images were generated by this run: the generator and the hash of its settings
    # (experiment 2; 48 / 16 / 16 images from seeds 0, 1, 2).
    from shared.study.provenance import settings_sha256

    assert claims["data"] == {
        "source": "synthetic", "generator": "heatmap_loss.phantom.generate",
        "settings_sha256": settings_sha256({"experiment": 2, "splits": {
            "train": {"n": 48, "seed": 0}, "val": {"n": 16, "seed": 1}, "test": {"n": 16, "seed": 2}}})}
    assert claims["provenance"]["allow_dirty"] is False
    assert claims["claims"][1]["trivial"]["name"].startswith("always ")
    assert text.index("## Claims") < text.index("## Kept models as independent groups")
    for name in ("config.json", "run_info.json", "samples.png", "models.json",
                 "figures/overlap_distributions.png", "figures/marker_iqr.png"):
        assert (run / name).exists(), name
    models = json.loads((run / "models.json").read_text())
    assert sorted(m["group"] for m in models) == ["cce", "cce", "heatmap", "heatmap"]
    for m in models:
        assert 0.0 <= m["heart_overlap"] <= 1.0 and 0.0 <= m["marker_overlap"] <= 1.0
        assert m["training_time_s"] > 0
        assert m["status"] in ("kept", "below_filter", "not_trained")
        assert m["kept"] == (m["status"] == "kept")
        if m["kept"]:
            for suffix in ("", "_unnormalised"):
                assert (run / "figures" / f"overlays_{m['group']}{suffix}.png").exists()
    # Trial k of both groups starts from the same seed; the trials' seeds differ.
    seeds = {(m["group"], m["trial_index"]): m["init_seed"] for m in models}
    assert seeds[("cce", 0)] == seeds[("heatmap", 0)] != seeds[("cce", 1)]
    assert seeds[("cce", 1)] == seeds[("heatmap", 1)]
    assert "## Models per group" in text and "init_seed" in text
    store = open_store(url)
    trials = store.trials("heatmap_loss_exp2")
    assert len(trials) == 4 and all(t["status"] == "completed" for t in trials)
    assert all(t["duration_s"] > 0 and "learning_rate" in t["hyperparameters"] for t in trials)
    evaluations = store.evaluations("heatmap_loss_exp2", metric="heart_overlap")
    assert {e["group"] for e in evaluations} == {"cce", "heatmap"} and len(evaluations) == 4
    assert sorted(e["extra"]["init_seed"] for e in evaluations) == sorted(seeds.values())
    times = store.evaluations("heatmap_loss_exp2", metric="training_time_s")
    assert len(times) == 4 and all(np.isfinite(t["value"]) for t in times)
    totals = store.evaluations("heatmap_loss_exp2", metric="group_training_time_s")
    assert sorted(t["model_id"] for t in totals) == ["tiny_s0_cce-all", "tiny_s0_heatmap-all"]
    _check_tensorboard_logs(run, models)
    _check_group_bundles(run, models)
    check_dependence_run(run, text, models)


def _check_tensorboard_logs(run, models):
    """TensorBoard's own reader finds each trial's per-epoch scalars and its HParams."""
    from shared.testing.tensorboard_events import hparams, scalars

    for m in models:
        trial = run / "tensorboard" / m["group"] / str(m["trial_id"]) / "execution0"
        assert hparams(trial)["learning_rate"] == pytest.approx(m["learning_rate"])
        train, val = scalars(trial / "train"), scalars(trial / "validation")
        assert [step for step, _ in train["epoch_loss"]] == list(range(m["epochs"]))
        assert train["epoch_learning_rate"][0][1] == pytest.approx(m["learning_rate"], rel=1e-5)
        assert len(val["epoch_accuracy"]) == m["epochs"]
    # The study's kept models: one HParams session per arm x unit, endpoints as metrics.
    kept = [m for m in models if m["kept"]]
    for m in kept:
        session = run / "tensorboard" / "study" / m["group"] / f"unit_{m['trial_index']}"
        if session.is_dir():
            assert hparams(session) == {"arm": m["group"], "unit": float(m["trial_index"])}
            assert scalars(session)["heart_overlap"][0][1] == pytest.approx(m["heart_overlap"], rel=1e-5)


def _check_group_bundles(run, models):
    """Each group keeps its trial of best validation accuracy as a bundle that predicts."""
    import cv2

    from heatmap_loss.bundle import predict_files

    for group in ("cce", "heatmap"):
        trained = [m for m in models if m["group"] == group and m["status"] != "not_trained"]
        folder = run / "bundles" / group
        if not trained:
            assert not folder.exists()
            continue
        meta = json.loads((folder / "metadata.json").read_text())
        best = max(trained, key=lambda m: m["val_accuracy"])
        assert meta["training"]["trial_index"] == best["trial_index"]
        image = run / f"{group}_film.png"
        cv2.imwrite(str(image), np.full((105, 135), 90, np.uint8))
        classes, rows = predict_files(run, [image], group=group)
        assert len(rows[0][2]) == len(classes) == 4 and sum(rows[0][2]) == pytest.approx(1.0, rel=1e-5)
