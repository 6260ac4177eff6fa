"""`--smoke`: a preset proved on this machine in minutes.

Full-size data for a few scans (the preset's volume shape, written through the
challenge layout on disk and read back by the loader), every arm's full-size network,
two training steps of each (one batch per epoch, two epochs: the LA detector, each QA
strategy's heads and encoder, SupCon pre-training), then the evaluation, figures and
report of a normal run.
"""

import dataclasses

from lge_qa.config import LgeQaConfig


def smoke_config(cfg: LgeQaConfig) -> LgeQaConfig:
    """`cfg` cut to a few scans and two training steps per network; sizes kept.

    Six scored scans (two for testing, one for validation) and two masks-only
    scans: every training set fits in one batch of the preset's batch sizes, so each
    of the two epochs is one step.
    """
    return dataclasses.replace(
        cfg, n_segmentation=2, n_scored=6, test_scans=2, val_fraction=0.25, repetitions=1,
        unet_epochs=2, epochs=2, patience=2, pretrain_epochs=2, pretrain_criterion=0.0,
        cam_scans=1, training_sizes=(), strategies=cfg.strategies)
