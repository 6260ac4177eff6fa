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


def test_study_protocol_declares_only_the_pairs_that_run():
    from lge_qa.config import study_protocol

    full = study_protocol(get_config("quick"))
    assert [h.id for h in full.hypotheses] == ["H1", "H2", "H3", "H4", "H5", "H6"]
    assert full.units == (0, 1, 2) and full.preset == "quick"
    assert full.test_set["split_seeds"] == [0, 1000, 2000]
    assert full.gates[0].hypotheses == ("H4", "H5", "H6")  # the specificity claims
    pair = study_protocol(get_config("tiny", seed=3), strategies=("baseline", "contrastive"))
    assert [(h.id, h.arms) for h in pair.hypotheses] == [("H1", ("contrastive", "baseline")),
                                                         ("H4", ("contrastive", "baseline"))]
    assert pair.test_set["split_seeds"] == [3, 1003]
    with pytest.raises(ValueError, match="at least two strategies"):
        study_protocol(get_config("tiny"), strategies=("baseline",))


def test_gate_and_trivial_predictor_by_hand():
    labels = np.zeros((6, 4), int)
    labels[[0, 1, 2, 4], 3] = 1  # scans 3 and 5 non-diagnostic
    splits = [{"test": np.array([0, 3])}, {"test": np.array([1, 2, 4, 5])}]
    assert experiment.count_test_negatives(labels, splits) == 2
    trivial = experiment.trivial_predictors(labels, splits)
    # Prevalence 1/2 and 3/4: F1 of "all diagnostic" 2p / (1 + p) = 2/3 and 6/7.
    assert trivial["f1"]["value"] == pytest.approx((2 / 3 + 6 / 7) / 2)
    assert trivial["specificity"] == {"name": "all diagnostic", "value": 0.0}


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
    text = result["report"].read_text()
    assert "Table 2" in text and text.index("## Claims") < text.index("## Stage 1")
    from shared.study import read_claims, read_protocol

    claims = read_claims(run)  # validates against the schema
    assert claims == result["claims"]
    protocol = read_protocol(run / "protocol.json")
    assert claims["protocol_sha256"] == protocol["sha256"]
    assert protocol["protocol"]["arms"] == list(strategies) and protocol["protocol"]["units"] == [0, 1]
    verdicts = {c["id"]: c for c in claims["claims"]}
    # Only the pairs of the two strategies that ran are declared: H2 (F1), H5 (specificity).
    assert set(verdicts) == {"H2", "H5"}
    # The gate of H5 counts the non-diagnostic test scans over the two repetitions, read
    # here straight from the phantom's scores table (fibrosis score < 3); far fewer than
    # MIN_TEST_NEGATIVES, so H5 is untestable. Two repetitions are too few units to test H2.
    import csv

    from lge_qa.config import MIN_TEST_NEGATIVES

    with (run / "data" / "quality_scores.csv").open(newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda row: row["case_id"])
    negative = [int(row["fibrosis_quality"]) < cfg.score_threshold for row in rows]
    splits = [experiment.split_scans(len(rows), test_scans=cfg.test_scans, val_fraction=cfg.val_fraction,
                                     seed=cfg.seed + 1000 * r) for r in range(cfg.repetitions)]
    by_hand = sum(negative[i] for split in splits for i in split["test"])
    assert 0 < by_hand < MIN_TEST_NEGATIVES
    assert claims["gates"][0]["name"] == "test_negatives" and claims["gates"][0]["value"] == by_hand
    assert verdicts["H5"]["verdict"] == "untestable" and "test_negatives" in verdicts["H5"]["note"]
    assert verdicts["H2"]["verdict"] == "inconclusive" and verdicts["H2"]["n"] == 2
    assert verdicts["H2"]["trivial"]["name"] == "all diagnostic"
    # The phantom was generated into the run folder: the claims name its generator.
    from shared.study.provenance import settings_sha256

    assert claims["data"] == {"source": "synthetic", "generator": "lge_qa.phantom.generate_dataset",
                              "settings_sha256": settings_sha256(experiment.phantom_settings(cfg))}
    assert claims["provenance"]["allow_dirty"] is False and claims.get("design", "") == ""


# ----------------------------------------------------------------------------- data integrity


def test_a_data_root_without_scores_is_refused_and_left_untouched(tmp_path):
    """A user's root is only read: no phantom is written into it (at aa04f5f the run
    wrote a phantom there and trained on the mix)."""
    from shared.testing.bad_input import assert_one_line_error
    from tests.lge_qa.small_dataset import snapshot, write_small_dataset

    root = write_small_dataset(tmp_path / "user_data")
    (root / "quality_scores.csv").unlink()
    before = snapshot(root)
    assert_one_line_error(["lge-qa", "run", "--preset", "tiny", "--data", str(root), "--out",
                           str(tmp_path / "run"), "--no-progress"], "quality_scores.csv", "not found")
    assert snapshot(root) == before
    assert not (tmp_path / "run" / "data").exists()


def test_without_a_root_the_phantom_goes_into_the_run_folder(tmp_path):
    cfg = get_config("tiny", n_segmentation=1, n_scored=3, quality_shift=0.0)
    root = experiment.resolve_dataset(cfg, None, tmp_path / "run")
    assert root == tmp_path / "run" / "data"
    assert sorted(p.name for p in (root / "quality").iterdir()) == ["QA0000", "QA0001", "QA0002"]
    stamp = (root / "quality_scores.csv").stat().st_mtime_ns
    # A resumed run finds the complete phantom and keeps it.
    assert experiment.resolve_dataset(cfg, None, tmp_path / "run") == root
    assert (root / "quality_scores.csv").stat().st_mtime_ns == stamp


def test_a_given_root_is_returned_as_is(tmp_path):
    from tests.lge_qa.small_dataset import snapshot, write_small_dataset

    root = write_small_dataset(tmp_path / "d")
    before = snapshot(root)
    assert experiment.resolve_dataset(get_config("tiny"), root, tmp_path / "run") == root
    assert snapshot(root) == before and not (tmp_path / "run").exists()


def test_detector_metrics_skip_scans_without_a_mask():
    # Two scans of two slices: scan 0 has a mask (LA in slice 1), scan 1 has none.
    masks = np.zeros((4, 2, 2, 1))
    masks[1, 0, 0] = 1
    prob = np.zeros((4, 2, 2, 1))
    prob[1, 0, 0] = 0.9  # found
    prob[3, :, :] = 0.9  # the maskless scan: the detector sees an LA that has no truth
    selected = np.array([False, True, False, True])
    has_mask = np.array([True, True, False, False])
    m = training.detector_metrics(prob, masks, selected, 0.5, has_mask=has_mask)
    # Over scan 0 alone: Dice 1, precision 1/1, recall 1/1.
    assert m["dice"] == pytest.approx(1.0) and m["slice_precision"] == pytest.approx(1.0)
    assert m["scored_slices"] == 2 and m["selected_slices"] == 1
    # Counting scan 1 as an empty mask would give Dice 2/6 and precision 1/2.
    old = training.detector_metrics(prob, masks, selected, 0.5)
    assert old["dice"] == pytest.approx(2 / 6) and old["slice_precision"] == pytest.approx(0.5)
    none = training.detector_metrics(prob, masks, selected, 0.5, has_mask=np.zeros(4, bool))
    assert none["dice"] is None and none["scored_slices"] == 0


def test_loader_reports_cases_in_one_place_only(tmp_path, caplog):
    from lge_qa import io
    from tests.lge_qa.small_dataset import write_small_dataset

    root = write_small_dataset(tmp_path / "d", n_scored=4)
    scores = io.read_scores_csv(root / "quality_scores.csv")
    del scores["QA0001"]
    scores["QA0077"] = np.array([3, 3, 3, 3])
    with caplog.at_level("WARNING", logger="lge_qa.io"):
        cases = io.match_scored_cases(root / "quality", scores, scores_path="s.csv")
    assert cases == ["QA0000", "QA0002", "QA0003"]
    text = caplog.text
    assert "QA0077" in text and "no folder" in text and "QA0001" in text and "no row" in text
    with pytest.raises(ValueError, match="QA0077.*QA0001.*--strict"):
        io.match_scored_cases(root / "quality", scores, scores_path="s.csv", strict=True)


# ----------------------------------------------------------------------------- results store


def test_unreachable_store_spools_rows_that_sync_later(tmp_path):
    from shared.tracking.sink import SPOOL_FILE, ResultsSink
    from shared.tracking.spool import sync_spool
    from shared.tracking.store import open_store

    (tmp_path / "blocker").write_text("")  # a file where the store's folder should be
    sink = ResultsSink.open(f"sqlite:///{tmp_path / 'blocker' / 's.sqlite'}", tmp_path / "run")
    assert sink.store is None
    results = {"baseline": [{"f1": 0.5, "specificity": 0.25}]}
    det = {"dice": 0.8, "slice_precision": None, "slice_recall": 0.9}
    n = experiment._record(sink, get_config("tiny"), results, det, ("baseline",))
    assert n == 4 and sink.spooled == 4 and (tmp_path / "run" / SPOOL_FILE).is_file()
    store = open_store(f"sqlite:///{tmp_path / 'good.sqlite'}")
    assert sync_spool(store, tmp_path / "run" / SPOOL_FILE) == 4
    rows = store.evaluations(experiment.EXPERIMENT, metric="f1")
    store.close()
    assert [(r["model_id"], r["value"]) for r in rows] == [("tiny_baseline_seed0_rep0", 0.5)]


def test_store_is_opened_before_anything_trains(tmp_path, monkeypatch):
    from shared.testing.call_order import TrainingStopped, store_then_training
    from tests.lge_qa.small_dataset import write_small_dataset

    events = store_then_training(monkeypatch, experiment, "train_la_detector")
    root = write_small_dataset(tmp_path / "d")
    with pytest.raises(TrainingStopped, match="stop here"):
        experiment.run_experiment(get_config("tiny"), out_dir=tmp_path / "run", data_root=root,
                                  store_url=f"sqlite:///{tmp_path / 's.sqlite'}", progress=False)
    assert events == ["store opened", "training"]
