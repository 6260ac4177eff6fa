import numpy as np
import pytest

from hrpqct import motion
from hrpqct.config import POWERED_UNITS, get_config, powered_units

pytestmark = pytest.mark.no_keras


def test_powered_design_meets_its_declared_sizes():
    c = get_config("powered")
    sites = c.sites
    n = sum(sites.values())
    # A fixed test cohort of at least 400 scans, expected to hold at least 40 of grade 4-5
    # at the thesis' frequencies: radius (62 + 8) / 611, tibia (24 + 2) / 499.
    assert n * c.test_fraction >= 400
    high = sum(k * c.test_fraction * np.sum(motion.THESIS_GRADE_COUNTS[s][3:]) / np.sum(motion.THESIS_GRADE_COUNTS[s])
               for s, k in sites.items())
    assert high == pytest.approx(600 * 0.5 * 70 / 611 + 400 * 0.5 * 26 / 499)
    assert high >= c.min_high_grade_test_scans == 40
    # The units are those a one-sided paired t-test needs for the declared SESOI at the SD
    # measured in the first powered runs (0.067 and 0.062 -> 0.065), and H1 is tested
    # one-sided: the test run is the test sized.
    from hrpqct.config import POWERED_SD_DIFF
    from shared.stats import mde_paired, units_for_mde

    assert POWERED_SD_DIFF == 0.065
    assert c.seeds == POWERED_UNITS == powered_units() == 12
    assert units_for_mde(0.05, 0.065, alternative="greater", test="paired_t") == 12
    assert mde_paired(12, 0.065, alternative="greater") <= 0.05 < mde_paired(11, 0.065, alternative="greater")
    # Both arms get the same budget and no early stopping (patience >= epochs): the budget
    # and input size the pilot rule chose (hrpqct/pilot.py).
    assert c.patience >= c.epochs == 28 and c.model_size == 96 and c.image_size == 128
    from hrpqct.config import study_protocol

    h1 = study_protocol(c).hypotheses[0]
    assert h1.id == "H1" and h1.sides == 1 and h1.alternative == "greater"
    assert [h.sides for h in study_protocol(c).hypotheses[1:]] == [2, 2, 2]
    assert study_protocol(c).design == ""
    # 350 training and 150 validation scans per unit: val 0.15 of the cohort, of a 0.5 pool.
    assert round(n * (1 - c.test_fraction) * (1 - c.val_fraction / (1 - c.test_fraction))) == 350
