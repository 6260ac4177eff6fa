"""ROAD: removal with noisy linear imputation (Rong et al. 2022), 2D and 3D.

Rong, Leemann, Borisov, Kasneci and Kasneci, "A Consistent and Efficient Evaluation
Strategy for Attribution Methods" (ICML 2022). Replacing removed pixels by a constant
leaves a mask-shaped artefact the model can read, and the shape of the mask leaks the
attribution itself. ROAD fills each removed pixel with the weighted mean of its
neighbours instead, the removed neighbours being unknowns too, so the filling is the
solution of one sparse linear system per image, and adds a little Gaussian noise so the
fill carries no exact trace of the mask.

The system, as in the reference code (github.com/tleemann/road_evaluation,
`imputations.py`, `NoisyLinearImputer`): for every removed pixel i,

    sum_{j in N(i)} w_j * (x_i - x_j) = 0,

over the in-image neighbours N(i) of the 8-neighbourhood, direct neighbours weighted 1/6
and diagonal ones 1/12. For volumes the 26-neighbourhood is weighted by 1 / squared
distance (face 1, edge 1/2, corner 1/3, normalised to sum to 1), which gives the 2D
weights back in 2D; it is this module's extension, not the paper's. Linear intensity
ramps satisfy the equation at interior pixels, so a ramp is filled back exactly.

The reference code builds the system with scipy and solves it with `spsolve`, one image
at a time. Here the matrix is never formed: its product with a vector is the stencil
above (one 3 x 3 or 3 x 3 x 3 convolution of the whole batch), and the symmetric positive
definite system is solved for every image and channel at once by Jacobi-preconditioned
conjugate gradients (float32 by default, float64 on request). The system is singular
only when every pixel of an image is removed, which is refused.
"""

from __future__ import annotations

import itertools
import numbers
import warnings

import numpy as np
import tensorflow as tf

from shared.explain.deletion import PerturbationCurve, pixel_ranks
from shared.explain.scoring import target_scores
from shared.explain.validation import (
    check_images,
    check_maps,
    check_non_negative,
    check_positive_int,
    check_seed,
    on_image_grid,
)

ORDERS = ("most_relevant_first", "least_relevant_first")
DEFAULT_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def neighbour_weights(spatial_dims):
    """Offsets and weights of the imputation stencil: 1 / squared distance, sum 1.

    In 2D these are Rong et al.'s weights: 1/6 for the four direct neighbours, 1/12 for
    the four diagonal ones.

    Returns:
        list of (offset tuple, float weight).
    """
    offsets = [o for o in itertools.product((-1, 0, 1), repeat=spatial_dims) if any(o)]
    raw = np.array([1.0 / sum(abs(c) for c in o) for o in offsets])
    return list(zip(offsets, (raw / raw.sum()).tolist()))


def _stencil_kernel(spatial_dims, dtype):
    """The stencil as a 3 x 3 (x 3) one-channel convolution kernel."""
    kernel = np.zeros((3,) * spatial_dims)
    for offset, weight in neighbour_weights(spatial_dims):
        kernel[tuple(o + 1 for o in offset)] = weight
    return tf.constant(kernel[..., None, None], dtype)


def _neighbour_sum(x, kernel):
    """sum_j w_j x_j over the in-image neighbours of x [B, *spatial, 1] (zero padding)."""
    if len(x.shape) == 4:
        return tf.nn.conv2d(x, kernel, strides=1, padding="SAME")
    return tf.nn.conv3d(x, kernel, strides=[1] * 5, padding="SAME")


# Static shapes (one trace per image shape and dtype).
@tf.function(autograph=False)
def _solve(images, removed, tolerance, max_iterations):
    """Preconditioned conjugate gradients for the imputed values.

    `images` and `removed` are [B, *spatial, 1] (channels folded into the batch), of the
    solver's dtype. Returns (values, iterations, largest relative residual).
    """
    kernel = _stencil_kernel(len(images.shape) - 2, images.dtype)
    m = removed
    known = (1.0 - m) * images
    # Diagonal: the summed weights of the neighbours that lie inside the image.
    diag = _neighbour_sum(tf.ones_like(images[:1]), kernel)
    b = m * _neighbour_sum(known, kernel)
    axes = list(range(1, len(images.shape)))

    def apply(u):
        return m * (diag * u - _neighbour_sum(u, kernel))

    def dot(a, c):
        return tf.reduce_sum(a * c, axis=axes, keepdims=True)

    b_norm = tf.sqrt(dot(b, b))
    # Start from the mean of the known pixels of each image and channel.
    mean_known = tf.math.divide_no_nan(
        tf.reduce_sum(known, axis=axes, keepdims=True),
        tf.reduce_sum(1.0 - m, axis=axes, keepdims=True),
    )
    u = m * mean_known
    r = b - apply(u)
    z = m * r / diag
    p = z
    rz = dot(r, z)

    def not_done(i, u, r, p, rz):
        # A right-hand side of 0 has the solution 0: its residual is 0 and it is done.
        return tf.logical_and(i < max_iterations,
                              tf.reduce_any(tf.sqrt(dot(r, r)) > tolerance * b_norm))

    def step(i, u, r, p, rz):
        ap = apply(p)
        alpha = tf.math.divide_no_nan(rz, dot(p, ap))
        u = u + alpha * p
        r = r - alpha * ap
        z = m * r / diag
        rz_new = dot(r, z)
        p = z + tf.math.divide_no_nan(rz_new, rz) * p
        return i + 1, u, r, p, rz_new

    i, u, r, _, _ = tf.while_loop(not_done, step, [tf.constant(0), u, r, p, rz])
    relative = tf.math.divide_no_nan(tf.sqrt(dot(r, r)), b_norm)
    return u, i, tf.reduce_max(relative)


SOLVER_DTYPES = ("float32", "float64")


def _fold_channels(x):
    """[N, *spatial, C] -> [N * C, *spatial, 1]: one system per image and channel."""
    rank = len(x.shape)
    moved = tf.transpose(x, [0, rank - 1] + list(range(1, rank - 1)))
    return tf.reshape(moved, [-1] + list(x.shape[1:-1]) + [1])


def _unfold_channels(x, shape):
    rank = len(shape)
    moved = tf.reshape(x, [shape[0], shape[-1]] + list(shape[1:-1]))
    return tf.transpose(moved, [0] + list(range(2, rank)) + [1])


def noisy_linear_imputation(images, removed, *, noise_std=0.01, seed=0, tolerance=1e-6,
                            max_iterations=None, solver_dtype="float32"):
    """Fills removed pixels by linear imputation plus Gaussian noise (Rong et al. 2022).

    Args:
        images: float [N, H, W, C] or [N, D, H, W, C].
        removed: [N, *spatial] or [N, *spatial, 1], nonzero where a pixel is removed
            (all its channels). An image with no removed pixel comes back unchanged.
        noise_std: float >= 0, default 0.01 (the reference code's), in image units: the
            standard deviation of the noise added to each imputed value and channel.
        seed: int, default 0. Seeds the noise (stateless: the same seed, the same fill).
        tolerance: float, default 1e-6. Conjugate gradients stop when every image's
            residual norm is below `tolerance` times its right-hand side's. In float32,
            1e-6 leaves fill errors of about 1e-4 of the image's scale (far below the
            default noise); lower tolerances need `solver_dtype="float64"`.
        max_iterations: int, optional. Default: 4 x the sum of the spatial sizes + 100.
            A solve that stops there warns with its relative residual.
        solver_dtype: "float32" (default) or "float64", the precision of the solve.
            float64 took about seven times as long on a 2-core CPU.

    Returns:
        float32 tensor of the shape of `images`: the known pixels as they were, the
        removed ones imputed.

    Raises:
        ValueError: bad shapes, non-finite values, an image with every pixel removed.
    """
    images = check_images(images)
    removed = _check_removed(removed, images)
    noise_std = check_non_negative(noise_std, "noise_std")
    seed = check_seed(seed)
    spatial = images.shape[1:-1]
    if max_iterations is None:
        max_iterations = 4 * sum(spatial) + 100
    max_iterations = check_positive_int(max_iterations, "max_iterations")
    if not isinstance(tolerance, numbers.Real) or not tolerance > 0:
        raise ValueError(f"tolerance must be a number > 0. Received: tolerance={tolerance!r}")
    if solver_dtype not in SOLVER_DTYPES:
        raise ValueError(f"solver_dtype must be one of {SOLVER_DTYPES}. Received: "
                         f"solver_dtype={solver_dtype!r}")
    axes = list(range(1, len(removed.shape)))
    full = tf.where(tf.reduce_min(removed, axis=axes) > 0.5)[:, 0].numpy().tolist()
    if full:
        raise ValueError(
            "removed must leave at least one pixel of every image to impute from. Received: "
            f"every pixel removed in sample(s) {full}"
        )
    m = removed[..., None]
    dtype = tf.as_dtype(solver_dtype)
    channels = images.shape[-1]
    values, iterations, residual = _solve(
        tf.cast(_fold_channels(images), dtype),
        tf.cast(_fold_channels(tf.repeat(m, channels, axis=-1)), dtype),
        tf.constant(float(tolerance), dtype), tf.constant(max_iterations),
    )
    if int(iterations) >= max_iterations and float(residual) > tolerance:
        warnings.warn(
            f"noisy_linear_imputation: conjugate gradients stopped after {int(iterations)} "
            f"iterations with relative residual {float(residual):.2e} (tolerance "
            f"{tolerance:g}); pass a larger max_iterations.",
            RuntimeWarning,
            stacklevel=2,
        )
    filled = _unfold_channels(tf.cast(values, tf.float32), images.shape)
    if noise_std > 0:
        filled += noise_std * tf.random.stateless_normal(tf.shape(images), seed=[seed, 0])
    return tf.where(m > 0.5, filled, images)


def _check_removed(removed, images):
    return tf.cast(tf.not_equal(on_image_grid(removed, images, "removed"), 0.0), tf.float32)


def road_curve(model, images, maps, targets, *, fractions=DEFAULT_FRACTIONS,
               order="most_relevant_first", noise_std=0.01, seed=0, tolerance=1e-6,
               max_iterations=None, solver_dtype="float32"):
    """Target scores after removing a fraction of the pixels by noisy linear imputation.

    ROAD (Rong et al. 2022): for each fraction f, the `floor(f * P)` most attributed
    pixels ("most_relevant_first", MoRF: a good map makes the score fall fast, a small
    area) or least attributed ones ("least_relevant_first", LeRF: a good map keeps the
    score, a large area) are removed and imputed; the batch is imputed and scored at
    once for each fraction.

    Args:
        model, images, maps, targets: as in `shared.explain.deletion.deletion_curve`.
        fractions: increasing floats in [0, 1), default 0.1 .. 0.9 (the paper's).
        order: "most_relevant_first" (default) or "least_relevant_first".
        noise_std, tolerance, max_iterations, solver_dtype: see
            `noisy_linear_imputation`.
        seed: int, default 0. Fraction i uses the noise of seed `seed + i`.

    Returns:
        PerturbationCurve: fractions [F] and scores [N, F]; `.area()` is normalised by
        the fraction range.

    Raises:
        ValueError: bad images, maps, targets, order or fractions.
    """
    images = check_images(images)
    maps = check_maps(maps, images)
    seed = check_seed(seed)
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}. Received: order={order!r}")
    fr = np.asarray(fractions, np.float64)
    if fr.ndim != 1 or fr.size == 0 or not np.all((fr >= 0) & (fr < 1)) or np.any(np.diff(fr) <= 0):
        raise ValueError(
            "fractions must be increasing numbers in [0, 1). Received: "
            f"fractions={tuple(np.ravel(fractions).tolist())!r}"
        )
    ranks = pixel_ranks(maps)
    num_pixels = int(np.prod(images.shape[1:-1]))
    scores = []
    for i, f in enumerate(fr):
        k = int(np.floor(f * num_pixels))
        removed = ranks < k if order == ORDERS[0] else ranks >= num_pixels - k
        x = noisy_linear_imputation(images, removed, noise_std=noise_std, seed=seed + i,
                                    tolerance=tolerance, max_iterations=max_iterations,
                                    solver_dtype=solver_dtype)
        scores.append(target_scores(model, x, targets))
    return PerturbationCurve(tf.constant(fr, tf.float32), tf.stack(scores, axis=1))
