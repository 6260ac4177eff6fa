"""The powered (limited-label) study's TensorBoard scalars and bundles, on a tiny design."""

import json

import numpy as np
import pytest

from lge_qa import limited
from lge_qa.config import get_config


@pytest.mark.slow
def test_tiny_limited_study_logs_every_network_and_keeps_the_first_units_bundles(tmp_path, monkeypatch):
    from lge_qa.predict import predict_files
    from shared.study import Study
    from shared.testing.tensorboard_events import scalars

    monkeypatch.setattr(Study, "gates_passed", lambda self, hypothesis_id=None: True)  # the arms train
    cfg = get_config("tiny", training_sizes=(4, 6), test_scans=8, val_scans=4, gate_train_scans=8,
                     gate_test_scans=6, n_scored=52, n_segmentation=2, quality_shift=0.0, pretrain_steps=4,
                     pretrain_criterion=0.25)
    arms = ("baseline", "contrastive")
    run = tmp_path / "run"
    result = limited.run_limited_study(cfg, out_dir=run, arms=arms, store_url=f"sqlite:///{tmp_path / 's.sqlite'}",
                                       progress=False)
    units = json.loads((run / "protocol.json").read_text())["protocol"]["units"]
    for arm in arms:
        for unit in units:
            for n in (4, 6):
                [metrics] = [m for m in result["results"][arm][n] if m["seed"] == unit]
                logged = scalars(run / "tensorboard" / f"{arm}_unit{unit}_n{n}" / "train")["epoch_loss"]
                assert len(logged) == metrics["epochs"]
        meta = json.loads((run / "bundles" / arm / "metadata.json").read_text())
        assert meta["training"]["unit"] == f"unit {units[0]}, 6 training scans"
    assert (run / "tensorboard" / f"contrastive_unit{units[0]}_n6_pretrain").is_dir()
    assert sorted(p.name for p in (run / "bundles").iterdir()) == ["baseline", "contrastive", "la_detector"]
    volume = sorted((run / "data" / "quality").iterdir())[0] / "lgemri.nrrd"
    scores, rows, _ = predict_files(run, [volume], strategy="contrastive")
    assert len(rows[0][2]) == len(scores) == 4 and np.all(np.isfinite(rows[0][2]))
