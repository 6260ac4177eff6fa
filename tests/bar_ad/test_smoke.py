"""`bar-ad run --smoke`: the preset's model and grid kept, four subjects, one fold, two steps
of batch two."""

import re

import numpy as np
import pytest

from bar_ad.config import get_config
from bar_ad.data import subject_folds, subject_holdout
from bar_ad.smoke import smoke_config
from shared.testing.bad_input import run_cli

SIZES = ("grid", "gen_voxel_mm", "patch_size", "width", "depth", "num_heads", "mlp_dim",
         "decoder_hidden", "head_units", "shuffle_blocks", "cutmix_cells", "frameworks")


@pytest.mark.no_keras
def test_smoke_config_keeps_the_sizes_and_cuts_the_rest():
    paper = get_config("paper")
    smoke = smoke_config(paper)
    assert {k: getattr(smoke, k) for k in SIZES} == {k: getattr(paper, k) for k in SIZES}
    assert (smoke.n_ad, smoke.n_cn, smoke.scans_per_subject) == (2, 2, (1, 1))
    assert (smoke.n_folds, smoke.folds_run) == (2, 1)
    assert (smoke.pretrain_epochs, smoke.finetune_epochs) == (2, 2)
    assert (smoke.pretrain_batch, smoke.finetune_batch) == (2, 2)
    # the preset itself is untouched
    assert (paper.n_ad, paper.n_cn, paper.pretrain_batch, paper.finetune_batch) == (
        246, 597, 4, 12)


@pytest.mark.no_keras
@pytest.mark.parametrize("preset", ["paper", "tiny"])
def test_smoke_fold_is_one_batch_of_both_classes_and_tests_both(preset):
    """The split the run makes: the first fold's training part (less its validation
    share) is exactly one pre-training and one fine-tuning batch holding one AD and one CN
    scan, so each epoch is one step; its test part holds both classes (AUC defined)."""
    smoke = smoke_config(get_config(preset))
    labels = np.array([1] * smoke.n_ad + [0] * smoke.n_cn)
    subjects = np.array([f"S{i}" for i in range(len(labels))])
    train, test = subject_folds(subjects, labels, n_folds=smoke.n_folds, seed=0)[0]
    train, val = subject_holdout(train, subjects, labels, fraction=smoke.val_fraction, seed=0)
    assert len(val) == 0
    assert sorted(labels[train]) == [0, 1] and sorted(labels[test]) == [0, 1]
    assert len(train) == smoke.pretrain_batch == smoke.finetune_batch
    # the pre-training dataset drops a remainder only when the set exceeds one batch:
    # one batch of two per epoch, two epochs, two steps
    steps_per_epoch = -(-len(train) // smoke.pretrain_batch)
    assert steps_per_epoch * smoke.pretrain_epochs == 2
    assert -(-len(train) // smoke.finetune_batch) * smoke.finetune_epochs == 2


@pytest.mark.slow
def test_tiny_smoke_run_reports_and_prints_its_peak_memory(tmp_path):
    code, out, err = run_cli(["bar-ad", "run", "--preset", "tiny", "--smoke", "--no-progress",
                              "--out", tmp_path / "run", "--store",
                              f"sqlite:///{tmp_path / 's.sqlite'}"])
    assert code == 0, err[-2000:]
    assert re.search(r"^peak memory: \d+ MiB$", out, re.M), out
    assert (tmp_path / "run" / "report.md").is_file()
    assert len(list((tmp_path / "run" / "data").rglob("*.nii*"))) == 4
    # One bundle, the first framework's, not one per framework (283 MB each at the paper preset).
    bundles = sorted(p.parent.name for p in (tmp_path / "run" / "bundles").glob("*/metadata.json"))
    assert bundles == [get_config("tiny").frameworks[0]]
