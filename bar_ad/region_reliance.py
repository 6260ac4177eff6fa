"""Which AAL regions a trained classifier relies on: region occlusion over the atlas.

The ViT has no convolution features for Grad-CAM; region occlusion asks the model
directly. For each merged atlas region, every voxel of the region is replaced by the
baseline (the training scans' mean volume: zero on centred inputs, a brain with no
subject-specific signal otherwise, so the replaced scan stays inside the data's range)
and the drop of the AD probability is read (`shared.explain.scoring.target_scores`),
averaged over AD and over CN scans. A positive drop on AD scans means the region carries
evidence for AD. On the synthetic cohort the regions the atrophy was written into are
known (`bar_ad.phantom.REGION_WEIGHTS`), so the report can say whether an arm's evidence
sits where the disease signal is (Spearman correlation of the drops with those weights).
"""

from __future__ import annotations

import numpy as np


def pick_scans(y, max_scans, *, seed) -> np.ndarray:
    """Up to `max_scans` indices of `y`, half of each class where there are enough."""
    y = np.asarray(y, int)
    rng = np.random.default_rng([seed, 31337])
    half = max_scans // 2
    picked = [rng.choice(np.flatnonzero(y == c), size=min(half, int(np.sum(y == c))),
                         replace=False) for c in (0, 1)]
    return np.sort(np.concatenate(picked))


def region_reliance(model, x, y, atlas, baseline, *, max_scans=64, seed=0,
                    batch_size=32) -> dict:
    """Mean drop of the AD probability when each atlas region is replaced by `baseline`.

    Args:
        model: keras classifier with one sigmoid output (AD probability).
        x: float volumes [N, D, H, W, 1]; y: int labels [N] (1 = AD).
        atlas: `bar_ad.atlas.Atlas` on the volumes' grid.
        baseline: float array [D, H, W, 1] (or broadcastable): the replacement values.
        max_scans: int, default 64. Scans used, half AD and half CN where possible.
        seed: int. Which scans.
        batch_size: int. Volumes per forward pass.

    Returns:
        dict(names, ad, cn: per-region mean drop on AD / CN scans, n_ad, n_cn).
    """
    from shared.explain.scoring import target_scores

    def ad_probability(volumes):
        out = [np.asarray(target_scores(model, volumes[k:k + batch_size],
                                        lambda o: o[:, 0]))
               for k in range(0, len(volumes), batch_size)]
        return np.concatenate(out)

    idx = pick_scans(y, max_scans, seed=seed)
    volumes = np.asarray(x[idx], np.float32)
    labels = np.asarray(y, int)[idx]
    base = np.broadcast_to(np.asarray(baseline, np.float32), volumes.shape[1:])
    scores = ad_probability(volumes)
    drops = np.zeros((atlas.num_regions, len(idx)), np.float64)
    for k in range(atlas.num_regions):
        mask = (atlas.labels == k + 1)[..., None]
        replaced = np.where(mask, base, volumes).astype(np.float32)
        drops[k] = scores - ad_probability(replaced)
    return dict(names=list(atlas.names),
                ad=drops[:, labels == 1].mean(axis=1).tolist(),
                cn=drops[:, labels == 0].mean(axis=1).tolist(),
                n_ad=int(np.sum(labels == 1)), n_cn=int(np.sum(labels == 0)))


def signal_weights(names) -> np.ndarray:
    """The synthetic cohort's relative AD atrophy per region (0 where none was written)."""
    from bar_ad.phantom import REGION_WEIGHTS

    return np.array([REGION_WEIGHTS.get(n, 0.0) for n in names], float)


def signal_agreement(reliance) -> float:
    """Spearman correlation over regions of the drop on AD scans with the atrophy weights."""
    from scipy import stats

    drops = np.asarray(reliance["ad"], float)
    weights = signal_weights(reliance["names"])
    if np.ptp(drops) == 0 or np.ptp(weights) == 0:
        return 0.0
    return float(stats.spearmanr(drops, weights).statistic)


def reliance_figure(reliances, labels, path):
    """Arms x regions: the mean drop of the AD probability on AD scans when the region is
    replaced, for the regions the atrophy was written into (strongest first) and the
    mean of all other regions; the atrophy weights in the top row.

    Args:
        reliances: dict arm -> `region_reliance` result (same atlas).
        labels: dict arm -> display name.
        path: PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(reliances)
    if not arms:
        return None
    names = reliances[arms[0]]["names"]
    weights = signal_weights(names)
    signal = [i for i in np.argsort(-weights, kind="stable") if weights[i] > 0]
    others = [i for i in range(len(names)) if weights[i] == 0]
    columns = [names[i] for i in signal] + ["all other regions (mean)"]

    def row(values):
        values = np.asarray(values, float)
        return list(values[signal]) + [float(values[others].mean()) if others else np.nan]

    grid = np.array([row(reliances[a]["ad"]) for a in arms])
    fig, (top, ax) = plt.subplots(
        2, 1, figsize=(3.5 + 0.42 * len(columns), 2.4 + 0.42 * len(arms)), sharex=True,
        gridspec_kw=dict(height_ratios=[1, max(len(arms), 1)]), layout="constrained")
    top.imshow(np.array([row(weights)]), aspect="auto", cmap="Greys", vmin=0, vmax=1)
    top.set_yticks([0], ["atrophy weight (synthetic cohort)"])
    limit = float(np.nanmax(np.abs(grid))) or 1.0
    image = ax.imshow(grid, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_yticks(range(len(arms)), [labels.get(a, a) for a in arms])
    ax.set_xticks(range(len(columns)), columns, rotation=60, ha="right", fontsize=8)
    fig.colorbar(image, ax=[top, ax], label="drop of P(AD) on AD scans\nwhen the region is replaced")
    fig.suptitle("Which regions each classifier relies on (region occlusion, first draw)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
