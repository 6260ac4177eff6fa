"""Paired fold-by-fold comparisons and the collapse table of the report."""

import numpy as np
import pytest
from scipy import stats

from bar_ad.report import collapse_markdown, collapse_rows, paired_markdown, paired_rows

pytestmark = pytest.mark.no_keras


def _fold(acc, history=None):
    return {"scores": {"accuracy": acc, "precision": acc, "recall": acc},
            "pretrain_history": history or {}}


def test_paired_rows_match_scipy():
    a, b = [80.0, 75.0, 90.0, 85.0], [78.0, 74.0, 86.0, 86.0]
    results = {"bar_recon": [_fold(v) for v in a], "scratch": [_fold(v) for v in b]}
    (row,) = paired_rows(results, ("bar_recon", "scratch"))
    assert row["n"] == 4 and row["mean_difference"] == pytest.approx(1.5)
    assert row["paired_t_p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert row["wilcoxon_p"] == pytest.approx(stats.wilcoxon(np.subtract(a, b)).pvalue)
    # Unpaired, the same numbers say nothing: the paired test is the sharper one here.
    assert row["paired_t_p"] < stats.ttest_ind(a, b).pvalue
    text = "\n".join(paired_markdown([row]))
    assert "| Supervised: BAR + recon | ViT from scratch | 4 | +1.50 |" in text
    assert paired_rows({"bar": [_fold(1.0)], "scratch": [_fold(2.0)]}, ("bar", "scratch")) == []


def test_collapse_rows_first_and_last_epoch_means():
    h0 = {"cls_cosine": [0.5, 0.9, 0.99], "contrastive": [2.0, 1.0, 0.5],
          "kernel_min": [0.46, 0.5, 0.46], "kernel_max": [1.0, 1.0, 1.0]}
    h1 = {"cls_cosine": [0.7, 0.95, 0.97], "contrastive": [2.2, 1.2, 0.7],
          "kernel_min": [0.5, 0.46, 0.56], "kernel_max": [1.0, 0.9, 1.0]}
    results = {"bar_recon": [_fold(80, h0), _fold(82, h1)], "scratch": [_fold(70), _fold(71)]}
    (row,) = collapse_rows(results, ("bar_recon", "scratch"))
    assert row["framework"] == "bar_recon" and row["n_folds"] == 2
    assert row["cls_cosine_first"] == pytest.approx(0.6)
    assert row["cls_cosine_last"] == pytest.approx(0.98)
    assert row["contrastive_last"] == pytest.approx(0.6)
    assert row["kernel_min_last"] == pytest.approx(0.51)
    text = "\n".join(collapse_markdown([row]))
    assert "0.600 → 0.980" in text and "Supervised: BAR + recon" in text
    assert collapse_markdown([]) == []
