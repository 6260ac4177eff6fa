"""shared.inputs: declared sizes, headers, tables and names checked before anything is allocated."""

import io
import zipfile

import numpy as np
import pytest

from shared import inputs

pytestmark = pytest.mark.no_keras


def test_declared_size_against_the_file_and_memory():
    assert inputs.check_declared_size("f", (2, 3), np.int16, field="dim", stored_bytes=12) == 12
    with pytest.raises(ValueError, match=r"f: field 'dim' declares 2 x 4 values of int16 \(16 bytes\) but the "
                                         r"file holds 12 bytes"):
        inputs.check_declared_size("f", (2, 4), np.int16, field="dim", stored_bytes=12)
    # Compressed: up to MAX_DEFLATE_RATIO times the stored bytes (plus 4 kB) can be real.
    inputs.check_declared_size("f", (1100 * 10,), np.uint8, field="dim", stored_bytes=10, compressed=True)
    with pytest.raises(ValueError, match="compressed"):
        inputs.check_declared_size("f", (1100 * 10 + 4097,), np.uint8, field="dim", stored_bytes=10,
                                   compressed=True)
    with pytest.raises(ValueError, match="in memory"):
        inputs.check_declared_size("f", (100,), np.uint8, field="dim", working_itemsize=4, max_bytes=399)
    with pytest.raises(ValueError, match="negative"):
        inputs.check_declared_size("f", (3, -1), np.uint8, field="dim")


def test_spacing_and_affine():
    assert inputs.check_spacing("f", (1, 2.5), field="pixdim") == (1.0, 2.5)
    for bad in [(0.001, 1), (1, 500), (float("nan"), 1)]:
        with pytest.raises(ValueError, match="f: field 'pixdim'"):
            inputs.check_spacing("f", bad, field="pixdim")
    inputs.check_affine("f", np.diag([2.0, 2.0, 2.0, 1.0]))
    nan = np.eye(4)
    nan[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        inputs.check_affine("f", nan)
    singular = np.eye(4)
    singular[:3, 1] = singular[:3, 0]
    with pytest.raises(ValueError, match="singular"):
        inputs.check_affine("f", singular)


def test_npz_headers(tmp_path):
    good = tmp_path / "good.npz"
    np.savez_compressed(good, a=np.zeros((2, 3), np.float32), b=np.arange(4))
    found = inputs.check_npz(good)
    assert found["a"] == ((2, 3), np.dtype("float32")) and found["b"][0] == (4,)
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": (10**15,)})
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w") as archive:
        archive.writestr("x.npy", buffer.getvalue())
    with pytest.raises(ValueError, match=r"bomb.npz: array 'x' declares 1000000000000000 values"):
        inputs.check_npz(tmp_path / "bomb.npz")
    (tmp_path / "text.npz").write_text("no archive")
    with pytest.raises(ValueError, match="not a readable .npz"):
        inputs.check_npz(tmp_path / "text.npz")


def test_image_header_sizes(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((7, 11), np.uint8))
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((7, 11), np.uint8))
    cv2.imwrite(str(tmp_path / "a.tiff"), np.zeros((7, 11), np.uint8))
    assert inputs.image_header_size(tmp_path / "a.png") == (11, 7)
    assert inputs.image_header_size(tmp_path / "a.jpg") == (11, 7)
    assert inputs.image_header_size(tmp_path / "a.tiff") is None
    with pytest.raises(ValueError, match="11 x 7 pixels; expected at most 50"):
        inputs.check_image_header(tmp_path / "a.png", max_pixels=50)
    with pytest.raises(ValueError, match="expected at least 8 x 8"):
        inputs.check_image_header(tmp_path / "a.jpg", min_side=8)


def test_table_refuses_repeated_columns_extra_fields_and_latin1(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a, b\n1,2\n\n3\n")
    columns, rows = inputs.read_table(path, expected="a, b")
    assert columns == ["a", "b"] and rows == [(2, {"a": "1", "b": "2"}), (4, {"a": "3", "b": None})]
    path.write_text("a,b,a\n1,2,3\n")
    with pytest.raises(ValueError, match=r"t.csv, line 1: column 'a' appears twice \(fields 1 and 3\)"):
        inputs.read_table(path, expected="a, b")
    path.write_text("a,b\n1,2\n1,2,3\n")
    with pytest.raises(ValueError, match=r"t.csv, line 3: 3 fields, more than the 2 columns"):
        inputs.read_table(path, expected="a, b")
    path.write_bytes("a,b\nR\u00e9my,2\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"t.csv: not UTF-8 text \(byte 0xe9 at offset 5, line 2\)"):
        inputs.read_table(path, expected="a, b")


def test_names_stay_inside_their_folder(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    (tmp_path / "test").mkdir()
    assert inputs.resolve_inside(folder, "sub/x.png", where="s, line 1") == folder / "sub" / "x.png"
    for name, why in [("../test/x.png", "'..'"), (str(tmp_path / "x.png"), "absolute path"),
                      ("C:\\x.png", "absolute path"), ("a\\..\\..\\x.png", "'..'")]:
        with pytest.raises(ValueError, match=f"s, line 1: field 'filename'.*{why}"):
            inputs.resolve_inside(folder, name, where="s, line 1")
    (folder / "out").symlink_to(tmp_path / "test")
    with pytest.raises(ValueError, match="outside"):
        inputs.resolve_inside(folder, "out/x.png", where="s, line 1")
