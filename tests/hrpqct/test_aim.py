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
