import numpy as np
import pytest

from hrpqct import aim


def test_numpy_round_trip(tmp_path):
    for version in ("v020", "v030"):
        for dtype in ("int16", "float32", "int8", "int32"):
            data = (np.arange(4 * 5 * 6).reshape(4, 5, 6) - 40).astype(dtype)
            path = aim.write_aim(tmp_path / f"{version}_{dtype}.AIM", data, (0.0607, 0.0607, 0.0607),
                                 position=(1, 2, 3), log={"Mu_Scaling": "8192", "Site": "radius"},
                                 version=version)
            img = aim.read_aim_numpy(path)
            assert img.data.dtype == data.dtype and img.data.shape == (4, 5, 6)
            np.testing.assert_array_equal(img.data, data)
            np.testing.assert_allclose(img.spacing, (0.0607,) * 3, rtol=1e-5)
            assert img.position == (1, 2, 3)
            assert img.log["Mu_Scaling"] == "8192" and img.log["Site"] == "radius"


@pytest.mark.slow
def test_matches_itk_when_installed(tmp_path):
    pytest.importorskip("itk")
    if not aim.itk_available():
        pytest.skip("itk-ioscanco not installed")
    data = np.random.default_rng(0).integers(-500, 3000, size=(3, 7, 9)).astype(np.int16)
    path = aim.write_aim(tmp_path / "x.AIM", data, (0.082, 0.082, 0.082))
    ref = aim.read_aim_itk(path)
    np.testing.assert_array_equal(ref.data, data)
    np.testing.assert_allclose(ref.spacing, (0.082,) * 3, rtol=1e-4)


def test_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="x.AIM.*3D"):
        aim.write_aim(tmp_path / "x.AIM", np.zeros((4, 4), np.int16), 0.1)
    with pytest.raises(ValueError, match="x.AIM.*type"):
        aim.write_aim(tmp_path / "x.AIM", np.zeros((2, 4, 4), np.float64), 0.1)

    with pytest.raises(FileNotFoundError, match="missing.AIM"):
        aim.read_aim(tmp_path / "missing.AIM")
    bad = tmp_path / "bad.AIM"
    bad.write_bytes(b"not an aim file at all")
    with pytest.raises(ValueError, match="bad.AIM"):
        aim.read_aim(bad, backend="numpy")


def _patch_int32(path, offset, value):
    raw = bytearray(path.read_bytes())
    raw[offset:offset + 4] = np.int32(value).tobytes()
    path.write_bytes(bytes(raw))


def test_itk_and_numpy_readers_give_the_same_attenuation(tmp_path):
    """Bug fix: ITK names the scaling `MuScaling`; looked up as `Mu_Scaling` only, the
    values through ITK came out 8192 times too large (max 7996 instead of 0.976)."""
    pytest.importorskip("itk")
    if not aim.itk_available():
        pytest.skip("itk-ioscanco not installed")
    from hrpqct import data

    raw = np.random.default_rng(0).integers(-500, 8000, size=(8, 16, 16)).astype(np.int16)
    path = aim.write_aim(tmp_path / "scan.AIM", raw, 0.625, log={"Mu_Scaling": "8192"})
    assert "MuScaling" in aim.read_aim_itk(path).log and aim.read_aim_itk(path).mu_scaling == 8192.0
    by_numpy = data.load_scan_slices(path, backend="numpy")
    by_itk = data.load_scan_slices(path, backend="itk")
    np.testing.assert_array_equal(by_itk, by_numpy)
    np.testing.assert_allclose(by_numpy.max(), raw.max() / 8192.0, rtol=1e-6)


def test_header_sizes_are_checked_against_the_data(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    # V020 pre-header: five int32 (20, 140, log size, data size, 0).
    path = aim.write_aim(tmp_path / "neg.AIM", data, 0.1)
    _patch_int32(path, 8, -200)  # a negative log size used to read voxels from inside the header
    with pytest.raises(ValueError, match="neg.AIM: AIM pre-header sizes must be >= 0"):
        aim.read_aim_numpy(path)
    path = aim.write_aim(tmp_path / "size.AIM", data, 0.1)
    _patch_int32(path, 12, 10)
    with pytest.raises(ValueError, match=r"size.AIM: AIM pre-header data size 10 bytes does not match .*48 bytes"):
        aim.read_aim_numpy(path)
    path = aim.write_aim(tmp_path / "dims.AIM", data, 0.1)
    _patch_int32(path, 20 + 24 + 4 * 3, 5)  # x dimension 4 -> 5 (struct: 20 bytes, type, 3 position ints)
    with pytest.raises(ValueError, match="dims.AIM: AIM pre-header data size 48 .* 5x3x2"):
        aim.read_aim_numpy(path)
    path = aim.write_aim(tmp_path / "short.AIM", data, 0.1)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="short.AIM: truncated AIM data: expected 48 bytes"):
        aim.read_aim_numpy(path)
    path = aim.write_aim(tmp_path / "v3.AIM", data, 0.1, version="v030")
    raw = bytearray(path.read_bytes())
    raw[16:24] = np.int64(41).tobytes()
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"v3.AIM: AIM V030 pre-header must hold sizes \(40, 224\)"):
        aim.read_aim_numpy(path)


def test_bad_scaling_and_non_finite_voxels_are_refused(tmp_path):
    from hrpqct import data

    ok = np.full((8, 16, 16), 100, np.int16)
    for value in ("0", "-8192", "nan", "inf", "many"):
        path = aim.write_aim(tmp_path / "scale.AIM", ok, 0.1, log={"Mu_Scaling": value})
        with pytest.raises(ValueError, match="scale.AIM: field 'Mu_Scaling' must be a finite positive"):
            data.load_scan_slices(path)
    path = aim.write_aim(tmp_path / "plain.AIM", ok, 0.1)
    np.testing.assert_array_equal(data.load_scan_slices(path), 100.0)  # no scaling: raw values
    for bad in (np.nan, np.inf):
        vol = np.ones((8, 16, 16), np.float32)
        vol[3, 1, 2] = bad
        path = aim.write_aim(tmp_path / "nan.AIM", vol, 0.1)
        with pytest.raises(ValueError, match="nan.AIM: field 'data' must hold finite grey values.*1 NaN or Inf"):
            data.load_scan_slices(path)
