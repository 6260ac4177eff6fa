import argparse
import json

import numpy as np
import pytest

from hrpqct import cli, data
from hrpqct.config import get_config


def _parser():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    return parser


def test_cli_arguments_and_generate(tmp_path, capsys):
    args = _parser().parse_args(["hrpqct", "run", "--preset", "tiny", "--seeds", "3", "--ensemble-size", "2"])
    assert args.func is cli._cmd_run and args.preset == "tiny" and args.seeds == 3 and args.ensemble_size == 2
    with pytest.raises(SystemExit):
        _parser().parse_args(["hrpqct", "run", "--preset", "huge"])
    args = _parser().parse_args(["hrpqct", "generate", "--preset", "tiny", "--radius", "2", "--tibia", "1",
                                 "--out", str(tmp_path / "d")])
    assert args.func(args) == 0
    assert "Wrote 3 scans" in capsys.readouterr().out
    assert len(data.read_grades(tmp_path / "d" / "grades.csv")) == 3
    args = _parser().parse_args(["hrpqct", "info", str(tmp_path / "d")])
    assert args.func(args) == 0
    assert "3 scans" in capsys.readouterr().out
    with pytest.raises(ValueError, match="preset"):
        get_config("huge")


def test_study_protocol_and_trivial_predictor():
    from hrpqct.config import study_protocol, unit_seeds
    from hrpqct.experiment import trivial_predictors
    from shared.metrics import quadratic_weighted_kappa

    protocol = study_protocol(get_config("quick"), seed=4)
    assert protocol.arms == ("baseline", "proposed", "operator") and protocol.units == (0, 1, 2)
    assert [(h.id, h.endpoint, h.family) for h in protocol.hypotheses] == [
        ("H1", "kappa", "primary"), ("H2", "kappa_noninferiority", "noninferiority"),
        ("H3", "accuracy", "secondary"), ("H4", "rescan_sensitivity", "secondary")]
    # Both arms train on each unit's split with the unit's seeds: every comparison is paired.
    assert all(h.paired and h.test == "paired_t" for h in protocol.hypotheses)
    assert protocol.hypotheses[1].arms == ("proposed", "operator")
    assert all(h.arms == ("proposed", "baseline") for h in protocol.hypotheses if h.id != "H2")
    assert protocol.gate("high_grade_test_scans").hypotheses == ("H4",)
    assert protocol.gate("high_grade_test_scans").threshold == get_config("quick").min_high_grade_test_scans
    assert protocol.test_set["seed"] == unit_seeds(4, 3, 1)["test"] == 4 * 100_003 + 7919
    assert protocol.test_set["cohort_scans"] == 120
    # The arms' differences beyond the architecture are declared with their parameter counts.
    assert any("dropout" in d and "parameters baseline" in d for d in protocol.deviations)
    assert any("secondary endpoint 'vote'" in d for d in protocol.deviations)
    assert [c.name for c in protocol.validity] == ["learned_val_kappa", "baseline_val_loss_settled"]
    assert protocol.validity[1].arms == ("baseline",)
    # A cohort without air around the limb: the air-streak gate is not declared, and the
    # protocol says why.
    no_air = study_protocol(get_config("quick"), seed=4, simulated=False, air_scans=(0, 30))
    assert "air_streak_spearman" not in [g.name for g in no_air.gates]
    assert any("0 of 30 scans show air" in d for d in no_air.deviations)
    # Most common training grade 2; test grades 1, 2, 2, 4, 5.
    test = np.array([1, 2, 2, 4, 5])
    trivial = trivial_predictors(np.array([1, 2, 2, 3, 2]), test)
    assert trivial["accuracy"] == {"name": "always grade 2", "value": 0.4}
    assert trivial["rescan_sensitivity"]["value"] == 0.0
    assert trivial["kappa"]["value"] == 0.0 == pytest.approx(
        quadratic_weighted_kappa(test, np.full(5, 2), num_classes=5, min_label=1))


@pytest.mark.slow
def test_tiny_end_to_end(tmp_path):
    from shared.tracking.store import open_store

    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    from hrpqct.experiment import run_experiment

    path = run_experiment(get_config("tiny"), out_dir=tmp_path / "run", store_url=url, seed=0, progress=False)
    text = path.read_text()
    assert "quadratic weighted kappa" in text and "QME_SSD" in text
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["arms"]) == {"baseline", "proposed"}
    assert results["n_pool"] + results["n_test"] == results["n_scans"] == 24
    assert len(results["arms"]["proposed"]["runs"]) == 2
    assert -1.0 <= results["arms"]["baseline"]["mean"]["kappa"] <= 1.0
    for name in ("example_slices", "qme_ssd_vs_grade", "confusion_proposed", "gradcam_proposed"):
        assert (tmp_path / "run" / "figures" / f"{name}.png").is_file(), name
    assert (tmp_path / "run" / "comparison" / "report.md").is_file()
    store = open_store(url)
    rows = store.evaluations("hrpqct", metric="kappa")
    assert {r["group"] for r in rows} == {"baseline", "proposed"} and len(rows) == 4
    from shared.study import read_claims, read_protocol

    assert text.index("## Claims") < text.index("## Operator agreement")
    run = tmp_path / "run"
    claims = read_claims(run)  # validates against the schema
    protocol = read_protocol(run / "protocol.json")
    assert claims["protocol_sha256"] == protocol["sha256"]
    assert protocol["protocol"]["units"] == [0, 1]
    assert protocol["protocol"]["arms"] == ["baseline", "proposed", "operator"]
    verdicts = {c["id"]: c for c in claims["claims"]}
    gates = {g["name"]: g for g in claims["gates"]}
    test_counts = np.asarray(results["confusion"]["baseline"]).sum(axis=1)  # test scans of grades 1-5
    assert gates["high_grade_test_scans"]["value"] == test_counts[3] + test_counts[4]
    assert gates["test_grades_present"]["value"] == np.count_nonzero(test_counts)
    # Uniform grades: every grade is in the test set, but only a scan or two of grades 4-5,
    # so the rescan claim H4 is untestable; after one epoch neither arm has learned
    # (validation kappa below the declared 0.2), so H1-H3 are untestable too.
    assert gates["air_streak_spearman"]["passed"] and gates["test_grades_present"]["passed"]
    assert not gates["high_grade_test_scans"]["passed"]
    assert verdicts["H4"]["verdict"] == "untestable" and "high_grade_test_scans" in verdicts["H4"]["note"]
    learned = {(row["arm"], row["unit"]): row for row in claims["arm_validity"] if row["check"] == "learned_val_kappa"}
    assert set(learned) == {(arm, u) for arm in ("baseline", "proposed") for u in (0, 1)}
    if not all(row["passed"] for row in learned.values()):
        assert verdicts["H1"]["verdict"] == "untestable" and "learned_val_kappa" in verdicts["H1"]["note"]
    assert verdicts["H1"]["paired"] is True and verdicts["H1"]["test"] == "paired_t"
    assert verdicts["H1"]["trivial"]["value"] == 0.0
    # H1 is tested one-sided, as the powered units are sized; the others two-sided.
    assert verdicts["H1"]["sides"] == 1 and verdicts["H3"]["sides"] == 2
    # Equal budgets, kept per unit and arm with the selected epoch and the curves.
    training = claims["training"]
    assert training["epochs"] == 1 and set(training["curves"]) == {"baseline", "proposed"}
    for arm in ("baseline", "proposed"):
        for unit in ("0", "1"):
            (member,) = training["curves"][arm][unit]
            assert member["epochs_run"] == 1 and member["best_epoch"] == 1 and len(member["val_kappa"]) == 1
    assert (run / "training_curves.json").is_file() and (run / "figures" / "validation_curves.png").is_file()
    # The ceiling the raters grade and the trivial predictor sit beside the arms.
    assert "artefact_rms thresholds" in text and "trivial: always grade" in text
    assert results["artefact_ceiling"]["test"]["kappa"] > 0.5
    # The vote (one network per vote at the tiny preset) is reported per arm.
    assert len(results["vote"]["arms"]["proposed"]["groups"]) == 2
    # The cohort was simulated by this run: the claims name the simulator and hash its
    # settings; no manifest of a user's folder.
    from shared.study.provenance import settings_sha256

    assert claims["data"]["source"] == "synthetic"
    assert claims["data"]["generator"] == "hrpqct.data.generate_dataset"
    tiny = get_config("tiny")
    assert claims["data"]["settings_sha256"] == settings_sha256(dict(
        scans_per_site=tiny.sites, image_size=tiny.image_size, oversample=tiny.oversample,
        stack_slices=tiny.stack_slices, n_projections=tiny.n_projections,
        field_of_view_mm=tiny.field_of_view_mm, projection_noise=tiny.projection_noise,
        fbp_window=tiny.fbp_window, grade_counts=tiny.grade_counts, rater_noise=tiny.rater_noise,
        seed=0, slices_per_scan=tiny.slices_per_scan, simulated_slices=None))
    assert claims["provenance"]["allow_dirty"] is False
    assert not (run / "data_manifest.json").exists()
