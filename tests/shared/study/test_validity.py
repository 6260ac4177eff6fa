"""Verdicts only from arms that learned, claims with room, tests sided as declared."""

import json

import numpy as np
import pytest
from scipy import stats

from shared.study import Hypothesis, Protocol, Study, read_claims, read_protocol
from shared.study.protocol import ArmCheck, Headroom, design_sha256

pytestmark = pytest.mark.no_keras

UNITS = tuple(range(8))


def _protocol(*, validity=(), headroom=(), sides=2, test="paired_t", direction="greater",
              resampling=None, units=UNITS, sesoi=0.05):
    return Protocol(
        paper="toy", preset="tiny", arms=("new", "baseline"),
        pairing_unit="seed: split, initial weights, batch order", units=units,
        test_set={"seed": 1000, "size": 50},
        hypotheses=(Hypothesis(id="H1", statement="new beats baseline", endpoint="acc",
                               arms=("new", "baseline"), direction=direction, sesoi=sesoi,
                               test=test, sides=sides),),
        validity=validity, headroom=headroom, resampling=resampling)


NEW = np.array([0.82, 0.85, 0.80, 0.88, 0.84, 0.86, 0.83, 0.87])
OLD = np.array([0.75, 0.74, 0.78, 0.76, 0.73, 0.77, 0.74, 0.75])


def _study(tmp_path, protocol, new=NEW, old=OLD):
    study = Study(protocol, tmp_path)
    for unit, a, b in zip(protocol.units, new, old):
        study.record("new", unit, {"acc": float(a)})
        study.record("baseline", unit, {"acc": float(b)})
    return study


LEARNED = ArmCheck(name="learned_val_acc", kind="learned", comparison=">=", threshold=0.02,
                   description="validation accuracy at least 0.02 above always-majority")


def test_a_baseline_at_the_trivial_rate_makes_the_claim_untestable(tmp_path):
    """The comparison is clear-cut, but the baseline's validation accuracy sits at the
    majority rate on every unit: the claim is untestable, naming the arm and the check."""
    study = _study(tmp_path, _protocol(validity=(LEARNED,)))
    trivial = 0.586
    for unit in UNITS:
        study.record_validity("new", unit, "learned_val_acc", 0.80, reference=trivial)
        study.record_validity("baseline", unit, "learned_val_acc", 0.590, reference=trivial)
    claim = study.finish(seed=0)["claims"][0]
    assert claim["verdict"] == "untestable"
    assert "arm 'baseline' failed 'learned_val_acc' (learned) on 8 of 8 units" in claim["note"]
    from shared.study.claims import verdict_summary

    assert verdict_summary(read_claims(tmp_path)) == \
        "H1 untestable (arm 'baseline' failed 'learned_val_acc' (learned))"
    assert claim["p_holm"] is None and claim["p"] is not None  # measured, not compared
    rows = json.loads((tmp_path / "arm_validity.json").read_text())
    assert len(rows) == 16 and sum(not r["passed"] for r in rows) == 8


def test_arms_that_learned_are_compared(tmp_path):
    study = _study(tmp_path, _protocol(validity=(LEARNED,)))
    for unit in UNITS:
        study.record_validity("new", unit, "learned_val_acc", 0.80, reference=0.586)
        study.record_validity("baseline", unit, "learned_val_acc", 0.70, reference=0.586)
    doc = study.finish(seed=0)
    assert doc["claims"][0]["verdict"] == "reproduced"
    assert all(row["passed"] for row in doc["claims"][0]["validity"])
    assert len(doc["arm_validity"]) == 16


def test_failed_units_within_the_declared_share_stay_in_the_test(tmp_path):
    check = ArmCheck(name="learned_val_acc", kind="learned", comparison=">=", threshold=0.02,
                     max_failed_share=0.25)
    study = _study(tmp_path, _protocol(validity=(check,)))
    for unit in UNITS:
        study.record_validity("new", unit, "learned_val_acc", 0.80, reference=0.586)
        study.record_validity("baseline", unit, "learned_val_acc",
                              0.59 if unit in (0, 1) else 0.70, reference=0.586)
    claim = study.finish(seed=0)["claims"][0]
    assert claim["verdict"] == "reproduced"
    assert claim["n"] == 8  # the two failed units are not dropped
    assert "failed 'learned_val_acc' on 2 of 8 units (kept in the test as measured)" in claim["note"]


def test_an_unmeasured_check_counts_as_failed(tmp_path):
    study = _study(tmp_path, _protocol(validity=(LEARNED,)))
    claim = study.finish(seed=0)["claims"][0]
    assert claim["verdict"] == "untestable" and "8 not measured" in claim["note"]


def test_collapse_check_reads_its_bound(tmp_path):
    collapse = ArmCheck(name="cls_cosine", kind="not_collapsed", comparison="<=", threshold=0.9,
                        arms=("new",))
    study = _study(tmp_path, _protocol(validity=(collapse,)))
    for unit in UNITS:
        assert not study.record_validity("new", unit, "cls_cosine", 0.98)
    with pytest.raises(ValueError, match="arm 'baseline' is not one it applies to"):
        study.record_validity("baseline", 0, "cls_cosine", 0.5)
    claim = study.finish(seed=0)["claims"][0]
    assert claim["verdict"] == "untestable" and "'cls_cosine' (not_collapsed)" in claim["note"]


def test_a_gap_below_the_multiple_of_the_sesoi_is_no_headroom(tmp_path):
    """lge_qa's "high" condition: oracle 0.955, baseline gate 0.920: 0.035 < 0.05."""
    room = Headroom(hypothesis="H1", multiple=1.0, ceiling_source="oracle")
    study = _study(tmp_path, _protocol(headroom=(room,)))
    assert study.record_headroom("H1", ceiling=0.955, baseline=0.920) is False
    doc = study.finish(seed=0)
    claim = doc["claims"][0]
    assert claim["verdict"] == "untestable"
    assert "no headroom: ceiling - baseline = 0.035 < 0.05" in claim["note"]
    assert doc["headroom"][0]["room"] == pytest.approx(0.035)
    from shared.study.claims import claims_markdown, verdict_summary

    assert verdict_summary(doc) == "H1 untestable (no headroom)"
    assert "| H1 | 0.955 | 0.92 | - | 0.035 | 0.05 | **no** |" in claims_markdown(doc)


def test_a_shortcut_takes_the_room_too(tmp_path):
    room = Headroom(hypothesis="H1", multiple=2.0)
    study = _study(tmp_path, _protocol(headroom=(room,)))
    # baseline 0.80 leaves 0.15 >= 2 x 0.05, the shortcut at 0.92 leaves 0.03
    assert study.record_headroom("H1", ceiling=0.95, baseline=0.80) is True
    assert study.record_headroom("H1", ceiling=0.95, baseline=0.80, shortcut=0.92) is False
    claim = study.finish(seed=0)["claims"][0]
    assert claim["verdict"] == "untestable" and "max(baseline, shortcut)" in claim["note"]


def test_enough_room_leaves_the_claim_to_the_test(tmp_path):
    study = _study(tmp_path, _protocol(headroom=(Headroom(hypothesis="H1"),)))
    study.record_headroom("H1", ceiling=0.99, baseline=0.76)
    assert study.finish(seed=0)["claims"][0]["verdict"] == "reproduced"


def test_a_baseline_at_the_endpoints_bound_is_no_headroom(tmp_path):
    """The demo's lge_qa specificity: both arms at 1.0; a 'greater' claim cannot be tested."""
    room = Headroom(hypothesis="H1", bound=1.0, ceiling_source="data")
    study = _study(tmp_path, _protocol(headroom=(room,)), new=np.ones(8), old=np.ones(8))
    study.record_headroom("H1", ceiling=1.0, baseline=1.0)
    claim = study.finish(seed=0)["claims"][0]
    assert claim["verdict"] == "untestable" and "sits at the endpoint's bound 1" in claim["note"]


def test_headroom_for_a_less_claim_looks_down(tmp_path):
    room = Headroom(hypothesis="H1")
    study = _study(tmp_path, _protocol(headroom=(room,), direction="less"), new=OLD, old=NEW)
    assert study.record_headroom("H1", ceiling=0.10, baseline=0.30) is True  # 0.2 of room
    assert study.record_headroom("H1", ceiling=0.27, baseline=0.30) is False


@pytest.mark.parametrize("test,scipy_test", [
    ("paired_t", lambda a, b: stats.ttest_rel(a, b, alternative="greater").pvalue),
    ("wilcoxon", lambda a, b: stats.wilcoxon(a - b, alternative="greater").pvalue),
])
def test_a_one_sided_hypothesis_gives_scipys_one_sided_p(tmp_path, test, scipy_test):
    rng = np.random.default_rng(3)
    old = 0.7 + rng.normal(0, 0.03, 8)
    new = old + 0.01 + rng.normal(0, 0.03, 8)
    claim = _study(tmp_path, _protocol(sides=1, test=test), new, old).finish(seed=0)["claims"][0]
    assert claim["p"] == pytest.approx(scipy_test(new, old), rel=1e-12)
    assert claim["sides"] == 1 and claim["ci_level"] == pytest.approx(0.90)
    if test == "paired_t":  # the 90 % t-interval: its lower end is the one-sided 95 % bound
        d = new - old
        half = stats.t.ppf(0.95, 7) * d.std(ddof=1) / np.sqrt(8)
        assert claim["ci95"] == pytest.approx([d.mean() - half, d.mean() + half])


def test_one_sided_verdict_follows_the_sizing(tmp_path):
    """hrpqct H1 at seed 0: two-sided p 0.061 (inconclusive), one-sided 0.030."""
    rng = np.random.default_rng(11)
    old = 0.70 + rng.normal(0, 0.05, 8)
    d = np.array([0.06, -0.02, 0.05, 0.08, 0.01, 0.07, -0.03, 0.04])
    two = _study(tmp_path / "two", _protocol(), old + d, old).finish(seed=0)["claims"][0]
    one = _study(tmp_path / "one", _protocol(sides=1), old + d, old).finish(seed=0)["claims"][0]
    assert 0.05 < two["p"] < 0.1 and one["p"] == pytest.approx(two["p"] / 2)
    assert two["verdict"] == "inconclusive" and one["verdict"] == "reproduced"
    assert one["mde"] < two["mde"]


def test_sides_must_be_one_or_two_and_one_only_for_directional_claims():
    with pytest.raises(ValueError, match="field 'sides' is 1, which only a 'greater' or 'less'"):
        _protocol(sides=1, direction="two-sided")
    with pytest.raises(ValueError, match="field 'sides' must be 1 or 2"):
        _protocol(sides=3)


def test_units_that_resplit_one_pool_use_the_corrected_resampled_t(tmp_path):
    protocol = _protocol(resampling={"train_fraction": 0.8, "test_fraction": 0.2})
    claim = _study(tmp_path, protocol).finish(seed=0)["claims"][0]
    d = NEW - OLD
    se = np.sqrt((1 / 8 + 0.25) * d.var(ddof=1))  # Nadeau-Bengio: (1/J + n2/n1) s^2
    assert claim["test"] == "paired_t_corrected" and claim["resampling_ratio"] == 0.25
    assert claim["p"] == pytest.approx(2 * stats.t.sf(d.mean() / se, 7))


def test_new_fields_at_their_defaults_keep_an_old_protocols_hash(tmp_path):
    """Protocols declared before the new fields keep their SHA-256 (a resumed run is not
    refused), and the design hash ignores what the seed draws."""
    protocol = _protocol()
    data = protocol.to_dict()
    assert not {"validity", "headroom", "resampling", "design"} & set(data)
    assert "sides" not in data["hypotheses"][0]
    other_seed = Protocol(**{**protocol.__dict__, "units": tuple(range(100, 108)),
                             "test_set": {"seed": 2000, "size": 50}})
    assert design_sha256(other_seed) == design_sha256(protocol)
    bigger = Protocol(**{**protocol.__dict__, "test_set": {"seed": 1000, "size": 60}})
    assert design_sha256(bigger) != design_sha256(protocol)


def test_claims_carry_per_unit_values_provenance_and_data(tmp_path):
    from shared.study.provenance import synthetic_data

    study = _study(tmp_path, _protocol())
    study.set_data(synthetic_data("toy.make_data", {"size": 50, "seed": 0}))
    doc = read_claims(study.finish(seed=0) and tmp_path)
    claim = doc["claims"][0]
    assert claim["unit_values"]["new"] == [[u, pytest.approx(v)] for u, v in zip(UNITS, NEW)]
    assert doc["data"]["source"] == "synthetic" and doc["data"]["generator"] == "toy.make_data"
    assert doc["provenance"]["allow_dirty"] is False
    assert doc["design_sha256"] == design_sha256(read_protocol(tmp_path / "protocol.json")["protocol"])


def test_a_one_sided_claim_short_of_its_sesoi_names_its_90_percent_interval(tmp_path):
    d = np.array([0.001, -0.002, 0.002, 0.0, 0.001, -0.001, 0.002, 0.0])
    claim = _study(tmp_path, _protocol(sides=1), OLD + d, OLD).finish(seed=0)["claims"][0]
    assert claim["verdict"] == "contradicted"
    assert "the whole 90 % CI lies short of the smallest effect of interest 0.05" in claim["note"]


@pytest.mark.parametrize("kwargs,message", [
    (dict(validity=(ArmCheck(name="c", kind="learnt", comparison=">=", threshold=0.0),)),
     "field 'kind' must be one of"),
    (dict(validity=(ArmCheck(name="c", kind="learned", comparison=">=", threshold=0.0,
                             arms=("ghost",)),)), "field 'arms' names ['ghost']"),
    (dict(validity=(ArmCheck(name="c", kind="learned", comparison=">=", threshold=0.0,
                             max_failed_share=1.0),)), "field 'max_failed_share' must lie in"),
    (dict(headroom=(Headroom(hypothesis="H9"),)), "field 'hypothesis' names no declared"),
    (dict(headroom=(Headroom(hypothesis="H1", ceiling_source="baseline"),)),
     "never an arm being compared"),
    (dict(headroom=(Headroom(hypothesis="H1"),), direction="two-sided"),
     "must name a 'greater' or 'less' claim"),
    (dict(resampling={"train_fraction": 0.9, "test_fraction": 0.2}),
     "field 'resampling': train_fraction \\+ test_fraction"),
])
def test_bad_declarations_are_refused_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", "\\[").replace("]", "\\]")
                       if "\\" not in message else message):
        _protocol(**kwargs)
