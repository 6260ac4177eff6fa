"""Batched, seeded 3D augmentations for volumes ``[B, D, H, W, C]``.

The BAR paper's second view ``t2`` "undergoes inner-outer cuts and pixel
shuffling", implemented with MONAI's ``RandCoarseDropout`` (inner cut:
``holes=6, spatial_size=5``; outer cut: ``holes=6, spatial_size=20``) and
``RandCoarseShuffle`` (``holes=10, spatial_size=5``), inner and outer cut with
equal probability. The paper names only the minimum hole sizes; the maximum
sizes (32 inner, 64 outer), the random fill and the probabilities
(cut 1.0, shuffle 0.8) are those of MONAI's self-supervised pre-training
tutorial, the public template of that pipeline. Sizes are in voxels of the
paper's 96^3 grid; pass smaller ones for smaller volumes (sizes larger than a
volume are clipped to it).

All functions draw per-sample parameters with stateless ops from a ``[2]``
int seed, so one seed reproduces one batch, and build their hole masks by
broadcasting (no per-voxel Python loops).
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from shared.data.augment2d import _apply_mask, _bcast, _check_p, _check_seed, _no_autograph, _split

__all__ = [
    "random_flip_3d",
    "coarse_dropout_3d",
    "local_pixel_shuffle_3d",
    "Augment3D",
    "INNER_CUT",
    "OUTER_CUT",
    "PIXEL_SHUFFLE",
]

# (holes, minimum size, maximum size) in voxels: paper (holes, minimum), MONAI tutorial (maximum).
INNER_CUT = {"holes": 6, "hole_size": 5, "max_hole_size": 32}
OUTER_CUT = {"holes": 6, "hole_size": 20, "max_hole_size": 64}
# The tutorial's maximum for the shuffle equals its minimum (fixed-size blocks).
PIXEL_SHUFFLE = {"blocks": 10, "block_size": 5, "max_block_size": None}


def _check_volumes(volumes) -> tf.Tensor:
    volumes = tf.convert_to_tensor(volumes)
    if volumes.shape.rank is not None and volumes.shape.rank != 5:
        raise ValueError(
            "volumes must be a batch of rank 5 [B, D, H, W, C]. "
            f"Received: shape={volumes.shape}"
        )
    if not volumes.dtype.is_floating:
        raise ValueError(f"volumes must be floating point. Received: dtype={volumes.dtype.name}")
    return volumes


def _triple(value, name: str) -> tuple[int, int, int]:
    if isinstance(value, (int, float)):
        value = (value,) * 3
    value = tuple(int(v) for v in value)
    if len(value) != 3 or min(value) < 1:
        raise ValueError(f"{name} must be a positive int or 3 positive ints. Received: {name}={value}")
    return value


def _check_count(value, name: str) -> int:
    if value is None or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value}")
    return int(value)


def _box_params(volumes, seed, count, min_size, max_size):
    """Per-sample boxes: ``(start, size)`` int32 ``[B, count]`` for each of D, H, W.

    Box edge sizes ~ U{min, max} per axis (clipped to the volume), start ~
    U{0, n - size}, as MONAI's ``get_random_patch``.
    """
    shape = tf.shape(volumes)
    batch = shape[0]
    seeds = _split(seed, 6)
    params = []
    for axis in range(3):
        n = shape[axis + 1]
        lo = tf.minimum(tf.constant(min_size[axis]), n)
        hi = tf.minimum(tf.constant(max_size[axis]), n)
        u = tf.random.stateless_uniform([batch, count], seeds[2 * axis])
        size = lo + tf.cast(tf.floor(u * tf.cast(hi - lo + 1, tf.float32)), tf.int32)
        size = tf.minimum(size, hi)
        v = tf.random.stateless_uniform([batch, count], seeds[2 * axis + 1])
        start = tf.cast(tf.floor(v * tf.cast(n - size + 1, tf.float32)), tf.int32)
        start = tf.minimum(start, n - size)
        params.append((start, size))
    return params


def _random_boxes(volumes, seed, count, min_size, max_size):
    """1D membership masks of random boxes along D, H, W, each ``[B, count, n]`` float32."""
    masks = []
    for axis, (start, size) in enumerate(_box_params(volumes, seed, count, min_size, max_size)):
        pos = tf.range(tf.shape(volumes)[axis + 1])[tf.newaxis, tf.newaxis, :]
        inside = (pos >= start[..., tf.newaxis]) & (pos < (start + size)[..., tf.newaxis])
        masks.append(tf.cast(inside, tf.float32))
    return masks


def _union(boxes) -> tf.Tensor:
    """Boolean ``[B, D, H, W]``: voxels inside at least one box."""
    md, mh, mw = boxes
    return tf.einsum("bkd,bkh,bkw->bdhw", md, mh, mw) > 0.5


def _fill_like(volumes, seed, fill):
    if fill is None:
        # MONAI's fill_value=None: uniform noise within each sample's intensity range.
        lo = tf.reduce_min(volumes, axis=[1, 2, 3, 4], keepdims=True)
        hi = tf.reduce_max(volumes, axis=[1, 2, 3, 4], keepdims=True)
        u = tf.random.stateless_uniform(tf.shape(volumes), seed, dtype=volumes.dtype)
        return lo + u * (hi - lo)
    return tf.fill(tf.shape(volumes), tf.cast(fill, volumes.dtype))


@_no_autograph
def random_flip_3d(volumes, seed, *, p=0.5, axes: Sequence[int] = (1, 2, 3)):
    """Flips each sample along each of ``axes`` independently with probability ``p``.

    Args:
        volumes: float tensor ``[B, D, H, W, C]``.
        seed: int tensor ``[2]``.
        p: float, default 0.5. Probability per sample and axis.
        axes: spatial axes to consider, a subset of (1, 2, 3).

    Returns:
        The flipped volumes.
    """
    volumes = _check_volumes(volumes)
    p = _check_p(p)
    seed = _check_seed(seed)
    axes = tuple(int(a) for a in axes)
    if not set(axes) <= {1, 2, 3} or len(set(axes)) != len(axes):
        raise ValueError(f"axes must be distinct spatial axes among (1, 2, 3). Received: axes={axes}")
    if not axes:
        return volumes
    batch = tf.shape(volumes)[0]
    for axis, s in zip(axes, tf.unstack(_split(seed, len(axes)))):
        flags = _bcast(_apply_mask(s, batch, p), 5)
        volumes = tf.where(flags, tf.reverse(volumes, [axis]), volumes)
    return volumes


@_no_autograph
def coarse_dropout_3d(
    volumes,
    seed,
    *,
    mode="inner",
    holes=None,
    hole_size=None,
    max_hole_size=None,
    fill=None,
    p=1.0,
):
    """Inner cut (in-painting target) or outer cut (out-painting target).

    ``mode="inner"`` replaces the voxels inside ``holes`` random boxes by
    ``fill``; ``mode="outer"`` keeps only the voxels inside the boxes and
    replaces everything else (MONAI ``RandCoarseDropout`` with
    ``dropout_holes=True`` / ``False``).

    Args:
        volumes: float tensor ``[B, D, H, W, C]``.
        seed: int tensor ``[2]``.
        mode: "inner" or "outer".
        holes: int. Boxes per sample; default 6 (BAR, both modes).
        hole_size: int or 3 ints, minimum box edge in voxels; default 5 inner,
            20 outer (BAR).
        max_hole_size: int or 3 ints, maximum box edge; default 32 inner, 64
            outer (MONAI tutorial). Equal to ``hole_size`` for fixed boxes.
        fill: float, or None (default) for per-voxel uniform noise within the
            sample's [min, max] intensity range.
        p: float, default 1.0. Probability per sample.

    Returns:
        The volumes with the cut applied.
    """
    volumes = _check_volumes(volumes)
    if mode not in ("inner", "outer"):
        raise ValueError(f"mode must be 'inner' or 'outer'. Received: mode={mode!r}")
    defaults = INNER_CUT if mode == "inner" else OUTER_CUT
    holes = _check_count(defaults["holes"] if holes is None else holes, "holes")
    lo = _triple(defaults["hole_size"] if hole_size is None else hole_size, "hole_size")
    if max_hole_size is None:
        max_hole_size = defaults["max_hole_size"] if hole_size is None else hole_size
    hi = _triple(max_hole_size, "max_hole_size")
    if any(h < l for l, h in zip(lo, hi)):
        raise ValueError(f"max_hole_size {hi} must be >= hole_size {lo}.")
    p = _check_p(p)
    seed = _check_seed(seed)
    s_apply, s_box, s_fill = tf.unstack(_split(seed, 3))
    inside = _union(_random_boxes(volumes, s_box, holes, lo, hi))[..., tf.newaxis]
    replace = inside if mode == "inner" else tf.logical_not(inside)
    applied = _bcast(_apply_mask(s_apply, tf.shape(volumes)[0], p), 5)
    return tf.where(replace & applied, _fill_like(volumes, s_fill, fill), volumes)


@_no_autograph
def local_pixel_shuffle_3d(volumes, seed, *, blocks=10, block_size=5, max_block_size=None, p=1.0):
    """Local pixel shuffling: voxels are permuted at random inside random boxes.

    Each of ``blocks`` boxes per sample has its voxels shuffled, separately per
    channel, one box after another (MONAI ``RandCoarseShuffle``; overlapping
    boxes are shuffled again, as there). Vectorised per box over the batch:
    every box is enumerated through a fixed window of ``max_block_size``
    voxels that lies inside the volume and contains the box; sorting the
    window's slots by (outside box, random key) and by (outside box, position)
    pairs each box voxel with a random source voxel of the same box, while
    slots outside the box map to themselves. One gather and one scatter with
    distinct indices per box keep it deterministic.

    Args:
        volumes: float tensor ``[B, D, H, W, C]`` with static spatial dims.
        seed: int tensor ``[2]``.
        blocks: int, default 10 (BAR).
        block_size: int or 3 ints, default 5 (BAR): minimum box edge.
        max_block_size: int or 3 ints, default None = ``block_size``.
        p: float, default 1.0. Probability per sample.

    Returns:
        The shuffled volumes; each box holds the same multiset of values.
    """
    volumes = _check_volumes(volumes)
    blocks = _check_count(blocks, "blocks")
    lo = _triple(block_size, "block_size")
    hi = _triple(lo if max_block_size is None else max_block_size, "max_block_size")
    if any(h < l for l, h in zip(lo, hi)):
        raise ValueError(f"max_block_size {hi} must be >= block_size {lo}.")
    spatial = volumes.shape[1:4]
    if not spatial.is_fully_defined():
        raise ValueError(
            f"local_pixel_shuffle_3d needs static spatial dims. Received: shape={volumes.shape}"
        )
    dims = tuple(int(d) for d in spatial)
    hi = tuple(min(h, d) for h, d in zip(hi, dims))
    lo = tuple(min(l, h) for l, h in zip(lo, hi))
    p = _check_p(p)
    seed = _check_seed(seed)
    s_apply, s_box, s_perm = tf.unstack(_split(seed, 3))
    boxes = _box_params(volumes, s_box, blocks, lo, hi)

    shape = tf.shape(volumes)
    batch, channels = shape[0], shape[4]
    rows_n = batch * channels
    n = dims[0] * dims[1] * dims[2]
    rows = tf.reshape(tf.transpose(volumes, [0, 4, 1, 2, 3]), [rows_n, n])
    # Window offsets (static): M = prod(hi) slots, in position order.
    grids = tf.meshgrid(*[tf.range(h) for h in hi], indexing="ij")
    offsets = [tf.reshape(g, [-1]) for g in grids]  # 3 x [M]
    m = hi[0] * hi[1] * hi[2]
    strides = (dims[1] * dims[2], dims[2], 1)
    slot = tf.cast(tf.range(m), tf.float32)[tf.newaxis, :] / float(m)
    row_ids = tf.broadcast_to(tf.range(rows_n)[:, tf.newaxis], [rows_n, m])
    perm_seeds = _split(s_perm, blocks)
    for k in range(blocks):
        flat = tf.zeros([batch, m], tf.int32)
        valid = tf.ones([batch, m], tf.bool)
        for axis in range(3):
            start, size = boxes[axis][0][:, k], boxes[axis][1][:, k]
            w0 = tf.minimum(start, dims[axis] - hi[axis])  # window inside volume, covers the box
            coord = w0[:, tf.newaxis] + offsets[axis][tf.newaxis, :]
            rel = coord - start[:, tf.newaxis]
            valid &= (rel >= 0) & (rel < size[:, tf.newaxis])
            flat += coord * strides[axis]
        flat = tf.repeat(flat, channels, axis=0)  # [R, M], rows ordered (b, c)
        valid = tf.repeat(valid, channels, axis=0)
        noise = tf.random.stateless_uniform([rows_n, m], perm_seeds[k])
        outside = 2.0 * tf.cast(tf.logical_not(valid), tf.float32)
        src = tf.argsort(outside + tf.where(valid, noise, slot), axis=1, stable=True)
        dst = tf.argsort(outside + slot, axis=1, stable=True)
        values = tf.gather(rows, tf.gather(flat, src, batch_dims=1), batch_dims=1)
        index = tf.stack([row_ids, tf.gather(flat, dst, batch_dims=1)], axis=-1)
        rows = tf.tensor_scatter_nd_update(rows, index, values)
    shuffled = tf.reshape(rows, [batch, channels, dims[0], dims[1], dims[2]])
    shuffled = tf.transpose(shuffled, [0, 2, 3, 4, 1])
    applied = _bcast(_apply_mask(s_apply, batch, p), 5)
    return tf.where(applied, shuffled, volumes)


class Augment3D:
    """The BAR view-2 stack: flips, then inner or outer cut, then pixel shuffling.

    Per sample: flips along the spatial axes (``flip`` each), a cut with
    probability ``cut`` that is inner with probability ``inner_fraction`` and
    outer otherwise (the paper: "inner and outer cutouts with equal
    probability"), then local pixel shuffling with probability ``shuffle``
    (0.8, MONAI tutorial). Flips default to 0 because the paper does not list
    them for BAR.

    Args:
        flip: float, default 0.0. Probability per spatial axis.
        cut: float, default 1.0.
        inner_fraction: float, default 0.5.
        shuffle: float, default 0.8.
        inner: dict of :func:`coarse_dropout_3d` kwargs for the inner cut,
            default :data:`INNER_CUT`.
        outer: dict for the outer cut, default :data:`OUTER_CUT`.
        pixel_shuffle: dict of :func:`local_pixel_shuffle_3d` kwargs, default
            :data:`PIXEL_SHUFFLE`.
        fill: float or None (noise), default None.

    Call:
        ``aug(volumes, seed)`` returns the augmented volumes.
    """

    def __init__(
        self,
        flip=0.0,
        cut=1.0,
        inner_fraction=0.5,
        shuffle=0.8,
        *,
        inner=None,
        outer=None,
        pixel_shuffle=None,
        fill=None,
    ):
        self.flip = _check_p(flip, "flip")
        self.cut = _check_p(cut, "cut")
        self.inner_fraction = _check_p(inner_fraction, "inner_fraction")
        self.shuffle = _check_p(shuffle, "shuffle")
        self.inner = dict(INNER_CUT if inner is None else inner)
        self.outer = dict(OUTER_CUT if outer is None else outer)
        self.pixel_shuffle = dict(PIXEL_SHUFFLE if pixel_shuffle is None else pixel_shuffle)
        self.fill = fill

    def get_config(self) -> dict:
        keys = "flip cut inner_fraction shuffle inner outer pixel_shuffle fill".split()
        return {k: getattr(self, k) for k in keys}

    @classmethod
    def from_config(cls, config: dict) -> "Augment3D":
        return cls(**config)

    @_no_autograph
    def __call__(self, volumes, seed):
        volumes = _check_volumes(volumes)
        seed = _check_seed(seed)
        s_flip, s_cut, s_which, s_in, s_out, s_shuf = tf.unstack(_split(seed, 6))
        if self.flip > 0.0:
            volumes = random_flip_3d(volumes, s_flip, p=self.flip)
        if self.cut > 0.0:
            batch = tf.shape(volumes)[0]
            cut = _bcast(_apply_mask(s_cut, batch, self.cut), 5)
            use_inner = _bcast(_apply_mask(s_which, batch, self.inner_fraction), 5)
            inner = coarse_dropout_3d(volumes, s_in, mode="inner", fill=self.fill, **self.inner)
            outer = coarse_dropout_3d(volumes, s_out, mode="outer", fill=self.fill, **self.outer)
            volumes = tf.where(cut, tf.where(use_inner, inner, outer), volumes)
        if self.shuffle > 0.0:
            volumes = local_pixel_shuffle_3d(volumes, s_shuf, p=self.shuffle, **self.pixel_shuffle)
        return volumes

    def pipeline_fn(self):
        """An ``augment(x, y, seed) -> (x, y)`` function for :mod:`shared.data.pipeline` (y unchanged)."""

        def augment(x, y, seed):
            return self(x, seed), y

        return augment
