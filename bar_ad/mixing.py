"""Brain-Aware Replacements (BAR), Brain-Aware Masking (BAM), multi-patch CutMix, and views.

Seyfioglu et al., MICCAI 2022, Sec. 2. All functions take a batch of aligned volumes
`[B, D, H, W, 1]` and a stateless seed (shape-[2] int32 tensor), run in graph mode
(inside `tf.data` map functions) and never leave TensorFlow: region masks are built by
one gather of a per-sample region-selection table through the atlas label volume, so a
whole batch is mixed with a handful of vectorised ops.

* `region_mix` (Eqs. 2-3): lambda ~ Beta(a, b); `round(lambda * R)` of the R regions
  are picked at random per sample and carved from a partner X_j (another sample of the
  batch, j != i) into X_i. The soft label is the label mix by the *replaced brain share*
  r (share of brain voxels taken from X_j): y^p = (1 - r) y_i + r y_j, i.e. Eq. 3 with
  the pixel-wise ratio lambda_pix = 1 - r. With the atlas as regions this is BAR; with
  a cube partition (`cube_partition`) it is the paper's multi-patch CutMix.
* `bam` fills `fraction` (20 %) of the regions left untouched by the swap with noise.
* `cut_and_shuffle`: inner or outer coarse dropout (equal probability, per sample),
  then local pixel shuffling (`shared.data.augment3d`), the paper's second view t2.
"""

import numpy as np
import tensorflow as tf

# Grid of the paper's hole sizes (Sec. 3 "Implementation Details", `shared.data.augment3d`).
PAPER_GRID = 96
BETA_SETTINGS = {"default": (0.8, 0.8), "left_skewed": (0.2, 0.8), "uniform": (1.0, 1.0)}


def _split(seed, n):
    return tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), num=n)


def sample_beta(shape, seed, alpha, beta):
    """Beta(alpha, beta) samples from two stateless Gamma draws."""
    s = _split(seed, 2)
    ga = tf.random.stateless_gamma(shape, s[0], alpha=alpha)
    gb = tf.random.stateless_gamma(shape, s[1], alpha=beta)
    return ga / tf.maximum(ga + gb, 1e-12)


def cube_partition(shape, cells) -> np.ndarray:
    """A label volume cutting `shape` into `cells`^3 boxes labelled 1..cells^3 (CutMix)."""
    idx = [np.minimum(np.arange(n) * cells // n, cells - 1) for n in shape]
    return (idx[0][:, None, None] * cells * cells + idx[1][None, :, None] * cells
            + idx[2][None, None, :] + 1).astype(np.int32)


def _pick_regions(seed, batch, num_regions, counts, exclude=None):
    """[B, R] float 0/1: `counts[b]` regions drawn uniformly, never an excluded one."""
    scores = tf.random.stateless_uniform((batch, num_regions), seed)
    if exclude is not None:
        scores = scores + 2.0 * exclude
    ranks = tf.argsort(tf.argsort(scores, axis=1), axis=1)
    return tf.cast(ranks < counts[:, None], tf.float32)


def _region_mask(selected, labels):
    """[B, R] selection + [D, H, W] labels (0 = never) -> [B, D, H, W, 1] float mask."""
    table = tf.concat([tf.zeros_like(selected[:, :1]), selected], axis=1)
    return tf.gather(table, labels, axis=1)[..., None]


def partner_indices(batch, seed):
    """j != i for each i (a random cyclic shift of the batch); j = i when B = 1."""
    batch = tf.convert_to_tensor(batch, tf.int32)
    shift = tf.random.stateless_uniform((), seed, minval=1, maxval=tf.maximum(batch, 2),
                                        dtype=tf.int32)
    return tf.math.floormod(tf.range(batch) + shift, tf.maximum(batch, 1))


def region_mix(x, y, seed, *, region_labels, brain_mask, alpha=0.8, beta=0.8,
               return_details=False):
    """Replaces a Beta-distributed number of regions of X_i by those of X_j (Eqs. 2-3).

    A one-off shortcut for `RegionMixer(region_labels, brain_mask, ...).mix(...)`.

    Args:
        x: float [B, D, H, W, 1]. Aligned volumes.
        y: float/int [B]. Hard (0/1) or soft labels.
        seed: int32 [2]. Stateless seed.
        region_labels: int [D, H, W]. 0 = never replaced, 1..R = regions (the merged AAL
            atlas for BAR, `cube_partition` for CutMix).
        brain_mask: bool [D, H, W]. Voxels over which the replaced share is measured.
        alpha, beta: float, default 0.8, 0.8. Beta distribution of lambda (paper default;
            ablations (0.2, 0.8) and (1, 1), see `BETA_SETTINGS`).
        return_details: bool. Also return dict(mask, selected, partner, share, lam).

    Returns:
        (mixed x [B, D, H, W, 1], soft labels float32 [B]) and, with `return_details`,
        the details dict.
    """
    mixer = RegionMixer(region_labels, brain_mask, alpha=alpha, beta=beta)
    mixed, soft, details = mixer.mix(tf.cast(x, tf.float32), y, seed, return_details=True)
    if return_details:
        return mixed, soft, details
    return mixed, soft


class RegionMixer:
    """Precomputed region tables for repeated `region_mix` / `bam` calls in graph mode.

    Args:
        region_labels: int [D, H, W] (0 = never touched, 1..R).
        brain_mask: bool [D, H, W]. Share of the soft label is measured over it.
        alpha, beta: float. Beta(alpha, beta) of lambda.
        bam_fraction: float, default 0.2. Share of untouched regions BAM fills with noise.
    """

    def __init__(self, region_labels, brain_mask, *, alpha=0.8, beta=0.8, bam_fraction=0.2):
        labels = np.asarray(region_labels).astype(np.int32)
        present = np.unique(labels[labels > 0])
        if present.size == 0:
            raise ValueError("region_labels holds no region (all zeros)")
        if not np.array_equal(present, np.arange(1, present.size + 1)):
            raise ValueError(f"region_labels must be numbered 1..R without gaps. Received "
                             f"labels {present[:10].tolist()}...")
        self.num_regions = int(present.size)
        self.labels = tf.constant(labels)
        self.brain = tf.constant(np.asarray(brain_mask, np.float32))
        self.brain_voxels = float(np.asarray(brain_mask, bool).sum())
        self.alpha, self.beta = float(alpha), float(beta)
        self.bam_fraction = float(bam_fraction)

    def mix(self, x, y, seed, *, return_details=False):
        """BAR / CutMix of a batch (Eqs. 2-3).

        Returns:
            (mixed [B, D, H, W, 1], soft labels float32 [B], selected [B, R]) or, with
            `return_details`, (mixed, soft, dict(mask, selected, partner, share, lam)).
        """
        s = _split(seed, 3)
        batch = tf.shape(x)[0]
        lam = sample_beta((batch,), s[0], self.alpha, self.beta)
        counts = tf.cast(tf.round(lam * self.num_regions), tf.int32)
        selected = _pick_regions(s[1], batch, self.num_regions, counts)
        partner = partner_indices(batch, s[2])
        mask = _region_mask(selected, self.labels)
        mixed = tf.where(mask > 0, tf.gather(x, partner), x)
        share = tf.reduce_sum(mask[..., 0] * self.brain, axis=[1, 2, 3]) / max(
            self.brain_voxels, 1.0)
        y = tf.cast(y, tf.float32)
        soft = (1.0 - share) * y + share * tf.gather(y, partner)
        if return_details:
            return mixed, soft, dict(mask=mask, selected=selected, partner=partner,
                                     share=share, lam=lam)
        return mixed, soft, selected

    def bam(self, x, seed, selected=None):
        """Brain-Aware Masking: fills `bam_fraction` of the untouched regions with U(0, 1) noise."""
        s = _split(seed, 2)
        batch = tf.shape(x)[0]
        if selected is None:
            selected = tf.zeros((batch, self.num_regions), tf.float32)
        untouched = self.num_regions - tf.reduce_sum(selected, axis=1)
        counts = tf.cast(tf.round(self.bam_fraction * untouched), tf.int32)
        masked = _pick_regions(s[0], batch, self.num_regions, counts, exclude=selected)
        mask = _region_mask(masked, self.labels)
        noise = tf.random.stateless_uniform(tf.shape(x), s[1], dtype=x.dtype)
        return tf.where(mask > 0, noise, x)


def scaled_sizes(grid):
    """The paper's (MONAI) hole and block sizes, given at 96^3, scaled to a `grid`^3 volume.

    Returns:
        dict inner/outer -> (holes, min size, max size), shuffle -> (blocks, size).
    """
    from shared.data.augment3d import INNER_CUT, OUTER_CUT, PIXEL_SHUFFLE

    scale = grid / PAPER_GRID

    def size(v):
        return max(1, min(grid, int(round(v * scale))))

    return dict(
        inner=(INNER_CUT["holes"], size(INNER_CUT["hole_size"]), size(INNER_CUT["max_hole_size"])),
        outer=(OUTER_CUT["holes"], size(OUTER_CUT["hole_size"]), size(OUTER_CUT["max_hole_size"])),
        shuffle=(PIXEL_SHUFFLE["blocks"], size(PIXEL_SHUFFLE["block_size"])))


@tf.autograph.experimental.do_not_convert
def cut_and_shuffle(x, seed, *, grid, mode="random", shuffle=True, shuffle_blocks=None):
    """Inner or outer coarse dropout, then local pixel shuffling (view t2, Sec. 2).

    Args:
        x: float [B, D, H, W, 1].
        seed: int32 [2].
        grid: int. Volume edge, to scale the paper's 96^3 hole sizes.
        mode: "random" (inner or outer with equal probability per sample), "inner",
            "outer" or "none".
        shuffle: bool, default True. Apply local pixel shuffling after the cut.
        shuffle_blocks: int or None. Shuffled blocks per sample (None: the paper's 10;
            fewer trace faster in tiny runs).
    """
    from shared.data.augment3d import coarse_dropout_3d, local_pixel_shuffle_3d

    sizes = scaled_sizes(grid)
    s = _split(seed, 4)
    if mode not in ("random", "inner", "outer", "none"):
        raise ValueError(f"mode must be random, inner, outer or none. Received: mode={mode!r}")
    if mode in ("inner", "random"):
        holes, lo, hi = sizes["inner"]
        inner = coarse_dropout_3d(x, s[0], mode="inner", holes=holes, hole_size=lo,
                                  max_hole_size=hi)
    if mode in ("outer", "random"):
        holes, lo, hi = sizes["outer"]
        outer = coarse_dropout_3d(x, s[1], mode="outer", holes=holes, hole_size=lo,
                                  max_hole_size=hi)
    if mode == "random":
        coin = tf.random.stateless_uniform((tf.shape(x)[0], 1, 1, 1, 1), s[2]) < 0.5
        x = tf.where(coin, inner, outer)
    elif mode == "inner":
        x = inner
    elif mode == "outer":
        x = outer
    if shuffle:
        blocks = sizes["shuffle"][0] if shuffle_blocks is None else int(shuffle_blocks)
        x = local_pixel_shuffle_3d(x, s[3], blocks=blocks,
                                   block_size=sizes["shuffle"][1])
    return x


def make_view_fn(kind, *, grid, mixer=None, masker=None, use_bam=True, cut_mode="random",
                 shuffle_blocks=None):
    """An `augment(x, y, seed) -> (views, labels)` for `shared.pipeline.dataset_from_arrays`.

    Args:
        kind: str. "mix" (supervised: t1 = BAR or CutMix of X_i (+ BAM), t2 = cut +
            shuffle of X_i, labels = soft labels), "ssl" (self-supervised / hard-label:
            both views cut + shuffle of X_i, labels = hard labels), "ssl_bam" (both views
            BAM of X_i: the BAM-vs-cuts ablation).
        grid: int. Volume edge.
        mixer: `RegionMixer` for "mix" (atlas regions for BAR, cubes for CutMix).
        masker: `RegionMixer` on the atlas, for BAM (defaults to `mixer`).
        use_bam: bool, default True. BAM after the swap ("mix").
        cut_mode: str. See `cut_and_shuffle`.
        shuffle_blocks: int or None. See `cut_and_shuffle`.

    Returns:
        Callable returning ({"view1", "view2", "anchor"}, float32 labels [B]).
    """
    masker = masker if masker is not None else mixer
    if kind not in ("mix", "ssl", "ssl_bam"):
        raise ValueError(f"kind must be mix, ssl or ssl_bam. Received: kind={kind!r}")
    if kind in ("mix",) and mixer is None:
        raise ValueError("kind='mix' needs a RegionMixer")
    if kind == "ssl_bam" and masker is None:
        raise ValueError("kind='ssl_bam' needs a RegionMixer (masker) on the atlas")

    # Plain Python control flow on static settings only: no AutoGraph conversion needed.
    @tf.autograph.experimental.do_not_convert
    def augment(x, y, seed):
        s = _split(seed, 4)
        x = tf.cast(x, tf.float32)
        y = tf.cast(y, tf.float32)
        if kind == "mix":
            view1, labels, selected = mixer.mix(x, y, s[0])
            if use_bam:
                view1 = masker.bam(view1, s[1], selected if masker is mixer else None)
            view2 = cut_and_shuffle(x, s[2], grid=grid, mode=cut_mode,
                                    shuffle_blocks=shuffle_blocks)
        elif kind == "ssl":
            view1 = cut_and_shuffle(x, s[0], grid=grid, mode=cut_mode,
                                    shuffle_blocks=shuffle_blocks)
            view2 = cut_and_shuffle(x, s[2], grid=grid, mode=cut_mode,
                                    shuffle_blocks=shuffle_blocks)
            labels = y
        else:
            view1 = masker.bam(x, s[0])
            view2 = masker.bam(x, s[2])
            labels = y
        return {"view1": view1, "view2": view2, "anchor": x}, labels

    return augment
