import numpy as np
import pytest

from hrpqct import motion, phantom, qme, tomography

N, OS, VIEWS = 48, 2, 96
PX = 0.125  # cm per reconstructed pixel


def _project(obj, traj=None):
    angles = tomography.acquisition_angles(VIEWS)
    n_det = tomography.default_detector_bins(N * OS, PX / OS, PX)
    kw = {} if traj is None else {"shift": traj.shift * PX, "rot": traj.rot}
    return tomography.forward_project(obj, angles, pixel_size=PX / OS, n_detector=n_det, detector_pitch=PX, **kw)


@pytest.fixture(scope="module")
def obj():
    return phantom.bone_phantom("radius", N * OS, n_slices=2, seed=3)


def _rmse(sino, ref):
    rec = tomography.fbp(sino[:-1], n=N, pixel_size=PX, detector_pitch=PX, window="shepp-logan")
    return float(np.sqrt(np.mean((rec - ref) ** 2)))


def test_projection_of_a_disc_matches_its_chord():
    # A uniform disc of radius R and attenuation mu projects to 2 mu sqrt(R^2 - s^2) at every angle.
    n, px = 128, 0.02
    c = (np.arange(n) - (n - 1) / 2) * px
    xx, yy = np.meshgrid(c, c)
    disc = (np.hypot(xx, yy) <= 0.8).astype(np.float32)[None] * 0.5
    angles = np.array([0.0, 0.7, np.pi / 2])
    n_det = 101
    sino = tomography.forward_project(disc, angles, pixel_size=px, n_detector=n_det, detector_pitch=0.04)
    s = (np.arange(n_det) - (n_det - 1) / 2) * 0.04
    expected = 2 * 0.5 * np.sqrt(np.clip(0.8 ** 2 - s ** 2, 0, None))
    for a in range(3):
        inner = np.abs(s) < 0.7
        np.testing.assert_allclose(sino[a, 0, inner], expected[inner], atol=0.03)


def test_fbp_of_static_phantom_reconstructs_it(obj):
    ref = phantom.downsample(obj, OS)
    err = _rmse(_project(obj), ref)
    # Small relative to the image contrast (cortical bone 0.9, soft tissue 0.2 per cm).
    assert err < 0.35 * ref.std()
    # The mean attenuation inside the limb is preserved.
    limb = ref > 0.1
    rec = tomography.fbp(_project(obj)[:-1], n=N, pixel_size=PX, detector_pitch=PX)
    assert abs(rec[limb].mean() - ref[limb].mean()) < 0.05 * ref[limb].mean()


def test_motion_error_grows_with_motion_size(obj):
    ref = phantom.downsample(obj, OS)
    static = _rmse(_project(obj), ref)
    errors = []
    for size in (1.0, 3.0, 8.0):
        traj = motion.sample_trajectory(VIEWS + 1, size=size, lever_arm=8.0, seed=5)
        errors.append(_rmse(_project(obj, traj), ref))
    assert static < errors[0] < errors[1] < errors[2]


def test_trajectory_is_scaled_to_the_size():
    traj = motion.sample_trajectory(200, size=3.0, lever_arm=10.0, seed=0)
    assert motion.motion_size(traj, 10.0) == pytest.approx(3.0, rel=1e-6)
    still = motion.sample_trajectory(200, size=0.0, lever_arm=10.0, seed=0)
    assert not still.shift.any() and not still.rot.any()


def test_qme_by_hand():
    p0 = np.array([[1.0, 2.0, 3.0]])
    p180 = np.array([[3.0, 2.0, 1.0]])  # the mirror image of p0: no motion
    p_next = np.array([[1.0, 2.0, 4.0]])
    q = qme.quantitative_motion_estimates(p0, p_next, p180)
    assert q["ssd_180"] == 0.0 and q["ssd_next"] == 1.0 and q["qme_ssd"] == 0.0
    ncc_next = (1 + 4 + 12) / np.sqrt(14 * 21)
    assert q["qme_ncc"] == pytest.approx(100 * np.sqrt(1.0 / ncc_next))
    with pytest.raises(ValueError, match="shape"):
        qme.quantitative_motion_estimates(p0, p_next, np.ones((2, 3)))


def _twitch(n, size):
    """The limb jumps by `size` pixels halfway through and stays there."""
    t = np.linspace(0, 1, n)
    shift = np.zeros((n, 2))
    shift[:, 0] = size * (t > 0.5)
    return motion.Trajectory(shift, np.zeros(n), ["twitch"])


def test_qme_near_no_motion_value_and_grows(obj):
    still = qme.qme_from_sinogram(_project(obj))
    # Without motion the mirrored 180-degree view equals the 0-degree view up to interpolation.
    assert still["qme_ssd"] < 0.05
    assert still["qme_ncc"] > 100 * np.sqrt(1 / still["ncc_next"]) - 0.01
    values = [qme.qme_from_sinogram(_project(obj, _twitch(VIEWS + 1, s)))["qme_ssd"] for s in (0.5, 1.5, 4.0)]
    assert still["qme_ssd"] < values[0] < values[1] < values[2]


def test_grades_and_raters():
    assert motion.grade_from_motion([0.0, 0.5, 1.0, 2.0, 3.0, 9.0]).tolist() == [1, 2, 2, 3, 4, 5]
    g = motion.sample_grades("tibia", 499, seed=0)
    assert np.bincount(g, minlength=6)[1:].tolist() == list(motion.THESIS_GRADE_COUNTS["tibia"])
    sizes = np.concatenate([[motion.sample_motion_size(int(k), seed=i) for i, k in enumerate(g)]])
    raters = motion.simulate_raters(sizes, seed=1, noise=0.3)
    disagree = np.mean(np.any(raters != raters[:, :1], axis=1))
    assert 0.1 < disagree < 0.45
    assert motion.consensus([[1, 2, np.nan], [2, 3, 3]]).tolist() == [2, 3]
    with pytest.raises(ValueError, match="grade"):
        motion.sample_motion_size(6, seed=0)
    with pytest.raises(ValueError, match="site"):
        phantom.bone_phantom("femur", 32, n_slices=1, seed=0)
