"""`--smoke`: a preset proved on this machine in minutes.

Full-size data for a few scans (the preset's volume shape, written through the
challenge layout on disk and read back by the loader), every arm's full-size network,
two training steps of each (one batch per epoch, two epochs: the LA detector, each QA
strategy's heads and encoder, SupCon pre-training), then the evaluation, figures and
report of a normal run.
"""

import dataclasses

from lge_qa.config import LgeQaConfig

# Training slices per network in a smoke run: one batch each, so one step per epoch.
SMOKE_DETECTOR_SLICES = 8
SMOKE_QA_SLICES = 16


def smoke_config(cfg: LgeQaConfig) -> LgeQaConfig:
    """`cfg` cut to a few scans and two training steps per network; sizes kept.

    Six scored scans (two for testing, one for validation) and two masks-only scans
    at the preset's volume shape, image size and networks. The training slices are
    capped (`SMOKE_DETECTOR_SLICES`, `SMOKE_QA_SLICES`) below every batch size of the
    presets, so each of the two epochs is one step; the batch is therefore smaller than
    the preset's (128 in `paper`), and so is the memory a smoke run measures.
    """
    return dataclasses.replace(
        cfg, n_segmentation=2, n_scored=6, test_scans=2, val_fraction=0.25, repetitions=1,
        unet_epochs=2, epochs=2, patience=2, pretrain_epochs=2, pretrain_criterion=0.0,
        unet_max_slices=SMOKE_DETECTOR_SLICES, max_train_slices=SMOKE_QA_SLICES,
        cam_scans=1, training_sizes=(), strategies=cfg.strategies)
