import numpy as np
import pytest
from scipy import stats as sstats

from hrpqct import gates
from hrpqct.config import get_config, study_protocol

pytestmark = pytest.mark.no_keras


def test_calibration_z_worked_by_hand():
    # Uniform targets (0.2 each), ten radius scans: grade 1 holds 0.4, z = 0.2 / sqrt(0.2 * 0.8 / 10).
    consensus = np.array([1, 1, 1, 1, 2, 3, 3, 4, 4, 5])
    z = gates.calibration_z(consensus, np.array(["radius"] * 10), "uniform")
    assert z == pytest.approx(0.2 / np.sqrt(0.016))
    # Exact shares give 0; a second site with a worse gap decides the maximum.
    exact = np.repeat([1, 2, 3, 4, 5], 2)
    assert gates.calibration_z(exact, np.array(["tibia"] * 10), "uniform") == 0.0
    both = np.concatenate([exact, np.full(10, 3)])
    sites = np.array(["radius"] * 10 + ["tibia"] * 10)
    # Tibia: grade 3 holds 1.0 against 0.2 -> z = 0.8 / sqrt(0.016) = 6.32.
    assert gates.calibration_z(both, sites, "uniform") == pytest.approx(0.8 / np.sqrt(0.016))


def test_calibration_against_the_thesis_table():
    # The thesis' tibia table (334, 97, 42, 24, 2 of 499) reproduced exactly: z = 0.
    counts = (334, 97, 42, 24, 2)
    consensus = np.repeat(np.arange(1, 6), counts)
    assert gates.calibration_z(consensus, np.array(["tibia"] * 499), "thesis") == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(gates.target_shares("radius", "thesis"), np.array((139, 169, 233, 62, 8)) / 611)
    with pytest.raises(ValueError, match="grade_counts"):
        gates.target_shares("radius", "normal")


def test_artefact_motion_spearman_matches_scipy():
    rng = np.random.default_rng(3)
    size = rng.uniform(0, 4, 30)
    measure = size + rng.normal(0, 0.5, 30)
    assert gates.artefact_motion_spearman(measure, size) == pytest.approx(sstats.spearmanr(measure, size)[0])


def test_simulator_gates_declared_only_for_simulated_cohorts():
    config = get_config("tiny")
    simulated = study_protocol(config, 0)
    names = [g.name for g in simulated.gates]
    assert "consensus_calibration" in names and "artefact_follows_motion" in names
    assert simulated.gate("consensus_calibration").source == "data"
    assert simulated.gate("artefact_follows_motion").source == "oracle"
    assert any(d.startswith("simulator settings frozen") and "rater_noise=0.3" in d for d in simulated.deviations)
    real = study_protocol(config, 0, simulated=False)
    assert "consensus_calibration" not in [g.name for g in real.gates]
    assert not any(d.startswith("simulator settings") for d in real.deviations)
