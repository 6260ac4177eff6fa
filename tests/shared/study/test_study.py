import json

import numpy as np
import pytest

from shared.study import (Gate, Hypothesis, Protocol, Study, decide_verdict, read_claims,
                          read_protocol, validate_claims, write_protocol)
from shared.study.claims import claims_markdown, claims_table_markdown, claims_table_text

pytestmark = pytest.mark.no_keras

UNITS = tuple(range(12))


def _protocol(direction="greater", test="wilcoxon", gates=(), units=UNITS, sesoi=0.05, **kw):
    return Protocol(
        paper="toy", preset="tiny", arms=("new", "old"),
        pairing_unit="seed: split, initial weights, batch order", units=units,
        test_set={"seed": 1000, "size": 50},
        hypotheses=(Hypothesis(id="H1", statement="new beats old", endpoint="acc",
                               arms=("new", "old"), direction=direction, sesoi=sesoi,
                               test=test, **kw),),
        gates=gates)


def _run(tmp_path, protocol, new, old, gate_values=None):
    study = Study(protocol, tmp_path)
    for name, value in (gate_values or {}).items():
        study.record_gate(name, value)
    for unit, (a, b) in zip(protocol.units, zip(new, old)):
        study.record("new", unit, {"acc": a})
        study.record("old", unit, {"acc": b})
    return study.finish(seed=0, revision="abc", trivial={"acc": {"name": "majority", "value": 0.5}})


def test_clear_effect_is_reproduced(tmp_path):
    rng = np.random.default_rng(0)
    old = 0.7 + rng.normal(0, 0.02, 12)
    doc = _run(tmp_path, _protocol(), old + 0.1 + rng.normal(0, 0.01, 12), old)
    claim = doc["claims"][0]
    assert claim["verdict"] == "reproduced"
    assert claim["p_holm"] < 0.05 and claim["effect"] == pytest.approx(0.1, abs=0.01)
    assert claim["ci95"][0] > 0 and claim["trivial"]["value"] == 0.5


def test_clear_opposite_effect_is_contradicted(tmp_path):
    rng = np.random.default_rng(1)
    old = 0.7 + rng.normal(0, 0.02, 12)
    doc = _run(tmp_path, _protocol(), old - 0.1 + rng.normal(0, 0.01, 12), old)
    assert doc["claims"][0]["verdict"] == "contradicted"
    assert "opposite" in doc["claims"][0]["note"]


def test_noise_is_inconclusive_with_its_mde(tmp_path):
    rng = np.random.default_rng(2)
    old = 0.7 + rng.normal(0, 0.05, 12)
    doc = _run(tmp_path, _protocol(), old + rng.normal(0, 0.2, 12), old)
    claim = doc["claims"][0]
    assert claim["verdict"] == "inconclusive"
    assert claim["mde"] > 0.05 and f"{claim['mde']:.3g} or more" in claim["note"]


def test_failed_gate_makes_the_claim_untestable_and_the_arms_are_not_compared(tmp_path):
    gate = Gate(name="signal", source="oracle", comparison=">=", threshold=0.7)
    rng = np.random.default_rng(0)
    old = 0.7 + rng.normal(0, 0.02, 12)
    doc = _run(tmp_path, _protocol(gates=(gate,)), old + 0.1, old, gate_values={"signal": 0.6})
    claim = doc["claims"][0]
    assert claim["verdict"] == "untestable" and "signal" in claim["note"]
    assert claim["p"] is None and claim["effect"] is None
    assert doc["gates"] == [{"name": "signal", "source": "oracle", "comparison": ">=",
                             "value": 0.6, "threshold": 0.7, "passed": False, "description": ""}]


def test_unmeasured_gate_fails():
    gate = Gate(name="signal", source="data", comparison="<=", threshold=1.0)
    assert not gate.passes(None) and not gate.passes(float("nan")) and gate.passes(1.0)


def test_equivalence_claim_uses_tost(tmp_path):
    rng = np.random.default_rng(3)
    old = 0.9 + rng.normal(0, 0.01, 12)
    doc = _run(tmp_path, _protocol(direction="equivalent", test="paired_t"),
               old + rng.normal(0, 0.005, 12), old)
    claim = doc["claims"][0]
    assert claim["test"] == "tost_paired_t" and claim["verdict"] == "reproduced"


def test_holm_corrects_within_a_family(tmp_path):
    from statsmodels.stats.multitest import multipletests

    hyps = tuple(Hypothesis(id=f"H{i}", statement="s", endpoint=f"m{i}", arms=("new", "old"),
                            direction="greater", sesoi=0.01, test="paired_t") for i in range(3))
    protocol = Protocol(paper="toy", preset="tiny", arms=("new", "old"), pairing_unit="seed",
                        units=UNITS, test_set={"seed": 1}, hypotheses=hyps)
    study = Study(protocol, tmp_path)
    rng = np.random.default_rng(4)
    for unit in UNITS:
        study.record("old", unit, {f"m{i}": 0.5 for i in range(3)})
        study.record("new", unit, {f"m{i}": 0.5 + 0.01 * i + rng.normal(0, 0.02) for i in range(3)})
    doc = study.finish(seed=0)
    raw = [c["p"] for c in doc["claims"]]
    expected = multipletests(raw, method="holm")[1]
    assert [c["p_holm"] for c in doc["claims"]] == pytest.approx(expected)


def test_unpaired_hypothesis_uses_independent_groups(tmp_path):
    from scipy import stats

    protocol = _protocol(test="mannwhitney")
    new, old = np.linspace(0.8, 0.9, 12), np.linspace(0.5, 0.6, 12)
    doc = _run(tmp_path, protocol, new, old)
    claim = doc["claims"][0]
    assert not claim["paired"] and claim["verdict"] == "reproduced"
    assert claim["p"] == pytest.approx(stats.mannwhitneyu(new, old).pvalue)


@pytest.mark.parametrize("direction,p,effect,ci,expected", [
    ("greater", 0.01, 0.2, (0.1, 0.3), "reproduced"),
    ("greater", 0.01, -0.2, (-0.3, -0.1), "contradicted"),
    ("greater", 0.4, 0.01, (-0.02, 0.03), "contradicted"),   # whole CI short of sesoi 0.05
    ("greater", 0.4, 0.01, (-0.1, 0.2), "inconclusive"),
    ("less", 0.01, -0.2, (-0.3, -0.1), "reproduced"),
    ("less", 0.4, -0.01, (-0.03, 0.02), "contradicted"),
    ("two-sided", 0.01, -0.2, (-0.3, -0.1), "reproduced"),
    ("two-sided", 0.5, 0.0, (-0.02, 0.02), "contradicted"),
    ("equivalent", 0.01, 0.0, (-0.02, 0.02), "reproduced"),
    ("equivalent", 0.6, 0.2, (0.1, 0.3), "contradicted"),
    ("equivalent", 0.3, 0.03, (-0.03, 0.09), "inconclusive"),
])
def test_verdict_table(direction, p, effect, ci, expected):
    verdict, _ = decide_verdict(direction, p_holm=p, effect=effect, ci95=ci, sesoi=0.05,
                                alpha=0.05, mde=0.1, n=10)
    assert verdict == expected


def test_too_few_units_is_inconclusive(tmp_path):
    doc = _run(tmp_path, _protocol(units=(0, 1)), [0.9, 0.95], [0.5, 0.55])
    assert doc["claims"][0]["verdict"] == "inconclusive" and doc["claims"][0]["p"] is None


def test_protocol_is_written_before_training_and_cannot_change(tmp_path):
    protocol = _protocol()
    sha = write_protocol(protocol, tmp_path)
    data = read_protocol(tmp_path / "protocol.json")
    assert data["sha256"] == sha and data["protocol"]["arms"] == ["new", "old"]
    assert write_protocol(protocol, tmp_path) == sha  # a resumed run declaring the same
    with pytest.raises(ValueError, match="cannot change"):
        write_protocol(_protocol(direction="less"), tmp_path)
    edited = json.loads((tmp_path / "protocol.json").read_text())
    edited["protocol"]["units"] = [0]
    (tmp_path / "protocol.json").write_text(json.dumps(edited))
    with pytest.raises(ValueError, match="does not match"):
        read_protocol(tmp_path / "protocol.json")


@pytest.mark.parametrize("change,match", [
    (dict(direction="bigger"), "direction"),
    (dict(sesoi=0.0), "sesoi"),
    (dict(test="anova"), "test"),
    (dict(direction="equivalent", test="mannwhitney"), "TOST"),
])
def test_bad_hypotheses_are_refused(change, match):
    with pytest.raises(ValueError, match=match):
        _protocol(**{k: v for k, v in change.items()})


def test_gate_from_an_arm_is_refused():
    with pytest.raises(ValueError, match="source"):
        _protocol(gates=(Gate(name="g", source="new_arm", comparison=">=", threshold=1),))


def test_outcomes_outside_the_protocol_or_nan_are_refused(tmp_path):
    study = Study(_protocol(), tmp_path)
    with pytest.raises(ValueError, match="arm 'other'"):
        study.record("other", 0, {"acc": 1.0})
    with pytest.raises(ValueError, match="unit 99"):
        study.record("new", 99, {"acc": 1.0})
    with pytest.raises(ValueError, match="'acc' is nan"):
        study.record("new", 0, {"acc": float("nan")})


def test_claims_file_validates_and_renders(tmp_path):
    rng = np.random.default_rng(0)
    old = 0.7 + rng.normal(0, 0.02, 12)
    _run(tmp_path, _protocol(), old + 0.1, old)
    doc = read_claims(tmp_path)
    assert doc["protocol_sha256"] == read_protocol(tmp_path / "protocol.json")["sha256"]
    markdown = claims_markdown(doc)
    assert "| H1 | acc | new vs old | 12 |" in markdown and "**reproduced**" in markdown
    assert "reproduced" in claims_table_text([doc, doc]).splitlines()[2]
    rows = claims_table_markdown([doc, {**doc, "seed": 7, "revision": "abcdef123+dirty"}]).splitlines()
    assert len(rows) == 2 + 2 * len(doc["claims"])
    assert rows[0].startswith("| paper | preset | seed | revision | data | claim |")
    # the whole revision, +dirty included, is printed: a dirty run is never mistaken for
    # the commit it started from
    assert rows[-1].startswith(f"| {doc['paper']} | {doc['preset']} | 7 | `abcdef123+dirty` | "
                               f"not recorded | H1 |")


@pytest.mark.parametrize("mutate,field", [
    (lambda d: d.pop("protocol_sha256"), "(top level)"),
    (lambda d: d["claims"][0].update(verdict="maybe"), "claims/0/verdict"),
    (lambda d: d["claims"][0].update(p=1.5), "claims/0/p"),
    (lambda d: d["gates"].append({"name": "g", "value": 1, "threshold": 1}), "gates/0"),
])
def test_malformed_claims_name_the_field(tmp_path, mutate, field):
    rng = np.random.default_rng(0)
    old = 0.7 + rng.normal(0, 0.02, 12)
    doc = _run(tmp_path, _protocol(), old + 0.1, old)
    mutate(doc)
    with pytest.raises(ValueError) as info:
        validate_claims(doc, source="x")
    assert str(info.value).startswith(f"x: field '{field}'")


def test_claims_command_prints_runs_and_fails_on_a_malformed_file(tmp_path, capsys):
    from shared.cli import main

    rng = np.random.default_rng(0)
    old = 0.7 + rng.normal(0, 0.02, 12)
    _run(tmp_path / "a", _protocol(), old + 0.1, old)
    assert main(["claims", str(tmp_path / "a")]) == 0
    assert "reproduced" in capsys.readouterr().out
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "claims.json").write_text("{not json")
    assert main(["claims", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    captured = capsys.readouterr()
    assert "reproduced" in captured.out
    assert captured.err.count("\n") == 1 and "not valid JSON" in captured.err
    assert main(["claims", str(tmp_path)]) == 2  # a folder of runs: both found


def test_wilcoxon_on_five_units_is_flagged_as_unable_to_reach_alpha(tmp_path):
    from scipy import stats

    from shared.study.verdicts import min_attainable_p

    units = tuple(range(5))
    new, old = np.array([0.9, 0.91, 0.92, 0.93, 0.94]), np.full(5, 0.5)
    doc = _run(tmp_path, _protocol(units=units), new, old)
    claim = doc["claims"][0]
    assert claim["p"] == pytest.approx(stats.wilcoxon(new - old).pvalue) == 0.0625
    assert claim["verdict"] == "inconclusive" and claim["mde"] is None
    assert "cannot reach p < 0.05" in claim["note"]
    assert min_attainable_p("wilcoxon", 6) == 0.03125
    assert min_attainable_p("mannwhitney", 3, 3) == pytest.approx(
        stats.mannwhitneyu([1, 2, 3], [4, 5, 6]).pvalue)
    assert min_attainable_p("paired_t", 3) == 0.0


def test_three_units_are_not_enough_to_contradict_through_a_bootstrap_ci(tmp_path):
    # The lge_qa quick run's F1 differences: a percentile bootstrap of 3 pairs gives
    # [-0.079, 0], wholly short of the SESOI 0.05; the t-interval does not.
    old = np.array([0.85, 0.86, 0.85])
    new = old + np.array([0.0, -0.0788, -0.0736])
    doc = _run(tmp_path, _protocol(units=(0, 1, 2), test="paired_t"), new, old)
    claim = doc["claims"][0]
    assert claim["verdict"] == "inconclusive"
    assert claim["ci95"][1] > 0.05


def test_claim_intervals_match_scipy():
    from scipy import stats

    from shared.stats.independent import welch_interval
    from shared.stats.paired import t_interval_mean_difference

    rng = np.random.default_rng(5)
    a, b = rng.normal(1, 1, 7), rng.normal(0, 2, 7)
    ref = stats.ttest_rel(a, b).confidence_interval()
    assert t_interval_mean_difference(a, b) == pytest.approx((ref.low, ref.high))
    b2 = rng.normal(0, 2, 11)
    ref = stats.ttest_ind(a, b2, equal_var=False).confidence_interval()
    assert welch_interval(a, b2) == pytest.approx((ref.low, ref.high))


def test_majority_class_predictor_by_hand():
    from shared.study.trivial import majority_class

    assert majority_class([0, 2, 2, 1, 2], ("a", "b", "c")) == (2, {"name": "always c", "value": 0.6})


def test_equivalence_when_every_paired_difference_is_zero(tmp_path):
    same = [0.9] * 12
    claim = _run(tmp_path, _protocol(direction="equivalent", test="paired_t", sesoi=0.02),
                 same, same)["claims"][0]
    assert claim["verdict"] == "reproduced"
    assert claim["note"].endswith("every paired difference is zero: the arms agree on every unit")
    assert "p = 1" not in claim["note"]


def test_claims_carry_the_revision_that_trained_not_the_one_checked_out_at_the_end(tmp_path, monkeypatch):
    import shared.study.study as study_module

    checked_out = {"rev": "1111111aaaaa"}
    monkeypatch.setattr(study_module, "git_revision", lambda: checked_out["rev"])
    study = Study(_protocol(units=(0, 1, 2)), tmp_path)
    for unit in (0, 1, 2):
        study.record("new", unit, {"acc": 0.8})
        study.record("old", unit, {"acc": 0.7})
    checked_out["rev"] = "2222222bbbbb+dirty"  # a commit lands while the run trains
    doc = study.finish(seed=0, trivial={"acc": {"name": "majority", "value": 0.5}})
    assert doc["revision"] == "1111111aaaaa"
    assert read_claims(tmp_path / "claims.json")["revision"] == "1111111aaaaa"
