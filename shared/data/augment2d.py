"""Batched, seeded 2D augmentations that run in graph mode.

Every function takes a batch ``images`` of shape ``[B, H, W, C]`` (float) and a
``seed`` of shape ``[2]`` (int32 / int64, e.g. the per-batch seed handed out by
:mod:`shared.data.pipeline`), draws one set of random parameters *per sample* with
stateless ops (``tf.random.stateless_*``), and applies each transform to a
sample with its own probability ``p``. The same seed gives a bit-identical
batch; ``p=0`` returns the input unchanged and ``p=1`` always applies.

Geometric transforms (shift-scale-rotate, perspective, rotation) are expressed
as 3x3 projective matrices mapping output pixel coordinates to input
coordinates and resampled with a single ``ImageProjectiveTransformV3`` call;
:class:`Augment2D` multiplies the matrices of all selected transforms so the
image is resampled once. Masks (``[B, H, W]`` or ``[B, H, W, K]``) passed as
``masks=`` receive the identical geometry with nearest-neighbour sampling and
are returned as a second value.

The transform set and the probability 0.5 each follow the LGE quality paper
(random flip, perspective, shift-scale-rotate); parameter ranges default to
those of albumentations (``ShiftScaleRotate``: shift 0.0625, scale 0.1,
rotate 45 degrees), which that paper's description matches.
"""

from __future__ import annotations

import math

import tensorflow as tf

__all__ = [
    "random_flip",
    "random_shift_scale_rotate",
    "random_perspective",
    "random_gaussian_noise",
    "random_rotation",
    "Augment2D",
]

_FILL_MODES = ("REFLECT", "WRAP", "CONSTANT", "NEAREST")

# The transforms use Python control flow only on static arguments, so AutoGraph
# has nothing to convert; skipping it makes tracing (tf.function, tf.data) fast.
_no_autograph = tf.autograph.experimental.do_not_convert


# ----------------------------------------------------------------------------
# argument checks


def _check_images(images, rank: int = 4, name: str = "images") -> tf.Tensor:
    images = tf.convert_to_tensor(images)
    if images.shape.rank is not None and images.shape.rank != rank:
        raise ValueError(
            f"{name} must be a batch of rank {rank} [B, H, W, C]. "
            f"Received: shape={images.shape}"
        )
    if not images.dtype.is_floating:
        raise ValueError(f"{name} must be floating point. Received: dtype={images.dtype.name}")
    return images


def _check_masks(masks, images: tf.Tensor) -> tuple[tf.Tensor, bool]:
    """Returns masks as rank 4 and whether a channel axis was added."""
    masks = tf.convert_to_tensor(masks)
    rank = masks.shape.rank
    if rank not in (3, 4):
        raise ValueError(
            "masks must have shape [B, H, W] or [B, H, W, K] matching images "
            f"{images.shape}. Received: shape={masks.shape}"
        )
    squeeze = rank == 3
    if squeeze:
        masks = masks[..., tf.newaxis]
    if not masks.shape[:3].is_compatible_with(images.shape[:3]):
        raise ValueError(
            f"masks must match images in [B, H, W]: images {images.shape}, "
            f"masks {masks.shape if not squeeze else masks.shape[:3]}."
        )
    return masks, squeeze


def _check_p(p, name: str = "p") -> float:
    if p is None or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1]. Received: {name}={p}")
    return float(p)


def _check_seed(seed) -> tf.Tensor:
    if seed is None:
        raise ValueError("An explicit seed is required. Received: seed=None")
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        seed = tf.cast(seed, tf.int64)
    if seed.shape.rank == 0:
        seed = tf.stack([tf.zeros_like(seed), seed])
    if seed.shape.rank != 1 or (seed.shape[0] is not None and seed.shape[0] != 2):
        raise ValueError(f"seed must be an int tensor of shape [2]. Received: shape={seed.shape}")
    return seed


def _split(seed, n: int) -> tf.Tensor:
    return tf.random.experimental.stateless_split(seed, num=n)


def _apply_mask(seed, batch, p: float) -> tf.Tensor:
    """Per-sample Bernoulli(p) decisions, exact for p in {0, 1}."""
    u = tf.random.stateless_uniform([batch], seed=seed, dtype=tf.float32)
    return u < p  # u lies in [0, 1): p=0 never, p=1 always


def _bcast(flags: tf.Tensor, rank: int) -> tf.Tensor:
    return tf.reshape(flags, [-1] + [1] * (rank - 1))


def _return(images, masks, squeeze):
    if masks is None:
        return images
    return images, (masks[..., 0] if squeeze else masks)


# ----------------------------------------------------------------------------
# projective matrices (output pixel -> input pixel), [B, 3, 3] float32


def _identity(batch) -> tf.Tensor:
    return tf.eye(3, batch_shape=[batch], dtype=tf.float32)


def _translate(tx, ty) -> tf.Tensor:
    one, zero = tf.ones_like(tx), tf.zeros_like(tx)
    return tf.stack(
        [tf.stack([one, zero, tx], -1), tf.stack([zero, one, ty], -1), tf.stack([zero, zero, one], -1)],
        axis=1,
    )


def _rotate_scale(angle, scale) -> tf.Tensor:
    """Rotation by ``angle`` (radians, counter-clockwise on screen) then scaling."""
    c, s = tf.cos(angle) * scale, tf.sin(angle) * scale
    zero, one = tf.zeros_like(c), tf.ones_like(c)
    # Image rows grow downwards, so a visually counter-clockwise turn is
    # [[c, s], [-s, c]] in (x, y) pixel coordinates.
    return tf.stack(
        [tf.stack([c, s, zero], -1), tf.stack([-s, c, zero], -1), tf.stack([zero, zero, one], -1)],
        axis=1,
    )


def _centre(images) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    shape = tf.shape(images)
    h = tf.cast(shape[1], tf.float32)
    w = tf.cast(shape[2], tf.float32)
    return (w - 1.0) / 2.0, (h - 1.0) / 2.0, w, h


def _ssr_matrix(images, seed, shift, scale, rotate_deg) -> tf.Tensor:
    """Inverse (output -> input) matrix of shift-scale-rotate about the centre.

    Forward map of content: ``p_out = T(c + t) R(theta) S(s) T(-c) p_in``; its
    inverse is ``T(c) S(1/s) R(-theta) T(-c - t)``.
    """
    batch = tf.shape(images)[0]
    cx, cy, w, h = _centre(images)
    s_shift, s_scale, s_rot = tf.unstack(_split(seed, 3))
    t = tf.random.stateless_uniform([batch, 2], s_shift, minval=-shift, maxval=shift)
    tx, ty = t[:, 0] * w, t[:, 1] * h
    factor = 1.0 + tf.random.stateless_uniform([batch], s_scale, minval=-scale, maxval=scale)
    angle = tf.random.stateless_uniform([batch], s_rot, minval=-rotate_deg, maxval=rotate_deg)
    angle = angle * (math.pi / 180.0)
    ones = tf.ones([batch])
    return (
        _translate(cx * ones, cy * ones)
        @ _rotate_scale(-angle, 1.0 / factor)
        @ _translate(-cx - tx, -cy - ty)
    )


def _rotation_matrix(images, seed, max_deg) -> tf.Tensor:
    batch = tf.shape(images)[0]
    cx, cy, _, _ = _centre(images)
    angle = tf.random.stateless_uniform([batch], seed, minval=-max_deg, maxval=max_deg)
    angle = angle * (math.pi / 180.0)
    ones = tf.ones([batch])
    return _translate(cx * ones, cy * ones) @ _rotate_scale(-angle, ones) @ _translate(-cx * ones, -cy * ones)


def _perspective_matrix(images, seed, distortion) -> tf.Tensor:
    """Homography taking the output corners to input points moved inward at random.

    As albumentations ``Perspective(scale=distortion, keep_size=True)``: each
    corner moves inward by ``min(|N(0, distortion)|, 0.32)`` times the image
    width (horizontally) and height (vertically), and the quadrilateral they
    span is stretched over the whole output (no border fill needed). The 8
    coefficients come from the usual 8x8 linear system, solved batched.
    """
    batch = tf.shape(images)[0]
    _, _, w, h = _centre(images)
    u = tf.random.stateless_normal([batch, 4, 2], seed, stddev=distortion)
    u = tf.minimum(tf.abs(u), 0.32)
    dx = u[..., 0] * (w - 1.0)
    dy = u[..., 1] * (h - 1.0)
    # corners: top-left, top-right, bottom-right, bottom-left
    ox = tf.constant([0.0, 1.0, 1.0, 0.0]) * (w - 1.0)
    oy = tf.constant([0.0, 0.0, 1.0, 1.0]) * (h - 1.0)
    ix = ox + tf.constant([1.0, -1.0, -1.0, 1.0]) * dx  # [B, 4] input points
    iy = oy + tf.constant([1.0, 1.0, -1.0, -1.0]) * dy
    ox = tf.broadcast_to(ox, tf.shape(ix))
    oy = tf.broadcast_to(oy, tf.shape(iy))
    zero, one = tf.zeros_like(ix), tf.ones_like(ix)
    # Rows for x_in = (a0 x + a1 y + a2) / (a6 x + a7 y + 1), and likewise y_in.
    rows_x = tf.stack([ox, oy, one, zero, zero, zero, -ox * ix, -oy * ix], -1)
    rows_y = tf.stack([zero, zero, zero, ox, oy, one, -ox * iy, -oy * iy], -1)
    a = tf.concat([rows_x, rows_y], axis=1)  # [B, 8, 8]
    b = tf.concat([ix, iy], axis=1)[..., tf.newaxis]  # [B, 8, 1]
    coeffs = tf.linalg.solve(tf.cast(a, tf.float64), tf.cast(b, tf.float64))
    coeffs = tf.cast(coeffs[..., 0], tf.float32)
    coeffs = tf.concat([coeffs, tf.ones([batch, 1])], axis=1)
    return tf.reshape(coeffs, [-1, 3, 3])


def _warp(images, matrices, interpolation, fill_mode, fill_value):
    """Resamples ``images`` at ``matrices @ [x, y, 1]`` (output -> input)."""
    matrices = matrices / matrices[:, 2:3, 2:3]
    flat = tf.reshape(matrices, [-1, 9])[:, :8]
    dtype = images.dtype
    work = images
    if dtype == tf.bool:
        work = tf.cast(images, tf.uint8)
    elif dtype not in (tf.float32, tf.float64, tf.float16, tf.bfloat16, tf.uint8, tf.int32, tf.int64):
        work = tf.cast(images, tf.float32)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=work,
        transforms=tf.cast(flat, tf.float32),
        output_shape=tf.shape(images)[1:3],
        fill_value=tf.cast(fill_value, tf.float32),
        interpolation=interpolation,
        fill_mode=fill_mode,
    )
    return tf.cast(out, dtype) if out.dtype != dtype else out


def _geometric(images, masks, matrices, applied, fill_mode, fill_value, mask_fill_value=0.0):
    """Warps the applied samples; the others keep their exact input values."""
    if fill_mode not in _FILL_MODES:
        raise ValueError(f"fill_mode must be one of {_FILL_MODES}. Received: fill_mode={fill_mode!r}")
    matrices = tf.where(_bcast(applied, 3), matrices, _identity(tf.shape(images)[0]))
    warped = _warp(images, matrices, "BILINEAR", fill_mode, fill_value)
    images = tf.where(_bcast(applied, 4), warped, images)
    if masks is not None:
        warped_m = _warp(masks, matrices, "NEAREST", fill_mode, mask_fill_value)
        masks = tf.where(_bcast(applied, 4), warped_m, masks)
    return images, masks


# ----------------------------------------------------------------------------
# public transforms


def _random_warp(images, seed, p, masks, fill_mode, fill_value, make_matrices):
    """Checks inputs, draws per-sample matrices and warps the chosen samples (and masks).

    `make_matrices(images, seed)` returns the [B, 8] projective transforms.
    """
    images = _check_images(images)
    p = _check_p(p)
    seed = _check_seed(seed)
    squeeze = False
    if masks is not None:
        masks, squeeze = _check_masks(masks, images)
    s_apply, s_params = tf.unstack(_split(seed, 2))
    applied = _apply_mask(s_apply, tf.shape(images)[0], p)
    matrices = make_matrices(images, s_params)
    images, masks = _geometric(images, masks, matrices, applied, fill_mode, fill_value)
    return _return(images, masks, squeeze)


@_no_autograph
def random_flip(images, seed, *, p=0.5, horizontal=True, vertical=False, masks=None):
    """Flips each sample left-right and/or up-down with probability ``p``.

    Horizontal and vertical flips are decided independently per sample.

    Args:
        images: float tensor ``[B, H, W, C]``.
        seed: int tensor ``[2]``.
        p: float in [0, 1], default 0.5. Probability per sample and direction.
        horizontal: bool, default True. Allow left-right flips (axis 2).
        vertical: bool, default False. Allow up-down flips (axis 1).
        masks: optional ``[B, H, W]`` or ``[B, H, W, K]``, flipped alike.

    Returns:
        The flipped images, or ``(images, masks)`` when masks are given.
    """
    images = _check_images(images)
    p = _check_p(p)
    seed = _check_seed(seed)
    squeeze = False
    if masks is not None:
        masks, squeeze = _check_masks(masks, images)
    batch = tf.shape(images)[0]
    s_h, s_v = tf.unstack(_split(seed, 2))
    for enabled, axis, s in ((horizontal, 2, s_h), (vertical, 1, s_v)):
        if not enabled:
            continue
        flags = _bcast(_apply_mask(s, batch, p), 4)
        images = tf.where(flags, tf.reverse(images, [axis]), images)
        if masks is not None:
            masks = tf.where(flags, tf.reverse(masks, [axis]), masks)
    return _return(images, masks, squeeze)


@_no_autograph
def random_shift_scale_rotate(
    images,
    seed,
    *,
    p=0.5,
    shift=0.0625,
    scale=0.1,
    rotate_deg=45,
    masks=None,
    fill_mode="REFLECT",
    fill_value=0.0,
):
    """Random affine shift, isotropic scale and rotation about the image centre.

    Per sample: shift ~ U(-shift, shift) times the image size in x and y, scale
    factor ~ 1 + U(-scale, scale), angle ~ U(-rotate_deg, rotate_deg) degrees
    (albumentations ``ShiftScaleRotate`` ranges).

    Args:
        images: float tensor ``[B, H, W, C]``.
        seed: int tensor ``[2]``.
        p: float, default 0.5. Probability per sample.
        shift: float, default 0.0625. Maximum shift as a fraction of the size.
        scale: float, default 0.1. Maximum relative zoom change.
        rotate_deg: float, default 45. Maximum rotation in degrees.
        masks: optional masks, warped with nearest-neighbour sampling.
        fill_mode: "REFLECT" (default), "WRAP", "CONSTANT" or "NEAREST".
        fill_value: float, default 0. Fill for "CONSTANT" (masks get 0).

    Returns:
        The images, or ``(images, masks)`` when masks are given.
    """
    return _random_warp(images, seed, p, masks, fill_mode, fill_value,
                        lambda imgs, s: _ssr_matrix(imgs, s, float(shift), float(scale), float(rotate_deg)))


@_no_autograph
def random_perspective(
    images, seed, *, p=0.5, distortion=0.1, masks=None, fill_mode="REFLECT", fill_value=0.0
):
    """Random perspective warp (albumentations ``Perspective``, ``keep_size=True``).

    Each image corner moves inward by ``min(|N(0, distortion)|, 0.32)`` of the
    image size per axis and the quadrilateral they span fills the output.

    Args:
        images: float tensor ``[B, H, W, C]``.
        seed: int tensor ``[2]``.
        p: float, default 0.5. Probability per sample.
        distortion: float in [0, 1), default 0.1. Standard deviation of the
            corner displacement as a fraction of the image size.
        masks: optional masks, warped with nearest-neighbour sampling.
        fill_mode: "REFLECT" (default), "WRAP", "CONSTANT" or "NEAREST".
        fill_value: float, default 0.

    Returns:
        The images, or ``(images, masks)`` when masks are given.
    """
    if not 0.0 <= float(distortion) < 1.0:
        raise ValueError(f"distortion must lie in [0, 1). Received: distortion={distortion}")
    return _random_warp(images, seed, p, masks, fill_mode, fill_value,
                        lambda imgs, s: _perspective_matrix(imgs, s, float(distortion)))


@_no_autograph
def random_rotation(
    images, seed, *, p=0.5, max_deg=10, masks=None, fill_mode="REFLECT", fill_value=0.0
):
    """Small random rotation about the centre, angle ~ U(-max_deg, max_deg) degrees.

    Args:
        images: float tensor ``[B, H, W, C]``.
        seed: int tensor ``[2]``.
        p: float, default 0.5. Probability per sample.
        max_deg: float, default 10. Maximum angle in degrees.
        masks: optional masks, warped with nearest-neighbour sampling.
        fill_mode: "REFLECT" (default), "WRAP", "CONSTANT" or "NEAREST".
        fill_value: float, default 0.

    Returns:
        The images, or ``(images, masks)`` when masks are given.
    """
    return _random_warp(images, seed, p, masks, fill_mode, fill_value,
                        lambda imgs, s: _rotation_matrix(imgs, s, float(max_deg)))


@_no_autograph
def random_gaussian_noise(images, seed, *, p=0.5, stddev=0.05):
    """Adds N(0, stddev^2) noise to each sample with probability ``p``.

    Args:
        images: float tensor ``[B, H, W, C]``.
        seed: int tensor ``[2]``.
        p: float, default 0.5. Probability per sample.
        stddev: float, default 0.05. Noise standard deviation (image units).

    Returns:
        The noisy images.
    """
    images = _check_images(images)
    p = _check_p(p)
    seed = _check_seed(seed)
    s_apply, s_noise = tf.unstack(_split(seed, 2))
    applied = _apply_mask(s_apply, tf.shape(images)[0], p)
    noise = tf.random.stateless_normal(tf.shape(images), s_noise, stddev=stddev, dtype=images.dtype)
    return tf.where(_bcast(applied, 4), images + noise, images)


class Augment2D:
    """The 2D augmentation stack as one seeded, batched callable.

    Order: flip -> one projective warp combining shift-scale-rotate,
    perspective and rotation (each selected per sample with its own
    probability; the image is resampled once) -> Gaussian noise.
    ``Augment2D()`` gives the LGE paper's stack: flip, shift-scale-rotate and
    perspective with p = 0.5 each.

    Args:
        flip: float, default 0.5. Probability of a flip (per allowed direction).
        shift_scale_rotate: float, default 0.5.
        perspective: float, default 0.5.
        noise: float, default 0.0. Probability of Gaussian noise.
        rotation: float, default 0.0. Probability of a small rotation.
        horizontal: bool, default True. Allow left-right flips.
        vertical: bool, default False. Allow up-down flips.
        shift: float, default 0.0625. See :func:`random_shift_scale_rotate`.
        scale: float, default 0.1.
        rotate_deg: float, default 45.
        distortion: float, default 0.1. See :func:`random_perspective`.
        max_deg: float, default 10. See :func:`random_rotation`.
        noise_stddev: float, default 0.05.
        fill_mode: str, default "REFLECT". Border handling of the warp.
        fill_value: float, default 0.0. Fill for ``fill_mode="CONSTANT"``.

    Call:
        ``aug(images, seed, masks=None)`` returns images, or ``(images, masks)``
        when masks are given (same flips and warp, nearest sampling, no noise).

    Example:
        >>> aug = Augment2D(flip=0.5, shift_scale_rotate=0.5, perspective=0.5)
        >>> out = aug(images, tf.constant([1, 2]))
        >>> ds = dataset_from_arrays(x, y, batch_size=32, augment=aug.pipeline_fn())
    """

    def __init__(
        self,
        flip=0.5,
        shift_scale_rotate=0.5,
        perspective=0.5,
        noise=0.0,
        rotation=0.0,
        *,
        horizontal=True,
        vertical=False,
        shift=0.0625,
        scale=0.1,
        rotate_deg=45,
        distortion=0.1,
        max_deg=10,
        noise_stddev=0.05,
        fill_mode="REFLECT",
        fill_value=0.0,
    ):
        self.flip = _check_p(flip, "flip")
        self.shift_scale_rotate = _check_p(shift_scale_rotate, "shift_scale_rotate")
        self.perspective = _check_p(perspective, "perspective")
        self.noise = _check_p(noise, "noise")
        self.rotation = _check_p(rotation, "rotation")
        if fill_mode not in _FILL_MODES:
            raise ValueError(f"fill_mode must be one of {_FILL_MODES}. Received: fill_mode={fill_mode!r}")
        if not 0.0 <= float(distortion) < 1.0:
            raise ValueError(f"distortion must lie in [0, 1). Received: distortion={distortion}")
        self.horizontal = bool(horizontal)
        self.vertical = bool(vertical)
        self.shift = float(shift)
        self.scale = float(scale)
        self.rotate_deg = float(rotate_deg)
        self.distortion = float(distortion)
        self.max_deg = float(max_deg)
        self.noise_stddev = float(noise_stddev)
        self.fill_mode = fill_mode
        self.fill_value = float(fill_value)

    def get_config(self) -> dict:
        """The constructor arguments (for run records and re-creation)."""
        keys = (
            "flip shift_scale_rotate perspective noise rotation horizontal vertical shift scale "
            "rotate_deg distortion max_deg noise_stddev fill_mode fill_value"
        ).split()
        return {k: getattr(self, k) for k in keys}

    @classmethod
    def from_config(cls, config: dict) -> "Augment2D":
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"Augment2D({args})"

    @_no_autograph
    def __call__(self, images, seed, masks=None):
        images = _check_images(images)
        seed = _check_seed(seed)
        squeeze = False
        if masks is not None:
            masks, squeeze = _check_masks(masks, images)
        s_flip, s_ssr, s_persp, s_rot, s_noise = tf.unstack(_split(seed, 5))

        if self.flip > 0.0 and (self.horizontal or self.vertical):
            out = random_flip(
                images, s_flip, p=self.flip, horizontal=self.horizontal,
                vertical=self.vertical, masks=masks,
            )
            images, masks = out if masks is not None else (out, None)

        batch = tf.shape(images)[0]
        matrices, applied = _identity(batch), tf.zeros([batch], tf.bool)
        # Forward order SSR -> perspective -> rotation; the output->input map is
        # the product of the inverses in the same order.
        steps = (
            (self.shift_scale_rotate, s_ssr,
             lambda s: _ssr_matrix(images, s, self.shift, self.scale, self.rotate_deg)),
            (self.perspective, s_persp, lambda s: _perspective_matrix(images, s, self.distortion)),
            (self.rotation, s_rot, lambda s: _rotation_matrix(images, s, self.max_deg)),
        )
        for prob, s, build in steps:
            if prob <= 0.0:
                continue
            s_apply, s_params = tf.unstack(_split(s, 2))
            flags = _apply_mask(s_apply, batch, prob)
            m = tf.where(_bcast(flags, 3), build(s_params), _identity(batch))
            matrices = matrices @ m
            applied = tf.logical_or(applied, flags)
        if any(prob > 0.0 for prob, _, _ in steps):
            images, masks = _geometric(images, masks, matrices, applied, self.fill_mode, self.fill_value)

        if self.noise > 0.0:
            images = random_gaussian_noise(images, s_noise, p=self.noise, stddev=self.noise_stddev)
        return _return(images, masks, squeeze)

    def pipeline_fn(self, *, y_is_mask: bool = False):
        """An ``augment(x, y, seed) -> (x, y)`` function for :mod:`shared.data.pipeline`.

        Args:
            y_is_mask: bool, default False. Treat ``y`` as segmentation masks
                and transform them with the images; otherwise ``y`` passes
                through unchanged.
        """

        def augment(x, y, seed):
            if y_is_mask:
                return self(x, seed, masks=y)
            return self(x, seed), y

        return augment
