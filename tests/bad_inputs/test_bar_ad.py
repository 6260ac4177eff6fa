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


# --- the collection table: what would otherwise read silently wrong ---------------------
def test_group_column_given_twice(root):
    # With two Group columns only the last would be read: refused, whichever it is.
    lines = _csv(root).read_text().splitlines()
    _csv(root).write_text("\n".join(f"{line},{'Group' if i == 0 else 'CN'}" for i, line in enumerate(lines)) + "\n")
    assert_one_line_error(_run(root), _csv(root).name, "line 1", "'Group' appears twice")


def test_row_with_one_extra_field(root):
    lines = _csv(root).read_text().splitlines()
    lines[3] += ",extra"
    _csv(root).write_text("\n".join(lines) + "\n")
    assert_one_line_error(_run(root), _csv(root).name, "line 4", "more than the 12 columns")


def test_latin1_table(root):
    lines = _csv(root).read_text().splitlines()
    lines[2] = lines[2].replace("MRI", "IRM \u00e9t\u00e9")
    _csv(root).write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    assert_one_line_error(_run(root), _csv(root).name, "not UTF-8", "line 3")


@pytest.mark.parametrize("subject", ["../other", "/tmp", "002_S_*"])
def test_subject_that_is_not_a_folder_name(root, subject):
    _set_cell(root, 2, 1, subject)
    assert_one_line_error(_run(root), _csv(root).name, "row 3", "'Subject'", "plain folder name")


def test_one_group_only(root):
    # A cohort without AD rows trains a one-class classifier: refused before any model trains.
    lines = _csv(root).read_text().splitlines()
    _csv(root).write_text("\n".join([lines[0]] + [line for line in lines[1:] if ",AD," not in line]) + "\n")
    assert_one_line_error(_run(root), _csv(root).name, "'Group'", "no row of ['AD']", "both classes")


# --- the image folders -------------------------------------------------------------------
def test_two_scans_in_one_image_folder(root):
    # Another subject's scan copied next to this one sorts first: refused, not guessed.
    path, other = _scan(root, 0), _scan(root, 5)
    shutil.copy(other, path.parent / f"AAA_{other.name}")
    assert_one_line_error(_run(root), path.parent.name, "2 NIfTI files", "one scan per image folder")


def test_nii_and_nii_gz_of_one_image(root):
    path = _scan(root, 1)
    nib.save(nib.load(str(path)), str(path.parent / (path.stem + ".nii.gz")))
    assert_one_line_error(_run(root), path.parent.name, "2 NIfTI files")


# --- NIfTI headers that declare what the file does not hold ---------------------------
def _forged_header(path, shape, dtype=np.int16, gz=False):
    import gzip

    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_data_shape(shape)
    header.set_qform(np.eye(4), code=1)
    header.set_sform(np.eye(4), code=1)
    block = header.binaryblock + b"\x00" * 4 + b"\x00" * 64
    path.write_bytes(gzip.compress(block) if gz else block)


def _refused_within(limit_mb, argv, *names):
    from shared.testing.memory import peak_allocation

    assert_one_line_error(argv, *names)  # the first run imports what the command needs
    peak = peak_allocation(lambda: assert_one_line_error(argv, *names))
    assert peak < limit_mb * 2**20, f"refusing took {peak / 2**20:.0f} MB"


def test_header_declaring_30000_cubed_voxels(root):
    path = _scan(root, 2)
    _forged_header(path, (30000, 30000, 30000))
    assert path.stat().st_size < 500
    _refused_within(200, _run(root), path.name, "'dim'", "30000 x 30000 x 30000", "the file holds")


def test_gzipped_header_declaring_30000_cubed_voxels(root):
    path = _scan(root, 3)
    gz = path.parent / (path.stem + ".nii.gz")
    path.unlink()
    _forged_header(gz, (30000, 30000, 30000), dtype=np.float32, gz=True)
    _refused_within(200, _run(root), gz.name, "'dim'", "compressed")


def test_header_declaring_more_than_memory_allows(root):
    # 2000^3 float64 in a file padded to match would still be 64 GB in memory.
    path = _scan(root, 4)
    _forged_header(path, (2000, 2000, 2000), dtype=np.float64)
    with open(path, "r+b") as handle:
        handle.truncate(2000 ** 3 * 8 + 352)  # sparse: no disk used
    _refused_within(200, _run(root), path.name, "'dim'", "in memory", "at most")


def test_rgb_scan(root):
    path = _scan(root, 0)
    shape = nib.load(str(path)).shape
    rgb = np.zeros(shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, nib.load(str(path)).affine), str(path))
    assert_one_line_error(_run(root), path.name, "'datatype'", "colour", "one grey value per voxel")


def test_complex_scan(root):
    path = _scan(root, 1)
    img = nib.load(str(path), mmap=False)
    data = np.asarray(img.dataobj).astype(np.complex64) * (1 + 1j)
    nib.save(nib.Nifti1Image(data, img.affine), str(path))
    assert_one_line_error(_run(root), path.name, "'datatype'", "complex", "imaginary part")


def _patch_header(path, **fields):
    img = nib.load(str(path), mmap=False)
    header = img.header.copy()
    for key, value in fields.items():
        header[key] = value
    raw = path.read_bytes()
    path.write_bytes(header.binaryblock + raw[len(header.binaryblock):])


def test_nan_affine(root):
    path = _scan(root, 2)
    srow = nib.load(str(path)).header["srow_x"].copy()
    srow[0] = np.nan
    _patch_header(path, srow_x=srow, qform_code=0, sform_code=4)
    line = assert_one_line_error(_run(root), path.name, "'affine'", "NaN or infinite")
    assert "not aligned" not in line


def test_voxel_size_of_500_mm(root):
    path = _scan(root, 3)
    affine = nib.load(str(path), mmap=False).affine.copy()
    affine[:3, :3] *= 100.0
    _rewrite(path, affine=affine)
    line = assert_one_line_error(_run(root), path.name, "voxel size", "0.05 to 20 mm")
    assert "not aligned" not in line


def test_unknown_datatype_code(root):
    path = _scan(root, 5)
    raw = bytearray(path.read_bytes())
    raw[70:72] = (999).to_bytes(2, "little")  # the header's 'datatype' field
    path.write_bytes(bytes(raw))
    assert_one_line_error(_run(root), path.name, "cannot read the NIfTI header", "data code 999")
