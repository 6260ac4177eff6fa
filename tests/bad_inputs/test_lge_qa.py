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


# --- the scores table: columns that would be read silently wrong -----------------------
@pytest.mark.parametrize("column", ["sharpness", "fibrosis_quality", "case_id"])
def test_score_column_given_twice(root, tmp_path, column):
    # csv.DictReader keeps the last of two same-named columns: refused instead.
    _scores_csv(root, HEADER.strip() + f",{column}\n" + "".join(line + ",2\n" for line in _rows(10).splitlines()))
    assert_one_line_error(_run(root, tmp_path), phantom.SCORES_FILE, "line 1", f"{column!r} appears twice")


@pytest.mark.parametrize("score", ["3", "2"])
def test_quality_label_of_one_class(root, tmp_path, score):
    # Every case diagnostic (or none): every AUC is undefined; refused before anything trains.
    _scores_csv(root, HEADER + "".join(f"QA{i:04d},3,3,3,{score}\n" for i in range(10)))
    line = assert_one_line_error(_run(root, tmp_path), phantom.SCORES_FILE, "'fibrosis_quality'", "all 10",
                                 "both diagnostic and non-diagnostic")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir()), line


# --- NRRD headers that declare what the file does not hold ------------------------------
def _refused_within(limit_mb, argv, *names):
    from shared.testing.memory import peak_allocation

    assert_one_line_error(argv, *names)  # the first run imports what the command needs
    peak = peak_allocation(lambda: assert_one_line_error(argv, *names))
    assert peak < limit_mb * 2**20, f"refusing took {peak / 2**20:.0f} MB"


def _nrrd_header(sizes, encoding="raw", extra=""):
    return (f"NRRD0004\ntype: uint8\ndimension: 3\nsizes: {sizes}\nencoding: {encoding}\n{extra}\n").encode()


def test_nrrd_header_declaring_30000_cubed_voxels(root, tmp_path):
    path = root / phantom.QA_SPLIT / "QA0002" / io.IMAGE_FILE
    path.write_bytes(_nrrd_header("30000 30000 30000") + b"\x00" * 200)
    _refused_within(200, _run(root, tmp_path), "QA0002", io.IMAGE_FILE, "'sizes'", "30000 x 30000 x 30000",
                    "the file holds")


def test_gzip_nrrd_header_declaring_30000_cubed_voxels(root, tmp_path):
    path = root / phantom.QA_SPLIT / "QA0003" / io.MASK_FILE
    path.write_bytes(_nrrd_header("30000 30000 30000", "gzip") + gzip.compress(b"\x00" * 1000))
    _refused_within(200, _run(root, tmp_path), "QA0003", io.MASK_FILE, "'sizes'", "compressed")


@pytest.mark.parametrize("target, expected", [("../QA0001/lgemri.nrrd", "'..'"), ("/etc/hostname", "absolute path")])
def test_nrrd_data_file_outside_its_folder(root, tmp_path, target, expected):
    path = root / phantom.QA_SPLIT / "QA0004" / io.IMAGE_FILE
    path.write_bytes(_nrrd_header("12 12 3", extra=f"data file: {target}\n"))
    assert_one_line_error(_run(root, tmp_path), "QA0004", io.IMAGE_FILE, "'data file'", expected)
