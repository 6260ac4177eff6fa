"""Bad inputs of `medrepro lge-qa run --data ROOT`: one error line naming the file, exit 2.

Each case writes a small dataset in the challenge layout (`tests/lge_qa/small_dataset.py`),
breaks one thing and checks the error line; every error comes before any model trains.
"""

import gzip

import numpy as np
import pytest

from lge_qa import io, phantom
from shared.testing.bad_input import assert_one_line_error
from tests.lge_qa.small_dataset import write_small_dataset

pytestmark = pytest.mark.no_keras

HEADER = "case_id,myocardium_nulling,sharpness,aorta_valve_enhancement,fibrosis_quality\n"


@pytest.fixture
def root(tmp_path):
    return write_small_dataset(tmp_path / "data")


def _run(root, tmp_path, *extra):
    return ["lge-qa", "run", "--preset", "tiny", "--data", str(root), "--out", str(tmp_path / "run"),
            "--no-progress", *extra]


def _scores_csv(root, text, encoding="utf-8"):
    (root / phantom.SCORES_FILE).write_bytes(text.encode(encoding))
    return root / phantom.SCORES_FILE


def _rows(n=10, start=0):
    return "".join(f"QA{i:04d},3,3,3,{2 + i % 2}\n" for i in range(start, n))


def test_missing_data_root(tmp_path):
    assert_one_line_error(_run(tmp_path / "nowhere", tmp_path), "nowhere", "no such folder")


def test_missing_scores_table(root, tmp_path):
    (root / phantom.SCORES_FILE).unlink()
    assert_one_line_error(_run(root, tmp_path), phantom.SCORES_FILE, "not found")


def test_missing_quality_split(root, tmp_path):
    import shutil

    shutil.rmtree(root / phantom.QA_SPLIT)
    assert_one_line_error(_run(root, tmp_path), phantom.QA_SPLIT, "not found")


def test_empty_segmentation_split(root, tmp_path):
    import shutil

    shutil.rmtree(root / phantom.SEG_SPLIT)
    (root / phantom.SEG_SPLIT).mkdir()
    assert_one_line_error(_run(root, tmp_path), phantom.SEG_SPLIT, "no cases", io.IMAGE_FILE)


def test_byte_order_mark_is_read_as_utf8(root, tmp_path):
    # With the mark handled the header is found, and the error is the real one (a score of 7).
    path = _scores_csv(root, HEADER + _rows(9) + "QA0009,3,3,3,7\n", encoding="utf-8-sig")
    line = assert_one_line_error(_run(root, tmp_path), path.name, "line 11", "QA0009", "fibrosis_quality")
    assert "missing columns" not in line


def test_missing_score_column(root, tmp_path):
    _scores_csv(root, "case_id,sharpness\nQA0000,3\n")
    assert_one_line_error(_run(root, tmp_path), phantom.SCORES_FILE, "missing columns", "fibrosis_quality")


def test_duplicate_case_in_scores(root, tmp_path):
    _scores_csv(root, HEADER + _rows(10) + "QA0003,3,3,3,3\n")
    assert_one_line_error(_run(root, tmp_path), phantom.SCORES_FILE, "QA0003", "appears twice")


@pytest.mark.parametrize("bad", ["6", "0", "2.5", "good", "nan"])
def test_score_outside_one_to_five(root, tmp_path, bad):
    _scores_csv(root, HEADER + _rows(9) + f"QA0009,3,{bad},3,3\n")
    assert_one_line_error(_run(root, tmp_path), phantom.SCORES_FILE, "QA0009", "sharpness", "1-5")


def test_empty_case_id(root, tmp_path):
    _scores_csv(root, HEADER + _rows(9) + " ,3,3,3,3\n")
    assert_one_line_error(_run(root, tmp_path), phantom.SCORES_FILE, "line 11", "case_id is empty")


def test_scores_table_without_rows(root, tmp_path):
    _scores_csv(root, HEADER)
    assert_one_line_error(_run(root, tmp_path), phantom.SCORES_FILE, "no scored cases")


def test_short_row_in_scores(root, tmp_path):
    _scores_csv(root, HEADER + _rows(9) + "QA0009,3,3\n")
    assert_one_line_error(_run(root, tmp_path), phantom.SCORES_FILE, "line 11", "5 fields")


def test_scores_table_not_text(root, tmp_path):
    (root / phantom.SCORES_FILE).write_bytes(b"\xff\xfe\x00\x81binary")
    assert_one_line_error(_run(root, tmp_path), phantom.SCORES_FILE, "not UTF-8")


def test_case_only_in_scores_refused_under_strict(root, tmp_path):
    _scores_csv(root, HEADER + _rows(10) + "QA0099,3,3,3,3\n")
    assert_one_line_error(_run(root, tmp_path, "--strict"), phantom.SCORES_FILE, "QA0099", "no folder")


def test_case_only_on_disk_refused_under_strict(root, tmp_path):
    _scores_csv(root, HEADER + _rows(9))
    assert_one_line_error(_run(root, tmp_path, "--strict"), phantom.QA_SPLIT, "QA0009", "no row")


def test_no_scored_case_on_disk(root, tmp_path):
    _scores_csv(root, HEADER + "".join(f"X{i},3,3,3,3\n" for i in range(10)))
    assert_one_line_error(_run(root, tmp_path), phantom.SCORES_FILE, "none of its cases")


def test_too_few_scored_cases(root, tmp_path):
    _scores_csv(root, HEADER + _rows(5))
    assert_one_line_error(_run(root, tmp_path), phantom.SCORES_FILE, "5 scored cases", "test_scans=8")


def test_truncated_image_nrrd(root, tmp_path):
    path = root / phantom.QA_SPLIT / "QA0004" / io.IMAGE_FILE
    path.write_bytes(path.read_bytes()[:-20])
    assert_one_line_error(_run(root, tmp_path), "QA0004", io.IMAGE_FILE, "not a readable NRRD")


def test_corrupt_image_nrrd(root, tmp_path):
    path = root / phantom.QA_SPLIT / "QA0002" / io.IMAGE_FILE
    path.write_bytes(b"NRRD0004\n" + gzip.compress(b"no header here"))
    assert_one_line_error(_run(root, tmp_path), "QA0002", io.IMAGE_FILE, "not a readable NRRD")


def test_truncated_mask_nrrd(root, tmp_path):
    path = root / phantom.QA_SPLIT / "QA0001" / io.MASK_FILE
    path.write_bytes(path.read_bytes()[:30])
    assert_one_line_error(_run(root, tmp_path), "QA0001", io.MASK_FILE, "not a readable NRRD")


def test_two_dimensional_image(root, tmp_path):
    import nrrd

    nrrd.write(str(root / phantom.QA_SPLIT / "QA0003" / io.IMAGE_FILE), np.zeros((12, 12), np.uint8))
    assert_one_line_error(_run(root, tmp_path), "QA0003", io.IMAGE_FILE, "3D volume")


@pytest.mark.parametrize("value, kind", [(np.nan, "NaN"), (np.inf, "Inf")])
def test_non_finite_voxels(root, tmp_path, value, kind):
    import nrrd

    image = np.full((12, 12, 3), 50.0, np.float32)
    image[4, 4, 1] = value
    nrrd.write(str(root / phantom.QA_SPLIT / "QA0005" / io.IMAGE_FILE), image)
    assert_one_line_error(_run(root, tmp_path), "QA0005", io.IMAGE_FILE, kind, "finite")


def test_mask_shape_differs(root, tmp_path):
    import nrrd

    nrrd.write(str(root / phantom.QA_SPLIT / "QA0006" / io.MASK_FILE), np.zeros((12, 12, 2), np.uint8))
    assert_one_line_error(_run(root, tmp_path), "QA0006", "shapes differ", "(12, 12, 3)", "(12, 12, 2)")


def test_mask_values_not_binary(root, tmp_path):
    import nrrd

    nrrd.write(str(root / phantom.QA_SPLIT / "QA0007" / io.MASK_FILE), np.full((12, 12, 3), 7, np.uint8))
    assert_one_line_error(_run(root, tmp_path), "QA0007", io.MASK_FILE, "0/255")


def test_segmentation_case_without_mask(root, tmp_path):
    (root / phantom.SEG_SPLIT / "SEG0000" / io.MASK_FILE).unlink()
    assert_one_line_error(_run(root, tmp_path), "SEG0000", io.MASK_FILE, "not found")


def test_gates_only_needs_the_powered_preset(tmp_path):
    assert_one_line_error(["lge-qa", "run", "--preset", "tiny", "--gates-only", "--out", str(tmp_path / "run"),
                           "--no-progress"], "--gates-only", "--preset powered")
