"""`--smoke`: a preset proved on this machine in minutes.

Full-size data for a few subjects (the preset's grid and voxel size, written in the
ADNI layout and read back through the loader, alignment checks included), every Table 1
framework's full-size 3D ViT, two training steps of each (pre-training and fine-tuning:
one batch per epoch, two epochs), then the evaluation, figures and report of a
normal run.

What is cut is what the code paths do not need: four subjects (two AD, two CN) of one
scan, one fold of two, and batches of two; and one bundle, the first framework's, is
written instead of one per framework (`smoke_run_arguments`: at the paper preset each
bundle is about 283 MB, and one proves the path). Every step's cost grows with the batch
(a pre-training step encodes two views of each sample), so the preset's batches of 4 and
12 are not kept; the model, grid and views are.
"""

import dataclasses

from bar_ad.config import BarConfig

SMOKE_BATCH = 2


def smoke_run_arguments(frameworks) -> dict:
    """Extra `run_experiment` arguments of a smoke run: keep the bundle of the first of
    `frameworks` (the run's frameworks, in order) only."""
    return {"bundles": tuple(frameworks)[:1]}


def smoke_config(config: BarConfig) -> BarConfig:
    """`config` cut to four subjects of one scan, one fold, two epochs and batches of two.

    Two folds of two AD and two CN subjects: each fold's test part holds one scan of each
    class (so the AUC is defined), and its training part (one AD, one CN) is one batch of
    `SMOKE_BATCH`, so each of the two epochs is one step with both classes in the batch
    (the soft-label mixing and the kernel range need a pair). Sizes of the model, the
    grid and the views are kept; the region-reliance check (65 forward passes, proven
    by the tiny preset's tests) is left out.
    """
    return dataclasses.replace(
        config, n_ad=2, n_cn=2, scans_per_subject=(1, 1), design="cv", n_folds=2, folds_run=1,
        pretrain_epochs=2, finetune_epochs=2, pretrain_batch=SMOKE_BATCH,
        finetune_batch=SMOKE_BATCH, reliance_scans=0)
