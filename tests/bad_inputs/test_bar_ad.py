"""Bad inputs of `medrepro bar-ad run --data ROOT`: one error line naming the file, exit 2.

Each case copies a small cohort in the ADNI layout (`bar_ad.experiment.generate_cohort`,
tiny preset), breaks one thing and checks the error line; every error comes while the
collection loads, before any model trains.
"""

import shutil

import nibabel as nib
import numpy as np
import pytest

from bar_ad.alignment import axis_rotation
from bar_ad.config import get_config
from bar_ad.experiment import generate_cohort
from shared.testing.bad_input import assert_one_line_error

pytestmark = pytest.mark.no_keras


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("bar_ad_adni")
    generate_cohort(get_config("tiny"), root, seed=0)
    return root


@pytest.fixture
def root(written, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(written, folder)
    return folder


def _run(root, *extra):
    return ["bar-ad", "run", "--preset", "tiny", "--data", root, "--no-progress",
            "--out", f"{root}/../run", "--store", f"sqlite:///{root}/../store.sqlite", *extra]


def _csv(root):
    return next(root.glob("*.csv"))


def _scan(root, k=0):
    return sorted((root / "ADNI").rglob("*.nii"))[k]


def _rewrite(path, data=None, affine=None):
    img = nib.load(str(path), mmap=False)
    data = np.asarray(img.dataobj) if data is None else data
    nib.save(nib.Nifti1Image(data, img.affine if affine is None else affine), str(path))


def _set_cell(root, row, column, value):
    path = _csv(root)
    lines = path.read_text().splitlines()
    cells = lines[row].split(",")
    cells[column] = value
    lines[row] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def test_missing_data_folder(tmp_path):
    assert_one_line_error(_run(tmp_path / "nowhere"), "nowhere", "collection CSV")


def test_csv_without_group_column(root):
    lines = _csv(root).read_text().splitlines()
    _csv(root).write_text("\n".join(",".join(line.split(",")[:2]) for line in lines) + "\n")
    assert_one_line_error(_run(root), _csv(root).name, "missing column", "Group")


def test_unknown_group(root):
    _set_cell(root, 2, 2, "ADX")
    assert_one_line_error(_run(root), _csv(root).name, "row 3", "Group", "ADX")


def test_unknown_group_map(root):
    assert_one_line_error(_run(root, "--set", "group_map=merge"), "group_map", "merge")


def test_image_listed_twice(root):
    lines = _csv(root).read_text().splitlines()
    _csv(root).write_text("\n".join(lines + [lines[1]]) + "\n")
    assert_one_line_error(_run(root), _csv(root).name, "rows 2 and", "listed twice")


def test_empty_subject(root):
    _set_cell(root, 1, 1, "")
    assert_one_line_error(_run(root), _csv(root).name, "row 2", "Subject")


def test_missing_scan_file(root):
    path = _scan(root)
    path.unlink()
    assert_one_line_error(_run(root), path.parent.name, "No NIfTI")


def test_truncated_scan(root):
    path = _scan(root, 1)
    path.write_bytes(path.read_bytes()[:200])
    assert_one_line_error(_run(root), path.name, "cannot read")


def test_two_dimensional_scan(root):
    path = _scan(root, 2)
    nib.save(nib.Nifti1Image(np.ones((20, 24), np.int16), np.eye(4)), str(path))
    assert_one_line_error(_run(root), path.name, "3D volume")


@pytest.mark.parametrize("value,kind", [(np.nan, "NaN"), (np.inf, "infinite")])
def test_non_finite_voxels(root, value, kind):
    path = _scan(root, 3)
    data = np.asarray(nib.load(str(path), mmap=False).dataobj).astype(np.float32)
    data[2, 3, 4] = value
    _rewrite(path, data=data)
    assert_one_line_error(_run(root), path.name, kind, "finite intensities")


def test_scan_shifted_10_mm(root):
    path = _scan(root, 1)
    affine = nib.load(str(path), mmap=False).affine.copy()
    affine[2, 3] += 10.0
    _rewrite(path, affine=affine)
    assert_one_line_error(_run(root), path.name, "not aligned", "shifted", "mm")


def test_scan_rotated_15_degrees(root):
    path = _scan(root, 2)
    affine = nib.load(str(path), mmap=False).affine.copy()
    r, centre = axis_rotation(0, 15.0), np.array([0.0, -18.0, 7.0])
    affine[:3, :3] = r @ affine[:3, :3]
    affine[:3, 3] = r @ (affine[:3, 3] - centre) + centre
    _rewrite(path, affine=affine)
    assert_one_line_error(_run(root), path.name, "not aligned", "rotated", "degrees")


def test_scan_flipped_left_right(root):
    path = _scan(root, 4)
    affine = nib.load(str(path), mmap=False).affine.copy()
    affine[0] *= -1
    _rewrite(path, affine=affine)
    assert_one_line_error(_run(root), path.name, "left-right flipped")


def test_scan_without_header_placement(root):
    path = _scan(root, 0)
    img = nib.load(str(path), mmap=False)
    lost = nib.Nifti1Image(np.asarray(img.dataobj), None)
    lost.header.set_zooms(img.header.get_zooms())
    nib.save(lost, str(path))
    assert_one_line_error(_run(root), path.name, "no placement", "sform_code")


def test_scan_outside_the_brain_box(root):
    path = _scan(root, 1)
    affine = nib.load(str(path), mmap=False).affine.copy()
    affine[1, 3] += 80.0
    _rewrite(path, affine=affine)
    assert_one_line_error(_run(root), path.name, "not aligned")
