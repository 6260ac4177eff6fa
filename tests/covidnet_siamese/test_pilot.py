"""The pilot's rule on hand-made validation curves, and the pilot command end to end."""

import json

import numpy as np
import pytest

from covidnet_siamese.pilot import PAPER_STEP_RATIO, best_so_far, choose, siamese_epochs


def test_paper_step_ratio_and_siamese_epochs():
    # 50 x 12,000 / 32 = 18,750 siamese steps against 100 x 537 / 16 = 3,356.25 single-net steps.
    assert PAPER_STEP_RATIO == pytest.approx(18750 / 3356.25)
    # The powered preset: 100 epochs of 12 steps -> 1,200 single-net steps; 64 steps per
    # siamese epoch of 1,024 pairs at batch 16 -> 5.587 x 1,200 / 64 = 104.8 -> 105 epochs.
    assert siamese_epochs(100, 12, 1024, 16) == 105
    np.testing.assert_array_equal(best_so_far([0.2, 0.5, 0.4, 0.6]), [0.2, 0.5, 0.5, 0.6])


def test_rule_takes_the_best_head_and_the_shortest_budget_within_tolerance():
    rising = np.linspace(0.4, 0.8, 8)  # still rising: only the whole budget is within 0.01
    flat = np.r_[0.5, np.full(7, 0.75)]  # done after one epoch
    curves = {"single": {32: [rising - 0.1, rising - 0.1], 256: [rising, rising]},
              "siamese": [flat, flat]}
    got = choose(curves, tolerance=0.01, shares=(0.25, 0.5, 1.0))
    assert got["fc_units"] == 256
    assert got["chosen"]["share"] == 1.0 and got["chosen"]["single_epochs"] == 8
    # Both nets plateau early: the shortest share within tolerance wins (same share for both).
    curves["single"] = {32: [flat, flat], 256: [flat - 0.005, flat - 0.005]}
    got = choose(curves, tolerance=0.01, shares=(0.25, 0.5, 1.0))
    assert got["fc_units"] == 32  # within tolerance of the best: the narrower head
    assert got["chosen"]["share"] == 0.25 and got["chosen"]["single_epochs"] == 2


@pytest.mark.slow
def test_pilot_command_writes_its_choice(tmp_path):
    from shared.testing.bad_input import run_cli

    code, printed, _ = run_cli(["covidnet-siamese", "pilot", "--preset", "tiny", "--out", tmp_path / "pilot"])
    assert code == 0, printed
    result = json.loads((tmp_path / "pilot" / "pilot.json").read_text())
    assert result["pilot_seed"] == 100 and set(result["single"]) == {"32", "256"}
    assert len(result["siamese"]) == 2 and "val_balanced_accuracy" in result["siamese"][0]
    assert result["choice"]["chosen"] is not None and "chosen: head" in printed
    assert len(result["single"]["256"][0]["val_balanced_accuracy"]) == 2  # the tiny long budget


def test_reduced_presets_keep_the_papers_step_ratio():
    from covidnet_siamese.config import powered, quick

    for config in (quick(), powered()):
        single_steps = int(np.ceil(3 * (config.counts["train"][2]) / config.default_batch_size["single"]))
        assert config.final_epochs_siamese == siamese_epochs(config.final_epochs_single, single_steps,
                                                             config.final_pairs_per_epoch,
                                                             config.default_batch_size["siamese"])


def test_runs_at_other_data_seeds_declare_one_design():
    from covidnet_siamese.config import powered, quick, study_protocol
    from shared.study.protocol import design_sha256

    for config in (quick(), powered()):
        assert design_sha256(study_protocol(config, 0)) == design_sha256(study_protocol(config, 1))
