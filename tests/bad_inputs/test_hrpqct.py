"""Bad inputs of `medrepro hrpqct run --data ROOT`: one error line naming the file, exit 2.

Each case writes a small valid dataset in the layout of `hrpqct.data` (four 32 x 32 x 8
AIM stacks, the tiny preset's slice size, and grades.csv), breaks one thing and checks
the error line; every error comes before any model trains.
"""

import struct

import numpy as np
import pytest

from hrpqct import aim
from hrpqct.data import GRADES_FILE
from shared.testing.bad_input import assert_one_line_error

pytestmark = pytest.mark.no_keras

HEADER = "scan_id,site,rater1,rater2,rater3\n"
ROWS = "rad0000,radius,1,1,2\nrad0001,radius,3,3,3\ntib0000,tibia,2,2,2\ntib0001,tibia,4,5,4\n"
IDS = ("rad0000", "rad0001", "tib0000", "tib0001")


def _write_scan(root, scan_id, data=None, log=None):
    if data is None:
        data = np.random.default_rng(0).integers(0, 4000, size=(8, 32, 32)).astype(np.int16)
    return aim.write_aim(root / "aim" / f"{scan_id}.AIM", data, 0.625,
                         log={"Mu_Scaling": "8192"} if log is None else log)


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "data"
    for scan_id in IDS:
        _write_scan(root, scan_id)
    (root / GRADES_FILE).write_text(HEADER + ROWS)
    return root


def _run(root, tmp_path):
    return ["hrpqct", "run", "--preset", "tiny", "--data", str(root), "--out", str(tmp_path / "run"),
            "--no-progress"]


def _grades(root, text, encoding="utf-8"):
    (root / GRADES_FILE).write_bytes(text.encode(encoding))
    return root / GRADES_FILE


def _patch_v020_sizes(path, log_size=None, data_size=None):
    """Overwrites the V020 pre-header's log size (field 3) or data size (field 4)."""
    raw = bytearray(path.read_bytes())
    if log_size is not None:
        struct.pack_into("<i", raw, 8, log_size)
    if data_size is not None:
        struct.pack_into("<i", raw, 12, data_size)
    path.write_bytes(bytes(raw))


# Data folder and files


def test_missing_data_folder(tmp_path):
    assert_one_line_error(_run(tmp_path / "nowhere", tmp_path), "nowhere", "data folder not found", GRADES_FILE)


def test_missing_grades_table(root, tmp_path):
    (root / GRADES_FILE).unlink()
    assert_one_line_error(_run(root, tmp_path), GRADES_FILE, "not found")


def test_empty_aim_folder(root, tmp_path):
    for p in (root / "aim").iterdir():
        p.unlink()
    assert_one_line_error(_run(root, tmp_path), "aim", "no AIM files", "rad0000.AIM")


def test_missing_aim_folder(root, tmp_path):
    import shutil

    shutil.rmtree(root / "aim")
    assert_one_line_error(_run(root, tmp_path), "aim", "AIM folder not found", GRADES_FILE)


def test_missing_aim_file_of_one_scan(root, tmp_path):
    (root / "aim" / "tib0000.AIM").unlink()
    assert_one_line_error(_run(root, tmp_path), "tib0000.AIM", "not found", "line 4", GRADES_FILE)


# AIM files


def test_empty_aim_file(root, tmp_path):
    (root / "aim" / "rad0001.AIM").write_bytes(b"")
    assert_one_line_error(_run(root, tmp_path), "rad0001.AIM", "pre-header")


def test_corrupt_aim_file(root, tmp_path):
    (root / "aim" / "rad0001.AIM").write_bytes(bytes(range(256)) * 8)
    assert_one_line_error(_run(root, tmp_path), "rad0001.AIM", "not an AIM file", "(20, 140)")


def test_truncated_aim_data(root, tmp_path):
    path = root / "aim" / "rad0001.AIM"
    path.write_bytes(path.read_bytes()[:-100])
    assert_one_line_error(_run(root, tmp_path), "rad0001.AIM", "truncated AIM data", "16384 bytes")


def test_truncated_aim_header(root, tmp_path):
    path = root / "aim" / "rad0001.AIM"
    path.write_bytes(path.read_bytes()[:200])
    assert_one_line_error(_run(root, tmp_path), "rad0001.AIM", "truncated AIM header")


def test_negative_log_size(root, tmp_path):
    # A negative log size would read the voxels from inside the header.
    _patch_v020_sizes(root / "aim" / "rad0001.AIM", log_size=-64)
    assert_one_line_error(_run(root, tmp_path), "rad0001.AIM", "log size -64", ">= 0")


def test_data_size_inconsistent_with_dimensions(root, tmp_path):
    _patch_v020_sizes(root / "aim" / "rad0001.AIM", data_size=1000)
    assert_one_line_error(_run(root, tmp_path), "rad0001.AIM", "data size 1000", "32x32x8")


def test_log_size_inconsistent_with_file_size(root, tmp_path):
    # The log announced larger than it is: the data would start inside the voxels, and the
    # file is then too short for the data the dimensions call for.
    path = root / "aim" / "rad0001.AIM"
    raw = path.read_bytes()
    log_size = struct.unpack_from("<i", raw, 8)[0]
    _patch_v020_sizes(path, log_size=log_size + 512)
    assert_one_line_error(_run(root, tmp_path), "rad0001.AIM", "truncated AIM data")


@pytest.mark.parametrize("value", ["0", "-8192", "abc", "nan", "inf"])
def test_bad_mu_scaling(root, tmp_path, value):
    _write_scan(root, "tib0001", log={"Mu_Scaling": value})
    assert_one_line_error(_run(root, tmp_path), "tib0001.AIM", "Mu_Scaling", "finite positive", repr(value))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels(root, tmp_path, bad):
    vol = np.full((8, 32, 32), 0.2, np.float32)
    vol[3, 5, 7] = bad
    _write_scan(root, "rad0000", data=vol, log={})
    assert_one_line_error(_run(root, tmp_path), "rad0000.AIM", "'data'", "finite", "1 NaN or Inf")


def test_segmented_aim(root, tmp_path):
    _write_scan(root, "rad0000", data=np.ones((8, 32, 32), np.int8))
    assert_one_line_error(_run(root, tmp_path), "rad0000.AIM", "grey-value", "int8")


def test_aim_smaller_than_the_declared_minimum(root, tmp_path):
    # Any size at or above hrpqct.scan_input.MIN_SLICE_PIXELS (16) is centred and resampled;
    # below it the scan is refused.
    _write_scan(root, "rad0000", data=np.full((8, 12, 40), 2000, np.int16))
    assert_one_line_error(_run(root, tmp_path), "rad0000.AIM", "at least 16 x 16 pixels", "12 x 40")


def test_aim_whose_limb_cannot_be_found(root, tmp_path):
    # Air only (a few streaks of 0.01 / cm): nothing reaches the soft-tissue level.
    noise = np.random.default_rng(1).normal(0, 80, size=(8, 40, 36)).astype(np.int16)
    _write_scan(root, "tib0000", data=noise)
    assert_one_line_error(_run(root, tmp_path), "tib0000.AIM", "no limb", "0.1 / cm")


def test_too_few_slices(root, tmp_path):
    _write_scan(root, "rad0000", data=np.ones((5, 32, 32), np.int16))
    assert_one_line_error(_run(root, tmp_path), "rad0000.AIM", "at least 8 slices", "Received: 5")


# grades.csv


def test_byte_order_mark_is_read_as_utf8(root, tmp_path):
    # With the mark handled the header is found, and the error is the real one (a grade of 7).
    path = _grades(root, HEADER + ROWS.replace("tib0000,tibia,2,2,2", "tib0000,tibia,2,7,2"),
                   encoding="utf-8-sig")
    line = assert_one_line_error(_run(root, tmp_path), path.name, "line 4", "rater2", "1-5", "'7'")
    assert "missing column" not in line


def test_utf16_grades_table(root, tmp_path):
    _grades(root, HEADER + ROWS, encoding="utf-16")
    assert_one_line_error(_run(root, tmp_path), GRADES_FILE, "UTF-8", "UTF-16")


def test_duplicate_scan_id(root, tmp_path):
    _grades(root, HEADER + ROWS + "rad0001,radius,2,2,2\n")
    assert_one_line_error(_run(root, tmp_path), GRADES_FILE, "line 6", "scan_id", "duplicate", "'rad0001'",
                          "line 3")


def test_unknown_rater_column(root, tmp_path):
    _grades(root, "scan_id,site,rater1,rater2,rater4\n" + ROWS)
    assert_one_line_error(_run(root, tmp_path), GRADES_FILE, "unknown column", "rater4")


def test_missing_site_column(root, tmp_path):
    _grades(root, "scan_id,rater1\nrad0000,1\n")
    assert_one_line_error(_run(root, tmp_path), GRADES_FILE, "missing column 'site'")


@pytest.mark.parametrize("bad", ["6", "0", "2.5", "bad", "nan"])
def test_unknown_grade(root, tmp_path, bad):
    _grades(root, HEADER + ROWS.replace("rad0001,radius,3,3,3", f"rad0001,radius,3,{bad},3"))
    assert_one_line_error(_run(root, tmp_path), GRADES_FILE, "line 3", "rad0001", "rater2", "integers 1-5")


def test_unknown_site(root, tmp_path):
    _grades(root, HEADER + ROWS.replace("tib0000,tibia", "tib0000,femur"))
    assert_one_line_error(_run(root, tmp_path), GRADES_FILE, "line 4", "site", "'radius' or 'tibia'", "femur")


def test_scan_without_any_grade(root, tmp_path):
    _grades(root, HEADER + ROWS.replace("rad0001,radius,3,3,3", "rad0001,radius,,,"))
    assert_one_line_error(_run(root, tmp_path), GRADES_FILE, "line 3", "rad0001", "no rater grade")


def test_grades_table_without_rows(root, tmp_path):
    _grades(root, HEADER)
    assert_one_line_error(_run(root, tmp_path), GRADES_FILE, "no scans listed")


def test_row_with_more_fields_than_columns(root, tmp_path):
    _grades(root, HEADER + ROWS + "rad0002,radius,1,1,1,1\n")
    assert_one_line_error(_run(root, tmp_path), GRADES_FILE, "line 6", "more fields")


def test_scan_id_that_is_not_a_file_name(root, tmp_path):
    _grades(root, HEADER + ROWS + "../etc,radius,1,1,1\n")
    assert_one_line_error(_run(root, tmp_path), GRADES_FILE, "line 6", "scan_id", "'../etc'")


# Projections and the simulation's truth (simulated datasets)


def test_missing_projection_file(root, tmp_path):
    (root / "projections").mkdir()
    for scan_id in IDS[1:]:
        np.savez(root / "projections" / f"{scan_id}.npz", views=np.ones((3, 8, 40), np.float32))
    assert_one_line_error(_run(root, tmp_path), "rad0000.npz", "not found")


def test_corrupt_projection_file(root, tmp_path):
    (root / "projections").mkdir()
    for scan_id in IDS:
        np.savez(root / "projections" / f"{scan_id}.npz", views=np.ones((3, 8, 40), np.float32))
    (root / "projections" / "tib0000.npz").write_bytes(b"PK\x03\x04 broken")
    assert_one_line_error(_run(root, tmp_path), "tib0000.npz", "'views'", "could not be read")


def test_non_finite_projections(root, tmp_path):
    (root / "projections").mkdir()
    for scan_id in IDS:
        views = np.ones((3, 8, 40), np.float32)
        if scan_id == "tib0001":
            views[1, 2, 3] = np.nan
        np.savez(root / "projections" / f"{scan_id}.npz", views=views)
    assert_one_line_error(_run(root, tmp_path), "tib0001.npz", "'views'", "finite")


def test_simulation_table_lacking_scans(root, tmp_path):
    (root / "simulation.csv").write_text("scan_id,true_grade,motion_size\nrad0000,1,0.1\n")
    assert_one_line_error(_run(root, tmp_path), "simulation.csv", "scan_id", "rad0001")


# Headers that declare what the file does not hold; tables read silently wrong
def _refused_within(limit_mb, argv, *names):
    from shared.testing.memory import peak_allocation

    assert_one_line_error(argv, *names)  # the first run imports what the command needs
    peak = peak_allocation(lambda: assert_one_line_error(argv, *names))
    assert peak < limit_mb * 2**20, f"refusing took {peak / 2**20:.0f} MB"


def _projections(root, forged=None):
    import io
    import zipfile

    (root / "projections").mkdir()
    for scan_id in IDS:
        np.savez(root / "projections" / f"{scan_id}.npz", views=np.ones((3, 8, 40), np.float32))
    if forged is not None:
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, forged)
        buffer.write(b"\x00" * 64)
        with zipfile.ZipFile(root / "projections" / "rad0001.npz", "w") as archive:
            archive.writestr("views.npy", buffer.getvalue())


def test_projection_header_declaring_1e15_floats(root, tmp_path):
    _projections(root, {"descr": "<f8", "fortran_order": False, "shape": (10**15,)})
    _refused_within(200, _run(root, tmp_path), "rad0001.npz", "'views'", "1000000000000000", "the file holds")


def test_projection_header_declaring_a_3d_array_larger_than_stored(root, tmp_path):
    _projections(root, {"descr": "<f4", "fortran_order": False, "shape": (180, 8, 40)})
    assert_one_line_error(_run(root, tmp_path), "rad0001.npz", "'views'", "180 x 8 x 40")


def test_projection_of_python_objects(root, tmp_path):
    _projections(root, {"descr": "|O", "fortran_order": False, "shape": (3,)})
    assert_one_line_error(_run(root, tmp_path), "rad0001.npz", "'views'", "Python objects")


def test_aim_declaring_more_voxels_than_memory_allows(root, tmp_path):
    # A V030 file declaring 2048^3 int32 with a pre-header that agrees and a (sparse) file of
    # that length: 32 GB as float32, refused before a byte of voxels is read.
    path = aim.write_aim(root / "aim" / "tib0000.AIM", np.zeros((8, 32, 32), np.int32), 0.625,
                         log={"Mu_Scaling": "8192"}, version="v030")
    raw = bytearray(path.read_bytes())
    n = 2048
    struct.pack_into("<q", raw, 16 + 24, n ** 3 * 4)
    struct.pack_into("<3q", raw, 56 + 16 + 24, n, n, n)
    log_size = struct.unpack_from("<q", raw, 16 + 16)[0]
    header = bytes(raw[:56 + 224 + log_size])
    with open(path, "wb") as handle:
        handle.write(header)
        handle.truncate(len(header) + n ** 3 * 4)
    _refused_within(200, _run(root, tmp_path), "tib0000.AIM", "'dimensions'", "2048 x 2048 x 2048", "at most")


def test_simulation_table_with_a_repeated_column(root, tmp_path):
    (root / "simulation.csv").write_text("scan_id,true_grade,motion_size,true_grade\n"
                                         + "".join(f"{s},1,0.1,3\n" for s in IDS))
    assert_one_line_error(_run(root, tmp_path), "simulation.csv", "line 1", "'true_grade' appears twice")


def test_simulation_table_with_a_grade_that_is_not_a_number(root, tmp_path):
    (root / "simulation.csv").write_text("scan_id,true_grade,motion_size\n"
                                         + "".join(f"{s},{'x' if s == 'tib0000' else 1},0.1\n" for s in IDS))
    assert_one_line_error(_run(root, tmp_path), "simulation.csv", "line 4", "'true_grade'", "'x'")


def test_grades_of_one_class(root, tmp_path):
    _grades(root, HEADER + "".join(f"{s},{'radius' if s.startswith('rad') else 'tibia'},3,3,3\n" for s in IDS))
    line = assert_one_line_error(_run(root, tmp_path), GRADES_FILE, "consensus grade 3", "at least two different")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir()), line
