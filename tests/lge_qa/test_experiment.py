import json

import numpy as np
import pytest

from lge_qa import experiment, report, training
from lge_qa.config import METRICS, get_config


def test_split_scans_is_disjoint_and_sized():
    split = experiment.split_scans(50, test_scans=20, val_fraction=0.1, seed=4)
    assert len(split["test"]) == 20 and len(split["val"]) == 3 and len(split["train"]) == 27
    allidx = np.concatenate(list(split.values()))
    assert sorted(allidx.tolist()) == list(range(50))
    with pytest.raises(ValueError, match="no scans to train"):
        experiment.split_scans(10, test_scans=9, val_fraction=0.1, seed=0)


def test_even_batch_size():
    assert training.even_batch_size(301, 64) == 64
    assert training.even_batch_size(15, 64) == 14
    with pytest.raises(ValueError, match="at least 2"):
        training.even_batch_size(1, 8)


def test_detector_metrics_by_hand():
    masks = np.zeros((3, 4, 4, 1))
    masks[1, :2, :2] = 1  # 4 LA pixels in slice 1
    prob = np.zeros((3, 4, 4, 1))
    prob[1, :2, :1] = 0.9  # 2 of them found
    prob[2, 0, 0] = 0.8  # 1 false positive pixel in slice 2
    sel = experiment.detect_slices(prob, np.zeros(3, int), ["A"], 0.5)
    assert sel.tolist() == [False, True, True]
    m = training.detector_metrics(prob, masks, sel, 0.5)
    assert m["dice"] == pytest.approx(2 * 2 / (3 + 4))
    assert m["slice_precision"] == pytest.approx(0.5) and m["slice_recall"] == pytest.approx(1.0)


def test_scan_without_detection_falls_back_with_a_warning():
    prob = np.zeros((4, 2, 2, 1))
    prob[3, 0, 0] = 0.2
    with pytest.warns(UserWarning, match="case B: no slice"):
        sel = experiment.detect_slices(prob, np.zeros(4, int), ["B"], 0.5, fallback_top=1)
    assert sel.tolist() == [False, False, False, True]


def test_summary_and_table():
    results = {"baseline": [{m: 0.5 for m in METRICS}, {m: 0.7 for m in METRICS}]}
    summary = report.summarise(results)
    assert summary["baseline"]["f1"] == pytest.approx((0.6, np.std([0.5, 0.7], ddof=1)))
    table = report.table_markdown(summary)
    assert "| QA (ours) | 0.60 ± 0.14" in table and "| QA (paper) | 0.60 ± 0.05" in table


@pytest.mark.slow
def test_tiny_end_to_end(tmp_path):
    from shared.tracking.store import open_store

    cfg = get_config("tiny")
    store_url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    # Two strategies keep this test short; the notebook test runs all three.
    strategies = ("baseline", "multitask")
    result = experiment.run_experiment(cfg, out_dir=tmp_path / "run", store_url=store_url,
                                       strategies=strategies, progress=False)
    run = tmp_path / "run"
    for name in ("config.json", "run_info.json", "metrics.json", "report.md",
                 "figures/fig2_hirescam.png", "figures/fig3_embedding.png", "stats_f1/report.md"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["results"]) == set(strategies)
    assert set(metrics["detector"]) >= {"dice", "slice_precision", "slice_recall"}
    assert all(len(v) == cfg.repetitions for v in metrics["results"].values())
    for strategy, stats in result["summary"].items():
        for metric, (mean, std) in stats.items():
            assert 0.0 <= mean <= 1.0 and std >= 0.0
    store = open_store(store_url)
    rows = store.evaluations(experiment.EXPERIMENT, metric="f1")
    store.close()
    assert len(rows) == len(strategies) * cfg.repetitions
    assert {r["group"] for r in rows} == set(strategies)
    assert "Table 2" in result["report"].read_text()
