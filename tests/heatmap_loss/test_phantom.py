import numpy as np
import pytest

from heatmap_loss import phantom as P
from heatmap_loss.data import load_dataset, model_arrays, save_dataset


@pytest.fixture(scope="module")
def exp1():
    return P.generate(4000, experiment=1, seed=0)


@pytest.fixture(scope="module")
def exp2():
    return P.generate(2000, experiment=2, seed=1)


def test_shapes_types_and_codes(exp1):
    assert exp1.images.shape == exp1.masks.shape == (4000, 105, 135)
    assert exp1.images.dtype == exp1.masks.dtype == np.uint8
    assert set(np.unique(exp1.masks)) <= {0, 1, 2, 3, 4, 5}  # no marker in experiment 1
    assert set(np.unique(exp1.masks[:200])) >= {0, 1, 2, 3, 4, 5}


def test_classes_balanced(exp1):
    assert np.bincount(exp1.labels).tolist() == [1000, 1000, 1000, 1000]


def test_male_proportions(exp1):
    # Binomial standard error with 1000 per class is about 0.016; 4 SE tolerance.
    for k, name in enumerate(P.CLASSES):
        observed = exp1.meta["male"][exp1.labels == k].mean()
        assert abs(observed - P.MALE_PROPORTION[name]) < 0.065, name


def test_rv_subtypes_and_fatty_lv(exp1):
    rv = exp1.labels == 1
    subtype = exp1.meta["subtype"]
    assert set(subtype[~rv]) == {""}
    assert abs((subtype[rv] == "fatty").mean() - 0.5) < 0.07
    assert abs(exp1.meta["fatty_lv"][rv].mean() - 0.1) < 0.04
    assert not exp1.meta["fatty_lv"][~rv].any()
    fat = exp1.meta["rv_fat_fraction"]
    assert fat[subtype == "fatty"].min() >= 0.7 and fat[subtype == "fatty"].max() <= 0.9
    assert fat[subtype == "fatty-fibro"].min() >= 0.3 and fat[subtype == "fatty-fibro"].max() <= 0.8
    assert exp1.meta["lv_fat_fraction"][exp1.meta["fatty_lv"]].max() <= 0.4


def test_size_multipliers(exp1, exp2):
    male, size = exp1.meta["male"], exp1.meta["size_multiplier"]
    assert abs(size[male].mean() - 1.3) < 0.02 and abs(size[~male].mean() - 1.0) < 0.02
    assert abs(size[male].std() - 0.15) < 0.02
    np.testing.assert_array_equal(exp2.meta["size_multiplier"], 1.0)


def test_measures_are_doubled_nominal_figures(exp1):
    # The released code adds N(v, 0.02 v) to v: mean 2 v, sd 0.02 v.
    nor = exp1.labels == 0
    nominal = 3.5 / 17 * 25 * exp1.meta["size_multiplier"][nor]
    ratio = exp1.meta["lv_radius"][nor] / nominal
    assert abs(ratio.mean() - 2.0) < 0.005 and abs(ratio.std() - 0.02) < 0.005
    dcm = exp1.labels == 3
    dcm_ratio = exp1.meta["lv_radius"][dcm] / (1.8 * 3.5 / 17 * 25 * exp1.meta["size_multiplier"][dcm])
    assert abs(dcm_ratio.mean() - 2.0) < 0.005


def test_nor_heart_width_at_size_1_3(exp1):
    # facts: a NOR heart with size multiplier 1.3 is about 65 px wide.
    heart = exp1.heart_masks
    nor = np.flatnonzero(exp1.labels == 0)
    width = heart[nor].any(axis=1).sum(axis=1)
    slope = np.polyfit(exp1.meta["size_multiplier"][nor], width, 1)
    assert abs(np.polyval(slope, 1.3) - 65) < 2


def test_heart_fraction_about_13_percent(exp1):
    assert 0.12 < exp1.heart_masks.mean() < 0.14


def test_intensities_and_fat_band(exp1):
    nor = exp1.labels == 0
    images, masks = exp1.images[nor], exp1.masks[nor]
    assert abs(images[masks == P.LV_CAVITY].mean() - 0.8 * 255) < 0.5
    assert abs(images[masks == P.LV_CAVITY].std() - 2.0) < 0.2
    assert abs(images[masks == P.LV_MYO].mean() - 0.2 * 255) < 0.5
    assert abs(images[masks == P.FAT].mean() - 0.9 * 255) < 0.5
    assert (images[masks == 0] == 0).all()
    band = (exp1.masks == P.FAT)
    assert not band[:, 4:].any()
    lengths = band[:, 0].sum(axis=1)
    expected = np.clip(exp1.meta["body_fat"] * exp1.meta["size_multiplier"] / 80 * 70, 0, 135)
    assert np.abs(lengths - expected).max() <= 1.5


def test_fatty_rv_wall_is_brighter(exp1):
    fatty = np.flatnonzero(exp1.meta["subtype"] == "fatty")[:50]
    wall = exp1.images[fatty][exp1.masks[fatty] == P.RV_MYO].mean()
    # Uniform between 0.2 and 0.2 + f * 0.7 with f ~ U(0.7, 0.9): mean 0.2 + 0.8 * 0.35.
    assert abs(wall / 255 - (0.2 + 0.8 * 0.35)) < 0.02


def test_marker_exactly_on_male_images(exp2):
    marker = exp2.masks == P.MARKER
    counts = marker.sum(axis=(1, 2))
    male = exp2.meta["male"]
    assert (counts[male] == 100).all() and (counts[~male] == 0).all()
    assert marker[male][:, 95:, 125:].all()
    assert abs(exp2.images[marker].mean() - 255) < 1.5
    assert not (exp2.heart_masks[:, 95:, 125:]).any()


def test_experiment2_body_fat(exp2):
    dcm = exp2.labels == 3
    assert abs(exp2.meta["body_fat"][~dcm].mean() - 31) < 0.8
    assert abs(exp2.meta["body_fat"][dcm].mean() - 33) < 1.5
    np.testing.assert_allclose(exp2.meta["heart_to_skin"], 18.0)


def test_deterministic_and_seed_dependent():
    a = P.generate(20, experiment=2, seed=5)
    b = P.generate(20, experiment=2, seed=5)
    c = P.generate(20, experiment=2, seed=6)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert not np.array_equal(a.images, c.images)
    # Chunking draws the texture in another order but leaves the anatomy unchanged.
    d = P.generate(20, experiment=2, seed=5, chunk_size=7)
    np.testing.assert_array_equal(a.masks, d.masks)


def test_save_load_round_trip(tmp_path):
    data = P.generate(12, experiment=2, seed=3)
    path = save_dataset(tmp_path / "d.npz", data, seed=3)
    back = load_dataset(path)
    np.testing.assert_array_equal(back.images, data.images)
    np.testing.assert_array_equal(back.labels, data.labels)
    assert back.experiment == 2
    assert back.meta["subtype"].tolist() == data.meta["subtype"].tolist()
    np.testing.assert_allclose(back.meta["body_fat"], data.meta["body_fat"])


def test_model_arrays_downscale():
    data = P.generate(8, experiment=2, seed=0)
    arrays = model_arrays(data, (52, 67))
    assert arrays["images"].shape == (8, 52, 67, 1) and arrays["images"].dtype == np.float32
    assert set(np.unique(arrays["heart"])) == {0, 1}
    assert (arrays["marker"].sum(axis=(1, 2)) > 0).tolist() == data.meta["male"].tolist()


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="experiment"):
        P.generate(4, experiment=3, seed=0)
    with pytest.raises(ValueError, match="n must be positive"):
        P.generate(0, experiment=1, seed=0)
    with pytest.raises(ValueError, match="seed"):
        P.generate(4, experiment=1, seed=None)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_dataset(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", images=np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="bad.npz"):
        load_dataset(tmp_path / "bad.npz")
