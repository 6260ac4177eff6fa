"""`bar-ad run --smoke`: the preset's sizes kept, eight subjects, one fold, two steps."""

import dataclasses
import re

import pytest

from bar_ad.config import get_config
from bar_ad.smoke import smoke_config
from shared.testing.bad_input import run_cli

SIZES = ("grid", "gen_voxel_mm", "patch_size", "width", "depth", "num_heads", "mlp_dim",
         "pretrain_batch", "finetune_batch", "frameworks")


@pytest.mark.no_keras
def test_smoke_config_keeps_the_sizes_and_cuts_the_rest():
    paper = get_config("paper")
    smoke = smoke_config(paper)
    assert {k: getattr(smoke, k) for k in SIZES} == {k: getattr(paper, k) for k in SIZES}
    assert (smoke.n_ad, smoke.n_cn, smoke.scans_per_subject) == (4, 4, (1, 1))
    assert (smoke.n_folds, smoke.folds_run) == (2, 1)
    assert (smoke.pretrain_epochs, smoke.finetune_epochs) == (2, 2)
    # one fold's training part (4 subjects of one scan) fits in one batch of each kind
    assert smoke.n_ad + smoke.n_cn - (smoke.n_ad + smoke.n_cn) // smoke.n_folds <= min(
        smoke.pretrain_batch, smoke.finetune_batch)
    assert dataclasses.replace(smoke, n_ad=paper.n_ad) != paper


@pytest.mark.slow
def test_tiny_smoke_run_reports_and_prints_its_peak_memory(tmp_path):
    code, out, err = run_cli(["bar-ad", "run", "--preset", "tiny", "--smoke", "--no-progress",
                              "--out", tmp_path / "run", "--store",
                              f"sqlite:///{tmp_path / 's.sqlite'}"])
    assert code == 0, err[-2000:]
    assert re.search(r"^peak memory: \d+ MiB$", out, re.M), out
    assert (tmp_path / "run" / "report.md").is_file()
    assert len(list((tmp_path / "run" / "data").rglob("*.nii*"))) == 8
