"""The anchored arm's pilot: its diagnostics by hand and its rule."""

import numpy as np
import pytest

from bar_ad.pilot import choose, label_distance_agreement


@pytest.mark.no_keras
def test_label_agreement_is_one_when_embeddings_follow_the_labels():
    # two classes on two orthogonal axes: label gap 0 <-> embedding gap 0, 1 <-> 1
    tokens = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], float)
    assert label_distance_agreement(tokens, [0, 0, 1, 1]) == pytest.approx(1.0)
    # the classes swapped in embedding space: a perfect disagreement
    assert label_distance_agreement(tokens, [0, 1, 0, 1]) == pytest.approx(-0.5)
    # collapse: every embedding alike, no agreement
    assert label_distance_agreement(np.ones((4, 2)), [0, 0, 1, 1]) == 0.0


@pytest.mark.no_keras
def test_the_rule_skips_collapsed_candidates_and_the_reference():
    rows = [
        {"sigma": 0.8, "instance_weight": 0.0, "candidate": False, "probe_cls_cosine": 0.5,
         "label_agreement": 0.9},
        {"sigma": 0.1, "instance_weight": 0.5, "candidate": True, "probe_cls_cosine": 0.95,
         "label_agreement": 0.8},
        {"sigma": 0.1, "instance_weight": 1.0, "candidate": True, "probe_cls_cosine": 0.4,
         "label_agreement": 0.3},
        {"sigma": 0.25, "instance_weight": 0.5, "candidate": True, "probe_cls_cosine": 0.6,
         "label_agreement": 0.3},
    ]
    chosen = choose(rows, 0.9)
    # 0.1 / 0.5 collapsed; of the two at 0.3 the smaller anchor weight wins
    assert (chosen["sigma"], chosen["instance_weight"]) == (0.25, 0.5)
    assert choose(rows[:2], 0.9) is None


@pytest.mark.slow
def test_pilot_command_runs_on_a_tiny_cohort(tmp_path, capsys):
    import json

    from shared import cli

    assert cli.main(["bar-ad", "pilot", "--preset", "tiny", "--seed", "5",
                     "--out", str(tmp_path / "pilot")]) == 0
    out = capsys.readouterr().out
    assert "reference (Eq. 4 as printed)" in out and "chosen:" in out
    result = json.loads((tmp_path / "pilot" / "pilot.json").read_text())
    assert len(result["rows"]) == 5 and result["seed"] == 5
    assert all(-1 <= r["probe_cls_cosine"] <= 1 for r in result["rows"])
