import numpy as np
import pytest

from hrpqct import motion, phantom, qme, tomography

N, OS, VIEWS = 48, 2, 96
PX = 0.125  # cm per reconstructed pixel
LEVER_MM = 14.0


def _project(obj, traj=None):
    """The exact (view-by-view) projector; trajectories are in mm, the projector works in cm."""
    angles = tomography.acquisition_angles(VIEWS)
    n_det = tomography.default_detector_bins(N * OS, PX / OS, PX)
    kw = {} if traj is None else {"shift": traj.shift / 10.0, "rot": traj.rot}
    return tomography.forward_project(obj, angles, pixel_size=PX / OS, n_detector=n_det, detector_pitch=PX, **kw)


def _project_rigid(obj, traj=None):
    n_det = tomography.default_detector_bins(N * OS, PX / OS, PX)
    kw = {} if traj is None else {"shift": traj.shift / 10.0, "rot": traj.rot}
    return tomography.forward_project_rigid(obj, VIEWS, pixel_size=PX / OS, n_detector=n_det, detector_pitch=PX,
                                            **kw)


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
    for size in (0.2, 0.6, 1.6):
        traj = motion.sample_trajectory(VIEWS + 1, size=size, lever_arm=LEVER_MM, seed=5)
        errors.append(_rmse(_project(obj, traj), ref))
    assert static < errors[0] < errors[1] < errors[2]


def test_rigid_projector_matches_the_exact_one(obj):
    still = _project(obj)
    # Without motion the cached still views are the exact projector's views.
    np.testing.assert_allclose(_project_rigid(obj), still, atol=1e-5)
    # With motion: to interpolation accuracy, a small fraction of what the motion changes.
    traj = motion.sample_trajectory(VIEWS + 1, size=0.8, lever_arm=LEVER_MM, seed=2)
    traj.rot[:] += 0.03 * np.sin(np.linspace(0.0, 3.0, VIEWS + 1))  # about 2 views of rotation
    exact, fast = _project(obj, traj), _project_rigid(obj, traj)
    change = np.sqrt(np.mean((exact - still) ** 2))
    assert np.sqrt(np.mean((fast - exact) ** 2)) < 0.2 * change
    # Too large to cache (the paper preset): the still views come from the chunked projector, same result.
    n_det = tomography.default_detector_bins(N * OS, PX / OS, PX)
    uncached = tomography.forward_project_rigid(obj, VIEWS, pixel_size=PX / OS, n_detector=n_det, detector_pitch=PX,
                                                shift=traj.shift / 10.0, rot=traj.rot, max_cached_entries=0)
    np.testing.assert_allclose(uncached, fast, atol=1e-4)
    with pytest.raises(ValueError, match="shift must be"):
        tomography.forward_project_rigid(obj, VIEWS, pixel_size=PX / OS, n_detector=80, detector_pitch=PX,
                                         shift=np.zeros((VIEWS, 2)))


def test_artefact_energy_grows_monotonically_with_motion_size(obj):
    # The grade is drawn from the RMS outline displacement because the artefact
    # (reconstruction minus the still reconstruction) grows with it, whatever the
    # kind of event: Spearman over random trajectories of sizes 0.05-2 mm.
    from scipy.stats import spearmanr

    still = tomography.fbp(_project_rigid(obj)[:-1], n=N, pixel_size=PX, detector_pitch=PX)
    rng = np.random.default_rng(0)
    sizes = np.exp(rng.uniform(np.log(0.05), np.log(2.0), 16))
    energy = []
    for size in sizes:
        traj = motion.sample_trajectory(VIEWS + 1, size=size, lever_arm=LEVER_MM, seed=rng)
        rec = tomography.fbp(_project_rigid(obj, traj)[:-1], n=N, pixel_size=PX, detector_pitch=PX)
        energy.append(np.sqrt(np.mean((rec - still) ** 2)))
    assert spearmanr(sizes, energy)[0] > 0.85


def test_trajectory_is_scaled_to_the_size():
    traj = motion.sample_trajectory(200, size=0.7, lever_arm=10.0, seed=0)
    assert motion.motion_size(traj, 10.0) == pytest.approx(0.7, rel=1e-6)
    still = motion.sample_trajectory(200, size=0.0, lever_arm=10.0, seed=0)
    assert not still.shift.any() and not still.rot.any()


def test_motion_size_by_hand():
    # A 2 mm jump halfway that stays: every view is 1 mm from the mean position.
    shift = np.zeros((100, 2))
    shift[50:, 0] = 2.0
    assert motion.motion_size(motion.Trajectory(shift, np.zeros(100), []), 10.0) == pytest.approx(1.0)
    # A 2 mm excursion during 10 of 100 views: 1.8 mm then, 0.2 mm otherwise.
    shift = np.zeros((100, 2))
    shift[40:50, 1] = 2.0
    expected = np.sqrt(0.1 * 1.8 ** 2 + 0.9 * 0.2 ** 2)
    assert motion.motion_size(motion.Trajectory(shift, np.zeros(100), []), 10.0) == pytest.approx(expected)
    # A rotation of 0.01 rad for half the views moves an outline 10 mm away by 0.1 mm: 0.05 mm each side.
    rot = np.where(np.arange(100) < 50, 0.0, 0.01)
    assert motion.motion_size(motion.Trajectory(np.zeros((100, 2)), rot, []), 10.0) == pytest.approx(0.05)


def test_qme_by_hand():
    p0 = np.array([[1.0, 2.0, 3.0]])
    p180 = np.array([[3.0, 2.0, 1.0]])  # the mirror image of p0: no motion
    p_next = np.array([[1.0, 2.0, 4.0]])
    q = qme.quantitative_motion_estimates(p0, p_next, p180)
    assert q["ssd_180"] == 0.0 and q["ssd_next"] == 1.0 and q["qme_ssd"] == 0.0
    ncc_next = (1 + 4 + 12) / np.sqrt(14 * 21)
    # Default: the deviation of NCC from 1, normalised by the neighbour's deviation: 0 / (1 - ncc_next).
    assert q["qme_ncc"] == q["qme_ncc_deviation"] == 0.0
    assert q["qme_ncc_printed"] == pytest.approx(100 * np.sqrt(1.0 / ncc_next))
    printed = qme.quantitative_motion_estimates(p0, p_next, p180, ncc_form="printed")
    assert printed["qme_ncc"] == pytest.approx(100 * np.sqrt(1.0 / ncc_next))
    # A moved 180-degree view (mirrored: 1, 3, 3): NCC = (1 + 6 + 9) / sqrt(14 * 19).
    moved = qme.quantitative_motion_estimates(p0, p_next, np.array([[3.0, 3.0, 1.0]]))
    ncc_180 = 16 / np.sqrt(14 * 19)
    assert moved["qme_ncc"] == pytest.approx((1 - ncc_180) / (1 - ncc_next))
    assert moved["qme_ncc_printed"] == pytest.approx(100 * np.sqrt(ncc_180 / ncc_next))
    with pytest.raises(ValueError, match="ncc_form"):
        qme.quantitative_motion_estimates(p0, p_next, p180, ncc_form="garbled")
    with pytest.raises(ValueError, match="shape"):
        qme.quantitative_motion_estimates(p0, p_next, np.ones((2, 3)))


def _twitch(n, size):
    """The limb jumps by `size` mm halfway through and stays there."""
    t = np.linspace(0, 1, n)
    shift = np.zeros((n, 2))
    shift[:, 0] = size * (t > 0.5)
    return motion.Trajectory(shift, np.zeros(n), ["twitch"])


def test_qme_near_no_motion_value_and_grows(obj):
    still = qme.qme_from_sinogram(_project(obj))
    # Without motion the mirrored 180-degree view equals the 0-degree view up to interpolation.
    assert still["qme_ssd"] < 0.05
    assert still["qme_ncc_printed"] > 100 * np.sqrt(1 / still["ncc_next"]) - 0.01
    moved = [qme.qme_from_sinogram(_project(obj, _twitch(VIEWS + 1, s))) for s in (0.5, 1.5, 4.0)]
    values = [q["qme_ssd"] for q in moved]
    fast = [qme.qme_from_sinogram(_project_rigid(obj, _twitch(VIEWS + 1, s)))["qme_ssd"] for s in (0.5, 1.5, 4.0)]
    np.testing.assert_allclose(fast, values, rtol=0.2)
    assert still["qme_ssd"] < values[0] < values[1] < values[2]
    # The deviation form of QME_NCC grows with the motion as QME_SSD does; the printed form falls.
    ncc = [still["qme_ncc"]] + [q["qme_ncc"] for q in moved]
    printed = [still["qme_ncc_printed"]] + [q["qme_ncc_printed"] for q in moved]
    assert ncc == sorted(ncc) and printed == sorted(printed, reverse=True)


def test_grades_and_raters():
    # Band edges 0.2, 0.5, 1.0 and 2.0 mm.
    assert motion.grade_from_motion([0.0, 0.2, 0.4, 0.6, 1.5, 3.0]).tolist() == [1, 2, 2, 3, 4, 5]
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
