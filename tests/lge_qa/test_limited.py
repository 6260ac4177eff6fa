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
    split = limited.fixed_split(52, cfg)
    sizes = {k: len(v) for k, v in split.items()}
    assert sizes == {"test": 8, "val": 4, "gate_train": 8, "gate_test": 6, "pool": 26}
    assert sorted(np.concatenate(list(split.values())).tolist()) == list(range(52))
    # Units and arms never change it: only the run seed does.
    again = limited.fixed_split(52, _cfg(repetitions=9, strategies=("baseline",)))
    assert all(np.array_equal(split[k], again[k]) for k in split)
    other = limited.fixed_split(52, _cfg(seed=1))
    assert not np.array_equal(split["test"], other["test"])
    # The pool holds POOL_FACTOR x the largest size: 8 + 4 + 8 + 6 + 4 x 6 = 50.
    with pytest.raises(ValueError, match="needs 50 scored scans"):
        limited.fixed_split(49, cfg)


def test_fixed_split_is_stratified_by_the_target():
    labels = np.r_[np.ones(26, int), np.zeros(26, int)]
    split = limited.fixed_split(52, _cfg(), labels)
    for name, size in {"test": 8, "val": 4, "gate_train": 8, "gate_test": 6}.items():
        assert abs(labels[split[name]].sum() - size / 2) <= 1, name


def test_stratified_order_keeps_the_share_in_every_prefix():
    labels = np.r_[np.ones(30, int), np.zeros(70, int)]
    for seed in range(5):
        order = limited.stratified_order(np.arange(100), labels, seed)
        assert sorted(order.tolist()) == list(range(100))
        positives = np.cumsum(labels[order])
        prefix = np.arange(1, 101)
        assert np.all(np.abs(positives - 0.3 * prefix) <= 1.0)


def test_nested_draws_are_stratified():
    # A pool with 40 % diagnostic scans: every draw of 24 holds 9-10 of them, whatever the
    # seed (the unstratified draw of issue 32 ranged 6-11 of 24), nested in n.
    labels = np.r_[np.ones(40, int), np.zeros(60, int)]
    pool = np.random.default_rng(0).permutation(100)
    counts = []
    for seed in range(20):
        small = limited.training_scans(pool, 24, seed, labels)
        large = limited.training_scans(pool, 48, seed, labels)
        assert set(small) <= set(large)
        counts.append(labels[small].sum())
        assert abs(labels[large].sum() - 0.4 * 48) <= 1
    assert min(counts) >= 9 and max(counts) <= 10
    unstratified = [labels[limited.training_scans(pool, 24, seed)].sum() for seed in range(20)]
    assert max(unstratified) - min(unstratified) > 1


def test_the_largest_size_draws_different_scans_per_unit():
    # Issue 32: with a pool of exactly the largest n every unit trained on the same scans.
    cfg = get_config("powered")
    labels = np.random.default_rng(1).integers(0, 2, cfg.n_scored)
    split = limited.fixed_split(cfg.n_scored, cfg, labels)
    assert len(split["pool"]) >= limited.POOL_FACTOR * max(cfg.training_sizes)
    draws = [set(limited.training_scans(split["pool"], 96, cfg.seed + r, labels))
             for r in range(cfg.repetitions)]
    for a in range(len(draws)):
        for b in range(a + 1, len(draws)):
            assert len(draws[a] & draws[b]) < 60


def test_training_scans_are_nested_in_n():
    pool = np.arange(100, 130)
    small, large = limited.training_scans(pool, 4, seed=3), limited.training_scans(pool, 9, seed=3)
    assert len(small) == 4 and len(large) == 9 and set(small) <= set(large) <= set(pool)
    assert not np.array_equal(limited.training_scans(pool, 9, seed=4), large)


def test_data_gate_values_by_hand():
    scores = np.array([[1, 1, 2, 2], [5, 5, 4, 4], [3, 3, 3, 3], [2, 2, 1, 5]])
    values = limited.data_gate_values(scores, 3)
    assert values["prevalence_low"] == pytest.approx(3 / 4)
    r = np.corrcoef(scores.T)
    assert values["auxiliary_correlation"] == pytest.approx(np.mean([r[0, 1], r[0, 2], r[1, 2]]))
    # Columns 0 and 1 are equal, so they correlate alike with the target.
    assert values["target_correlation_min"] == pytest.approx(min(r[0, 3], r[2, 3]))
    assert values["target_correlation_max"] == pytest.approx(max(r[0, 3], r[2, 3]))


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
        "prevalence_low": "data", "prevalence_high": "data", "auxiliary_correlation": "data",
        "target_correlation_min": "data", "target_correlation_max": "data", "shortcut_auc": "data",
        "oracle_auc": "oracle", "baseline_auc": "baseline"}
    assert protocol.test_set["scans"] == 200
    low = limited.limited_protocol(get_config("powered", correlation_level="low"))
    assert low.gate("auxiliary_correlation").comparison == "<="
    # SESOIs never above the paper's gap, translated from F1 to AUC.
    assert by_id["H1"].sesoi <= limited.f1_gap_to_auc(0.76, 0.71)
    assert by_id["H2"].sesoi <= limited.f1_gap_to_auc(0.73, 0.71)
    # The degenerate-run rule and the pre-training target are declared arm checks.
    assert {c.name: c.kind for c in protocol.validity} == {
        "learned_val_auc": "learned", "pretrain_target_reached": "stop_reachable"}
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
    assert all(h.multiple == limited.HEADROOM_MULTIPLE and h.ceiling_source == "oracle"
               for h in protocol.headroom)
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


def test_target_correlates_with_the_auxiliaries_at_its_own_level():
    q = phantom.sample_qualities(40000, 0, correlation=0.8, target_correlation=0.5, spread=1.0)
    r = np.corrcoef(special.ndtri(q).T)
    np.testing.assert_allclose([r[0, 1], r[0, 2], r[1, 2]], 0.8, atol=0.015)
    np.testing.assert_allclose(r[:3, 3], 0.5, atol=0.015)
    assert np.std(special.ndtri(q)[:, 3]) == pytest.approx(1.0, abs=0.02)
    with pytest.raises(ValueError, match="target_correlation"):
        phantom.sample_qualities(3, 0, correlation=0.25, target_correlation=0.6)


def test_the_declared_high_level_correlates_without_determining_the_target():
    # Observer scores of the declared "high" level, no image: the auxiliaries agree with
    # each other, correlate 0.35-0.65 with the target, and predict it well short of
    # certainty (issue 32: the old level gave a shortcut AUC of 0.92).
    cfg = get_config("powered")
    scores = phantom.simulated_scores(3000, 5, correlation=cfg.quality_correlation, spread=1.0, shift=0.0,
                                      rater_sd=cfg.rater_sd, target_correlation=cfg.target_correlation)
    values = limited.data_gate_values(scores, 3)
    assert values["auxiliary_correlation"] >= 0.5
    assert 0.35 <= values["target_correlation_min"] <= values["target_correlation_max"] <= 0.65
    y = (scores[:, 3] >= 3).astype(int)
    shortcut = limited.shortcut_auc(scores, y, np.arange(1500), np.arange(1500, 3000))
    assert 0.6 < shortcut <= limited.GATE_THRESHOLDS["shortcut_auc"]


def test_shift_for_prevalence_hits_the_declared_share():
    kw = dict(correlation=0.9, spread=1.0, rater_sd=0.5)
    shift = phantom.shift_for_prevalence(0.5, **kw, n=1500)
    # Fresh draws (another seed) at that shift: about half diagnostic.
    scores = phantom.simulated_scores(3000, 7, shift=shift, **kw)
    assert np.mean(scores[:, 3] >= 3) == pytest.approx(0.5, abs=0.04)
    assert phantom.shift_for_prevalence(0.7, **kw, n=1500) > shift


@pytest.mark.slow
def test_tiny_limited_study_end_to_end(tmp_path, monkeypatch):
    from shared.study import Study, read_claims

    # The arms train whatever the tiny cohort's gates say (their verdicts still follow the
    # gates), so the training branch is exercised.
    monkeypatch.setattr(Study, "gates_passed", lambda self, hypothesis_id=None: True)
    cfg = _cfg(n_scored=52, n_segmentation=2, quality_shift=0.0, pretrain_steps=4, pretrain_criterion=0.25)
    result = limited.run_limited_study(cfg, out_dir=tmp_path / "run", arms=("baseline", "contrastive"),
                                       store_url=f"sqlite:///{tmp_path / 's.sqlite'}", progress=False)
    run = tmp_path / "run"
    assert (run / "protocol.json").is_file() and (run / "report.md").is_file()
    claims = read_claims(run)
    assert {c["id"] for c in claims["claims"]} == {"H1", "H3"}
    gates = {g["name"]: g for g in claims["gates"]}
    assert set(gates) >= {"oracle_auc", "baseline_auc", "prevalence_low", "shortcut_auc"}
    trained = sum(len(v) for per in result["results"].values() for v in per.values())
    assert trained == 2 * 2 * 2
    lines = (run / limited.ARMS_LOG).read_text().splitlines()
    assert len(lines) == trained and {json.loads(x)["arm"] for x in lines} == {"baseline", "contrastive"}
    runs = [json.loads(x) for x in lines]
    # Per-epoch validation curve and kept epoch per arm and unit; SupCon's steps and target.
    assert all(1 <= m["best_epoch"] <= m["epochs"] == len(m["val_curve"]["values"]) for m in runs)
    assert all(m["val_curve"]["monitor"] == "val_qa_auc" for m in runs)
    pre = [m for m in runs if m["arm"] == "contrastive"]
    assert all(m["pretrain_steps"] >= 4 and isinstance(m["pretrain_reached"], bool) for m in pre)
    checks = {(row["check"], row["arm"]) for row in json.loads((run / "arm_validity.json").read_text())}
    assert checks == {("learned_val_auc", "baseline"), ("learned_val_auc", "contrastive"),
                      ("pretrain_target_reached", "contrastive")}
    assert "best epoch" in result["table"]
    # Per arm, unit and size in the claims: kept epoch, degenerate-run rule, SupCon steps.
    unit_runs = claims["unit_runs"]
    assert len(unit_runs) == trained
    for row, m in zip(sorted(unit_runs, key=lambda r: (r["arm"], r["unit"], r["n"])),
                      sorted(runs, key=lambda r: (r["arm"], r["seed"], r["n"]))):
        assert row["best_epoch"] == m["best_epoch"]
        assert row["degenerate"] == (not m["val_auc"] - 0.5 >= limited.LEARNED_MARGIN)
        assert (row["arm"] == "contrastive") == ("pretrain_steps" in row)
        if row["arm"] == "contrastive":
            assert row["pretrain_steps"] == m["pretrain_steps"]
            assert row["pretrain_reached"] == (min(m["pretrain_loss"]) <= m["pretrain_target_loss"])
    assert "always diagnostic" in result["table"] and "shortcut" in result["table"]
    # H1 and H3 are tested one-sided, as the seeds are sized; the design names the level.
    assert {c["id"]: c["sides"] for c in claims["claims"]} == {"H1": 1, "H3": 1}
    assert claims["design"] == "high"
    assert claims["data"]["source"] == "synthetic"
    assert claims["data"]["generator"] == "lge_qa.phantom.generate_dataset"
    assert claims["provenance"]["allow_dirty"] is False
    # H1's headroom: oracle ceiling, the baseline on the smallest size's gate draw and the
    # other scores' shortcut
    [room] = claims["headroom"]
    assert room["hypothesis"] == "H1" and room["ceiling"] == pytest.approx(gates["oracle_auc"]["value"])
    assert room["baseline"] == pytest.approx(result["gate_sizes"][4])
    assert room["shortcut"] == pytest.approx(gates["shortcut_auc"]["value"])
    expected = room["ceiling"] - max(room["baseline"], room["shortcut"])
    assert room["room"] == pytest.approx(expected)
    assert room["passed"] == (expected >= limited.HEADROOM_MULTIPLE * limited.AUC_SESOI - 1e-12)


@pytest.mark.slow
def test_gates_only_measures_the_gates_and_trains_no_arm(tmp_path):
    cfg = _cfg(n_scored=52, n_segmentation=2, quality_shift=0.0)
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
    labels = np.array([int(scores[c][3] >= cfg.score_threshold) for c in case_ids])
    split = limited.fixed_split(len(case_ids), cfg, labels)
    gate = np.r_[split["gate_train"], split["gate_test"]]
    contrast = phantom.read_oracle_contrast(run / "data")
    y = [int(scores[case_ids[i]][3] >= cfg.score_threshold) for i in gate]
    assert result["gates"]["oracle_auc"] == pytest.approx(roc_auc_score(y, [contrast[case_ids[i]] for i in gate]))
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["gate_baseline"]["epochs"] >= 1 and "auc" in saved["gate_baseline"]
    assert set(result["seconds"]) == {"data", "gates", "arms"}
    # The shortcut gate, recomputed: logistic regression on the other three scores.
    from sklearn.linear_model import LogisticRegression

    x = np.array([scores[c][:3] for c in case_ids], float)
    model = LogisticRegression(max_iter=1000).fit(x[split["gate_train"]], labels[split["gate_train"]])
    assert result["gates"]["shortcut_auc"] == pytest.approx(
        roc_auc_score(labels[split["gate_test"]], model.predict_proba(x[split["gate_test"]])[:, 1]))
    assert set(result["gate_sizes"]) == {4, 6} and [h["hypothesis"] for h in result["headroom"]] == ["H1", "H2"]
    from lge_qa.cli import gates_summary

    text = gates_summary(result)
    assert "gate shortcut_auc" in text and "headroom H1: ceiling" in text and "gate baseline n=4" in text
    assert "Gates only" in (run / "report.md").read_text()


def test_runs_of_one_design_at_two_seeds_share_the_design_hash():
    # The seed lives in the test set's split seed only; a description that named it made
    # the powered runs at seeds 0 and 1 look like two designs to `claims --combine`.
    from lge_qa.config import study_protocol
    from shared.study.protocol import design_sha256

    assert design_sha256(limited.limited_protocol(get_config("powered", seed=0))) == \
        design_sha256(limited.limited_protocol(get_config("powered", seed=1)))
    assert design_sha256(study_protocol(get_config("quick"), seed=0)) == \
        design_sha256(study_protocol(get_config("quick"), seed=1))
