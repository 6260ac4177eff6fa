import json

import numpy as np
import pytest
from scipy import special, stats

from lge_qa import limited, phantom, training
from lge_qa.config import CONTROL, get_config


def _cfg(**kw):
    base = dict(training_sizes=(4, 6), test_scans=8, val_scans=4, gate_train_scans=8, gate_test_scans=6)
    base.update(kw)
    return get_config("tiny", **base)


def test_fixed_split_is_disjoint_sized_and_seeded_by_itself():
    cfg = _cfg()
    split = limited.fixed_split(40, cfg)
    sizes = {k: len(v) for k, v in split.items()}
    assert sizes == {"test": 8, "val": 4, "gate_train": 8, "gate_test": 6, "pool": 14}
    assert sorted(np.concatenate(list(split.values())).tolist()) == list(range(40))
    # Units and arms never change it: only the run seed does.
    again = limited.fixed_split(40, _cfg(repetitions=9, strategies=("baseline",)))
    assert all(np.array_equal(split[k], again[k]) for k in split)
    other = limited.fixed_split(40, _cfg(seed=1))
    assert not np.array_equal(split["test"], other["test"])
    with pytest.raises(ValueError, match="needs 32 scored scans"):
        limited.fixed_split(31, cfg)


def test_training_scans_are_nested_in_n():
    pool = np.arange(100, 130)
    small, large = limited.training_scans(pool, 4, seed=3), limited.training_scans(pool, 9, seed=3)
    assert len(small) == 4 and len(large) == 9 and set(small) <= set(large) <= set(pool)
    assert not np.array_equal(limited.training_scans(pool, 9, seed=4), large)


def test_data_gate_values_by_hand():
    scores = np.array([[1, 1, 2, 2], [5, 5, 4, 4], [3, 3, 3, 3], [2, 2, 1, 5]])
    values = limited.data_gate_values(scores, 3)
    assert values["prevalence_low"] == pytest.approx(3 / 4)
    r = np.corrcoef(scores.T)[np.triu_indices(4, 1)]
    assert values["attribute_correlation"] == pytest.approx(r.mean())


def test_oracle_auc_matches_mann_whitney():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 30)
    values = labels + rng.normal(0, 1, 30)
    u = stats.mannwhitneyu(values[labels == 1], values[labels == 0]).statistic
    assert limited.oracle_auc(values, labels) == pytest.approx(u / (labels.sum() * (30 - labels.sum())))
    assert np.isnan(limited.oracle_auc(values, np.ones(30)))


def test_study_endpoints_by_hand():
    out = limited.study_endpoints({24: 0.7, 48: 0.75, 96: 0.8}, (24, 48, 96))
    assert out == pytest.approx({"auc_n24": 0.7, "auc_n48": 0.75, "auc_n96": 0.8, "auc_mean": 0.75,
                                 "auc_n24_minus_n96": -0.1})
    assert limited.study_endpoints({24: np.nan, 48: 0.7}, (24, 48)) == {"auc_n48": 0.7}


def test_protocol_declares_the_limited_label_hypotheses_and_gates():
    protocol = limited.limited_protocol(get_config("powered"))
    assert protocol.training_sizes == (24, 48, 96) and protocol.units == tuple(range(6))
    assert protocol.arms == ("baseline", "multitask", "contrastive", CONTROL)
    by_id = {h.id: h for h in protocol.hypotheses}
    assert by_id["H1"].endpoint == "auc_n24" and by_id["H1"].arms == ("contrastive", "baseline")
    assert by_id["H3"].endpoint == "auc_n24_minus_n96" and by_id["H4"].family == "control"
    assert {g.name: g.source for g in protocol.gates} == {
        "prevalence_low": "data", "prevalence_high": "data", "attribute_correlation": "data",
        "oracle_auc": "oracle", "baseline_auc": "baseline"}
    assert protocol.test_set["scans"] == 200
    low = limited.limited_protocol(get_config("powered", correlation_level="low"))
    assert low.gate("attribute_correlation").comparison == "<="
    assert (protocol.design, low.design) == ("high", "low")
    assert limited.powered_units() == 6
    # The primary claims are tested one-sided, as the seeds are sized; the control two-sided.
    assert {h.id: h.alternative for h in protocol.hypotheses} == {
        "H1": "greater", "H2": "greater", "H3": "greater", "H4": "two-sided"}
    with pytest.raises(ValueError, match="two training sizes"):
        limited.limited_protocol(get_config("tiny"))


def test_headroom_is_declared_for_the_auc_claims_on_the_phantom_only():
    protocol = limited.limited_protocol(get_config("powered"))
    assert [h.hypothesis for h in protocol.headroom] == ["H1", "H2"]
    assert all(h.multiple == 1.0 and h.ceiling_source == "oracle" for h in protocol.headroom)
    assert limited.limited_protocol(get_config("powered"), oracle=False).headroom == ()


def test_shortcut_auc_reads_the_other_scores_only():
    rng = np.random.default_rng(0)
    scores = rng.integers(1, 6, size=(80, 4)).astype(float)
    labels = (scores[:, 0] >= 3).astype(int)  # the target follows another attribute exactly
    train, test = np.arange(40), np.arange(40, 80)
    assert limited.shortcut_auc(scores, labels, train, test) == pytest.approx(1.0)
    scores[:, 3] = labels * 5  # the target's own score carries it, the others not
    independent = rng.integers(0, 2, 80)
    assert abs(limited.shortcut_auc(scores, independent, train, test) - 0.5) < 0.25
    assert np.isnan(limited.shortcut_auc(scores, np.zeros(80, int), train, test))


def test_supcon_target_loss_by_hand():
    # Batch 4 of one label column, two positives: chance log(7); each anchor has 3
    # positives and 4 negatives, minimum log(3 + 4 exp(-20)).
    labels = np.array([[1], [0], [1], [0]])
    target = training.supcon_target_loss(labels, batch_size=4, criterion=0.25, temperature=0.1)
    chance, minimum = np.log(7), np.log(3 + 4 * np.exp(-20))
    assert target == pytest.approx(chance - 0.25 * (chance - minimum))


def test_sample_qualities_have_the_declared_latent_correlation():
    q = phantom.sample_qualities(20000, 0, correlation=0.8, spread=1.0)
    u = special.ndtri(q)
    r = np.corrcoef(u.T)[np.triu_indices(4, 1)]
    np.testing.assert_allclose(r, 0.8, atol=0.02)
    with pytest.raises(ValueError, match="correlation"):
        phantom.sample_qualities(3, 0, correlation=1.5)


def test_shift_for_prevalence_hits_the_declared_share():
    kw = dict(correlation=0.9, spread=1.0, rater_sd=0.5)
    shift = phantom.shift_for_prevalence(0.5, **kw, n=1500)
    # Fresh draws (another seed) at that shift: about half diagnostic.
    scores = phantom.simulated_scores(3000, 7, shift=shift, **kw)
    assert np.mean(scores[:, 3] >= 3) == pytest.approx(0.5, abs=0.04)
    assert phantom.shift_for_prevalence(0.7, **kw, n=1500) > shift


@pytest.mark.slow
def test_tiny_limited_study_end_to_end(tmp_path):
    from shared.study import read_claims

    cfg = _cfg(n_scored=40, n_segmentation=2, quality_shift=0.0)
    result = limited.run_limited_study(cfg, out_dir=tmp_path / "run", arms=("baseline", "contrastive"),
                                       store_url=f"sqlite:///{tmp_path / 's.sqlite'}", progress=False)
    run = tmp_path / "run"
    assert (run / "protocol.json").is_file() and (run / "report.md").is_file()
    claims = read_claims(run)
    assert {c["id"] for c in claims["claims"]} == {"H1", "H3"}
    gates = {g["name"]: g for g in claims["gates"]}
    assert set(gates) >= {"oracle_auc", "baseline_auc", "prevalence_low"}
    trained = sum(len(v) for per in result["results"].values() for v in per.values())
    if all(g["passed"] for g in gates.values()):
        assert trained == 2 * 2 * 2
        lines = (run / limited.ARMS_LOG).read_text().splitlines()
        assert len(lines) == trained and {json.loads(x)["arm"] for x in lines} == {"baseline", "contrastive"}
    else:  # a failed gate: nothing compared, every claim untestable
        assert trained == 0 and {c["verdict"] for c in claims["claims"]} == {"untestable"}
    assert "always diagnostic" in result["table"]
    # H1 and H3 are tested one-sided, as the seeds are sized; the design names the level.
    assert {c["id"]: c["sides"] for c in claims["claims"]} == {"H1": 1, "H3": 1}
    assert claims["design"] == "high"
    assert claims["data"]["source"] == "synthetic"
    assert claims["data"]["generator"] == "lge_qa.phantom.generate_dataset"
    assert claims["provenance"]["allow_dirty"] is False
    # H1's headroom: oracle ceiling, baseline gate and the other scores' shortcut
    [room] = claims["headroom"]
    assert room["hypothesis"] == "H1" and room["ceiling"] == pytest.approx(gates["oracle_auc"]["value"])
    assert room["baseline"] == pytest.approx(gates["baseline_auc"]["value"])
    if room["shortcut"] is not None:
        expected = room["ceiling"] - max(room["baseline"], room["shortcut"])
        assert room["room"] == pytest.approx(expected)
        assert room["passed"] == (expected >= 0.05 - 1e-12)


@pytest.mark.slow
def test_gates_only_measures_the_gates_and_trains_no_arm(tmp_path):
    cfg = _cfg(n_scored=40, n_segmentation=2, quality_shift=0.0)
    result = limited.run_limited_study(cfg, out_dir=tmp_path / "run", gates_only=True,
                                       store_url=f"sqlite:///{tmp_path / 's.sqlite'}", progress=False)
    run = tmp_path / "run"
    assert (run / "protocol.json").is_file() and not (run / "claims.json").exists()
    assert result["claims"] is None
    assert all(not runs for per in result["results"].values() for runs in per.values())
    # The oracle gate, recomputed from the phantom's parameters table with scikit-learn.
    from sklearn.metrics import roc_auc_score

    from lge_qa import io

    scores = io.read_scores_csv(run / "data" / phantom.SCORES_FILE)
    case_ids = sorted(scores)
    split = limited.fixed_split(len(case_ids), cfg)
    gate = np.r_[split["gate_train"], split["gate_test"]]
    contrast = phantom.read_oracle_contrast(run / "data")
    y = [int(scores[case_ids[i]][3] >= cfg.score_threshold) for i in gate]
    assert result["gates"]["oracle_auc"] == pytest.approx(roc_auc_score(y, [contrast[case_ids[i]] for i in gate]))
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["gate_baseline"]["epochs"] >= 1 and "auc" in saved["gate_baseline"]
    assert set(result["seconds"]) == {"data", "gates", "arms"}
    assert "Gates only" in (run / "report.md").read_text()
