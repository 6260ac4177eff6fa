"""Any AIM to the graders' input: centred on the limb, cropped or padded, resampled in mm."""

import numpy as np
import pytest
from scipy import ndimage

from hrpqct import aim, data, grading
from hrpqct.scan_input import MIN_SLICE_PIXELS, LimbNotFound, limb_centre, model_input

pytestmark = pytest.mark.no_keras


def _disc(shape, centre, radius, value=0.2, slices=2):
    rows, cols = np.indices(shape)
    disc = ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius ** 2) * value
    return np.repeat(disc[None].astype(np.float32), slices, axis=0)


def test_a_centred_square_scan_at_the_output_grid_is_copied():
    x = _disc((32, 32), (15.5, 15.5), 10)
    out, measured = model_input(x, 2.5, field_of_view_mm=80.0, image_size=32)
    np.testing.assert_array_equal(out, x)
    assert measured.all()


def test_an_off_centre_limb_is_centred_and_the_padding_is_not_measured():
    # Limb centre at row 10, column 20 of a 40 x 50 scan at 2.5 mm; the 80 mm field is
    # 32 pixels, so its corner is at row 10 - 15.5 -> -6 (snapped), column 20 - 15.5 -> 4.
    x = _disc((40, 50), (10, 20), 6)
    assert limb_centre(x, (2.5, 2.5)) == pytest.approx((10.0, 20.0))
    out, measured = model_input(x, 2.5, field_of_view_mm=80.0, image_size=32)
    assert out.shape == (2, 32, 32)
    np.testing.assert_array_equal(out[0], np.pad(x[0], ((6, 0), (0, 0)))[:32, 4:36])
    assert not measured[:6].any() and measured[6:].all()
    rows, cols = np.nonzero(out[0])
    assert abs(rows.mean() - 16) <= 0.5 and abs(cols.mean() - 16) <= 0.5


def test_a_cropped_scan_without_air_keeps_its_size_in_mm_and_has_no_air():
    # A 20 x 28 scan that is all limb (cropped to it), 2.5 mm pixels: 50 x 70 mm inside
    # the 80 mm field, padded with air that was never measured.
    x = np.full((3, 20, 28), 0.2, np.float32)
    out, measured = model_input(x, 2.5, field_of_view_mm=80.0, image_size=32)
    assert measured.sum() == 20 * 28 and np.all(out[:, measured] == np.float32(0.2))
    assert np.all(out[:, ~measured] == 0)
    # The air-streak statistic reads only air that exists: none here. Counting the padding
    # as air (no mask) would report a streak-free scan.
    assert np.isnan(grading.air_streak_rms(out[None], measured=measured[None]))[0]
    assert grading.air_streak_rms(out[None])[0] == 0.0


def test_resampling_applies_the_prefilter_in_mm_with_anti_aliasing():
    # 64 x 64 at 1.25 mm onto 32 pixels of 2.5 mm: every second source pixel after a
    # Gaussian of sigma hypot(0.5 mm / 1.25 mm, (2 - 1) / 2) source pixels. The disc is
    # centred on pixel 32, so the field's corner is source pixel 32 - 15.5 * 2 = 1.
    x = _disc((64, 64), (32, 32), 20, slices=1) + np.random.default_rng(0).normal(0, 0.01, (1, 64, 64))
    x = x.astype(np.float32)
    out, measured = model_input(x, 1.25, field_of_view_mm=80.0, image_size=32, prefilter_mm=0.5)
    sigma = np.hypot(0.5 / 1.25, 0.5)
    expected = ndimage.gaussian_filter(x[0], sigma, mode="nearest")[1::2, 1::2]
    assert measured[:, :].sum() == 32 * 32
    np.testing.assert_allclose(out[0], expected, atol=1e-6)
    # At the output's own pixel size only the prefilter acts: 0.5 mm on 2.5 mm pixels.
    y = _disc((32, 32), (15.5, 15.5), 10, slices=1)
    out, _ = model_input(y, 2.5, field_of_view_mm=80.0, image_size=32, prefilter_mm=0.5)
    np.testing.assert_allclose(out[0], ndimage.gaussian_filter(y[0], 0.2, mode="nearest"), atol=1e-6)


def test_errors():
    with pytest.raises(LimbNotFound, match="no limb"):
        model_input(np.zeros((2, 32, 32), np.float32), 2.5, field_of_view_mm=80.0, image_size=32)
    with pytest.raises(ValueError, match=f"at least {MIN_SLICE_PIXELS} x {MIN_SLICE_PIXELS}.*12 x 40"):
        model_input(np.ones((2, 12, 40), np.float32), 2.5, field_of_view_mm=80.0)
    with pytest.raises(ValueError, match="element size"):
        model_input(np.ones((2, 20, 20), np.float32), 0.0, field_of_view_mm=80.0)


def _limb_only(shape, rng):
    """A scan cropped to the limb: soft tissue everywhere, a bone inside, no air."""
    rows, cols = np.indices(shape)
    bone = ((rows - shape[0] * 0.45) ** 2 + (cols - shape[1] * 0.55) ** 2) <= (min(shape) * 0.25) ** 2
    slices = np.where(bone, 0.9, 0.2) + rng.normal(0, 0.005, (8,) + shape)
    return np.round(slices * 8192).astype(np.int16)


def test_aim_files_of_several_non_square_sizes_without_air_through_the_reader(tmp_path):
    rng = np.random.default_rng(0)
    sizes = {"a": ((20, 28), 2.5), "b": ((30, 24), 2.5), "c": ((56, 40), 1.25), "d": ((17, 61), 1.1)}
    (tmp_path / "aim").mkdir()
    for scan_id, (shape, pixel) in sizes.items():
        aim.write_aim(tmp_path / "aim" / f"{scan_id}.AIM", _limb_only(shape, rng), pixel,
                      log={"Mu_Scaling": "8192"})
    (tmp_path / "grades.csv").write_text("scan_id,site,rater1,rater2,rater3\na,radius,1,1,1\nb,tibia,2,2,3\n"
                                         "c,radius,3,3,3\nd,tibia,5,4,5\n")
    d = data.load_dataset(tmp_path, image_size=32, field_of_view_mm=80.0)
    assert d["images"].shape == (4, 8, 32, 32) and d["measured"].shape == (4, 32, 32)
    # Measured pixels: the scan's extent in mm over 2.5 mm output pixels.
    for i, (shape, pixel) in enumerate(sizes.values()):
        extent = [min(32, int(np.floor((s - 1) * pixel / 2.5)) + 1) for s in shape]
        assert abs(int(d["measured"][i].any(axis=1).sum()) - extent[0]) <= 1
        assert abs(int(d["measured"][i].any(axis=0).sum()) - extent[1]) <= 1
    inside = d["images"][:, 0][d["measured"]]
    assert inside.min() > 0.15 and inside.max() < 1.0
    assert np.all(np.isnan(grading.air_streak_rms(d["images"], measured=d["measured"])))
    # Without --image-size, files of different pixel sizes cannot share one array.
    with pytest.raises(ValueError, match="c.AIM: field 'element size'.*--image-size"):
        data.load_dataset(tmp_path)


def test_a_simulated_scan_goes_through_the_same_path(tmp_path):
    # A square simulated scan with air around the limb: at its own grid it is only shifted
    # (by whole pixels) to centre the limb, values unchanged.
    root = data.generate_dataset(tmp_path / "d", scans_per_site={"radius": 3, "tibia": 2}, seed=0, image_size=32,
                                 oversample=2, stack_slices=8, n_projections=48, field_of_view_mm=80.0,
                                 projection_noise=0.001, fbp_window="shepp-logan", grade_counts="uniform",
                                 rater_noise=0.3, projections="none")
    d = data.load_dataset(root, image_size=32, field_of_view_mm=80.0)
    for i, scan_id in enumerate(d["scan_ids"]):
        raw = aim.read_aim(root / "aim" / f"{scan_id}.AIM").data.astype(np.float32) / 8192.0
        r0, c0 = (round(c - 15.5) for c in limb_centre(raw, (2.5, 2.5)))
        padded = np.pad(raw, ((0, 0), (32, 32), (32, 32)))[:, 32 + r0:64 + r0, 32 + c0:64 + c0]
        np.testing.assert_array_equal(d["images"][i], padded)
        assert abs(r0) <= 3 and abs(c0) <= 3
    assert np.all(np.isfinite(grading.air_streak_rms(d["images"], measured=d["measured"])))
