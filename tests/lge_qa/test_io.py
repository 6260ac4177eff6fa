import numpy as np
import pytest

from lge_qa import io


def _volume(shape=(20, 24, 5), seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    mask = np.zeros(shape, bool)
    mask[5:12, 6:14, 1:3] = True
    return image, mask


def test_nrrd_round_trip_through_the_loader(tmp_path):
    image, mask = _volume()
    io.write_case(tmp_path / "train", "CASE1", image, mask)
    # The challenge stores the mask as 0 / 255 uint8.
    import nrrd

    raw, header = nrrd.read(str(tmp_path / "train" / "CASE1" / io.MASK_FILE))
    assert raw.dtype == np.uint8 and set(np.unique(raw)) == {0, 255}
    assert raw.shape == (20, 24, 5) and header["sizes"].tolist() == [20, 24, 5]
    img, msk = io.read_case(tmp_path / "train" / "CASE1")
    np.testing.assert_array_equal(img, image.astype(np.float32))
    np.testing.assert_array_equal(msk, mask)
    assert io.list_cases(tmp_path / "train") == ["CASE1"]

    io.write_scores_csv(tmp_path / "scores.csv", {"CASE1": [1, 3, 5, 2]})
    scores = io.read_scores_csv(tmp_path / "scores.csv")
    cohort = io.load_cohort(tmp_path / "train", size=16, scores=scores)
    assert cohort["images"].shape == (5, 16, 16, 1)
    assert cohort["masks"].shape == (5, 16, 16, 1)
    # Slices 1 and 2 hold the LA; normalised images lie in [0, 1].
    assert cohort["masks"].reshape(5, -1).any(axis=1).tolist() == [False, True, True, False, False]
    assert 0.0 <= cohort["images"].min() and 0.8 < cohort["images"].max() <= 1.0
    np.testing.assert_array_equal(cohort["scores"], [[1, 3, 5, 2]])
    np.testing.assert_array_equal(cohort["slice_index"], np.arange(5))


def test_linear_resize_of_slices():
    # A horizontal ramp stays a ramp under linear interpolation (cv2 pixel-centre convention).
    vol = np.tile(np.arange(8, dtype=np.float32)[:, None, None], (1, 8, 1))  # varies along X
    out = io.volume_to_slices(vol, 16)
    assert out.shape == (1, 16, 16)
    # Row index of the output = X; column = Y (cv2 treats axis 0 as rows).
    np.testing.assert_allclose(out[0, :, 0], np.clip((np.arange(16) + 0.5) / 2 - 0.5, 0, 7), atol=1e-5)


def test_binarisation_at_three():
    np.testing.assert_array_equal(io.binarise_scores([1, 2, 3, 4, 5]), [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(io.binarise_scores([[2, 3], [5, 1]], threshold=4), [[0, 0], [1, 0]])
    with pytest.raises(ValueError, match="1-5"):
        io.binarise_scores([0, 3])


def test_shape_mismatch_names_the_case(tmp_path):
    import nrrd

    image, mask = _volume()
    case = io.write_case(tmp_path, "BADCASE", image, mask)
    nrrd.write(str(case / io.MASK_FILE), np.zeros((20, 24, 4), np.uint8))
    with pytest.raises(ValueError, match=r"case BADCASE: image and mask shapes differ.*\(20, 24, 5\).*\(20, 24, 4\)"):
        io.read_case(case)


def test_mask_values_and_missing_files(tmp_path):
    import nrrd

    image, mask = _volume()
    case = io.write_case(tmp_path, "C2", image, mask)
    nrrd.write(str(case / io.MASK_FILE), np.full(image.shape, 7, np.uint8))
    with pytest.raises(ValueError, match="C2.*0/255"):
        io.read_case(case)
    (case / io.MASK_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="C2: mask file not found"):
        io.read_case(case)
    assert io.read_case(case, require_mask=False)[1] is None
    with pytest.raises(FileNotFoundError, match="NOPE"):
        io.read_case(tmp_path / "NOPE")


@pytest.mark.parametrize("bad", ["6", "0", "2.5", "x", ""])
def test_scores_outside_one_to_five_name_the_case(tmp_path, bad):
    path = tmp_path / "scores.csv"
    path.write_text("case_id,myocardium_nulling,sharpness,aorta_valve_enhancement,fibrosis_quality\n"
                    f"A1,3,3,3,3\nB7,3,{bad},3,3\n")
    with pytest.raises(ValueError, match=r"line 3: case B7, column sharpness: score must be an integer in 1-5"):
        io.read_scores_csv(path)


def test_scores_missing_column(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text("case_id,sharpness\nA,3\n")
    with pytest.raises(ValueError, match="missing columns"):
        io.read_scores_csv(path)


def test_no_slice_above_threshold_names_the_case():
    prob = np.zeros((4, 8, 8))
    prob[2, 3, 3] = 0.7
    np.testing.assert_array_equal(io.select_slices(prob, 0.5), [2])
    with pytest.raises(ValueError, match=r"case QA0042: no slice .* threshold t=0.9"):
        io.select_slices(prob, 0.9, case_id="QA0042")
