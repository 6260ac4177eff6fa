"""ROAD: noisy linear imputation against hand-derived fills and the reference sparse solve."""

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg

from shared import explain
from tests.shared.explain._models import region_mean_model


def _ramp_2d(h, w):
    """Two channels, each a linear function of the pixel position."""
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    ramps = np.stack([0.3 * i - 0.7 * j + 2.0, -1.1 * i + 0.2 * j], axis=-1)
    return ramps[None].astype(np.float32)


def _interior_mask(shape, rng, fraction=0.6):
    """Random removed pixels away from the border, plus one solid block."""
    removed = np.zeros(shape, bool)
    inner = tuple(slice(1, s - 1) for s in shape)
    removed[inner] = rng.uniform(size=tuple(s - 2 for s in shape)) < fraction
    removed[tuple(slice(2, min(6, s - 1)) for s in shape)] = True
    return removed


def test_2d_weights_are_the_papers():
    weights = dict(explain.neighbour_weights(2))
    assert weights[(0, 1)] == pytest.approx(1 / 6) and weights[(-1, 0)] == pytest.approx(1 / 6)
    assert weights[(1, 1)] == pytest.approx(1 / 12) and weights[(-1, 1)] == pytest.approx(1 / 12)
    weights_3d = dict(explain.neighbour_weights(3))
    assert len(weights_3d) == 26 and sum(weights_3d.values()) == pytest.approx(1.0)
    assert weights_3d[(0, 0, 1)] == pytest.approx(2 * weights_3d[(0, 1, 1)])
    assert weights_3d[(0, 0, 1)] == pytest.approx(3 * weights_3d[(1, 1, 1)])


# float64 solves to 1e-10 give the fill to float32 rounding; the float32 default
# (relative residual 1e-6) to within 1e-4 on these small images.
SOLVERS = [pytest.param({"solver_dtype": "float64", "tolerance": 1e-10}, 1e-5, id="float64"),
           pytest.param({}, 1e-4, id="float32")]


@pytest.mark.parametrize("solver,atol", SOLVERS)
def test_a_linear_ramp_is_filled_back_exactly_without_noise(solver, atol):
    # Interior pixels of a linear ramp equal the weighted mean of their 8 neighbours
    # (symmetric stencil), so the ramp solves the system: the fill is the ramp itself.
    image = _ramp_2d(10, 12)
    removed = _interior_mask((10, 12), np.random.default_rng(0))[None]
    filled = explain.noisy_linear_imputation(image, removed, noise_std=0.0, **solver).numpy()
    np.testing.assert_allclose(filled, image, atol=atol)
    np.testing.assert_array_equal(filled[~removed], image[~removed])


@pytest.mark.parametrize("solver,atol", SOLVERS)
def test_a_linear_ramp_volume_is_filled_back_exactly(solver, atol):
    d = h = w = 7
    i, j, k = np.meshgrid(np.arange(d), np.arange(h), np.arange(w), indexing="ij")
    volume = (0.5 * i - 0.25 * j + 0.8 * k + 1.0)[None, ..., None].astype(np.float32)
    removed = _interior_mask((d, h, w), np.random.default_rng(1))[None]
    filled = explain.noisy_linear_imputation(volume, removed, noise_std=0.0, **solver).numpy()
    np.testing.assert_allclose(filled, volume, atol=atol)


# The reference code's weights, written out (not read from the module under test).
ROAD_WEIGHTS = [((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12),
                ((0, -1), 1 / 6), ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6)]


def _reference_fill(image, removed):
    """Rong et al.'s system built with scipy as their `NoisyLinearImputer` does; spsolve."""
    h, w, c = image.shape
    unknown = np.flatnonzero(removed.ravel())
    index = -np.ones(h * w, int)
    index[unknown] = np.arange(unknown.size)
    a = scipy.sparse.lil_matrix((unknown.size, unknown.size))
    b = np.zeros((unknown.size, c))
    flat = image.reshape(-1, c)
    for row, p in enumerate(unknown):
        i, j = divmod(p, w)
        total = 0.0
        for (di, dj), weight in ROAD_WEIGHTS:
            ii, jj = i + di, j + dj
            if not (0 <= ii < h and 0 <= jj < w):
                continue
            total += weight
            q = ii * w + jj
            if removed.ravel()[q]:
                a[row, index[q]] = weight
            else:
                b[row] -= weight * flat[q]
        a[row, row] = -total
    solution = scipy.sparse.linalg.spsolve(scipy.sparse.csc_matrix(a), b)
    out = flat.copy()
    out[unknown] = solution.reshape(unknown.size, c)
    return out.reshape(h, w, c)


def test_matches_the_reference_sparse_solve_at_the_borders_too():
    rng = np.random.default_rng(2)
    images = rng.normal(size=(2, 7, 9, 2)).astype(np.float32)
    removed = rng.uniform(size=(2, 7, 9)) < 0.5
    removed[:, 0, :4] = True  # a stretch of the top border and a corner
    filled = explain.noisy_linear_imputation(images, removed, noise_std=0.0,
                                             solver_dtype="float64", tolerance=1e-10).numpy()
    for n in range(2):
        np.testing.assert_allclose(filled[n], _reference_fill(images[n], removed[n]), atol=1e-5)


def test_noise_is_seeded_and_only_on_removed_pixels():
    image = _ramp_2d(16, 16)
    removed = _interior_mask((16, 16), np.random.default_rng(3), fraction=0.9)[None]
    a = explain.noisy_linear_imputation(image, removed, noise_std=0.1, seed=5).numpy()
    b = explain.noisy_linear_imputation(image, removed, noise_std=0.1, seed=5).numpy()
    c = explain.noisy_linear_imputation(image, removed, noise_std=0.1, seed=6).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_array_equal(a[~removed], image[~removed])
    noise = (a - image)[removed]
    assert 0.08 < noise.std() < 0.12 and abs(noise.mean()) < 0.03


def test_an_image_with_nothing_removed_is_unchanged():
    image = _ramp_2d(5, 5)
    filled = explain.noisy_linear_imputation(image, np.zeros((1, 5, 5)), noise_std=0.5)
    np.testing.assert_array_equal(filled.numpy(), image)


def test_every_pixel_removed_is_refused():
    with pytest.raises(ValueError, match=r"^removed must leave at least one pixel .* \[1\]$"):
        explain.noisy_linear_imputation(np.zeros((2, 4, 4, 1)),
                                        np.stack([np.eye(4), np.ones((4, 4))]))


def test_too_few_iterations_warn():
    image = _ramp_2d(16, 16)
    removed = _interior_mask((16, 16), np.random.default_rng(4), fraction=1.0)[None]
    with pytest.warns(RuntimeWarning, match="max_iterations"):
        explain.noisy_linear_imputation(image, removed, noise_std=0.0, max_iterations=2)


def test_road_curve_removes_the_evidence_first_or_last():
    # An 8 x 8 image, 1 on a central 2 x 2 region, 0 elsewhere; the model reads the
    # region's mean. MoRF with the region ranked first removes the region by fraction
    # 4/64; every known pixel is then 0, so the fill is 0 and the score 0. LeRF removes
    # background pixels only (up to 57 of 60) and leaves the region, score 1.
    region = np.zeros((8, 8), np.float32)
    region[3:5, 3:5] = 1.0
    images = region[None, ..., None]
    fractions = (4 / 64, 0.5, 0.89)
    model = region_mean_model(region)
    morf = explain.road_curve(model, images, region[None], 0, fractions=fractions,
                              noise_std=0.0)
    lerf = explain.road_curve(model, images, region[None], 0, fractions=fractions,
                              order="least_relevant_first", noise_std=0.0)
    np.testing.assert_allclose(morf.scores.numpy(), [[0, 0, 0]], atol=1e-5)
    np.testing.assert_allclose(lerf.scores.numpy(), [[1, 1, 1]], atol=1e-5)
    np.testing.assert_allclose(morf.fractions.numpy(), fractions, atol=1e-7)


def test_road_on_a_constant_image_leaves_no_artefact():
    # The weighted mean of a constant is that constant, at the border too: removal by
    # imputation does not move the score, where deletion to a zero baseline does.
    region = np.zeros((6, 6), np.float32)
    region[:3] = 1.0
    images = np.full((1, 6, 6, 1), 2.0, np.float32)
    model = region_mean_model(region)
    road = explain.road_curve(model, images, region[None], 0, noise_std=0.0)
    np.testing.assert_allclose(road.scores.numpy(), np.full((1, 9), 2.0), atol=1e-5)
    deletion = explain.deletion_curve(model, images, region[None], 0, steps=2)
    np.testing.assert_allclose(deletion.scores.numpy(), [[2, 0, 0]], atol=1e-6)
