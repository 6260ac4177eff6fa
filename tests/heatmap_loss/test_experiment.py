import json

import numpy as np
import pytest

from heatmap_loss.config import PRESETS, get_config
from heatmap_loss.experiment import run_experiment
from shared.tracking.store import open_store


def test_presets():
    paper = PRESETS["paper"]
    assert paper.image_size == (105, 135) and paper.filters == (64, 128, 256, 512, 512)
    assert paper.lr_cce == (5e-6, 1e-3) and paper.lr_heatmap == (5e-7, 5e-5)
    assert (paper.n_train, paper.n_val, paper.n_test) == (10_000, 3_000, 10_000)
    assert paper.val_accuracy_threshold == 0.95 and paper.dense_units == 100
    assert get_config("quick", models_per_group=3).models_per_group == 3
    with pytest.raises(ValueError, match="preset"):
        get_config("huge")


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
    assert [c["id"] for c in claims["claims"]] == ["H1", "H2", "H3"]
    # Two models per group: too few units for any test.
    assert all(c["verdict"] in ("inconclusive", "untestable") and c["p"] is None
               for c in claims["claims"])
    assert not claims["claims"][0]["paired"] and claims["claims"][1]["test"] == "tost_welch"
    assert claims["claims"][1]["trivial"]["name"].startswith("always ")
    assert text.index("## Claims") < text.index("## Comparison of kept models")
    for name in ("config.json", "run_info.json", "samples.png", "models.json",
                 "figures/overlap_distributions.png", "figures/overlays_cce.png",
                 "figures/overlays_heatmap.png", "heart_overlap/report.md"):
        assert (run / name).exists(), name
    models = json.loads((run / "models.json").read_text())
    assert sorted(m["group"] for m in models) == ["cce", "cce", "heatmap", "heatmap"]
    for m in models:
        assert 0.0 <= m["heart_overlap"] <= 1.0 and 0.0 <= m["marker_overlap"] <= 1.0
        assert m["training_time_s"] > 0
    store = open_store(url)
    trials = store.trials("heatmap_loss_exp2")
    assert len(trials) == 4 and all(t["status"] == "completed" for t in trials)
    assert all(t["duration_s"] > 0 and "learning_rate" in t["hyperparameters"] for t in trials)
    evaluations = store.evaluations("heatmap_loss_exp2", metric="heart_overlap")
    assert {e["group"] for e in evaluations} == {"cce", "heatmap"} and len(evaluations) == 4
    times = store.evaluations("heatmap_loss_exp2", metric="training_time_s")
    assert len(times) == 4 and all(np.isfinite(t["value"]) for t in times)
    totals = store.evaluations("heatmap_loss_exp2", metric="group_training_time_s")
    assert sorted(t["model_id"] for t in totals) == ["cce-all", "heatmap-all"]
