"""Region reliance on a hand-made model whose AD score reads one region only."""

import numpy as np
import pytest

from bar_ad.region_reliance import pick_scans, region_reliance, signal_agreement, signal_weights


class _Atlas:
    """Three regions on a 4^3 grid: label 1 the first two slabs, 2 the third, 3 the last."""

    def __init__(self):
        self.labels = np.zeros((4, 4, 4), np.int32)
        self.labels[:2] = 1
        self.labels[2] = 2
        self.labels[3] = 3
        self.names = ("Hippocampus", "Precuneus", "Occipital_Sup")

    @property
    def num_regions(self):
        return len(self.names)


def _model():
    """P(AD) = sigmoid(mean intensity of region 1)."""
    import keras

    mask = (_Atlas().labels == 1).astype("float32")[..., None]
    inputs = keras.Input((4, 4, 4, 1))
    mean = keras.layers.Lambda(
        lambda v: keras.ops.sum(v * mask, axis=(1, 2, 3, 4)) / float(mask.sum()))(inputs)
    outputs = keras.layers.Lambda(lambda m: keras.ops.sigmoid(m)[:, None])(mean)
    return keras.Model(inputs, outputs)


def test_only_the_region_the_model_reads_moves_its_score():
    rng = np.random.default_rng(0)
    y = np.array([1, 1, 1, 0, 0, 0])
    x = rng.normal(size=(6, 4, 4, 4, 1)).astype(np.float32)
    x[y == 1] += 1.0
    baseline = np.zeros((4, 4, 4, 1), np.float32)
    result = region_reliance(_model(), x, y, _Atlas(), baseline, max_scans=6, seed=0)
    region1 = (_Atlas().labels == 1)[..., None]
    means = (x * region1).sum(axis=(1, 2, 3, 4)) / region1.sum()
    drop = 1 / (1 + np.exp(-means)) - 0.5  # replaced by 0: sigmoid(0) = 0.5
    assert result["ad"][0] == pytest.approx(drop[y == 1].mean(), abs=1e-5)
    assert result["cn"][0] == pytest.approx(drop[y == 0].mean(), abs=1e-5)
    assert result["ad"][1:] == pytest.approx([0.0, 0.0], abs=1e-6)
    assert result["cn"][1:] == pytest.approx([0.0, 0.0], abs=1e-6)
    assert result["n_ad"] == 3 and result["n_cn"] == 3
    # The weights of the synthetic cohort: Hippocampus 1.0, Precuneus 0.5, no atrophy in
    # Occipital_Sup; drops (+, 0, 0) rank like (1, 0.5, 0) only partly: Spearman of
    # ranks (3, 1.5, 1.5) and (3, 2, 1) = 0.866.
    assert signal_weights(result["names"]) == pytest.approx([1.0, 0.5, 0.0])
    assert signal_agreement(result) == pytest.approx(np.sqrt(3) / 2, abs=1e-6)


def test_scans_are_picked_half_per_class():
    y = np.array([1] * 10 + [0] * 3)
    idx = pick_scans(y, 8, seed=1)
    assert np.sum(y[idx] == 1) == 4 and np.sum(y[idx] == 0) == 3
    assert np.array_equal(idx, pick_scans(y, 8, seed=1))
